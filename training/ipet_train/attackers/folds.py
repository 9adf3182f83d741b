"""The one split of the evaluation: contiguous time folds over the home's span.

The span (first to last undefended window start of any device) is cut into `folds + 1` equal
blocks. Fold i (1..folds) tests on block i and trains on everything that ENDS before block i
starts (the past only). Every window of blocks 1..folds is tested exactly once; block 0 only ever
trains. The same edges (Unix seconds) serve every defense, so that a defended window and the
undefended one it came from fall in the same fold. The first fold holds 1/(folds+1) of the span
for training, the last folds/(folds+1): the per-fold scores in results.json show how much more
training data gives an attacker."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TimeFolds:
    edges: tuple[float, ...]  # folds + 2 Unix seconds; block i = [edges[i], edges[i+1])

    @property
    def folds(self) -> int:
        return len(self.edges) - 2

    @staticmethod
    def over(start_times: np.ndarray, folds: int) -> "TimeFolds":
        if folds < 1:
            raise ValueError("need at least one test fold")
        if start_times.size == 0:
            raise ValueError("no windows to fold")
        a, b = float(start_times.min()), float(start_times.max())
        edges = np.linspace(a, b, folds + 2)
        edges[-1] = np.nextafter(b, np.inf)  # the last window start falls inside the last block
        return TimeFolds(tuple(float(e) for e in edges))

    def split(self, fold: int, start: np.ndarray, length: float) -> tuple[np.ndarray, np.ndarray]:
        """(train, test) boolean masks of fold `fold` (1..folds) for items starting at `start`
        and lasting `length` seconds (a window's total_time, a bin's agg_seconds)."""
        if not 1 <= fold <= self.folds:
            raise ValueError(f"fold {fold} outside 1..{self.folds}")
        lo, hi = self.edges[fold], self.edges[fold + 1]
        return start + length <= lo, (start >= lo) & (start < hi)

    @staticmethod
    def holdout(start: np.ndarray, length: float, train_fraction: float,
                groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The single-cut form of the same rule, for training: (train, test) masks with the cut
        at `train_fraction` of the span; items straddling the cut are in neither. With `groups`
        (a device label per item) each group is cut at `train_fraction` of its OWN span: training
        needs windows of every device before its cut, and in another home's captures (short
        sessions months apart) a device may be seen only in the last part of the home's span."""
        if not 0.0 < train_fraction < 1.0:
            raise ValueError(f"train_fraction {train_fraction} must be between 0 and 1")
        if groups is None:
            groups = np.zeros(start.shape, np.int64)
        is_tr, is_te = np.zeros(start.shape, bool), np.zeros(start.shape, bool)
        for g in np.unique(groups):
            m = groups == g
            a, b = float(start[m].min()), float(start[m].max())
            cut = a + train_fraction * (b - a)
            is_tr[m], is_te[m] = start[m] + length <= cut, start[m] >= cut
        return is_tr, is_te

    def tested(self, start: np.ndarray) -> np.ndarray:
        """Which items some fold tests (those in blocks 1..folds)."""
        return (start >= self.edges[1]) & (start < self.edges[-1])
