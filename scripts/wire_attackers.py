#!/usr/bin/env python3
"""The window attacker trained on the simulated week, scored on a testbed stretch's wire and on
the simulation of the same stretch (docs/evaluation/wire.md).

    scripts/wire_attackers.py RUN_DIR [RUN_DIR ...] --week-captures DIR --week-devices CSV [--json OUT]

Per run (after scripts/wire_compare.py, which writes RUN/observer-once.pcap and RUN/sim-spec.json):
  * train: `ipet simulate --features` on the whole week with the gateway's own set-defense spec
    (its defense, seed, release and deployment, the gateway's sets; size profiles from the week),
    or `ipet features` on the week for pass-through; windows that overlap the stretch are left out;
    k-FP (gradient boosting on the k-FP window features, as the evaluation's `kfp` attacker);
  * test: `ipet features` on the wire (the observer's capture, cover frames kept by the data
    plane) and `ipet simulate --features` on the stretch (the same spec): balanced accuracy over
    the devices of the stretch, on every window and on windows holding real packets.
Only the 4 s window attacker: a 75 s stretch holds no full 15-minute bin for the aggregate one.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import warnings

import numpy as np
from sklearn.metrics import balanced_accuracy_score

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "training"))
from ipet_train.attackers.dataset import load_features  # noqa: E402
from ipet_train.attackers.forest import kfp_fit_predict  # noqa: E402


def run_quiet(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def class_map(table: Path, names: list[str]) -> dict[int, int]:
    rows = [r["name"] for r in csv.DictReader(open(table))]
    return {i: names.index(n) for i, n in enumerate(rows) if n in names}


warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")


def score(y: np.ndarray, p: np.ndarray) -> float | None:
    return round(float(balanced_accuracy_score(y, p)), 4) if y.size else None


def one(run: Path, ipet: str, week: Path, week_devices: Path, seed: int, iters: int) -> dict:
    cfg = json.loads((run / "gateway.json").read_text())
    report = json.loads((run / "report.json").read_text())
    names = [r["name"] for r in csv.DictReader(open(week_devices))]
    stretch = run / "stretch"
    train_dir, wire_dir, sim_dir = run / "week-features", run / "wire-features", run / "sim-features"
    if cfg["defense"] not in ("pass-through",) and "spec" not in cfg:
        return {"run": run.name, "skipped": f"{cfg['defense']}: no simulated counterpart from the same draw"}
    if "spec" in cfg:
        spec = dict(cfg["spec"])
        spec.pop("size_profiles", None)
        sets: dict[str, list[str]] = {}
        for d in cfg["devices"]:
            if d.get("set"):
                sets.setdefault(d["set"], []).append(d["name"])
        spec["sets"] = [{"name": k, "members": v} for k, v in sets.items()]
        spec.setdefault("k", 1)
        (run / "week-spec.json").write_text(json.dumps(spec))
        run_quiet([ipet, "simulate", "--trace", str(week), "--devices", str(week_devices), "--spec",
                   str(run / "week-spec.json"), "--features", str(train_dir)])
        run_quiet([ipet, "simulate", "--trace", str(stretch / "pcaps"), "--devices", str(stretch / "devices.csv"),
                   "--spec", str(run / "sim-spec.json"), "--features", str(sim_dir)])
    else:
        run_quiet([ipet, "features", "--captures", str(week), "--devices", str(week_devices), "--out", str(train_dir)])
        run_quiet([ipet, "features", "--captures", str(stretch / "pcaps"), "--devices", str(stretch / "devices.csv"),
                   "--out", str(sim_dir)])
    run_quiet([ipet, "features", "--captures", str(run / "observer-once.pcap"), "--devices",
               str(stretch / "devices.csv"), "--out", str(wire_dir)])
    tr = load_features(train_dir, class_map(week_devices, names))
    lo, hi = report["stretch"]["from_ns"] * 1e-9, report["stretch"]["to_ns"] * 1e-9
    keep = (tr.start + 4.0 <= lo) | (tr.start >= hi)
    pred = {}
    out = {"run": run.name, "train_windows": int(keep.sum()), "left_out_overlapping": int((~keep).sum())}
    tests = {"wire": load_features(wire_dir, class_map(stretch / "devices.csv", names)),
             "simulated": load_features(sim_dir, class_map(stretch / "devices.csv", names))}
    common = set(tests["wire"].y.tolist()) & set(tests["simulated"].y.tolist())
    x_all = np.concatenate([t.kfp for t in tests.values()])
    p_all = kfp_fit_predict(tr.kfp[keep], tr.y[keep], x_all, seed, iters)
    i = 0
    for side, t in tests.items():
        p = p_all[i:i + t.y.size]
        i += t.y.size
        both = np.isin(t.y, list(common))
        pred[side] = {"source": side, "windows": int(t.y.size), "kfp_ba": score(t.y, p),
                      "devices": sorted({names[c] for c in t.y.tolist()}),
                      "kfp_ba_common_devices": score(t.y[both], p[both]), "common_windows": int(both.sum()),
                      "chance_common": round(1 / len(common), 4) if common else None}
        if side == "simulated":
            # On the wire every kept frame counts as real to `ipet features` (the capture carries
            # no truth in its windows): the real-window score is the simulator's only.
            real = t.real > 0
            pred[side]["windows_with_real"] = int(real.sum())
            pred[side]["kfp_ba_real_windows"] = score(t.y[real], p[real])
    out.update(pred)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--ipet", default="target/debug/ipet")
    ap.add_argument("--week-captures", type=Path, required=True)
    ap.add_argument("--week-devices", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kfp-iters", type=int, default=100)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    res = []
    for r in a.runs:
        o = one(r, a.ipet, a.week_captures, a.week_devices, a.seed, a.kfp_iters)
        print(json.dumps(o))
        res.append(o)
    if a.json:
        a.json.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
