#!/usr/bin/env python3
"""The wire against the simulation on one testbed stretch (docs/evaluation/wire.md).

    scripts/wire_compare.py RUN_DIR [RUN_DIR ...] [--ipet target/debug/ipet] [--json OUT]

For each `scripts/testbed.sh` output directory:
  * the wire: `ipet packets` on the observer's capture (the data plane keeps the gateway's 0x88B5
    cover frames as their device's UDP packets of the tagged size, by MAC), each kept packet
    marked cover or real from the capture's own frames (EtherType 0x88B5 with an `IPCV` tag: the
    truth, read only to score);
  * the simulation: `ipet simulate --out-dir` on the stretch's per-device pcaps with the
    gateway's own set-defense spec (the same defense, seed, release settings and deployment,
    the same sets and size profiles); for pass-through, the stretch itself;
  * per device: real and cover packets/bytes on each side; per home: cover ratios; the
    cross-device attacker's pairing on each side (training/ipet_train/attackers/crossdevice.py:
    the lag window it estimates per direction, the fraction of what it attributes that is real,
    the fraction of real frames it attributes).
"""

from __future__ import annotations

import argparse
import csv
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "training"))
from ipet_train.attackers.crossdevice import attribution_scores, pair_frames  # noqa: E402
from ipet_train.attackers.dataset import HomePackets  # noqa: E402


def read_pcap(path: Path):
    """(time_ns, frame bytes) of a classic pcap file."""
    b = path.read_bytes()
    magic = b[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    off = 24
    while off + 16 <= len(b):
        sec, frac, incl, _orig = struct.unpack(endian + "IIII", b[off:off + 16])
        off += 16
        yield sec * 1_000_000_000 + frac * (1 if nano else 1000), b[off:off + incl]
        off += incl


def dedup_observer(run: Path) -> Path:
    """The observer's frames counted once: a frame the bridge flooded (its destination not yet
    learned) reaches several receivers' taps, and `observer.pcap` (their merge) holds each copy.
    As `ipet-gateway report` counts them: the same bytes at another receiver within 5 ms is the
    same frame. Writes RUN/observer-once.pcap (nanosecond pcap, Ethernet)."""
    frames = []
    for i, f in enumerate(sorted(run.glob("obs-*.pcap"))):
        frames.extend((t, i, d) for t, d in read_pcap(f))
    frames.sort(key=lambda x: (x[0], x[1]))
    recent: dict[bytes, tuple[int, int]] = {}
    out = bytearray(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1))
    for t, i, d in frames:
        prev = recent.get(d)
        recent[d] = (t, i)
        if prev is not None and t - prev[0] < 5_000_000 and prev[1] != i:
            continue
        out += struct.pack("<IIII", t // 1_000_000_000, t % 1_000_000_000, len(d), len(d)) + d
    path = run / "observer-once.pcap"
    path.write_bytes(bytes(out))
    return path


def cover_keys(pcap: Path, mac_id: dict[bytes, int]) -> dict[tuple[int, int, int], np.ndarray]:
    """(device, direction, size) -> sorted times (s) of the capture's cover frames."""
    keys: dict[tuple[int, int, int], list[float]] = {}
    for t, f in read_pcap(pcap):
        if len(f) < 14 + 28 or f[12:14] != b"\x88\xb5" or f[14:18] != b"IPCV":
            continue
        size = struct.unpack(">I", f[22:26])[0]
        src, dst = f[6:12], f[0:6]
        if src in mac_id:
            k = (mac_id[src], 1, size)
        elif dst in mac_id:
            k = (mac_id[dst], -1, size)
        else:
            continue
        keys.setdefault(k, []).append(t * 1e-9)
    return {k: np.sort(np.array(v)) for k, v in keys.items()}


def wire_home(run: Path, ipet: str, names: list[str], mac_id: dict[bytes, int]) -> HomePackets:
    out = run / "wire-packets"
    pcap = dedup_observer(run)
    subprocess.run([ipet, "packets", "--captures", str(pcap), "--devices",
                    str(run / "stretch" / "devices.csv"), "--out", str(out)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dev, t = np.load(out / "device.npy"), np.load(out / "time.npy")
    size, direction = np.load(out / "size.npy"), np.load(out / "direction.npy")
    keys = cover_keys(pcap, mac_id)
    dummy = np.zeros(t.size, bool)
    for i in range(t.size):
        ts = keys.get((int(dev[i]), int(direction[i]), int(size[i])))
        if ts is not None:
            j = np.searchsorted(ts, t[i])
            near = [abs(ts[x] - t[i]) for x in (j - 1, j) if 0 <= x < ts.size]
            dummy[i] = bool(near) and min(near) < 2e-6
    n_cover = sum(v.size for v in keys.values())
    if int(dummy.sum()) != n_cover:
        print(f"{run.name}: {n_cover} cover frames in the capture, {int(dummy.sum())} matched to kept packets",
              file=sys.stderr)
    parts = [(i, t[dev == i], size[dev == i], direction[dev == i], dummy[dev == i]) for i in range(len(names))
             if (dev == i).any()]
    return HomePackets.from_parts(parts)


def sim_home(run: Path, ipet: str, names: list[str], cfg: dict) -> tuple[HomePackets, dict | None]:
    stretch = run / "stretch"
    if cfg["defense"] == "pass-through" or "spec" not in cfg:
        out = run / "sim-packets"
        subprocess.run([ipet, "packets", "--captures", str(stretch / "pcaps"), "--devices",
                        str(stretch / "devices.csv"), "--out", str(out)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        dev, t = np.load(out / "device.npy"), np.load(out / "time.npy")
        size, direction = np.load(out / "size.npy"), np.load(out / "direction.npy")
        parts = [(i, t[dev == i], size[dev == i], direction[dev == i], np.zeros(int((dev == i).sum()), bool))
                 for i in range(len(names)) if (dev == i).any()]
        return HomePackets.from_parts(parts), None
    spec = dict(cfg["spec"])
    sets: dict[str, list[str]] = {}
    for d in cfg["devices"]:
        if d.get("set") and d["name"] in names:
            sets.setdefault(d["set"], []).append(d["name"])
    spec["sets"] = [{"name": k, "members": v} for k, v in sets.items()]
    spec.setdefault("k", 1)
    (run / "sim-spec.json").write_text(json.dumps(spec))
    out = run / "sim-traces"
    r = subprocess.run([ipet, "simulate", "--trace", str(stretch / "pcaps"), "--devices", str(stretch / "devices.csv"),
                        "--spec", str(run / "sim-spec.json"), "--out-dir", str(out)],
                       check=True, capture_output=True, text=True)
    summary = json.loads(r.stdout)
    origin = summary["start_time_s"]
    parts = []
    for i, n in enumerate(names):
        f = out / f"{n}.npy"
        if f.is_file():
            a = np.load(f)
            if a.size:
                parts.append((i, origin + a[:, 3], a[:, 2], a[:, 0], a[:, 1] > 0))
    return HomePackets.from_parts(parts), summary


def per_device(h: HomePackets, names: list[str]) -> dict:
    out = {}
    for i, n in enumerate(names):
        m = h.cls == i
        if not m.any():
            continue
        row = {}
        for sign, d in ((1, "out"), (-1, "in")):
            md = m & (h.direction == sign)
            row[d] = {"real": [int((md & ~h.dummy).sum()), int(h.size[md & ~h.dummy].sum())],
                      "cover": [int((md & h.dummy).sum()), int(h.size[md & h.dummy].sum())]}
        out[n] = row
    return out


def totals(h: HomePackets) -> dict:
    real, cover = ~h.dummy, h.dummy
    rp, rb = int(real.sum()), float(h.size[real].sum())
    cp, cb = int(cover.sum()), float(h.size[cover].sum())
    return {"real_packets": rp, "real_bytes": int(rb), "cover_packets": cp, "cover_bytes": int(cb),
            "cover_ratio_packets": round(cp / rp, 4) if rp else None,
            "cover_ratio_bytes": round(cb / rb, 4) if rb else None}


def copy_lags(h: HomePackets, max_gap: float = 0.2) -> dict:
    """The truth about the copies' lag (from the cover marks, which no attacker reads): per real
    frame, the gap to the nearest later cover frame of the same size and direction on another
    device within `max_gap` s; percentiles in ms."""
    out = {}
    for sign, dname in ((1, "out"), (-1, "in")):
        m = h.direction == sign
        t, s, c, dm = h.time[m], h.size[m], h.cls[m], h.dummy[m]
        cov: dict[float, list[int]] = {}
        for i in np.flatnonzero(dm):
            cov.setdefault(float(s[i]), []).append(int(i))
        lags = []
        for i in np.flatnonzero(~dm):
            idx = cov.get(float(s[i]))
            if idx is None:
                continue
            g = t[idx] - t[i]
            ok = (g >= 0) & (g <= max_gap) & (c[idx] != c[i])
            if ok.any():
                lags.append(float(g[ok].min()) * 1e3)
        a = np.array(lags)
        out[dname] = None if not a.size else {
            "n": int(a.size), **{f"p{q}_ms": round(float(np.percentile(a, q)), 3) for q in (50, 90, 99)}}
    return out


def attacker(h: HomePackets, max_gap: float = 0.05) -> dict:
    pr = pair_frames(h, max_gap=max_gap)
    s = attribution_scores(h, pr)
    return {d: {k: s[d][k] for k in ("frames", "real", "attributed", "attributed_real_fraction",
                                     "real_attributed_fraction", "labels", "lag_window_s")} for d in s}


def compare(run: Path, ipet: str) -> dict:
    cfg = json.loads((run / "gateway.json").read_text())
    report = json.loads((run / "report.json").read_text())
    rows = list(csv.DictReader(open(run / "stretch" / "devices.csv")))
    names = [r["name"] for r in rows]
    mac_id = {bytes.fromhex(r["mac"].replace(":", "")): i for i, r in enumerate(rows) if r.get("mac")}
    wire = wire_home(run, ipet, names, mac_id)
    if cfg["defense"] not in ("pass-through",) and "spec" not in cfg:
        # iPET from the service: the simulator's rows would be another draw of the generator's
        # noise (scripts/testbed.sh says so too); the wire is reported alone.
        sim, summary = None, None
    else:
        sim, summary = sim_home(run, ipet, names, cfg)
    st = report.get("stretch", {})
    return {
        "run": run.name, "mode": report.get("mode"), "defense": cfg["defense"],
        "release": cfg.get("spec", {}).get("release"),
        "stretch": {"from_ns": st.get("from_ns"), "to_ns": st.get("to_ns"), "seconds": st.get("seconds"),
                    "devices": st.get("devices")},
        "slot_conformance": report.get("slot_conformance"),
        "slot_conformance_by_direction": report.get("slot_conformance_by_direction"),
        "reaction_lag_ms": report.get("reaction_lag_ms"), "cover_lag_ms": report.get("cover_lag_ms"),
        "drops": report.get("drops"), "send_failures": report.get("send_failures"),
        "wire": {"source": "wire", "totals": totals(wire), "devices": per_device(wire, names),
                 "crossdevice": attacker(wire), "crossdevice_max_gap_0.2s": attacker(wire, 0.2),
                 "copy_lag": copy_lags(wire)},
        "simulated": None if sim is None else {
            "source": "simulated", "totals": totals(sim), "devices": per_device(sim, names),
            "crossdevice": attacker(sim), "crossdevice_max_gap_0.2s": attacker(sim, 0.2), "copy_lag": copy_lags(sim)},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--ipet", default="target/debug/ipet")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    res = [compare(r, a.ipet) for r in a.runs]
    for r in res:
        w, s = r["wire"], r["simulated"]
        print(f"== {r['run']} ({r['mode']}, {r['defense']}) conformance {r['slot_conformance']}")
        for side in (w, s):
            if side is None:
                continue
            t = side["totals"]
            cd = side["crossdevice"]
            print(f"  {side['source']:9s} real {t['real_packets']}/{t['real_bytes']} cover {t['cover_packets']}/"
                  f"{t['cover_bytes']} ratio p {t['cover_ratio_packets']} b {t['cover_ratio_bytes']}")
            for d in ("out", "in"):
                c = cd[d]
                print(f"    {d}: copy lag {side['copy_lag'][d]}")
                print(f"    {d}: attributed {c['attributed']}/{c['frames']} real-frac {c['attributed_real_fraction']}"
                      f" recall {c['real_attributed_fraction']} window {c['lag_window_s']} labels {c['labels']}")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
