"""The one scorer: balanced accuracy (mean per-device recall) with a bootstrap 95% interval, and
the distinguisher's AUC with its interval. Windows of one device close in time are not
independent, so the bootstrap resamples clusters (a device's windows of one hour), per device:
every device keeps its number of clusters in every draw, and balanced accuracy stays a mean over
the same devices."""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

CLUSTER_S = 3600.0


def confusion(y: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (np.asarray(y, np.int64), np.asarray(pred, np.int64)), 1)
    return cm


def balanced_accuracy(y: np.ndarray, pred: np.ndarray, n: int) -> float:
    cm = confusion(y, pred, n)
    rows = cm.sum(1)
    present = rows > 0
    return float((np.diag(cm)[present] / rows[present]).mean()) if present.any() else float("nan")


def scores(y: np.ndarray, pred: np.ndarray, n: int, start: Optional[np.ndarray] = None, seed: int = 0,
           draws: int = 1000) -> dict[str, Any]:
    """balanced_accuracy, its 95% interval (cluster bootstrap when `start` is given, else per
    window), accuracy, per-device recall, n and the confusion matrix."""
    y = np.asarray(y, np.int64)
    pred = np.asarray(pred, np.int64)
    cm = confusion(y, pred, n)
    rows = cm.sum(1)
    rec = [float(cm[c, c] / rows[c]) if rows[c] else None for c in range(n)]
    ba = balanced_accuracy(y, pred, n)
    lo, hi = bootstrap_ba(y, pred, n, start, seed, draws)
    return {"balanced_accuracy": round(ba, 4) if not math.isnan(ba) else None,
            "ci95": [round(lo, 4), round(hi, 4)] if not math.isnan(lo) else None,
            "accuracy": round(float((y == pred).mean()), 4) if y.size else None,
            "per_device_recall": [None if r is None else round(r, 4) for r in rec],
            "n": int(y.size), "confusion": cm.tolist()}


def _clusters(y: np.ndarray, start: Optional[np.ndarray]) -> np.ndarray:
    if start is None:
        return np.arange(y.size)
    hour = np.floor(np.asarray(start) / CLUSTER_S).astype(np.int64)
    return np.unique(np.stack([y, hour], 1), axis=0, return_inverse=True)[1].reshape(-1)


def bootstrap_ba(y: np.ndarray, pred: np.ndarray, n: int, start: Optional[np.ndarray], seed: int,
                 draws: int) -> tuple[float, float]:
    if y.size == 0 or draws <= 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    cl = _clusters(y, start)
    ok = (y == pred).astype(np.float64)
    recalls = []
    for c in np.unique(y):
        m = y == c
        ids, inv = np.unique(cl[m], return_inverse=True)
        size = np.bincount(inv, minlength=ids.size).astype(np.float64)
        hit = np.bincount(inv, weights=ok[m], minlength=ids.size)
        pick = rng.integers(0, ids.size, size=(draws, ids.size))
        recalls.append(hit[pick].sum(1) / size[pick].sum(1))
    ba = np.mean(recalls, axis=0)
    return float(np.quantile(ba, 0.025)), float(np.quantile(ba, 0.975))


def auc(truth: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (ties counted half); nan when one class is absent."""
    truth = np.asarray(truth, bool)
    n1, n0 = int(truth.sum()), int((~truth).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    s = np.asarray(score)[order]
    ranks = np.empty(s.size)
    # average ranks over ties
    uniq, first, counts = np.unique(s, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[truth].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def auc_scores(truth: np.ndarray, score: np.ndarray, y: np.ndarray, start: np.ndarray, seed: int = 0,
               draws: int = 300) -> dict[str, Any]:
    """AUC of the cover-vs-real distinguisher with a cluster-bootstrap 95% interval."""
    a = auc(truth, score)
    out: dict[str, Any] = {"auc": None if math.isnan(a) else round(a, 4), "ci95": None,
                           "windows": int(np.asarray(truth).size), "real_windows": int(np.asarray(truth).sum())}
    if math.isnan(a):
        return out
    rng = np.random.default_rng(seed)
    cl = _clusters(np.asarray(y, np.int64), start)
    ids = np.unique(cl)
    members = np.split(np.argsort(cl, kind="stable"), np.cumsum(np.bincount(cl))[:-1])
    vals = []
    for _ in range(draws):
        idx = np.concatenate([members[i] for i in rng.integers(0, ids.size, ids.size)])
        v = auc(truth[idx], score[idx])
        if not math.isnan(v):
            vals.append(v)
    if vals:
        out["ci95"] = [round(float(np.quantile(vals, 0.025)), 4), round(float(np.quantile(vals, 0.975)), 4)]
    return out
