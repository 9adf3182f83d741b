#!/usr/bin/env bash
# Static checks of the container setup: hadolint on both Dockerfiles, the compose file resolved
# and validated by docker-compose's own schema (`docker-compose config`), and the promises that
# docker/README.md makes about it. docker/run-check.sh builds and runs the service image. Needs
# what scripts/setup.sh installs.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="target/tools-venv"

echo "docker/check: hadolint docker/Dockerfile docker/Dockerfile.train" >&2
"$venv/bin/hadolint" --config docker/.hadolint.yaml docker/Dockerfile docker/Dockerfile.train

echo "docker/check: docker-compose config (with and without the train profile)" >&2
docker-compose -f docker/compose.yaml config --quiet
resolved=$(mktemp)
trap 'rm -f "$resolved"' EXIT
docker-compose -f docker/compose.yaml --profile train config >"$resolved"

"$venv/bin/python" - "$resolved" <<'PY'
import re, sys
from pathlib import Path
import yaml

cfg = yaml.safe_load(open(sys.argv[1]))
svc = cfg["services"]
problems = []
def need(cond, what):
    if not cond:
        problems.append(what)

ipet, pg, train = svc["ipet"], svc["postgres"], svc["train"]
need(ipet["build"]["dockerfile"] == "docker/Dockerfile", "ipet builds docker/Dockerfile")
need(ipet["depends_on"]["postgres"]["condition"] == "service_healthy", "ipet waits for a healthy postgres")
need(ipet["environment"]["DATABASE_URL"].startswith("postgres://"), "ipet uses PostgreSQL")
need(ipet["environment"]["IPET_BIND"] == "0.0.0.0", "ipet listens on the container's interface")
need(str(ipet["environment"].get("IPET_ALLOW_UNAUTHENTICATED")).lower() == "true",
     "IPET_ALLOW_UNAUTHENTICATED set (no tokens configured)")
need(all(str(p).startswith("127.0.0.1:") for p in ipet["ports"]), "ports published on 127.0.0.1 only")
need(any(v.endswith(":/srv/ipet/models:ro") for v in ipet["volumes"]), "models mounted read-only")
need("pg_isready" in " ".join(pg["healthcheck"]["test"]), "postgres healthcheck uses pg_isready")
need(re.fullmatch(r"postgres:1[56](\..*)?", pg["image"]) is not None, "postgres 15 or 16")
need(any(str(v).startswith("pgdata:") for v in pg["volumes"]) and "pgdata" in cfg["volumes"],
     "postgres data on a named volume")
need(train.get("profiles") == ["train"], "train only in the train profile")
need(train["build"]["dockerfile"] == "docker/Dockerfile.train", "train builds docker/Dockerfile.train")
need(train["command"][:1] == ["pipeline"] and "--out" in train["command"], "train runs the pipeline")

# What the Dockerfiles copy exists, and their versions agree with the repository's.
repo = Path(".")
df = (repo / "docker/Dockerfile").read_text()
for src in re.findall(r"^COPY (?!--from)(\S+)", df, re.M) + re.findall(
        r"^COPY (?!--from)(\S+)", (repo / "docker/Dockerfile.train").read_text(), re.M):
    need((repo / src).exists(), f"COPY source {src} exists")
script = (repo / "scripts/onnxruntime.sh").read_text()
for name in ("Dockerfile", "Dockerfile.train"):
    ort = re.search(r"ARG ONNXRUNTIME_VERSION=(\S+)", (repo / "docker" / name).read_text()).group(1)
    need(f'ONNXRUNTIME_VERSION:-{ort}' in script, f"{name}'s ONNX Runtime {ort} is scripts/onnxruntime.sh's")
rust = re.search(r"ARG RUST_VERSION=(\S+)", df).group(1)
floor = re.search(r'rust-version = "([0-9.]+)"', (repo / "Cargo.toml").read_text()).group(1)
need(tuple(map(int, rust.split("."))) >= tuple(map(int, floor.split("."))),
     f"rust:{rust} is at least Cargo.toml's rust-version {floor}")
need((repo / "models/tj-oconnor-2021/manifest.json").exists(), "the shipped model set is there")

if problems:
    sys.exit("docker/check: failed: " + "; ".join(problems))
print(f"docker/check: compose: {len(svc)} services resolved ({', '.join(sorted(svc))}); all checks passed")
PY
