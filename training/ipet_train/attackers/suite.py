"""The attacker suite against one defense: every attacker retrained from scratch on the defense's
own training windows, fold by fold (attackers.folds), scored on every tested window and, after
the distinguisher has dropped what it calls cover-only, on the windows it keeps (the stronger of
the two is the attacker's score)."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np

from .dataset import Dataset
from .folds import TimeFolds
from .forest import agg_fit_predict, distinguisher_fit_score, kfp_fit_predict
from .score import auc_scores, scores
from .sequence import fit_predict

WINDOW_ATTACKERS = ("lstm", "cnn", "kfp")
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


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _cap(mask: np.ndarray, y: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    if cap <= 0:
        return mask
    out = np.zeros_like(mask)
    for c in np.unique(y[mask]):
        idx = np.flatnonzero(mask & (y == c))
        out[rng.choice(idx, cap, replace=False) if idx.size > cap else idx] = True
    return out


def _train(draws: Sequence[Dataset], fold: int, folds: TimeFolds, total_time: float, agg_s: float):
    w = [folds.split(fold, d.start, total_time)[0] for d in draws]
    b = [folds.split(fold, d.agg_start, agg_s)[0] for d in draws]
    return w, b


def attack(draws: Sequence[Dataset], folds: TimeFolds, n: int, total_time: float, agg_s: float, ss: SuiteSettings,
           label: str = "", transport_tcp_only: bool = False, aggregates_only: bool = False) -> dict[str, Any]:
    """Every attacker on one defense. `draws[0]` is scored; all draws train (fresh cover)."""
    d0 = draws[0]
    seed = ss.seed
    tested = folds.tested(d0.start)
    btested = folds.tested(d0.agg_start)
    pred = {a: np.full(d0.n, -1, np.int64) for a in (*ss.seq_models, "kfp")}
    p_real = np.ones(d0.n)
    p_abl = {k: np.ones(d0.n) for k in ABLATIONS} if ss.ablation else {}
    pred_agg = np.full(d0.agg_y.shape[0], -1, np.int64)
    p_real_bin = np.ones(d0.agg_y.shape[0])
    records: dict[str, list] = {a: [] for a in pred}
    fold_scores: dict[str, list] = {a: [] for a in (*pred, "m_agg")}
    dist_trained = False
    t_att = {a: 0.0 for a in (*pred, "m_agg", "distinguisher")}
    for f in range(1, folds.folds + 1):
        wtr, btr = _train(draws, f, folds, total_time, agg_s)
        te = folds.split(f, d0.start, total_time)[1]
        bte = folds.split(f, d0.agg_start, agg_s)[1]
        fseed = seed * 1000 + f
        fdraws = list(zip(draws, wtr))[:max(1, ss.forest_draws)]
        if te.any() and not aggregates_only:
            x_tr = np.concatenate([d.kfp[m] for d, m in fdraws])
            y_tr = np.concatenate([d.y[m] for d, m in fdraws])
            r_tr = np.concatenate([d.real[m] > 0 for d, m in fdraws])
            t0 = time.time()
            p = distinguisher_fit_score(x_tr, r_tr, d0.kfp[te], fseed, ss.dist_iters)
            t_att["distinguisher"] += time.time() - t0
            if p is not None:
                p_real[te] = p
                dist_trained = True
                for name, drop in ABLATIONS.items() if ss.ablation else ():
                    cols = np.setdiff1d(np.arange(x_tr.shape[1]), drop)
                    p_abl[name][te] = distinguisher_fit_score(x_tr[:, cols], r_tr, d0.kfp[te][:, cols], fseed,
                                                              ss.dist_iters)
            t0 = time.time()
            pred["kfp"][te] = kfp_fit_predict(x_tr, y_tr, d0.kfp[te], fseed, ss.kfp_iters)
            t_att["kfp"] += time.time() - t0
            for kind in ss.seq_models:
                t0 = time.time()
                crng = np.random.default_rng(fseed)
                capped = [_cap(m, d.y, ss.seq_max_per_device, crng) for d, m in zip(draws, wtr)]
                tr_sets = [(d.x[m], d.silence[m], d.y[m], d.start[m]) for d, m in zip(draws, capped)]
                pr, rec = fit_predict(kind, tr_sets, (d0.x[te], d0.silence[te]), n, ss.epochs, fseed,
                                      batch=ss.batch_size, patience=ss.patience, device=ss.device)
                pred[kind][te] = pr
                rec["fold"] = f
                records[kind].append(rec)
                t_att[kind] += time.time() - t0
            for a in pred:
                fold_scores[a].append(scores(d0.y[te], pred[a][te], n, draws=0)["balanced_accuracy"])
        if bte.any():
            cols = _agg_cols(transport_tcp_only)
            bdraws = list(zip(draws, btr))[:max(1, ss.forest_draws)]
            ax_tr = np.concatenate([_agg(d, transport_tcp_only)[m] for d, m in bdraws])[:, cols]
            ay_tr = np.concatenate([d.agg_y[m] for d, m in bdraws])
            ar_tr = np.concatenate([d.agg_real[m] > 0 for d, m in bdraws])
            ax_te = _agg(d0, transport_tcp_only)[bte][:, cols]
            t0 = time.time()
            pred_agg[bte] = agg_fit_predict(ax_tr, ay_tr, ax_te, fseed, ss.rf_trees)
            t_att["m_agg"] += time.time() - t0
            p = distinguisher_fit_score(ax_tr, ar_tr, ax_te, fseed, ss.dist_iters)
            if p is not None:
                p_real_bin[bte] = p
            fold_scores["m_agg"].append(scores(d0.agg_y[bte], pred_agg[bte], n, draws=0)["balanced_accuracy"])

    out: dict[str, Any] = {"windows": {"total": d0.n, "tested": int(tested.sum()),
                                       "tested_cover_only": int((tested & (d0.real == 0)).sum()),
                                       "draws": len(draws),
                                       "per_draw_total": [d.n for d in draws]},
                           "bins": {"total": int(d0.agg_y.size), "tested": int(btested.sum()),
                                    "tested_cover_only": int((btested & (d0.agg_real == 0)).sum())},
                           "attackers": {}, "seconds": {k: round(v, 1) for k, v in t_att.items()}}
    bseed = seed + 17
    for a, pr in pred.items() if not aggregates_only else ():
        out["attackers"][a] = _both(d0.y, pr, tested, p_real, d0.start, n, bseed, ss.bootstrap)
        out["attackers"][a]["per_fold"] = fold_scores[a]
        if a in records:
            out["attackers"][a]["training"] = records[a]
    out["attackers"]["m_agg"] = _both(d0.agg_y, pred_agg, btested, p_real_bin, d0.agg_start, n, bseed, ss.bootstrap)
    out["attackers"]["m_agg"]["per_fold"] = fold_scores["m_agg"]
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


def _agg(d: Dataset, transport: bool) -> np.ndarray:
    return d.agg_transport if transport else d.agg


def _agg_cols(transport_tcp_only: bool) -> np.ndarray:
    # agg_transport: [in_tcp(5), in_udp(5), out_tcp(5), out_udp(5)]; TCP only = what the transport
    # observer sees of real traffic untouched when all cover is UDP.
    return np.r_[0:5, 10:15] if transport_tcp_only else np.arange(10)


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
