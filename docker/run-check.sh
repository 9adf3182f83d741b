#!/usr/bin/env bash
# Builds the service image's runtime stage as shipped (docker/Dockerfile, --target runtime) with
# podman and runs it: its user, volume, HEALTHCHECK, configuration from the environment, a
# schedule request, a stored job surviving a new container on the same volume, the refusal to
# listen openly without tokens, and PostgreSQL as its job store. Usage:
#   docker/run-check.sh [path/to/ipet]        (default target/debug/ipet)
#
# No registry is reachable here, so nothing is pulled (--pull=never):
# - the Debian base is made from the Debian archive (debootstrap), cached as a tarball under
#   target/container/ and imported as localhost/debian:bookworm-slim, which the Dockerfile's
#   `FROM debian:bookworm-slim` resolves to;
# - the binary and the ONNX Runtime library come from the host (the host is Debian 12 like the
#   base): an image holding them at the paths the Dockerfile's `build` and `ort` stages leave them
#   is given as build contexts named after those stages, which replace them (their rust: and
#   python: images are then not needed); the runtime stage itself is built as written;
# - PostgreSQL is the host's (scripts/setup.sh), reached over the host's network, in a database
#   of its own.
# podman runs with runc and cgroupfs (crun refuses these machines' hybrid cgroups and rlimits).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-target/debug/ipet}"
pg="${IPET_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
cache=target/container
mkdir -p "$cache"
say() { echo "docker/run-check: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

cat >"$cache/containers.conf" <<'EOF'
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
EOF
export CONTAINERS_CONF="$PWD/$cache/containers.conf"
release=$(sed -n 's/^ARG DEBIAN_RELEASE=//p' docker/Dockerfile)
ort_version=$(sed -n 's/^ARG ONNXRUNTIME_VERSION=//p' docker/Dockerfile)
base="localhost/debian:$release-slim"
tag="ipet-check-$$"
prebuilt="localhost/ipet-prebuilt:$tag"
image="localhost/ipet:$tag"
created=()
cleanup() {
  for c in "${created[@]}"; do podman rm -f -t 0 "$c" >/dev/null 2>&1 || true; done
  podman volume rm -f "$tag-data" >/dev/null 2>&1 || true
  [ -n "${pg_db:-}" ] && psql "$pg" -qtAc "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1
  rm -rf "$cache/prebuilt"
  # Only the base image stays (about 200 MB): the images made here and their layers go.
  podman rmi -f "$image" "$prebuilt" >/dev/null 2>&1 || true
}
trap cleanup EXIT
: >"$cache/podman.log"

# ---- the base image, once per machine -----------------------------------------------------------
if ! podman image exists "$base"; then
  tarball="$cache/debian-$release-minbase.tar.gz"
  if [ ! -s "$tarball" ]; then
    say "debootstrap --variant=minbase $release (once; cached in $tarball)"
    rm -rf "$cache/rootfs"
    debootstrap --variant=minbase "$release" "$cache/rootfs" http://deb.debian.org/debian >"$cache/debootstrap.log" 2>&1 \
      || { tail -n 20 "$cache/debootstrap.log" >&2; fail "debootstrap"; }
    tar -C "$cache/rootfs" -c . | gzip -1 >"$tarball.part" && mv "$tarball.part" "$tarball"
    rm -rf "$cache/rootfs"
  fi
  podman import --quiet "$tarball" "$base" >/dev/null
fi

# ---- the runtime stage, with the host's binary and ONNX Runtime library -------------------------
ort_lib=$(ONNXRUNTIME_VERSION="$ort_version" scripts/onnxruntime.sh)
[ "$(basename "$ort_lib")" = "libonnxruntime.so.$ort_version" ] \
  || fail "$ort_lib is not ONNX Runtime $ort_version (the Dockerfile's)"
[ -x "$bin" ] || fail "no binary at $bin (cargo build first)"
rm -rf "$cache/prebuilt"
mkdir -p "$cache/prebuilt/usr/local/bin" "$cache/prebuilt/opt/ort/onnxruntime/capi"
cp "$bin" "$cache/prebuilt/usr/local/bin/ipet"
cp "$ort_lib" "$cache/prebuilt/opt/ort/onnxruntime/capi/"
tar -C "$cache/prebuilt" -c . | podman import --quiet - "$prebuilt" >/dev/null
say "podman build --target runtime (binary: $bin)"
# --format docker: OCI images have no HEALTHCHECK.
podman build --quiet --pull=never --format docker --target runtime \
  --build-context build=container-image://"$prebuilt" --build-context ort=container-image://"$prebuilt" \
  -f docker/Dockerfile -t "$image" . >"$cache/build.log" 2>&1 || { tail -n 30 "$cache/build.log" >&2; fail "podman build"; }

# ---- what the image declares --------------------------------------------------------------------
cfg=$(podman image inspect "$image")
python3 - "$cfg" <<'PY' || fail "image configuration"
import json, sys
inspected = json.loads(sys.argv[1])[0]
c = inspected["Config"]
env = dict(e.split("=", 1) for e in c.get("Env", []))
problems = []
def need(cond, what):
    if not cond:
        problems.append(what)
need(c.get("User") == "10001:10001", f"user 10001:10001, not {c.get('User')!r}")
need("/srv/ipet/data" in (c.get("Volumes") or {}), "volume /srv/ipet/data")
hc = inspected.get("Healthcheck") or {}
need("/readyz" in " ".join(hc.get("Test") or []), f"a HEALTHCHECK on /readyz: {hc}")
need(c.get("Entrypoint") == ["ipet"] and c.get("Cmd") == ["serve"], "entrypoint ipet, command serve")
need(env.get("IPET_BIND") == "0.0.0.0" and env.get("DATABASE_URL", "").startswith("sqlite:/srv/ipet/data/"),
     "listens on 0.0.0.0 with SQLite in the volume")
need(env.get("ORT_DYLIB_PATH", "").startswith("/usr/local/lib/onnxruntime/"), "ORT_DYLIB_PATH")
need("8080/tcp" in (c.get("ExposedPorts") or {}), "port 8080 exposed")
if problems:
    sys.exit("docker/run-check: " + "; ".join(problems))
PY

# ---- refuses to listen openly without tokens ------------------------------------------------------
set +e
refusal=$(timeout 60 podman run --rm "$image" 2>&1)
rc=$?
set -e
[ "$rc" -ne 0 ] && grep -q unauthenticated_bind <<<"$refusal" \
  || fail "without tokens the image should refuse to start (rc $rc): $refusal"
say "without tokens: refused (rc $rc, unauthenticated_bind)"

# A token, made by the image's own binary.
mapfile -t tok < <(podman run --rm "$image" token ci-gateway 2>/dev/null)
token=${tok[0]}
line=${tok[1]}
[ ${#token} -eq 64 ] || fail "ipet token printed ${tok[*]}"

port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# Waits until the image's own HEALTHCHECK passes (podman runs it on demand here: no systemd).
healthy() {
  for _ in $(seq 120); do
    podman healthcheck run "$1" >/dev/null 2>&1 && return 0
    [ "$(podman inspect --format '{{.State.Running}}' "$1")" = true ] || break
    sleep 0.5
  done
  podman logs "$1" 2>&1 | tail -n 20 >&2
  return 1
}
# podman's own messages go to a log (without systemd it says on every start that it cannot set
# health check timers; `podman healthcheck run` above stands in for them), shown on failure.
start() { podman run -d "$@" >/dev/null 2>>"$cache/podman.log" || { tail -n 20 "$cache/podman.log" >&2; fail "podman run $*"; }; }
get() { curl -sS -o "$cache/body" -w '%{http_code}' -H "authorization: Bearer $token" "$@"; }

# ---- with tokens and SQLite in the volume -------------------------------------------------------
p=$(port)
name="$tag-sqlite"
created+=("$name" "$name-2")
podman volume create "$tag-data" >/dev/null
start --name "$name" -p "127.0.0.1:$p:8080" -v "$tag-data:/srv/ipet/data" \
  -e IPET_TOKENS="$line" -e IPET_MAX_N=20 "$image"
healthy "$name" || fail "the container did not turn healthy"
say "healthy (HEALTHCHECK passed)"
[ "$(podman exec "$name" id -u)" = 10001 ] || fail "the service does not run as 10001"
[ "$(podman top "$name" user | tail -n 1 | tr -d ' ')" != root ] || fail "the service runs as root"
code=$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$p/perturbations/blink-cam-01/0?n=2")
[ "$code" = 401 ] || fail "no token: $code, expected 401"
code=$(get "http://127.0.0.1:$p/perturbations/blink-cam-01/0?n=3&seed=7")
[ "$code" = 200 ] || fail "schedule request: $code $(cat "$cache/body")"
job=$(python3 -c 'import json, sys; v = json.load(open(sys.argv[1])); assert v["n"] == 3 and len(v["rows"]) == 3 * v["slots_per_window"], v; print(v["job_id"])' "$cache/body") \
  || fail "schedule body: $(head -c 300 "$cache/body")"
code=$(get "http://127.0.0.1:$p/perturbations/blink-cam-01/0?n=21")
[ "$code" = 400 ] && grep -q invalid_n "$cache/body" || fail "IPET_MAX_N=20 from the environment not applied: n=21 got $code"
podman exec "$name" test -O /srv/ipet/data/ipet.sqlite3 || fail "no database owned by the service in the volume"
say "user 10001, 401 without a token, schedule 200 (job $job), IPET_MAX_N from the environment, SQLite in the volume"
podman stop -t 10 "$name" >/dev/null 2>>"$cache/podman.log"
start --name "$name-2" -p "127.0.0.1:$p:8080" -v "$tag-data:/srv/ipet/data" -e IPET_TOKENS="$line" "$image"
healthy "$name-2" || fail "the second container did not turn healthy"
code=$(get "http://127.0.0.1:$p/perturbations/jobs/$job?format=csv")
[ "$code" = 200 ] || fail "the job stored in the volume is gone in a new container: $code"
say "a new container on the same volume serves the stored job"

# ---- PostgreSQL as the job store -----------------------------------------------------------------
psql "$pg" -qtAc 'select 1' >/dev/null || fail "no PostgreSQL at $pg (scripts/setup.sh starts one)"
pg_db="ipet_container_check_$$"
psql "$pg" -qtAc "CREATE DATABASE $pg_db" >/dev/null
db_url="${pg%/*}/$pg_db"
p=$(port)
name="$tag-postgres"
created+=("$name")
start --name "$name" --network host -e IPET_BIND=127.0.0.1 -e IPET_PORT="$p" -e DATABASE_URL="$db_url" \
  -e IPET_TOKENS="$line" "$image"
healthy "$name" || fail "the container on PostgreSQL did not turn healthy"
code=$(get "http://127.0.0.1:$p/perturbations/blink-cam-01/mix?n=2")
[ "$code" = 200 ] || fail "schedule request on PostgreSQL: $code $(cat "$cache/body")"
stored=$(psql "$db_url" -qtAc "SELECT count(*) FROM perturbation_jobs WHERE requester = 'ci-gateway'")
[ "$stored" = 1 ] || fail "PostgreSQL holds $stored jobs of ci-gateway, expected 1"
curl -sf "http://127.0.0.1:$p/readyz" | grep -q '"database":"postgres"' || fail "readyz does not name postgres"
say "on PostgreSQL: healthy, schedule 200, the job is in the database"
say "all checks passed"
