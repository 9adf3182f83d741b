"""`python -m ipet_train evaluate`: every defense judged by the attacker suite of
docs/threat-model.md, on defended real traffic from the Rust simulator.

1. Undefended: `ipet features` over the captures (windows, per-window features, aggregates).
2. One split for everything: contiguous time folds, each device's own history split by time
   (attackers.folds; `fold_by="home"`: the home's span, the rule before issue 18).
3. Per defense configuration, `draws` runs of `ipet simulate --features` with different seeds
   (fresh cover for training); each run's files are loaded and deleted at once, so disk holds one
   run at a time (results.json says the largest). The attackers (attackers.suite) retrain from
   scratch on that defense's own training windows, fold by fold.
4. results.json (everything), summary.json (one row per defense: parameters, each attacker's
   balanced accuracy with its bootstrap 95% interval, max_attacker_ba under the link observer,
   overheads, latency), report.md and the plots.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .. import __version__
from ..attackers.dataset import Dataset, load_features, load_packets
from ..attackers.folds import TimeFolds
from ..attackers.suite import SuiteSettings, attack, max_attacker
from ..ipet_binary import find_ipet_binary
from .defenses import BASELINES, defense_list, deployment_of, dir_bytes, simulate_draw

LINK_ATTACKERS = ("lstm", "cnn", "kfp", "m_agg", "cross_device", "cross_device_agg")


@dataclass
class EvalSettings:
    seed: int = 0
    folds: int = 3
    draws: int = 2
    total_time: float = 4.0
    omega: float = 0.1
    agg_seconds: float = 900.0
    ipet_models: list[str] = field(default_factory=lambda: ["models/tj-oconnor-2021", "models/tj-oconnor-2021-shared"])
    baselines: list[str] = field(default_factory=lambda: list(BASELINES))
    rates: list[float] = field(default_factory=lambda: [1.0])
    idle_cover: float = 10.0
    sets: Optional[str] = None
    k: int = 3
    all_in_one: bool = True
    regulator_budgets: list[float] = field(default_factory=lambda: [1.0])
    # further supersequence rows with the simulator's release flags (defenses.variant_args)
    supersequence_variants: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=lambda: ["targets-sets@lb1-fw0", "targets-sets-light@lb1-fw0"])
    targets_file: Optional[str] = "models/set-targets-defenses.json"
    only: Optional[list[str]] = None
    ablation_on: Optional[list[str]] = None  # None: every defense
    jobs: int = 2
    threads: int = 1
    # "device": each device's own history cut into time folds; "home": the home's span
    fold_by: str = "device"
    suite: SuiteSettings = field(default_factory=SuiteSettings)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _features(binary: Path, captures: Sequence[str], devices_csv: str, out: Path, es: EvalSettings) -> None:
    import subprocess

    cmd = [str(binary), "features", "--captures", *map(str, captures), "--devices", str(devices_csv), "--out", str(out),
           "--total-time", repr(es.total_time), "--omega", repr(es.omega), "--agg-seconds", repr(es.agg_seconds)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")


def _packets(binary: Path, captures: Sequence[str], devices_csv: str, out: Path) -> None:
    import subprocess

    cmd = [str(binary), "packets", "--captures", *map(str, captures), "--devices", str(devices_csv), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")


def model_set_gaps(defenses: list[dict[str, Any]], names: Sequence[str]) -> dict[str, str]:
    """Rows that need a model set made for this home: key -> why they cannot run here (a device
    of the home the set does not serve, or a set that cannot be read)."""
    out = {}
    for d in defenses:
        m = (d.get("params") or {}).get("models")
        if not m:
            continue
        try:
            served = {x["name"] if isinstance(x, dict) else str(x)
                      for x in json.loads((Path(m) / "manifest.json").read_text())["devices"]}
        except (OSError, ValueError, KeyError) as e:
            out[d["key"]] = f"model set {m} cannot be read ({e})"
            continue
        missing = [n for n in names if n not in served]
        if missing:
            how = ("`python -m ipet_train pipeline` and --ipet-models" if d.get("kind") == "ipet" else
                   "`python -m ipet_train set-targets` and --targets with --targets-file")
            out[d["key"]] = (f"model set {m} was trained for another home: it does not serve "
                             f"{', '.join(missing)} (train one for this home: {how})")
    return out


def evaluate(captures: Sequence[str], devices_csv: str, out_dir: str, es: EvalSettings, binary: Optional[Path] = None,
             work: Optional[str] = None, command: Optional[str] = None,
             wire_summary: Optional[Path] = None) -> dict[str, Any]:
    """Writes results.json, then what `write_outputs` derives from it (with `wire_summary`, the
    testbed's rows of `scripts/wire_compare.py`, in summary.json's `wire`)."""
    from threadpoolctl import threadpool_limits

    # OpenMP pools wider than the free cores spin: on a loaded 2-core machine gradient boosting
    # ran 15x and the networks 8x slower with 2 threads than with 1.
    with threadpool_limits(limits=max(1, es.threads)):
        return _evaluate(captures, devices_csv, out_dir, es, binary, work, command, wire_summary)


def derive(res: dict[str, Any], wire_summary: Optional[Path] = None) -> tuple[dict[str, Any], str]:
    """summary.json and report.md's text, from results.json alone (and the testbed's
    wire-summary.json where given): what `evaluate` writes beside results.json, and what
    tests/test_committed_evaluation.py checks the committed reports against."""
    from .report import report_markdown

    summary = make_summary(res)
    if wire_summary is not None:
        summary = attach_wire(summary, wire_summary)
    return summary, report_markdown(res, summary)


def write_outputs(res: dict[str, Any], out: Path, wire_summary: Optional[Path] = None) -> dict[str, Any]:
    """summary.json, report.md and the plots derived from `res` (results.json) into `out`."""
    from .report import write_plots

    summary, md = derive(res, wire_summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "report.md").write_text(md)
    write_plots(summary, out)
    return summary


def _evaluate(captures, devices_csv, out_dir, es, binary, work, command, wire_summary=None):
    import torch

    from ..runtime import resolve_device, seed_everything

    t_start = time.time()
    torch.set_num_threads(max(1, es.threads))
    seed_everything(es.seed)
    es.suite.seed = es.seed
    es.suite.device = str(resolve_device(es.suite.device))
    binary = binary or find_ipet_binary()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = None if work else tempfile.mkdtemp(prefix="ipet-eval-")
    wk = Path(work or tmp)
    wk.mkdir(parents=True, exist_ok=True)
    try:
        # ---- undefended, and the devices judged
        _features(binary, captures, devices_csv, wk / "undefended", es)
        meta = json.loads((wk / "undefended" / "windows.json").read_text())
        devs = [d for d in meta["devices"] if d["windows"] > 0]
        dropped = [{"name": d["name"], "reason": d["reason"], "why": d.get("why") or d["reason"]}
                   for d in meta.get("dropped_devices", [])]
        for d in dropped:
            _log(f"warning: device {d['name']} is not judged, it kept no packet: {d['why']}")
        if len(devs) < 2:
            raise ValueError(f"need at least 2 devices with windows in the captures, got {len(devs)}")
        names = [d["name"] for d in devs]
        class_of = {int(d["id"]): c for c, d in enumerate(devs)}
        n = len(names)
        und = load_features(wk / "undefended", class_of)
        und_bytes = dir_bytes(wk / "undefended")
        shutil.rmtree(wk / "undefended", ignore_errors=True)
        if es.suite.cross_device:
            _packets(binary, captures, devices_csv, wk / "packets")
            und.packets = load_packets(wk / "packets", class_of)
            und_bytes += dir_bytes(wk / "packets")
            shutil.rmtree(wk / "packets", ignore_errors=True)
        folds = TimeFolds.over(und.start, es.folds, und.y if es.fold_by == "device" else None)
        _log(f"{und.n} undefended windows of {n} devices; {es.folds} time folds per {folds.by}")
        fold_warnings = fold_training_warnings(folds, und, names, es.total_time, es.agg_seconds)
        for w in fold_warnings:
            _log(f"warning: {w['device']} has no training {w['unit']} in fold {w['fold']} ({w['tested']} tested): "
                 f"it scores 0 there by construction")

        defenses = defense_list(es.ipet_models, es.baselines, es.rates, es.idle_cover, es.sets, es.k, es.all_in_one,
                                es.regulator_budgets, es.targets, es.targets_file, es.supersequence_variants)
        if es.only:
            unknown = set(es.only) - {d["key"] for d in defenses}
            if unknown:
                raise ValueError(f"--only: unknown defenses {sorted(unknown)}; known: {[d['key'] for d in defenses]}")
            defenses = [d for d in defenses if d["key"] == "none" or d["key"] in es.only]
        skipped = model_set_gaps(defenses, names)
        for key, why in skipped.items():
            _log(f"note: skipping {key}: {why}")
        defenses = [d for d in defenses if d["key"] not in skipped]

        results: list[dict[str, Any]] = []
        peak_disk = [und_bytes]
        transport_row = None
        for di, dfn in enumerate(defenses):
            ts = time.time()
            if dfn["kind"] == "none":
                draws: list[Dataset] = [und]
                costs = {"byte_overhead": 0.0, "packet_overhead": 0.0, "latency_mean_s": 0.0, "latency_p99_s": 0.0,
                         "leaked_bytes": 0}
                seeds: list[int] = []
            else:
                draws, seeds, costs_all = [], [], []
                for r in range(es.draws):
                    seed = es.seed * 1_000_003 + zlib.crc32(dfn["key"].encode()) % 100_000 * 10 + r
                    ds, c = simulate_draw(binary, captures, devices_csv, names, class_of, dfn, seed,
                                          wk / f"run-{di}-{r}", es.jobs, peak_disk,
                                          traces=es.suite.cross_device and r < max(1, es.suite.forest_draws))
                    draws.append(ds)
                    seeds.append(seed)
                    costs_all.append(c)
                costs = costs_all[0]
                costs["per_draw"] = [{k: c[k] for k in ("byte_overhead", "packet_overhead", "latency_p99_s")}
                                     for c in costs_all]
            t_sim = time.time() - ts
            row = {**{k: v for k, v in dfn.items() if k != "args"}, "simulate_args": dfn.get("args"), "seeds": seeds,
                   "costs": costs}
            ss = es.suite
            if es.ablation_on is not None and dfn["key"] not in es.ablation_on:
                ss = SuiteSettings(**{**asdict(es.suite), "ablation": False})
            row.update(attack(draws, folds, n, es.total_time, es.agg_seconds, ss, label=dfn["label"]))
            if dfn["kind"] == "none":
                transport_row = attack([und], folds, n, es.total_time, es.agg_seconds,
                                       SuiteSettings(**{**asdict(es.suite), "seq_models": [], "ablation": False}),
                                       label="transport observer (real TCP)", transport_tcp_only=True,
                                       aggregates_only=True)
            if dfn["kind"] == "set":
                m = len(costs.get("sets") or []) or 1
                row["set_floor"] = round(m / n, 4)
            who, best = max_attacker(row["attackers"], LINK_ATTACKERS)
            row["max_attacker"], row["max_attacker_ba"] = who, best
            row["max_attacker_ci95"] = row["attackers"][who]["ci95"] if who else None
            row["seconds"] = {**row["seconds"], "simulate": round(t_sim, 1), "total": round(time.time() - ts, 1)}
            results.append(row)
            del draws
            _log(f"  [{di + 1}/{len(defenses)}] {dfn['label']}: max {who} {best:.3f}; bytes x"
                 f"{costs.get('byte_overhead') or 0:.2f} packets x{costs.get('packet_overhead') or 0:.2f} "
                 f"p99 {costs.get('latency_p99_s', 0):.3f} s ({time.time() - ts:.0f} s, {time.time() - t_start:.0f} s in all)")
            res = _results(es, captures, devices_csv, binary, command, names, folds, results, transport_row,
                           peak_disk, t_start, skipped, fold_warnings, dropped)
            (out / "results.json").write_text(json.dumps(res, indent=1) + "\n")
        res = _results(es, captures, devices_csv, binary, command, names, folds, results, transport_row, peak_disk,
                       t_start, skipped, fold_warnings, dropped)
        (out / "results.json").write_text(json.dumps(res, indent=1) + "\n")
        write_outputs(res, out, wire_summary)
        _log(f"report written to {out} in {time.time() - t_start:.0f} s")
        return res
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def fold_training_warnings(folds: TimeFolds, und: Dataset, names: Sequence[str], total_time: float,
                           agg_seconds: float) -> list[dict]:
    """The folds in which a device is tested but has nothing to train on, for the 4 s windows
    (k-FP, the sequence networks, cross_device) and for the 15-minute bins (M_agg,
    cross_device_agg) alike: a device recorded in sessions shorter than a bin (another home's
    setup captures) can have windows to train on and no bin that ends before its test block."""
    n = len(names)
    out = []
    for unit, y, start, length in (("windows", und.y, und.start, total_time),
                                   ("15-minute bins", und.agg_y, und.agg_start, agg_seconds)):
        out += [{**w, "device": names[w["class"]], "unit": unit} for w in folds.warnings(y, start, length, n)]
    return out


def _results(es, captures, devices_csv, binary, command, names, folds, results, transport_row, peak_disk, t_start,
             skipped=None, fold_warnings=None, dropped=None):
    import sklearn
    import torch

    return {
        "schema_version": 2,
        "command": command,
        "settings": es.to_dict(),
        "inputs": {"captures": [str(c) for c in captures], "devices_csv": str(devices_csv), "ipet_bin": str(binary)},
        "devices": names,
        "dropped_devices": dropped or [],
        "chance": 1.0 / len(names),
        "folds": {**folds.to_dict(), "test_folds": folds.folds,
                  "rule": "block i = [edges[i], edges[i+1]) (per device: that device's own edges); fold i tests "
                          "block i and trains on items ending before edges[i]; block 0 only trains",
                  "warnings": fold_warnings or []},
        "skipped_defenses": [{"key": k, "reason": v} for k, v in (skipped or {}).items()],
        "defenses": results,
        "transport_observer": transport_row,
        "peak_disk_bytes": max(peak_disk) if peak_disk else 0,
        "seconds": round(time.time() - t_start, 1),
        "provenance": {"ipet_train": __version__, "torch": torch.__version__, "sklearn": sklearn.__version__,
                       "numpy": np.__version__, "python": platform.python_version(), "device": es.suite.device},
    }


def make_summary(res: dict[str, Any]) -> dict[str, Any]:
    """One row per defense configuration: what future defenses compare against."""
    rows = []
    for r in res["defenses"]:
        c = r["costs"]
        rows.append({
            "key": r["key"], "label": r["label"], "kind": r["kind"], "params": r["params"],
            "attackers": {a: {"balanced_accuracy": v["balanced_accuracy"], "ci95": v["ci95"], "scored_on": v["scored_on"]}
                          for a, v in r["attackers"].items()},
            "max_attacker_ba": r["max_attacker_ba"], "max_attacker": r["max_attacker"],
            "max_attacker_ci95": r["max_attacker_ci95"],
            "distinguisher_auc": r["distinguisher"].get("auc"), "distinguisher_auc_ci95": r["distinguisher"].get("ci95"),
            "byte_overhead": c.get("byte_overhead"), "packet_overhead": c.get("packet_overhead"),
            "latency_mean_s": c.get("latency_mean_s"), "latency_p99_s": c.get("latency_p99_s"),
            "leaked_fraction": c.get("leaked_fraction"),
            "set_floor": r.get("set_floor"), "sets": c.get("sets"),
            # who transmits what and the copies' reaction lag (ipet simulate's release flags; set
            # defenses without them: the ideal deployment, copies at their original's time)
            "release": (r.get("params") or {}).get("release") or ({"deployment": "ideal"} if r["kind"] == "set" else None),
            **_deployment_and_lag(r),
            "source": "simulated",
            **_cross_device_summary(r),
        })
    tr = res.get("transport_observer")
    extra = {"skipped_defenses": res["skipped_defenses"]} if res.get("skipped_defenses") else {}
    return {**extra, "schema_version": 1, "observer": "link (docs/threat-model.md): max_attacker_ba is the largest of "
            + ", ".join(LINK_ATTACKERS), "chance": res["chance"], "devices": res["devices"],
            "seed": res["settings"]["seed"], "defenses": rows,
            "transport_observer": None if tr is None else {
                "note": "M_agg on the real TCP traffic alone, which every defense here leaves untouched (all cover "
                        "is UDP): a floor of this observer's balanced accuracy under any of them",
                "m_agg": {k: tr["attackers"]["m_agg"][k] for k in ("balanced_accuracy", "ci95")}}}


def attach_wire(summary: dict[str, Any], wire_summary: Path) -> dict[str, Any]:
    """The summary with the testbed's rows beside the simulated ones: `wire` holds
    `scripts/wire_compare.py`'s rows for one stretch (each `"source": "wire"` or `"simulated"`,
    the same stretch through `ipet simulate`), docs/evaluation/wire.md says how they were made."""
    w = json.loads(Path(wire_summary).read_text())
    return {**summary, "wire": {"observer": w.get("observer"), "rows": w["rows"]}}


def _deployment_and_lag(r: dict[str, Any]) -> dict[str, Any]:
    """A set defense row's deployment and its copies' reaction lag as simulated, spelled out
    (`ideal`/`0` where no release flag was given; a lag without a deployment is the bridge's)."""
    if r["kind"] != "set":
        return {}
    release = (r.get("params") or {}).get("release") or {}
    lag = release.get("lag")
    deployment = deployment_of(release)
    return {"deployment": deployment, "lag": lag if lag is not None else ("software-shaper" if deployment != "ideal" else "0")}


def _cross_device_summary(r: dict[str, Any]) -> dict[str, Any]:
    """The cross-device attacker's own figures for a summary row (absent where it did not run:
    per-device defenses have no cross-device copies to pair)."""
    a = r["attackers"].get("cross_device")
    if a is None:
        return {}
    att = a.get("attribution") or {}
    return {"cross_device": {
        "lag_window_s": {k: v.get("lag_window_s") for k, v in att.items()},
        "real_attributed_fraction": {k: v.get("real_attributed_fraction") for k, v in att.items()},
        "attributed_real_fraction": {k: v.get("attributed_real_fraction") for k, v in att.items()},
        "activity": {k: (a.get("activity") or {}).get(k) for k in ("precision", "recall")},
        "ba_on_really_active_windows": (a.get("on_really_active_windows") or {}).get("balanced_accuracy")}}
