"""`python -m ipet_train evaluate`: what a model set's iPET cover, and the baselines, really do
against attackers on defended real traffic, and what they cost.

Pipeline (every step deterministic for a given --seed):
1. Undefended windows: `ipet windows` over the captures. Defended traffic: `ipet simulate` (the
   Rust gateway simulator, slotted mode) per device and per defense: every generation, `mix`, and
   the baselines constant / random / random+ at each --rates scale. `--windows` cuts the defended
   trace with the same Rust window code; `-o` writes its rows [direction, is_dummy, size, time_s].
2. Split by time: per device, the first --train-fraction of its span (first to last window start of
   its undefended traffic) trains attackers, the rest tests them; the same cut time for every
   defense. Windows and 15-minute bins that straddle the cut are dropped.
3. Attackers: static (the model set's stage-0 discriminator, trained on undefended windows),
   retrained M_seq (fresh discriminator of --attacker variant trained on the defense's training
   windows, early stopping on a validation part of them; the undefended row retrains one too, so
   retrained numbers compare like with like), M_agg (random forest on 15-minute aggregates).
4. Costs from the simulator's summary (whole trace) and from its rows (dummies inside the
   device's active periods), latency from the summary.
"""

from __future__ import annotations

import json
import math
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .. import __version__
from ..data import find_ipet_binary, load_windows, run_ipet_windows
from .packets import align_transport, capture_files, read_device_table, read_packets

BASELINES = ("constant", "random", "random+")
DIRS = {"out": 1, "in": -1}
AGG_GROUPS = [("out", "tcp"), ("out", "udp"), ("in", "tcp"), ("in", "udp")]
AGG_STATS = ["packets", "mean_size", "min_size", "max_size", "duration_s"]


@dataclass
class EvalSettings:
    seed: int = 0
    attacker: str = "lstm"
    rates: list[float] = field(default_factory=lambda: [0.003, 0.01, 0.03, 0.1, 0.3])
    baselines: list[str] = field(default_factory=lambda: list(BASELINES))
    generations: Optional[list[str]] = None  # None: every generation of the model set, and mix
    train_fraction: float = 0.7
    val_fraction: float = 0.15
    epochs: int = 15
    patience: int = 4
    batch_size: int = 128
    lr: float = 1e-3
    max_train_windows: Optional[int] = 2000  # per device and defense (random, seeded), attacker training
    max_test_windows: Optional[int] = 2000  # per device and defense (random, seeded), scoring
    agg_seconds: float = 900.0
    rf_trees: int = 200
    active_gap: float = 5.0
    mode: str = "slotted"
    jobs: int = 2
    threads: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# defenses


def defense_list(es: EvalSettings, n_generations: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"key": "none", "kind": "none", "label": "undefended"}]
    gens = es.generations if es.generations is not None else [str(i) for i in range(n_generations)] + ["mix"]
    for g in gens:
        out.append({"key": f"ipet-{g}", "kind": "ipet", "generation": str(g),
                    "label": "iPET mix" if g == "mix" else f"iPET G{g}"})
    for b in es.baselines:
        for r in es.rates:
            out.append({"key": f"{b}@{r:g}", "kind": "baseline", "defense": b, "rate_scale": float(r),
                        "label": f"{b} x{r:g}"})
    return out


def _simulate_ok(binary: Path) -> bool:
    try:
        h = subprocess.run([str(binary), "simulate", "--help"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "--rate-scale" in h and "--windows" in h


def find_simulate_binary() -> Path:
    """The ipet binary (as `find_ipet_binary`), but one whose `simulate` has --windows and
    --rate-scale: a stale target/release build without them is passed over for target/debug."""
    from ..data import repo_root

    cands = []
    try:
        cands.append(find_ipet_binary())
    except FileNotFoundError:
        pass
    root = repo_root()
    if root is not None:
        cands += [root / "target" / p / "ipet" for p in ("release", "debug")]
    for c in cands:
        if c.is_file() and _simulate_ok(c):
            return c
    raise FileNotFoundError("no ipet binary whose `simulate` has --windows and --rate-scale (tried "
                            + ", ".join(map(str, cands)) + "); run `cargo build --release`")


def _run_simulate(binary: Path, files: Sequence[Path], devices_csv: str, models: str, dev_name: str,
                  dfn: dict[str, Any], seed: int, es: EvalSettings, wdir: Path, rows_path: Path) -> dict[str, Any]:
    cmd = [str(binary), "simulate", "--trace", *map(str, files), "--devices", str(devices_csv), "--device", dev_name,
           "--mode", es.mode, "--seed", str(seed), "--windows", str(wdir), "-o", str(rows_path),
           "--models", str(models), "--active-gap", repr(es.active_gap), "--inference-threads", "1"]
    if dfn["kind"] == "ipet":
        cmd += ["--generation", dfn["generation"]]
    else:
        cmd += ["--defense", dfn["defense"], "--rate-scale", repr(dfn["rate_scale"])]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    s = proc.stdout
    summary = json.loads(s[s.index("{"):s.rindex("}") + 1])
    summary["command"] = " ".join(cmd)
    return summary


# ---------------------------------------------------------------------------------------------
# M_agg features


def aggregate_rows(abs_t: np.ndarray, direction: np.ndarray, size: np.ndarray, udp: np.ndarray, origin: float,
                   bin_s: float) -> tuple[np.ndarray, np.ndarray]:
    """15-minute aggregates of one device's (defended) trace: for each non-empty bin, for each
    (direction, transport) group, [packets, mean, min, max size, duration (last - first packet)].
    Returns (bin indices [B], features [B, 20])."""
    if abs_t.size == 0:
        return np.zeros(0, np.int64), np.zeros((0, 20))
    b = np.floor((abs_t - origin) / bin_s).astype(np.int64)
    g = np.where(direction > 0, 0, 2) + udp.astype(np.int64)
    bins, binv = np.unique(b, return_inverse=True)
    key = binv * 4 + g
    order = np.lexsort((abs_t, key))
    k_s, t_s, z_s = key[order], abs_t[order], size[order].astype(np.float64)
    uk, start, cnt = np.unique(k_s, return_index=True, return_counts=True)
    feats = np.zeros((bins.size * 4, 5))
    sums = np.add.reduceat(z_s, start)
    feats[uk, 0] = cnt
    feats[uk, 1] = sums / cnt
    feats[uk, 2] = np.minimum.reduceat(z_s, start)
    feats[uk, 3] = np.maximum.reduceat(z_s, start)
    feats[uk, 4] = t_s[start + cnt - 1] - t_s[start]
    return bins, feats.reshape(bins.size, 20)


def active_overheads(rows: np.ndarray, gap: float) -> dict[str, Any]:
    """Dummy packets/bytes sent while the device is active (periods of real packets < gap apart,
    from a period's first real packet to `gap` after its last), over the real ones, per direction."""
    real = rows[:, 1] == 0
    rt = np.sort(rows[real, 3])
    out: dict[str, Any] = {}
    if rt.size == 0:
        return out
    brk = np.flatnonzero(np.diff(rt) >= gap)
    starts = np.concatenate([[rt[0]], rt[brk + 1]])
    ends = np.concatenate([rt[brk], [rt[-1]]]) + gap
    dm = rows[~real]
    idx = np.searchsorted(starts, dm[:, 3], side="right") - 1
    inside = (idx >= 0) & (dm[:, 3] <= ends[np.maximum(idx, 0)])
    active_s = float((ends - starts).sum())
    tot_rp = tot_rb = tot_dp = tot_db = 0.0
    for name, d in list(DIRS.items()):
        r = rows[real & (rows[:, 0] == d)]
        dd = dm[inside & (dm[:, 0] == d)]
        rp, rb, dp, db = float(r.shape[0]), float(r[:, 2].sum()), float(dd.shape[0]), float(dd[:, 2].sum())
        tot_rp, tot_rb, tot_dp, tot_db = tot_rp + rp, tot_rb + rb, tot_dp + dp, tot_db + db
        out[name] = {"dummy_packets": dp, "dummy_bytes": db,
                     "byte_overhead": db / rb if rb else None, "packet_overhead": dp / rp if rp else None}
    out["total"] = {"dummy_packets": tot_dp, "dummy_bytes": tot_db,
                    "byte_overhead": tot_db / tot_rb if tot_rb else None,
                    "packet_overhead": tot_dp / tot_rp if tot_rp else None}
    out["active_time_s"] = active_s
    out["dummy_fraction_inside_active"] = float(inside.mean()) if inside.size else None
    return out


# ---------------------------------------------------------------------------------------------
# scoring


def scores(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> dict[str, Any]:
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    rec = [float(cm[c, c] / cm[c].sum()) if cm[c].sum() else None for c in range(n)]
    present = [r for r in rec if r is not None]
    return {"accuracy": float((y_true == y_pred).mean()) if y_true.size else None,
            "balanced_accuracy": float(np.mean(present)) if present else None,
            "per_device_recall": [None if r is None else round(r, 4) for r in rec],
            "n": int(y_true.size), "confusion": cm.tolist()}


# ---------------------------------------------------------------------------------------------
# the run


def evaluate(captures: Sequence[str], devices_csv: str, models: str, out_dir: str, es: EvalSettings,
             binary: Optional[Path] = None, work: Optional[str] = None, command: Optional[str] = None) -> dict[str, Any]:
    import torch

    from ..models import build_discriminator, load_discriminator
    from ..settings import Settings
    from ..train import Data, class_weights, fit_discriminator, predict, seed_everything
    from .report import write_report

    t_start = time.time()
    if es.threads:
        torch.set_num_threads(es.threads)
    seed_everything(es.seed)
    binary = binary or find_simulate_binary()
    if not _simulate_ok(binary):
        raise ValueError(f"{binary}: its `simulate` lacks --windows/--rate-scale (stale build?)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = None
    if work:
        wk = Path(work)
        wk.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.mkdtemp(prefix="ipet-eval-")
        wk = Path(tmp)
    try:
        manifest = json.loads((Path(models) / "manifest.json").read_text())
        ms = manifest["settings"]
        total_time, omega = float(ms["total_time"]), float(ms["omega"])
        table = read_device_table(devices_csv)
        name_to_id = {d["name"]: d["id"] for d in table}
        mdevs = sorted(manifest["devices"], key=lambda d: d["class_index"])
        missing = [d["name"] for d in mdevs if d["name"] not in name_to_id]
        if missing:
            raise ValueError(f"model set devices not in {devices_csv}: {missing}")
        names = [d["name"] for d in mdevs]
        n_cls = len(names)
        id_to_cls = {name_to_id[nm]: c for c, nm in enumerate(names)}
        chance = 1.0 / n_cls
        n_gen = len(manifest["generations"])
        defenses = defense_list(es, n_gen)

        # ---- real packets (for transports, spans, and which files hold a device)
        t0 = time.time()
        files = capture_files(captures)
        packets, where = read_packets(binary, captures, devices_csv, wk / "packets")
        _log(f"read {len(files)} capture files in {time.time() - t0:.1f} s")

        # ---- undefended windows
        und_dir = run_ipet_windows(captures, devices_csv, wk / "undefended", total_time, omega, binary=binary)
        und = load_windows(und_dir)
        cut: dict[int, float] = {}
        span: dict[int, list[float]] = {}
        for dev_id, c in id_to_cls.items():
            st_ = und.start_time[und.labels == dev_id]
            if st_.size < 2:
                raise ValueError(f"device {names[c]} has {st_.size} undefended windows")
            a, b = float(st_.min()), float(st_.max())
            span[c] = [a, b]
            cut[c] = a + es.train_fraction * (b - a)

        # ---- simulate every (defense, device)
        jobs = []
        for di, dfn in enumerate(defenses):
            if dfn["kind"] == "none":
                continue
            for dev_id, c in id_to_cls.items():
                fl = sorted(where.get(dev_id, [])) or files
                seed = es.seed * 1_000_003 + di * 1009 + dev_id
                jobs.append((dfn, dev_id, c, fl, seed))

        agg: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = {d["key"]: {} for d in defenses}
        sims: dict[str, dict[int, dict[str, Any]]] = {d["key"]: {} for d in defenses}
        align_fail: list[str] = []

        def sim_one(job):
            dfn, dev_id, c, fl, seed = job
            wdir = wk / "defended" / dfn["key"] / names[c]
            rows_path = wk / "rows" / f"{dfn['key']}__{names[c]}.npy"
            rows_path.parent.mkdir(parents=True, exist_ok=True)
            summ = _run_simulate(binary, fl, devices_csv, models, names[c], dfn, seed, es, wdir, rows_path)
            rows = np.load(rows_path)
            rows_path.unlink()
            real = rows[:, 1] == 0
            udp = np.ones(rows.shape[0], dtype=bool)  # cover counts as UDP
            u = align_transport(rows[real, 0], rows[real, 2], rows[real, 3], packets.get(dev_id))
            if u is None:
                align_fail.append(f"{dfn['key']}/{names[c]}")
                u = np.zeros(int(real.sum()), dtype=bool)
            udp[real] = u
            abs_t = summ["start_time_s"] + rows[:, 3]
            aggr = aggregate_rows(abs_t, rows[:, 0], rows[:, 2], udp, span[c][0], es.agg_seconds)
            summ["active_overhead"] = active_overheads(rows, es.active_gap)
            summ["seed"] = seed
            return dfn["key"], c, summ, aggr

        t0 = time.time()
        _log(f"{len(jobs)} simulations ({len(defenses) - 1} defenses x {n_cls} devices), {es.jobs} at a time")
        with ThreadPoolExecutor(max_workers=max(1, es.jobs)) as ex:
            for k, (key, c, summ, aggr) in enumerate(ex.map(sim_one, jobs)):
                sims[key][c] = summ
                agg[key][c] = aggr
                if (k + 1) % 20 == 0 or k + 1 == len(jobs):
                    _log(f"  {k + 1}/{len(jobs)} simulations, {time.time() - t0:.0f} s")
        sim_seconds = time.time() - t0

        # undefended aggregates from the captured packets themselves
        for dev_id, c in id_to_cls.items():
            pk = packets.get(dev_id)
            if pk is None:
                agg["none"][c] = (np.zeros(0, np.int64), np.zeros((0, 20)))
            else:
                agg["none"][c] = aggregate_rows(pk["time"], pk["dir"], pk["size"], pk["udp"], span[c][0], es.agg_seconds)

        # ---- attackers
        static, _ = load_discriminator(Path(models) / manifest["discriminators"]["static"])
        st = Settings(model=es.attacker, batch_size=es.batch_size, lr=es.lr, patience=es.patience, seed=es.seed,
                      progress=False, threads=es.threads, device="cpu")
        slots = int(round(total_time / omega))
        from sklearn.ensemble import RandomForestClassifier

        results: list[dict[str, Any]] = []
        t_att = time.time()
        for di, dfn in enumerate(defenses):
            key = dfn["key"]
            ts = time.time()
            rng = np.random.default_rng(es.seed * 7919 + di)
            # windows of this defense, all devices
            if key == "none":
                m = np.isin(und.labels, list(id_to_cls))
                X, S, L, T = und.features[m], und.silence[m], und.labels[m], und.start_time[m]
            else:
                parts = [load_windows(wk / "defended" / key / names[c]) for c in range(n_cls)]
                X = np.concatenate([p.features for p in parts])
                S = np.concatenate([p.silence for p in parts])
                L = np.concatenate([p.labels for p in parts])
                T = np.concatenate([p.start_time for p in parts])
            y = np.array([id_to_cls[int(v)] for v in L], dtype=np.int64)
            cut_arr = np.array([cut[c] for c in range(n_cls)])[y]
            is_tr = T + total_time <= cut_arr
            is_te = T >= cut_arr
            tr_idx, va_idx, te_idx = [], [], []
            win_counts = {}
            for c in range(n_cls):
                itr = np.flatnonzero(is_tr & (y == c))
                ite = np.flatnonzero(is_te & (y == c))
                win_counts[names[c]] = {"train": int(itr.size), "test": int(ite.size)}
                if es.max_train_windows and itr.size > es.max_train_windows:
                    itr = np.sort(rng.choice(itr, es.max_train_windows, replace=False))
                if es.max_test_windows and ite.size > es.max_test_windows:
                    ite = np.sort(rng.choice(ite, es.max_test_windows, replace=False))
                perm = rng.permutation(itr.size)
                nv = int(round(es.val_fraction * itr.size)) if itr.size >= 2 else 0
                va_idx.append(np.sort(itr[perm[:nv]]))
                tr_idx.append(np.sort(itr[perm[nv:]]))
                te_idx.append(ite)
            tr = np.concatenate(tr_idx)
            va = np.concatenate(va_idx)
            te = np.concatenate(te_idx)
            data = Data(torch.from_numpy(np.ascontiguousarray(X)), torch.from_numpy(np.ascontiguousarray(S)),
                        torch.from_numpy(y), n_cls)
            tr_t, va_t, te_t = (torch.from_numpy(a.astype(np.int64)) for a in (tr, va, te))
            row: dict[str, Any] = {**dfn, "windows": win_counts,
                                   "windows_used": {"train": int(tr.size), "val": int(va.size), "test": int(te.size)}}
            row["static"] = scores(y[te], predict(static, data, te_t, None), n_cls)
            # retrained M_seq
            torch.manual_seed(es.seed * 31 + di)
            model = build_discriminator(es.attacker, n_cls, slots)
            weight = class_weights(y[tr], n_cls, "balanced")
            trng = torch.Generator().manual_seed(es.seed * 131 + di)
            hist = fit_discriminator(model, data, tr_t, va_t, es.epochs, st, weight, trng, None, early_stopping=True,
                                     desc=f"retrained {key}")
            row["retrained"] = scores(y[te], predict(model, data, te_t, None), n_cls)
            row["retrained"]["epochs_run"] = hist["epochs_run"]
            # M_agg
            fx, fy, ftr = [], [], []
            for c in range(n_cls):
                bins, f = agg[key][c]
                b0 = span[c][0] + bins * es.agg_seconds
                trm = b0 + es.agg_seconds <= cut[c]
                tem = b0 >= cut[c]
                keep = trm | tem
                fx.append(f[keep])
                fy.append(np.full(int(keep.sum()), c))
                ftr.append(trm[keep])
            fx_a, fy_a, ftr_a = np.concatenate(fx), np.concatenate(fy), np.concatenate(ftr)
            if ftr_a.any() and (~ftr_a).any():
                rf = RandomForestClassifier(n_estimators=es.rf_trees, class_weight="balanced", random_state=es.seed,
                                            n_jobs=1)
                rf.fit(fx_a[ftr_a], fy_a[ftr_a])
                row["m_agg"] = scores(fy_a[~ftr_a], rf.predict(fx_a[~ftr_a]), n_cls)
            else:
                row["m_agg"] = None
            row["m_agg_bins"] = {"train": int(ftr_a.sum()), "test": int((~ftr_a).sum())}
            # costs
            if key != "none":
                row["costs"] = costs_of(sims[key], names)
            row["seconds"] = round(time.time() - ts, 1)
            results.append(row)
            _log(f"{dfn['label']:>18}: static {row['static']['balanced_accuracy']:.3f}  retrained "
                 f"{row['retrained']['balanced_accuracy']:.3f} ({hist['epochs_run']} ep)  M_agg "
                 f"{row['m_agg']['balanced_accuracy'] if row['m_agg'] else float('nan'):.3f}  "
                 + (f"bytes x{row['costs']['total']['byte_overhead']:.2f} packets x{row['costs']['total']['packet_overhead']:.2f}"
                    if "costs" in row else "") + f"  ({row['seconds']} s)")

        res = {
            "schema_version": 1,
            "command": command,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "settings": es.to_dict(),
            "model_set": {"path": str(models), "name": manifest.get("name"), "created": manifest.get("created"),
                          "settings": ms, "generations": n_gen},
            "inputs": {"captures": [str(c) for c in captures], "devices_csv": str(devices_csv),
                       "ipet_bin": str(binary)},
            "devices": names,
            "chance": chance,
            "split": {"how": "time", "train_fraction": es.train_fraction,
                      "per_device": {names[c]: {"span_start": span[c][0], "span_end": span[c][1], "cut": cut[c]}
                                     for c in range(n_cls)},
                      "note": "windows with start + total_time <= cut train, start >= cut test; 15-minute "
                              "bins likewise; straddling ones dropped"},
            "transport_alignment_failures": align_fail,
            "defenses": results,
            "timing": {"simulate_seconds": round(sim_seconds, 1), "attackers_seconds": round(time.time() - t_att, 1),
                       "total_seconds": round(time.time() - t_start, 1)},
            "provenance": {"ipet_train": __version__, "torch": torch.__version__, "python": platform.python_version(),
                           "sklearn": __import__("sklearn").__version__, "numpy": np.__version__},
        }
        (out / "results.json").write_text(json.dumps(res, indent=1) + "\n")
        write_report(res, out)
        _log(f"report written to {out} in {time.time() - t_start:.0f} s")
        return res
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def costs_of(sims: dict[int, dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """Overheads summed over devices (dummy / real, per direction and total; whole trace and inside
    active periods), latency (packet-weighted mean, worst p99 and max over devices), per device."""
    out: dict[str, Any] = {}
    for d in ("incoming", "outgoing", "total"):
        rp = sum(s[d]["real_packets"] for s in sims.values())
        rb = sum(s[d]["real_bytes"] for s in sims.values())
        dp = sum(s[d]["dummy_packets"] for s in sims.values())
        db = sum(s[d]["dummy_bytes"] for s in sims.values())
        ad = {"incoming": "in", "outgoing": "out", "total": "total"}[d]
        adp = sum(s["active_overhead"][ad]["dummy_packets"] for s in sims.values())
        adb = sum(s["active_overhead"][ad]["dummy_bytes"] for s in sims.values())
        out[d] = {"real_packets": rp, "real_bytes": rb, "dummy_packets": dp, "dummy_bytes": db,
                  "byte_overhead": db / rb if rb else None, "packet_overhead": dp / rp if rp else None,
                  "active_byte_overhead": adb / rb if rb else None,
                  "active_packet_overhead": adp / rp if rp else None}
    dur = sum(s["duration_s"] for s in sims.values())
    act = sum(s["active_time_s"] for s in sims.values())
    tot = out["total"]
    out["time"] = {"duration_s": dur, "active_time_s": act,
                   "dummy_bytes_per_s": tot["dummy_bytes"] / dur if dur else None,
                   "real_bytes_per_s": tot["real_bytes"] / dur if dur else None,
                   "real_bytes_per_active_s": tot["real_bytes"] / act if act else None}
    rpk = [s["total"]["real_packets"] for s in sims.values()]
    out["latency"] = {
        "mean_s": float(sum(s["latency"]["mean_s"] * n for s, n in zip(sims.values(), rpk)) / max(sum(rpk), 1)),
        "p50_s_max_over_devices": max(s["latency"]["p50_s"] for s in sims.values()),
        "p99_s_max_over_devices": max(s["latency"]["p99_s"] for s in sims.values()),
        "max_s": max(s["latency"]["max_s"] for s in sims.values()),
    }
    out["per_device"] = {names[c]: {k: s[k] for k in ("incoming", "outgoing", "total", "latency", "active_time_s",
                                                        "duration_s", "active_overhead", "seed", "command",
                                                        "real_packets_dropped", "slots_without_cover")}
                         for c, s in sorted(sims.items())}
    return out
