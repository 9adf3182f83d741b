#!/usr/bin/env bash
# Installs and starts what the tests need, idempotently: PostgreSQL (started when not running,
# installed from Debian when absent), the training package and its Python dependencies, and the
# ONNX Runtime library under .ort/.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v pg_isready >/dev/null 2>&1 || ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
  echo "setup: installing PostgreSQL" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "setup: starting PostgreSQL" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort | tail -n 1)" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432 >&2
# The tests connect as postgres without a password over TCP; make sure that is allowed.
if ! psql "postgres://postgres@127.0.0.1:5432/postgres" -qtAc 'select 1' >/dev/null 2>&1; then
  hba=$(su postgres -c "psql -qtAc 'show hba_file'")
  sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
  su postgres -c "psql -qtAc 'select pg_reload_conf()'" >/dev/null
fi

# The dependencies, not the package: scripts/test.sh puts this checkout's training/ first on
# PYTHONPATH, so an editable install from another checkout cannot shadow it.
if ! python3 -c 'import torch, numpy, onnx, onnxruntime, tqdm, sklearn, matplotlib, pytest' >/dev/null 2>&1; then
  echo "setup: installing the training package and its dependencies" >&2
  python3 -m pip install --quiet --disable-pip-version-check -e 'training[test]'
fi

scripts/onnxruntime.sh >/dev/null

# The API client, browser and container checks (scripts/client_tests.sh, docker/check.sh,
# docker/run-check.sh):
# Debian's headless Chromium, its driver and docker-compose (for `config` only: no engine), and
# the Python tools of clients/requirements.txt in their own environment, target/tools-venv.
apt_needed=()
command -v chromium >/dev/null 2>&1 || apt_needed+=(chromium)
command -v chromedriver >/dev/null 2>&1 || apt_needed+=(chromium-driver)
command -v docker-compose >/dev/null 2>&1 || apt_needed+=(docker-compose)
# The image built and run for real (docker/run-check.sh): podman with runc, and debootstrap for
# its Debian base (no registry is reachable).
command -v podman >/dev/null 2>&1 || apt_needed+=(podman)
command -v runc >/dev/null 2>&1 || apt_needed+=(runc)
command -v debootstrap >/dev/null 2>&1 || apt_needed+=(debootstrap)
if [ ${#apt_needed[@]} -gt 0 ]; then
  echo "setup: installing ${apt_needed[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_needed[@]}" >/dev/null
fi
tools=target/tools-venv
if ! cmp -s clients/requirements.txt "$tools/requirements.installed" 2>/dev/null; then
  echo "setup: installing the client test tools into $tools" >&2
  python3 -m venv "$tools"
  "$tools/bin/python" -m pip install --quiet --disable-pip-version-check -r clients/requirements.txt
  cp clients/requirements.txt "$tools/requirements.installed"
fi
