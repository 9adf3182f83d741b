"""The one split of the evaluation: contiguous time folds, per device by default.

Per device (`by="device"`, the default): each device's own span (its first to last undefended
window start) is cut into `folds + 1` equal blocks. Fold i (1..folds) tests every device on its
block i and trains on each device's items that END before that device's block i starts (the
device's own past). A device recorded late, or in short sessions months apart from the others
(another home's captures), so still trains in every fold: with one set of edges over the whole
home's span, such a device had no training data in the early folds and none in its own test
fold, and scored 0 by construction. Over the home (`by="home"`, the rule before issue 18): the
home's span cut into blocks, the same edges for every device.

Every window of blocks 1..folds is tested exactly once; block 0 only ever trains. The same edges
(Unix seconds, per device) serve every defense, so that a defended window and the undefended one
it came from fall in the same fold; defended items of a device before its first undefended window
only train, those after its last are not tested. The first fold holds 1/(folds+1) of the span
for training, the last folds/(folds+1): the per-fold scores in results.json show how much more
training data gives an attacker. `warnings` names the folds in which a device is tested but has
nothing to train on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


def _edges(start_times: np.ndarray, folds: int) -> tuple[float, ...]:
    a, b = float(start_times.min()), float(start_times.max())
    edges = np.linspace(a, b, folds + 2)
    edges[-1] = np.nextafter(b, np.inf)  # the last window start falls inside the last block
    return tuple(float(e) for e in edges)


@dataclass(frozen=True)
class TimeFolds:
    edges: tuple[float, ...]  # folds + 2 Unix seconds over the home; block i = [edges[i], edges[i+1])
    # by device: class index -> its own folds + 2 edges (None: the home's edges for everyone)
    per_group: Optional[dict[int, tuple[float, ...]]] = None

    @property
    def folds(self) -> int:
        return len(self.edges) - 2

    @property
    def by(self) -> str:
        return "home" if self.per_group is None else "device"

    @staticmethod
    def over(start_times: np.ndarray, folds: int, groups: Optional[np.ndarray] = None) -> "TimeFolds":
        """Folds over `start_times`; with `groups` (a class per item) each group's own span is
        cut (`by="device"`), else the whole span (`by="home"`)."""
        if folds < 1:
            raise ValueError("need at least one test fold")
        if start_times.size == 0:
            raise ValueError("no windows to fold")
        home = _edges(start_times, folds)
        if groups is None:
            return TimeFolds(home)
        per = {int(g): _edges(start_times[groups == g], folds) for g in np.unique(groups)}
        return TimeFolds(home, per)

    def _bounds(self, fold: int, start: np.ndarray, groups: Optional[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        if self.per_group is None or groups is None:
            return np.full(start.shape, self.edges[fold]), np.full(start.shape, self.edges[fold + 1])
        lut_lo = {g: e[fold] for g, e in self.per_group.items()}
        lut_hi = {g: e[fold + 1] for g, e in self.per_group.items()}
        # a class without undefended windows never trains and is never tested
        lo = np.array([lut_lo.get(int(g), -np.inf) for g in range(int(groups.max(initial=-1)) + 1)])
        hi = np.array([lut_hi.get(int(g), -np.inf) for g in range(int(groups.max(initial=-1)) + 1)])
        return lo[groups], hi[groups]

    def split(self, fold: int, start: np.ndarray, length: float,
              groups: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
        """(train, test) boolean masks of fold `fold` (1..folds) for items starting at `start`
        and lasting `length` seconds (a window's total_time, a bin's agg_seconds), of classes
        `groups` (needed when the folds are per device)."""
        if not 1 <= fold <= self.folds:
            raise ValueError(f"fold {fold} outside 1..{self.folds}")
        lo, hi = self._bounds(fold, start, groups)
        return start + length <= lo, (start >= lo) & (start < hi)

    def tested(self, start: np.ndarray, groups: Optional[np.ndarray] = None) -> np.ndarray:
        """Which items some fold tests (those in blocks 1..folds)."""
        if self.per_group is None or groups is None:
            return (start >= self.edges[1]) & (start < self.edges[-1])
        first, _ = self._bounds(1, start, groups)
        _, last = self._bounds(self.folds, start, groups)
        return (start >= first) & (start < last)

    def warnings(self, groups: np.ndarray, start: np.ndarray, length: float, n: int) -> list[dict]:
        """The folds in which a class is tested but has no training item: {fold, class,
        tested}."""
        out = []
        for f in range(1, self.folds + 1):
            tr, te = self.split(f, start, length, groups)
            for c in range(n):
                k = int((te & (groups == c)).sum())
                if k and not (tr & (groups == c)).any():
                    out.append({"fold": f, "class": c, "tested": k})
        return out

    def to_dict(self) -> dict:
        return {"by": self.by, "edges_unix_s": list(self.edges),
                "per_device_edges_unix_s": None if self.per_group is None else
                {str(g): list(e) for g, e in sorted(self.per_group.items())}}

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
