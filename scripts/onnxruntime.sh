#!/usr/bin/env bash
# Installs the ONNX Runtime shared library the service loads (ort's load-dynamic feature) from the
# PyPI `onnxruntime` wheel into .ort/, and prints its path. Idempotent. There is no Debian package
# and ort's own download needs a CDN these machines cannot reach.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
version="${ONNXRUNTIME_VERSION:-1.32.0}"
lib=$(ls "$root"/.ort/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | sort | tail -n 1 || true)
if [ -z "$lib" ]; then
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$root/.ort" "onnxruntime==$version" >&2
  lib=$(ls "$root"/.ort/onnxruntime/capi/libonnxruntime.so.* | sort | tail -n 1)
fi
echo "$lib"
