"""The attacker suite against one defense: every registered attacker (attackers.registry, behind
the one interface of attackers.interface) retrained from scratch on the defense's own training
windows, fold by fold (attackers.folds), scored on every tested window and, after the
distinguisher has dropped what it calls cover-only (or on the windows the attacker selects
itself, for one that has its own selection), on the windows it keeps (the stronger of the two is
the attacker's score)."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from . import interface
from .dataset import Dataset
from .folds import TimeFolds
from .interface import Fold
from .registry import Distinguisher, MAgg, registry
from .score import auc_scores, scores

# Feature groups left out in the distinguisher's checks (indices into KFP_COLUMNS of
# crates/traffic/src/features.rs): does it key on one kind of feature only?
ABLATIONS = {
    "without silence before/after": [35, 36],
    "without any timing (silence, slots, inter-arrival, duration)": [23, 24, 25, 30, 31, 32, 33, 34, 35, 36],
    "sizes and counts only": list(range(22, 37)),
}


@dataclass
class SuiteSettings:
    seed: int = 0
    seq_models: list[str] = field(default_factory=lambda: ["lstm", "cnn"])
    epochs: int = 10
    patience: int = 3
    batch_size: int = 256
    kfp_iters: int = 200
    dist_iters: int = 100
    rf_trees: int = 200
    bootstrap: int = 1000
    device: str = "cpu"
    ablation: bool = True
    # 0: every training window; else at most this many per device and draw (a seeded random
    # subset) for the sequence networks, whose cost on CPU is the run's bottleneck
    seq_max_per_device: int = 0
    # draws the forests train on (the first ones)
    forest_draws: int = 1
    # the cross-device attacker (attackers.crossdevice), on defenses whose dataset holds every
    # device's packets
    cross_device: bool = True
    # its pairing: the largest gap (s) between a frame and its copy it looks at
    xdev_max_gap: float = 0.05


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _train(draws: Sequence[Dataset], fold: int, folds: TimeFolds, total_time: float, agg_s: float):
    w = [folds.split(fold, d.start, total_time, d.y)[0] for d in draws]
    b = [folds.split(fold, d.agg_start, agg_s, d.agg_y)[0] for d in draws]
    return w, b


def attack(draws: Sequence[Dataset], folds: TimeFolds, n: int, total_time: float, agg_s: float, ss: SuiteSettings,
           label: str = "", transport_tcp_only: bool = False, aggregates_only: bool = False,
           attackers: Optional[list] = None) -> dict[str, Any]:
    """Every attacker on one defense. `draws[0]` is scored; all draws train (fresh cover).
    `attackers`: the attackers to run (default: the suite's `registry`)."""
    d0 = draws[0]
    seed = ss.seed
    atk = registry(ss, transport_tcp_only, aggregates_only) if attackers is None else list(attackers)
    atk = [a for a in atk if interface.applies(a, draws)]
    t_att = {a.name: 0.0 for a in atk}
    t_att["distinguisher"] = 0.0
    for a in atk:
        t0 = time.time()
        interface.prepare(a, draws)
        t_att[a.name] += time.time() - t0
    win = [a for a in atk if a.unit == "window"]
    binned = [a for a in atk if a.unit == "bin"]
    tested = folds.tested(d0.start, d0.y)
    btested = folds.tested(d0.agg_start, d0.agg_y)
    pred = {a.name: np.full(d0.n if a.unit == "window" else d0.agg_y.shape[0], -1, np.int64) for a in atk}
    p_real = np.ones(d0.n)
    p_abl = {k: np.ones(d0.n) for k in ABLATIONS} if ss.ablation else {}
    p_real_bin = np.ones(d0.agg_y.shape[0])
    fold_scores: dict[str, list] = {a.name: [] for a in atk}
    dist_trained = False
    dist = Distinguisher("window")
    bin_feats = next((a for a in binned if isinstance(a, MAgg)), None) or MAgg(transport_tcp_only)
    dist_bin = Distinguisher("bin", bin_feats)
    for f in range(1, folds.folds + 1):
        wtr, btr = _train(draws, f, folds, total_time, agg_s)
        te = folds.split(f, d0.start, total_time, d0.y)[1]
        bte = folds.split(f, d0.agg_start, agg_s, d0.agg_y)[1]
        fold = Fold(index=f, seed=seed * 1000 + f, draws=draws, train=wtr, test=te, bins_train=btr, bins_test=bte,
                    n=n, settings=ss)
        if te.any() and not aggregates_only:
            t0 = time.time()
            p = dist.fit_score(fold)
            t_att["distinguisher"] += time.time() - t0
            if p is not None:
                p_real[te] = p
                dist_trained = True
                for name, drop in ABLATIONS.items() if ss.ablation else ():
                    p_abl[name][te] = dist.fit_score(fold, drop)
        if te.any():
            for a in win:
                t0 = time.time()
                pred[a.name][te] = a.fit_predict(fold)
                t_att[a.name] += time.time() - t0
            for a in win:
                fold_scores[a.name].append(scores(d0.y[te], pred[a.name][te], n, draws=0)["balanced_accuracy"])
        if bte.any():
            for a in binned:
                t0 = time.time()
                pred[a.name][bte] = a.fit_predict(fold)
                t_att[a.name] += time.time() - t0
            p = dist_bin.fit_score(fold)
            if p is not None:
                p_real_bin[bte] = p
            for a in binned:
                fold_scores[a.name].append(scores(d0.agg_y[bte], pred[a.name][bte], n, draws=0)["balanced_accuracy"])

    out: dict[str, Any] = {"windows": {"total": d0.n, "tested": int(tested.sum()),
                                       "tested_cover_only": int((tested & (d0.real == 0)).sum()),
                                       "draws": len(draws),
                                       "per_draw_total": [d.n for d in draws]},
                           "bins": {"total": int(d0.agg_y.size), "tested": int(btested.sum()),
                                    "tested_cover_only": int((btested & (d0.agg_real == 0)).sum())},
                           "attackers": {}, "seconds": {k: round(v, 1) for k, v in t_att.items()}}
    warn = folds.warnings(d0.y, d0.start, total_time, n)
    if warn:
        out["fold_warnings"] = warn
    bseed = seed + 17
    for a in atk:
        if a.unit == "window":
            y, tst, pr, start = d0.y, tested, p_real, d0.start
        else:
            y, tst, pr, start = d0.agg_y, btested, p_real_bin, d0.agg_start
        own = interface.kept(a, draws)
        if own is not None:
            pr = own.astype(np.float64)
        r = _both(y, pred[a.name], tst, pr, start, n, bseed, ss.bootstrap)
        r["per_fold"] = fold_scores[a.name]
        if own is not None:
            r["kept_by"] = "itself"
        if hasattr(a, "records") and a.unit == "window":
            r["training"] = a.records
        extra = interface.report(a)
        if extra:
            r.update(extra)
        out["attackers"][a.name] = r
    real = d0.real > 0
    out["distinguisher"] = auc_scores(real[tested], p_real[tested], d0.y[tested], d0.start[tested], seed=bseed) \
        if dist_trained else {"auc": None, "ci95": None, "note": "training windows hold only one kind"}
    if dist_trained:
        keep = p_real[tested] >= 0.5
        out["distinguisher"]["kept_windows"] = int(keep.sum())
        out["distinguisher"]["kept_real_fraction"] = round(float(real[tested][keep].mean()), 4) if keep.any() else None
        out["distinguisher"]["dropped_real_windows"] = int((real[tested] & ~keep).sum())
        out["distinguisher"]["ablations"] = {
            name: auc_scores(real[tested], p[tested], d0.y[tested], d0.start[tested], seed=bseed, draws=100)["auc"]
            for name, p in p_abl.items()}
    line = "  ".join(f"{a} {_ba(out['attackers'][a]):.3f}" for a in out["attackers"])
    auc = out["distinguisher"].get("auc")
    _log(f"{label:>40}: {line}  AUC {auc if auc is not None else '-'}")
    return out


def _ba(r: dict[str, Any]) -> float:
    v = r.get("balanced_accuracy")
    return float("nan") if v is None else v


def _both(y: np.ndarray, pred: np.ndarray, tested: np.ndarray, p_real: np.ndarray, start: np.ndarray, n: int,
          seed: int, draws: int) -> dict[str, Any]:
    all_ = scores(y[tested], pred[tested], n, start[tested], seed, draws)
    kept_m = tested & (p_real >= 0.5)
    kept = scores(y[kept_m], pred[kept_m], n, start[kept_m], seed, draws) if kept_m.any() else None
    use_kept = kept is not None and kept["balanced_accuracy"] is not None and \
        kept_m.sum() < tested.sum() and kept["balanced_accuracy"] > (all_["balanced_accuracy"] or 0)
    best = kept if use_kept else all_
    return {"balanced_accuracy": best["balanced_accuracy"], "ci95": best["ci95"],
            "scored_on": "kept" if use_kept else "all", "all": all_, "kept": kept}


def max_attacker(attackers: dict[str, Any], names: Optional[Sequence[str]] = None) -> tuple[Optional[str], float]:
    best, who = -math.inf, None
    for a, r in attackers.items():
        if names is not None and a not in names:
            continue
        v = r.get("balanced_accuracy")
        if v is not None and v > best:
            best, who = v, a
    return who, best
