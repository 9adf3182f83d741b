#!/usr/bin/env bash
# Tests of the API from the outside, through the spec in openapi/openapi.json, against two running
# debug services (in-memory SQLite, free loopback ports): one without tokens, one with bearer tokens.
#   1. a Python client generated from the spec (openapi-python-client) exercising every operation,
#      every response format and the error paths, and access control with tokens; the raw JSON
#      bodies are also validated against the spec's schemas (clients/python, pytest);
#   2. schemathesis over every operation: no server error, status codes, media types and bodies
#      as documented (clients/schemathesis.toml);
#   3. the Swagger UI page at /docs in headless Chromium: operations listed, "Try it out" on
#      GET /devices answered 200; screenshots target/artifacts/docs-operations.png and docs.png.
# Needs what scripts/setup.sh installs (target/tools-venv, chromium, chromium-driver) and the
# debug binary (`cargo build --bins`). Logs and reports: target/client-tests/.
# IPET_CLIENT_SPEC=FILE generates the client from another spec (to try a change of the spec);
# IPET_CLIENT_TESTS_BROWSER=0 skips the browser; SCHEMATHESIS_MAX_EXAMPLES (30) bounds the fuzzing.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
venv="$root/target/tools-venv"
work="$root/target/client-tests"
artifacts="$root/target/artifacts"
bin="${IPET_BIN:-$root/target/debug/ipet}"
export PATH="$venv/bin:$PATH"

[ -x "$venv/bin/python" ] || { echo "client_tests: $venv is missing; run scripts/setup.sh" >&2; exit 1; }
[ -x "$bin" ] || cargo build --locked --bins
rm -rf "$work" && mkdir -p "$work" "$artifacts"

step() { printf '\n== client_tests: %s\n' "$*" >&2; }

# ---- the generated client ---------------------------------------------------------------------
spec=$(realpath "${IPET_CLIENT_SPEC:-openapi/openapi.json}")  # another file only to try a spec change
step "generating a Python client from $spec"
# Every operation must come out: the generator skips (with a warning) what the spec cannot express.
if ! openapi-python-client generate --path "$spec" --output-path "$work/ipet_client" \
    --meta none --overwrite --custom-template-path clients/python/templates >"$work/generate.log" 2>&1 || grep -q "WARNING\|Error" "$work/generate.log"; then
  cat "$work/generate.log" >&2
  echo "client_tests: the spec does not generate a complete client (log above)" >&2
  exit 1
fi

# ---- the services -----------------------------------------------------------------------------
# One without tokens (every caller anonymous, as on a developer's machine), and one with bearer
# tokens: gw-a (perturbations, simulations), gw-b (perturbations), prom (metrics).
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
token() { "$bin" token "$1" --scopes "$2" 2>/dev/null; }  # line 1: the token, line 2: its tokens-file line
mapfile -t gw_a < <(token gw-a perturbations,simulations)
mapfile -t gw_b < <(token gw-b perturbations)
mapfile -t prom < <(token prom metrics)
[ -n "${prom[1]:-}" ] || { echo "client_tests: \`ipet token\` made no token" >&2; exit 1; }
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(scripts/onnxruntime.sh)}" RUST_LOG="${RUST_LOG:-info}"
port=$(free_port)
base="http://127.0.0.1:$port"
step "starting the service on $base (no tokens) and one with tokens"
"$bin" serve --bind 127.0.0.1 --port "$port" --database-url sqlite::memory: --max-n 64 >"$work/service.log" 2>&1 &
service=$!
tport=$(free_port)
tbase="http://127.0.0.1:$tport"
IPET_TOKENS="${gw_a[1]};${gw_b[1]};${prom[1]}" \
  "$bin" serve --bind 127.0.0.1 --port "$tport" --database-url sqlite::memory: --max-n 64 >"$work/service-tokens.log" 2>&1 &
tservice=$!
stop() {
  kill "$service" "$tservice" 2>/dev/null || true
  wait "$service" "$tservice" 2>/dev/null || true
}
trap stop EXIT
for url in "$base" "$tbase"; do
  for _ in $(seq 1 120); do
    curl -fsS -o /dev/null "$url/readyz" 2>/dev/null && break
    kill -0 "$service" "$tservice" 2>/dev/null || break
    sleep 0.5
  done
  if ! curl -fsS -o /dev/null "$url/readyz"; then
    cat "$work"/service*.log >&2
    echo "client_tests: the service at $url did not get ready" >&2
    exit 1
  fi
done

step "generated-client tests"
IPET_BASE_URL="$base" IPET_CLIENT_DIR="$work" IPET_OPENAPI="$spec" IPET_TOKENS_BASE_URL="$tbase" \
  IPET_TOKEN_GW_A="${gw_a[0]}" IPET_TOKEN_GW_B="${gw_b[0]}" IPET_TOKEN_PROM="${prom[0]}" \
  "$venv/bin/python" -m pytest clients/python -q -p no:cacheprovider -o console_output_style=classic

step "schemathesis: no server error; status codes, media types and bodies as documented"
# Bounded (examples per operation, a fixed seed); real device names and generations from
# clients/schemathesis.toml most of the time; the stateful phase follows the Location headers.
(cd "$work" && schemathesis --config-file "$root/clients/schemathesis.toml" run "$base/openapi.json" \
  --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
  --phases examples,coverage,fuzzing,stateful --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-30}" --seed 1 \
  --workers 2 --request-timeout 30 --suppress-health-check too_slow \
  --report junit,har --report-dir "$work/schemathesis")

if [ "${IPET_CLIENT_TESTS_BROWSER:-1}" = 1 ]; then
  step "the docs page in headless Chromium"
  IPET_BASE_URL="$base" IPET_ARTIFACTS="$artifacts" "$venv/bin/python" clients/browser/docs_page.py
fi
step "all client tests passed"
