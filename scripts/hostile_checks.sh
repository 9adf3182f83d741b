#!/usr/bin/env bash
# Re-runs the hostile-network and dying-database scenarios of issue 12 against an `ipet` binary
# and prints figures (not a pass/fail test: the tests under tests/ are). Usage:
#   scripts/hostile_checks.sh [path/to/ipet] [wrk seconds]
# Needs wrk, python3, socat and PostgreSQL at $PG (postgres://postgres@127.0.0.1:5432/postgres).
set -uo pipefail
cd "$(dirname "$0")/.."
bin="${1:-target/release/ipet}"
secs="${2:-15}"
pg="${PG:-postgres://postgres@127.0.0.1:5432/postgres}"
port=$((20000 + RANDOM % 20000))
base="http://127.0.0.1:$port"
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT

rss() { awk '/VmRSS/ {print $2/1024 " MB"}' "/proc/$1/status"; }
ready() { for _ in $(seq 300); do curl -sf "$base/readyz" >/dev/null && return 0; sleep 0.2; done; return 1; }

echo "== binary: $bin"
# 1,024 open files, as on a default system, for the idle-socket scenario.
(ulimit -n 1024; exec "$bin" serve --port "$port" --database-url sqlite::memory: >"$work/serve.log" 2>&1) &
pid=$!
ready || { echo "did not start"; cat "$work/serve.log"; exit 1; }

echo "== item 4: 1,100 idle sockets (open-files limit 1,024 at start), then one request"
python3 - "$port" <<'PY'
import socket, sys, time, urllib.request
port = int(sys.argv[1])
socks = []
for _ in range(1100):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5); socks.append(s)
    except OSError as e:
        print("connect failed after", len(socks), e); break
t = time.time()
try:
    urllib.request.urlopen(f"http://127.0.0.1:{port}/devices", timeout=60).read()
    print(f"request beside {len(socks)} idle sockets answered in {time.time() - t:.2f} s")
except Exception as e:
    print(f"request beside {len(socks)} idle sockets failed after {time.time() - t:.2f} s: {e}")
t = time.time(); closed = 0
deadline = t + 40
while time.time() < deadline and closed < len(socks):
    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            closed += s.recv(1) == b""
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    time.sleep(0.5)
print(f"{closed}/{len(socks)} idle sockets closed by the server within {time.time() - t:.1f} s")
PY
echo "accept errors logged: $(grep -c 'Too many open files\|accept failed' "$work/serve.log")"

kill $pid; wait $pid 2>/dev/null
# A database file, as deployed: every request stores its schedule as a job, which in
# sqlite::memory: would be resident memory (about 3 KB per n=10 job) and hide the process's own.
"$bin" serve --port "$port" --database-url "sqlite:$work/load.sqlite3" >"$work/serve2.log" 2>&1 &
pid=$!
ready || { echo "did not start"; exit 1; }
echo "== item 6: wrk, GET /perturbations/blink-cam-01/0?n=10, $secs s per round (SQLite file)"
stored() { curl -s "$base/metrics" | awk '/^ipet_perturbation_jobs / {print $2}'; }
for c in 32 1000 1000 1000 1000; do
  before=$(rss $pid)
  out=$(wrk -t2 -c$c -d${secs}s --timeout 10s "$base/perturbations/blink-cam-01/0?n=10" 2>&1)
  total=$(echo "$out" | awk '/requests in/ {print $1}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $5}')
  p99=$(echo "$out" | awk '/Latency/ {print $2}')
  echo "c=$c: requests $total, non-2xx ${non2xx:-0}, goodput $(( (total - ${non2xx:-0}) / secs ))/s, mean latency $p99, RSS $before -> $(rss $pid); stored jobs $(stored), database $(du -m "$work/load.sqlite3" | cut -f1) MB"
done
kill $pid; wait $pid 2>/dev/null
"$bin" serve --port "$port" --database-url sqlite::memory: >"$work/serve2.log" 2>&1 &
pid=$!
ready || { echo "did not start"; exit 1; }
echo "== item 5: a 157-byte request spanning 10 days"
body='{"device":"blink-cam-01","baseline":"constant","packets":[{"time":0,"size":100,"direction":"out"},{"time":864000,"size":100,"direction":"in"}]}'
echo "bytes: ${#body}; answer: $(curl -s -o "$work/r" -w '%{http_code}' -H 'content-type: application/json' -d "$body" "$base/simulations") $(head -c 300 "$work/r")"

kill $pid; wait $pid 2>/dev/null

echo "== item 8: PostgreSQL behind a proxy that is then cut"
db="ipet_hostile_$$"
psql "$pg" -qc "CREATE DATABASE $db" >/dev/null 2>&1
pport=$((port + 1))
socat TCP-LISTEN:$pport,fork,reuseaddr TCP:127.0.0.1:5432 & proxy=$!
"$bin" serve --port "$port" --database-url "postgres://postgres@127.0.0.1:$pport/$db" >"$work/serve-pg.log" 2>&1 &
pid=$!
ready || { echo "did not start"; tail "$work/serve-pg.log"; }
curl -s "$base/perturbations/blink-cam-01/0?n=2" >/dev/null
pkill -P $proxy; kill $proxy; wait $proxy 2>/dev/null  # the proxy and its open connections
sleep 0.5
for path in "/perturbations/blink-cam-01/0?n=2" /readyz; do
  curl -s -o "$work/r" -D "$work/h" -w "%{http_code} in %{time_total} s" -m 60 "$base$path"
  echo " $path: retry-after=$(grep -i retry-after "$work/h" | tr -d '\r' | cut -d' ' -f2) $(head -c 200 "$work/r")"
done
socat TCP-LISTEN:$pport,fork,reuseaddr TCP:127.0.0.1:5432 & proxy=$!
t0=$(date +%s.%N)
for _ in $(seq 100); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/perturbations/blink-cam-01/0?n=2")" = 200 ] && break
  sleep 0.1
done
echo "recovered without restart in $(echo "$(date +%s.%N) - $t0" | bc) s"
pkill -P $proxy; kill $pid $proxy; wait 2>/dev/null
psql "$pg" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
