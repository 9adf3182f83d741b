#!/usr/bin/env bash
# The home in network namespaces, the gateway shaping it, an observer capturing every frame.
#
#   scripts/testbed.sh --mode bridge|ap --defense NAME --seconds N --out DIR
#                      [--captures DIR --devices CSV] [--sets "a,b;c,d"] [--from UNIX_S]
#                      [--speed X] [--kill-at S] [--rt PRIO] [--release JSON] [--bin PATH] [--ipet PATH]
#                      [--release-build]
# --release: the spec's release settings (default {"slot_behind": true}; the deployment is --mode).
#
# One namespace per device replays its frames of the stretch (the busiest N seconds of the
# captures unless --from) at the capture's timing with its own MAC; the router's namespace
# replays every device's incoming frames; the gateway's namespace runs `ipet-gateway run`.
#   bridge: device -- [gateway] -- router, each device on its own port. The observer is the
#           receivers' taps: every frame as it reaches the device or the router, i.e. after the
#           shaper in both directions (the link a per-device shaping bridge transmits on).
#   ap:     devices and the gateway on one shared segment (a kernel bridge with ageing 0, which
#           floods every frame to every port like the air), the observer one more port of it.
# Writes DIR/observer.pcap, DIR/report.json (ipet-gateway report), the gateway's log, metrics and
# decisions, and the simulator's summary for the same stretch (DIR/sim.json).
# All traffic stays inside the namespaces made here; they are removed on exit.
set -euo pipefail
cd -P "$(dirname "$0")/.."

mode=bridge defense=pass-through seconds=15 out="" captures="" devices="" sets="" from="" speed=1
kill_at="" rtprio=0 bin="" ipet="target/debug/ipet" build_release=0 release=""
while [ $# -gt 0 ]; do
  case "$1" in
    --mode) mode=$2; shift 2;;
    --defense) defense=$2; shift 2;;
    --seconds) seconds=$2; shift 2;;
    --out) out=$2; shift 2;;
    --captures) captures=$2; shift 2;;
    --devices) devices=$2; shift 2;;
    --sets) sets=$2; shift 2;;
    --from) from=$2; shift 2;;
    --speed) speed=$2; shift 2;;
    --kill-at) kill_at=$2; shift 2;;
    --rt) rtprio=$2; shift 2;;
    --bin) bin=$2; shift 2;;
    --ipet) ipet=$2; shift 2;;
    --release-build) build_release=1; shift;;
    --release) release=$2; shift 2;;
    -h|--help) sed -n 2,20p "$0"; exit 0;;
    *) echo "unknown argument $1" >&2; exit 2;;
  esac
done
[ -n "$out" ] || { echo "--out DIR is required" >&2; exit 2; }
case "$mode" in bridge|ap) ;; *) echo "--mode bridge|ap" >&2; exit 2;; esac
if [ -z "$captures" ]; then
  captures=data/tj-oconnor-2021-slice/pcaps
  devices=data/tj-oconnor-2021-slice/devices.csv
  # The evaluation's k=3 sets: {3 cameras} {4 hubs and locks}.
  [ -n "$sets" ] || sets="blink-cam-01,blink-cam-02,blink-cam-03;lockly-hub-01,schlage-lock-01,sifely-hub-01,ultraloq-hub-01"
fi
[ -n "$devices" ] || { echo "--devices CSV is required with --captures" >&2; exit 2; }
if [ -z "$bin" ]; then
  if [ "$build_release" = 1 ]; then
    cargo build --release -q -p ipet-gateway; bin=target/release/ipet-gateway
  else
    cargo build -q -p ipet-gateway; bin=target/debug/ipet-gateway
  fi
fi
bin=$(realpath "$bin")
mkdir -p "$out"; out=$(realpath "$out")
rm -rf "$out/stretch" "$out"/*.pcap "$out"/*.ready "$out"/*.stats.json

# The stretch: the busiest N seconds (or from --from), one pcap per device.
"$bin" stretch --captures "$captures" --devices "$devices" --seconds "$seconds" --speed "$speed" \
  ${from:+--from "$from"} ${sets:+--sets "$sets"} --out "$out/stretch" > "$out/stretch.log"
mapfile -t names < <(python3 -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["devices"]))' "$out/stretch/stretch.json")
[ "${#names[@]}" -gt 0 ] || { echo "no device has frames in the stretch" >&2; exit 1; }

# The gateway's configuration (JSON): every device of the table, its set from --sets (else the
# table's set column, else one set); the shared set-defense spec with the stretch's size
# profiles (a real gateway gets them from its home's captures) and the release settings.
[ -n "$release" ] || release='{"slot_behind": true}'
python3 - "$devices" "$sets" "$defense" "$mode" "$release" "$out/stretch/size_profiles.json" > "$out/gateway.json" <<'PY'
import csv, json, os, sys
table, sets, defense, mode, release, profiles = sys.argv[1:7]
set_of = {}
if sets:
    for i, s in enumerate(sets.split(";")):
        for n in s.split(","):
            set_of[n.strip()] = f"set-{i + 1}"
devices = []
for row in csv.DictReader(open(table)):
    d = {"name": row["name"], "mac": row["mac"]}
    if row.get("ip"):
        d["ip"] = row["ip"].replace(";", " ").split()
    s = set_of.get(row["name"]) or (row.get("set") or "") or ("" if sets else "home")
    if s:
        d["set"] = s
    devices.append(d)
doc = {"defense": defense, "devices": devices}
if defense == "ipet":
    doc["service"] = {"url": "http://127.0.0.1:18080", "generation": "mix", "n": 2000}
    doc["ipet"] = {"omega": 0.1, "active_gap": 5.0}
elif defense not in ("pass-through",):
    spec = {"defense": defense, "omega": 0.1, "seed": 1, "release": dict(json.loads(release), deployment=mode)}
    if defense == "targets":
        # The learned set targets (models/tj-oconnor-2021-sets, trained with a 1 s budget).
        spec["latency_budget"] = 1.0
        doc["service"] = {"url": "http://127.0.0.1:18080", "generation": "mix", "n": 2000,
                          "model_set": "tj-oconnor-2021-sets"}
    if os.path.exists(profiles):
        spec["size_profiles"] = json.load(open(profiles))
    doc["spec"] = spec
print(json.dumps(doc, indent=1))
PY

tag="tb$$"
ns_list=()
pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  sleep 0.3
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  for n in "${ns_list[@]}"; do ip netns del "$n" 2>/dev/null; done
}
trap cleanup EXIT INT TERM
mkns() {
  ip netns add "$1"; ns_list+=("$1")
  ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n "$1" link set lo up
}
gw=$tag-gw rt=$tag-rt
mkns "$gw"; mkns "$rt"
ip link add "${tag}u0" type veth peer name "${tag}u1"
ip link set "${tag}u0" netns "$gw"; ip -n "$gw" link set "${tag}u0" name up0
ip link set "${tag}u1" netns "$rt"; ip -n "$rt" link set "${tag}u1" name eth0
for n in "$gw" "$rt"; do :; done
ip -n "$gw" link set up0 mtu 9000 up; ip -n "$rt" link set eth0 mtu 9000 up

mac_of() { python3 -c 'import csv,sys; print(next(r["mac"] for r in csv.DictReader(open(sys.argv[1])) if r["name"]==sys.argv[2]))' "$devices" "$1"; }
device_ports=()
observer_ifs=()   # "ns:iface" captured on receive: the observer
sender_ifs=("$rt:eth0")
if [ "$mode" = ap ]; then
  obs=$tag-obs; mkns "$obs"
  ip -n "$obs" link add air type bridge ageing_time 0 stp_state 0
  ip -n "$obs" link set air up
  ip link add "${tag}g0" type veth peer name "${tag}g1"
  ip link set "${tag}g0" netns "$gw"; ip -n "$gw" link set "${tag}g0" name air0
  ip link set "${tag}g1" netns "$obs"; ip -n "$obs" link set "${tag}g1" master air mtu 9000 up
  ip -n "$gw" link set air0 mtu 9000 up
  device_ports=(air0)
  ip -n "$obs" link add tap0 type veth peer name tap1
  ip -n "$obs" link set tap1 master air mtu 9000 up; ip -n "$obs" link set tap0 mtu 9000 up
  observer_ifs=("$obs:tap0")
fi
i=0
for name in "${names[@]}"; do
  d=$tag-d$i; mkns "$d"
  ip link add "${tag}d${i}a" type veth peer name "${tag}d${i}b"
  ip link set "${tag}d${i}a" netns "$d"; ip -n "$d" link set "${tag}d${i}a" name eth0
  ip -n "$d" link set eth0 address "$(mac_of "$name")" mtu 9000 up
  if [ "$mode" = bridge ]; then
    ip link set "${tag}d${i}b" netns "$gw"; ip -n "$gw" link set "${tag}d${i}b" name "dev$i" mtu 9000 up
    device_ports+=("dev$i")
    observer_ifs+=("$d:eth0")
  else
    ip link set "${tag}d${i}b" netns "$obs"; ip -n "$obs" link set "${tag}d${i}b" master air mtu 9000 up
  fi
  sender_ifs+=("$d:eth0")
  i=$((i + 1))
done
[ "$mode" = bridge ] && observer_ifs+=("$rt:eth0")

# Observer and sender taps.
observer_pcaps=() sent_pcaps=() k=0
for spec in "${observer_ifs[@]}"; do
  f="$out/obs-$k.pcap"; observer_pcaps+=("$f")
  ip netns exec "${spec%%:*}" "$bin" capture --iface "${spec#*:}" --direction in --out "$f" & pids+=($!)
  k=$((k + 1))
done
for spec in "${sender_ifs[@]}"; do
  f="$out/sent-$k.pcap"; sent_pcaps+=("$f")
  ip netns exec "${spec%%:*}" "$bin" capture --iface "${spec#*:}" --direction out --out "$f" & pids+=($!)
  k=$((k + 1))
done
for f in "${observer_pcaps[@]}" "${sent_pcaps[@]}"; do
  for _ in $(seq 100); do [ -e "${f%.pcap}.ready" ] && break; sleep 0.05; done
done

# iPET rows come from the service: `ipet serve` on the gateway namespace's loopback (its
# default model set, an in-memory job store).
if [ "$defense" = ipet ] || [ "$defense" = targets ]; then
  ip netns exec "$gw" "$(realpath "$ipet")" serve --port 18080 --database-url sqlite::memory: \
    --model-set models/tj-oconnor-2021-sets > "$out/service.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 300); do
    ip netns exec "$gw" python3 -c 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:18080/readyz")' 2>/dev/null && break
    sleep 0.2
  done
fi

# The gateway.
rm -f "$out/metrics.prom" "$out/decisions.jsonl"
start_gateway() {
  ip netns exec "$gw" "$bin" run --config "$out/gateway.json" --mode "$mode" \
    --device-port "$(IFS=,; echo "${device_ports[*]}")" --uplink up0 --metrics-addr "" --rt-priority "$rtprio" \
    --metrics-file "$out/metrics.prom" --decision-log "$out/decisions.jsonl" --state-dir "$out/state" \
    >> "$out/gateway.log" 2>&1 &
  gw_pid=$!
  pids+=("$gw_pid")
}
: > "$out/gateway.log"
start_gateway
sleep 1
kill -0 "$gw_pid" || { cat "$out/gateway.log" >&2; exit 1; }

# Replay: every device and the router start the stretch at the same instant.
start=$(python3 -c 'import time; print(f"{time.time() + 1.5:.6f}")')
replayers=()
i=0
for name in "${names[@]}"; do
  ip netns exec "$tag-d$i" "$bin" replay --stretch "$out/stretch" --role "device:$name" --iface eth0 --start "$start" \
    > "$out/replay-d$i.json" & replayers+=($!); pids+=($!)
  i=$((i + 1))
done
ip netns exec "$rt" "$bin" replay --stretch "$out/stretch" --role router --iface eth0 --start "$start" \
  > "$out/replay-router.json" & replayers+=($!); pids+=($!)

kill_json='null'
if [ -n "$kill_at" ]; then
  # kill -9 mid-run, restarted at once (as systemd's Restart=always, RestartSec=0 does); a
  # probe sends a frame to an unknown MAC every millisecond from the router, which the gateway
  # passes untouched: the device side's longest silence is the outage.
  python3 -c 'import time,sys; time.sleep(max(0, float(sys.argv[1]) + float(sys.argv[2]) - time.time() - 1))' "$start" "$kill_at"
  ip netns exec "$rt" "$bin" probe --iface eth0 --seconds 2 > "$out/probe-sent.json" & pids+=($!)
  probe_pid=$!
  sleep 1
  t_kill=$(date +%s.%N); kill -9 "$gw_pid"; wait "$gw_pid" 2>/dev/null || true
  start_gateway
  wait "$probe_pid" || true
  kill_json="{\"killed_at\": $t_kill}"
fi
for p in "${replayers[@]}"; do wait "$p"; done
sleep 0.5
# Frames the kernel dropped on the observed links (veth backlog full), per receiving interface.
link_drops=0
for spec in "${observer_ifs[@]}" "$gw:up0" "${device_ports[@]/#/$gw:}"; do
  n=$(ip -n "${spec%%:*}" -s -j link show dev "${spec#*:}" | python3 -c 'import json,sys; s=json.load(sys.stdin)[0]["stats64"]; print(s["rx"]["dropped"] + s["tx"]["dropped"])')
  link_drops=$((link_drops + n))
done
# The gateway's CPU time (user + system, clock ticks of 1/100 s) over the run.
gw_cpu_s=$(awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$gw_pid/stat" 2>/dev/null || echo null)
kill -TERM "$gw_pid"; wait "$gw_pid" 2>/dev/null || true
sleep 0.3
for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
pids=()

# The simulator on the same stretch (set defenses only; pass-through has no cover).
sim_args=()
case "$defense" in
  ipet)
    # The simulator's slotted iPET per device, on rows of the same service is not the same draw
    # (each request draws new noise): the wire's cover ratio is reported alone.
    ;;
  targets)
    # The same model set and generation, another draw of its noise: comparable, not identical.
    sim_sets=$(python3 -c 'import sys; print(";".join(",".join(n for n in s.split(",") if n) for s in sys.argv[1].split(";")))' "$sets")
    "$ipet" simulate --trace "$out/stretch/pcaps" --devices "$out/stretch/devices.csv" --defense targets \
      --generation mix --models models/tj-oconnor-2021-sets --latency-budget 1 --k 1 --seed 1 \
      > "$out/sim.json" 2> "$out/sim.log" && sim_args=(--sim "$out/sim.json") || echo "simulator failed (see $out/sim.log)" >&2
    ;;
  supersequence|regulator)
    if [ -x "$ipet" ]; then
      sim_sets=$(python3 -c 'import re,sys; print(";".join(",".join(n for n in s.split(",") if n) for s in sys.argv[1].split(";")))' "$sets")
      "$ipet" simulate --trace "$out/stretch/pcaps" --devices "$out/stretch/devices.csv" --defense "$defense" \
        ${sim_sets:+--sets "$sim_sets"} --k 1 --seed 1 > "$out/sim.json" 2> "$out/sim.log" && sim_args=(--sim "$out/sim.json") \
        || echo "simulator failed (see $out/sim.log)" >&2
    fi;;
esac
drops_caps=$(python3 -c 'import sys,json; print(sum(json.load(open(f))["drops"] for f in sys.argv[1:]))' "$out"/*.stats.json)
probe_args=()
[ -n "$kill_at" ] && probe_args=(--probe)
"$bin" report --mode "$mode" --config "$out/gateway.json" --observer "${observer_pcaps[@]}" --sent "${sent_pcaps[@]}" \
  --decisions "$out/decisions.jsonl" --metrics "$out/metrics.prom" "${sim_args[@]}" "${probe_args[@]}" \
  --merged "$out/observer.pcap" \
  --extra "{\"mode\": \"$mode\", \"seconds\": $seconds, \"speed\": $speed, \"rt_priority\": $rtprio, \"capture_drops\": $drops_caps, \"link_drops\": $link_drops, \"kill\": $kill_json, \"gateway_cpu_s\": $gw_cpu_s, \"stretch\": $(cat "$out/stretch/stretch.json" | tr -d '\n')}" \
  --out "$out/report.json" > /dev/null
echo "$out/report.json"
