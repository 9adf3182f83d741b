#!/usr/bin/env bash
# Every test: Rust unit and integration tests (SQLite and PostgreSQL), the OpenAPI drift check,
# formatting, and the training package's tests including a smoke run of the whole pipeline on the
# in-repo real capture slice.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PYTHONPATH="$PWD/training${PYTHONPATH:+:$PYTHONPATH}"
# Strict: a test that would skip (no ipet binary, no capture, a Python package missing) fails
# instead, in the training package's tests (training/tests/conftest.py) and in the Rust tests
# that read the same variable: CI must not pass on what it did not run.
export IPET_TEST_STRICT=1
export IPET_TEST_POSTGRES_URL="${IPET_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

cargo fmt --all -- --check
cargo build --locked --workspace --bins
cargo test --locked --workspace
IPET_BIN="$PWD/target/debug/ipet" python3 -m pytest training/tests -q

# The container setup (static: lint and compose validation; then the runtime image built with
# podman around the debug binary and run), then the API from the outside: a generated client,
# schemathesis and the docs page in a browser, against the running debug binary.
docker/check.sh
docker/run-check.sh target/debug/ipet
scripts/client_tests.sh
