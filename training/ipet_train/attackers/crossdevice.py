"""The cross-device attacker: the link observer of docs/threat-model.md sees every device's frames
at once (time, size, direction per device MAC), and a set defense that mirrors a member's real
frames onto the other members makes copies, which trail their original by whatever the gateway
takes to react. The attacker, with no label:

1. pairs frames across the home's devices: a frame of size s on device A followed by a frame of
   the same size and direction on device B != A within `max_gap` (per direction);
2. estimates the lag window from the data: the histogram of those cross-device same-size gaps
   (log-spaced bins, plus a bin for gaps under 1 us: ties) against a baseline where every device's
   frames are shifted by its own random offset (coincidences only); the bins with a clear excess
   over the baseline, above the tie bin, are the window (lo, hi]. None: no lag to use;
3. attributes originals: a frame led by a same-size frame of another device within (lo, hi] is a
   copy; one that leads such a frame and is led by none is an original; one with a same-size
   frame of another device closer than lo (a tie) cannot be ordered; one with no partner at all
   is unpaired (real traffic nobody mirrors, or cover of a drawn size). Attributed = original or
   unpaired;
4. identifies devices per window (the data plane's 4 s windows, `ipet simulate --features`) from
   the k-FP features plus features of the frames it attributes (counts, bytes and sizes per
   direction, how many of the window's frames lead, are led, are tied, the attributed frames'
   span, and the silence before and after them), gradient boosting retrained per fold, and per
   15-minute bin (M_agg's aggregates plus the same counts), a random forest;
5. infers activity: a window where it attributes at least one frame is one where it says the
   device really sends; it identifies on those (its `kept` windows) as well as on all, and reports
   precision and recall against the truth.

The truth (`HomePackets.dummy`, which frames are cover) is read only to score attribution and
activity; no attacker feature sees it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from .dataset import Dataset, HomePackets
from .forest import agg_fit_predict, kfp_fit_predict
from .interface import Fold
from .score import scores

TIE_S = 1e-6
LABELS = ("unpaired", "original", "copy", "tied")
UNPAIRED, ORIGINAL, COPY, TIED = range(4)
DIRS = ((1, "out"), (-1, "in"))


def gap_edges(max_gap: float, per_decade: int = 20) -> np.ndarray:
    """Histogram edges of cross-device gaps: [0, 1 us) (ties), then log-spaced up to max_gap."""
    k = max(1, int(np.ceil(np.log10(max_gap / TIE_S) * per_decade)))
    return np.concatenate([[0.0], np.logspace(np.log10(TIE_S), np.log10(max_gap), k + 1)])


def _by_size(t: np.ndarray, size: np.ndarray) -> np.ndarray:
    return np.lexsort((t, size))


def _each_pair(t: np.ndarray, size: np.ndarray, cls: np.ndarray, max_gap: float, cross: bool = True):
    """Yield (i, j, gap) index arrays (into the given arrays) of every cross-device (`cross`;
    else same-device) same-size pair with 0 <= t[j] - t[i] <= max_gap, i before j, in chunks
    (one per neighbour distance)."""
    order = _by_size(t, size)
    ts, ss, cs = t[order], size[order], cls[order]
    for k in range(1, ts.size):
        same = ss[k:] == ss[:-k]
        gap = ts[k:] - ts[:-k]
        near = same & (gap <= max_gap)
        if not near.any():
            break
        m = near & ((cs[k:] != cs[:-k]) if cross else (cs[k:] == cs[:-k]))
        idx = np.flatnonzero(m)
        yield order[idx], order[idx + k], gap[idx]


def gap_histogram(t: np.ndarray, size: np.ndarray, cls: np.ndarray, edges: np.ndarray, cross: bool = True) -> np.ndarray:
    h = np.zeros(edges.size - 1, np.int64)
    for _, _, g in _each_pair(t, size, cls, float(edges[-1]), cross):
        h += np.histogram(g, bins=edges)[0]
    return h


def lag_window(observed: np.ndarray, baseline: np.ndarray, edges: np.ndarray, min_excess: int = 20,
               min_ratio: float = 1.5, fraction: float = 0.1) -> Optional[tuple[float, float]]:
    """(lo, hi]: where copies sit, or None. `baseline` is what cross-device pairs would look like
    without copies at a lag (the home's own same-size gaps within each device, scaled; bursts of
    mirrored traffic repeat that shape across devices). The bin above the tie bin where the
    observed pairs most exceed it in sigmas (and at least `min_ratio` times, 5 sigma and
    `min_excess` pairs) is the peak; the window is the run of bins around it whose ratio stays above `fraction` of the
    peak's excess ratio and `min_ratio`."""
    ratio = observed / (baseline + 1.0)
    excess = observed - baseline
    ok = (ratio >= min_ratio) & (excess > 5 * np.sqrt(baseline + 1)) & (excess >= min_excess)
    ok[0] = False  # ties are not a lag
    if not ok.any():
        return None
    z = excess / np.sqrt(baseline + 1)
    p = int(np.flatnonzero(ok)[np.argmax(z[ok])])
    keep = max(min_ratio, 1.0 + fraction * (ratio[p] - 1.0))
    lo = hi = p
    while lo - 1 >= 1 and ok[lo - 1] and ratio[lo - 1] >= keep:
        lo -= 1
    while hi + 1 < ratio.size and ok[hi + 1] and ratio[hi + 1] >= keep:
        hi += 1
    return float(edges[lo]), float(edges[hi + 1])


def refine_window(t: np.ndarray, size: np.ndarray, cls: np.ndarray, win: tuple[float, float],
                  bins: int = 200, peak: float = 10.0) -> tuple[float, float]:
    """A fixed lag puts every copy at one gap, to the clock's resolution: where the pairs inside
    the window pile up in one fine (linear) bin, at least `peak` times the window's median bin,
    the window shrinks to the run of fine bins around it holding at least a tenth of that bin's
    pairs (a spread lag stays as it is)."""
    lo, hi = win
    e = np.linspace(lo, hi, bins + 1)
    h = np.zeros(bins, np.int64)
    for _, _, g in _each_pair(t, size, cls, hi):
        g = g[(g >= lo) & (g <= hi)]
        h += np.histogram(g, bins=e)[0]
    p = int(np.argmax(h))
    if h[p] < peak * max(float(np.median(h)), 1.0):
        return win
    a = b = p
    while a - 1 >= 0 and h[a - 1] >= 0.1 * h[p]:
        a -= 1
    while b + 1 < bins and h[b + 1] >= 0.1 * h[p]:
        b += 1
    return float(e[a]), float(e[b + 1])


def scaled_baseline(observed: np.ndarray, same_device: np.ndarray) -> np.ndarray:
    """The same-device histogram scaled to the cross-device one (median ratio over bins above
    the tie bin with enough pairs of both)."""
    m = (same_device >= 50) & (observed >= 50)
    m[0] = False
    scale = float(np.median(observed[m] / same_device[m])) if m.any() else 0.0
    return scale * same_device


@dataclass
class Pairing:
    """The attacker's view of one home's frames: per direction the lag window and its evidence,
    per frame a label (LABELS)."""

    label: np.ndarray  # int8 per frame of the HomePackets
    leads: np.ndarray  # bool: leads some frame within the window
    window: dict[str, Optional[tuple[float, float]]] = field(default_factory=dict)
    histogram: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def attributed(self) -> np.ndarray:
        return (self.label == UNPAIRED) | (self.label == ORIGINAL)


def pair_frames(p: HomePackets, max_gap: float = 0.05) -> Pairing:
    """Steps 1-3 of the module doc over every frame of the home."""
    edges = gap_edges(max_gap)
    label = np.full(p.n, UNPAIRED, np.int8)
    leads = np.zeros(p.n, bool)
    out = Pairing(label=label, leads=leads)
    for sign, dname in DIRS:
        sel = np.flatnonzero(p.direction == sign)
        t, size, cls = p.time[sel], p.size[sel], p.cls[sel]
        obs = gap_histogram(t, size, cls, edges)
        base = scaled_baseline(obs, gap_histogram(t, size, cls, edges, cross=False))
        win = lag_window(obs, base, edges)
        if win is not None:
            win = refine_window(t, size, cls, win)
        out.window[dname] = win
        out.histogram[dname] = {"edges_s": [float(e) for e in edges], "observed": obs.tolist(),
                                "baseline": [round(float(b), 2) for b in base]}
        lo, hi = win if win is not None else (TIE_S, 0.0)
        n_lead = np.zeros(sel.size, np.int64)
        n_led = np.zeros(sel.size, np.int64)
        n_tie = np.zeros(sel.size, np.int64)
        for i, j, g in _each_pair(t, size, cls, max(hi, TIE_S)):
            tie = g < TIE_S
            np.add.at(n_tie, i[tie], 1)
            np.add.at(n_tie, j[tie], 1)
            w = (g >= lo) & (g <= hi)
            np.add.at(n_lead, i[w], 1)
            np.add.at(n_led, j[w], 1)
        # an original leads more frames than lead it or tie with it (its copies on every other
        # member); a copy is led at least as often as it leads; a tie cannot be ordered
        lab = np.full(sel.size, UNPAIRED, np.int8)
        lab[n_tie > 0] = TIED
        lab[(n_led > 0) & (n_led >= n_lead)] = COPY
        lab[n_lead > n_led + n_tie] = ORIGINAL
        label[sel] = lab
        leads[sel] = n_lead > 0
    return out


def attribution_scores(p: HomePackets, pr: Pairing) -> dict[str, Any]:
    """Per direction: of the real frames, how many it attributes to their device (recall); of
    the frames it attributes, how many are real (precision); the label counts."""
    out = {}
    att = pr.attributed
    for sign, dname in DIRS:
        m = p.direction == sign
        real = m & ~p.dummy
        a = m & att
        out[dname] = {"frames": int(m.sum()), "real": int(real.sum()), "attributed": int(a.sum()),
                      "real_attributed_fraction": round(float((a & real).sum() / real.sum()), 4) if real.any() else None,
                      "attributed_real_fraction": round(float((a & real).sum() / a.sum()), 4) if a.any() else None,
                      "labels": {name: int((m & (pr.label == k)).sum()) for k, name in enumerate(LABELS)},
                      "lag_window_s": pr.window.get(dname)}
    return out


# ---- per-item features from what it attributes

WINDOW_COLUMNS = [f"{d}_{c}" for d in ("out", "in") for c in (
    "frames", "attributed", "originals", "copies", "tied", "attr_bytes", "attr_size_mean", "attr_size_min",
    "attr_size_max", "attr_size_std", "attr_first_s", "attr_last_s", "lead_share")] + \
    ["attr_silence_before_s", "attr_silence_after_s"]
SILENCE_CAP_S = 86400.0


def _range_reduce(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, fn, empty: float) -> np.ndarray:
    """`fn` (a ufunc) reduced over `values[lo:hi]` per item; `empty` where the range is empty.
    Each item's own range: reducing from `lo` to the next item's start would reach into the
    frames between this item and the next of its class, which depend on the labels."""
    out = np.full(lo.size, empty, np.float64)
    ok = hi > lo
    if ok.any():
        # reduceat over (lo, hi) pairs reduces [lo, hi) at even positions; hi may be values.size,
        # so one value is appended to index it.
        bounds = np.stack([lo[ok], hi[ok]], 1).reshape(-1)
        out[ok] = fn.reduceat(np.append(values, values[-1]), bounds)[::2]
    return out


def item_features(p: HomePackets, pr: Pairing, cls: np.ndarray, start: np.ndarray, length: float) -> np.ndarray:
    """WINDOW_COLUMNS for items (windows or bins) of classes `cls` starting at `start` and lasting
    `length` s: computed from the frames of the item's device in [start, start + length)."""
    f = np.zeros((cls.size, len(WINDOW_COLUMNS)), np.float32)
    att = pr.attributed
    for c in np.unique(cls):
        items = np.flatnonzero(cls == c)
        s, e = start[items], start[items] + length
        dev = p.cls == c
        col = 0
        for sign, _ in DIRS:
            m = dev & (p.direction == sign)
            t = p.time[m]
            lab = pr.label[m]
            a = att[m]
            size = p.size[m]
            lo, hi = np.searchsorted(t, s, "left"), np.searchsorted(t, e, "left")
            cum = lambda v: np.concatenate([[0.0], np.cumsum(v, dtype=np.float64)])  # noqa: E731
            n_all = hi - lo
            ca, co, cc, ct = cum(a), cum(lab == ORIGINAL), cum(lab == COPY), cum(lab == TIED)
            n_a = ca[hi] - ca[lo]
            n_o, n_c, n_t = co[hi] - co[lo], cc[hi] - cc[lo], ct[hi] - ct[lo]
            ta, sa = t[a], size[a]
            alo, ahi = np.searchsorted(ta, s, "left"), np.searchsorted(ta, e, "left")
            cb, cb2 = cum(sa), cum(sa * sa)
            b = cb[ahi] - cb[alo]
            mean = np.where(n_a > 0, b / np.maximum(n_a, 1), 0.0)
            var = np.where(n_a > 0, (cb2[ahi] - cb2[alo]) / np.maximum(n_a, 1) - mean ** 2, 0.0)
            mn = _range_reduce(sa, alo, ahi, np.minimum, 0.0)
            mx = _range_reduce(sa, alo, ahi, np.maximum, 0.0)
            first = np.where(n_a > 0, ta[np.minimum(alo, max(ta.size - 1, 0))] - s if ta.size else 0.0, -1.0)
            last = np.where(n_a > 0, ta[np.maximum(ahi - 1, 0)] - s if ta.size else 0.0, -1.0)
            share = np.where(n_o + n_c > 0, n_o / np.maximum(n_o + n_c, 1), -1.0)
            for v in (n_all, n_a, n_o, n_c, n_t, b, mean, mn, mx, np.sqrt(np.maximum(var, 0)), first, last, share):
                f[items, col] = v
                col += 1
        ta = p.time[dev & att]
        lo, hi = np.searchsorted(ta, start[items], "left"), np.searchsorted(ta, start[items] + length, "left")
        before = np.where(lo > 0, start[items] - ta[np.maximum(lo - 1, 0)] if ta.size else 0.0, SILENCE_CAP_S)
        after = np.where(hi < ta.size, ta[np.minimum(hi, max(ta.size - 1, 0))] - (start[items] + length)
                         if ta.size else 0.0, SILENCE_CAP_S)
        f[items, col] = np.minimum(before, SILENCE_CAP_S)
        f[items, col + 1] = np.minimum(after, SILENCE_CAP_S)
    return f


def _active(f: np.ndarray) -> np.ndarray:
    a_out, a_in = WINDOW_COLUMNS.index("out_attributed"), WINDOW_COLUMNS.index("in_attributed")
    return (f[:, a_out] + f[:, a_in]) > 0


class _Base:
    """What the window and bin forms share: the pairing of every draw's frames (once per
    defense), the attacker's own kept items, and its report."""

    unit = "window"

    def __init__(self, ss) -> None:
        self.ss = ss
        self.feats: list[Optional[np.ndarray]] = []
        self.pairing: Optional[Pairing] = None
        self.att_scores: Optional[dict[str, Any]] = None
        self._pred: Optional[np.ndarray] = None
        self._tested: Optional[np.ndarray] = None
        self._d0: Optional[Dataset] = None

    def applies(self, draws: Sequence[Dataset]) -> bool:
        return all(d.packets is not None for d in draws[:max(1, self.ss.forest_draws)])

    def _items(self, d: Dataset):
        raise NotImplementedError

    def prepare(self, draws: Sequence[Dataset]) -> None:
        self.feats = []
        self._d0 = draws[0]
        for k, d in enumerate(draws[:max(1, self.ss.forest_draws)]):
            pr = shared_pairing(d, self.ss)
            if k == 0:
                self.pairing = pr
                self.att_scores = attribution_scores(d.packets, pr)
            cls, start, length = self._items(d)
            self.feats.append(item_features(d.packets, pr, cls, start, length))
        n0 = self._items(draws[0])[0].size
        self._pred = np.full(n0, -1, np.int64)
        self._tested = np.zeros(n0, bool)

    def kept(self, draws: Sequence[Dataset]) -> np.ndarray:
        return _active(self.feats[0])


class CrossDevice(_Base):
    """The cross-device attacker on the 4 s windows."""

    name = "cross_device"
    unit = "window"

    def _items(self, d: Dataset):
        return d.y, d.start, float(d.meta.get("windows_meta", {}).get("total_time", 4.0))

    def fit_predict(self, f: Fold) -> np.ndarray:
        fd = f.forest_draws()
        x_tr = np.concatenate([np.hstack([d.kfp[m], self.feats[k][m]]) for k, (d, m) in enumerate(fd)])
        y_tr = np.concatenate([d.y[m] for d, m in fd])
        d0 = f.draws[0]
        pred = kfp_fit_predict(x_tr, y_tr, np.hstack([d0.kfp[f.test], self.feats[0][f.test]]), f.seed + 7,
                               f.settings.kfp_iters)
        self._pred[f.test] = pred
        self._tested |= f.test
        return pred

    def report(self) -> dict[str, Any]:
        d0 = self._d0
        act = _active(self.feats[0])
        real = d0.real > 0
        t = self._tested
        tp = int((act & real & t).sum())
        on_real = t & real
        sc = scores(d0.y[on_real], self._pred[on_real], int(max(d0.y.max(initial=0) + 1, 1)), d0.start[on_real],
                    self.ss.seed + 17, self.ss.bootstrap) if on_real.any() else None
        return {"attribution": self.att_scores,
                "activity": {"tested_windows": int(t.sum()), "really_active": int((real & t).sum()),
                             "said_active": int((act & t).sum()),
                             "precision": round(tp / max(int((act & t).sum()), 1), 4),
                             "recall": round(tp / max(int((real & t).sum()), 1), 4)},
                "on_really_active_windows": None if sc is None else
                {"balanced_accuracy": sc["balanced_accuracy"], "ci95": sc["ci95"], "n": sc["n"],
                 "note": "scored on the tested windows that hold real packets (the truth selects them): "
                         "a diagnostic, not the attacker's score"}}


class CrossDeviceBins(_Base):
    """The cross-device attacker on the 15-minute bins: M_agg's aggregates plus the counts of
    what it attributes in the bin."""

    name = "cross_device_agg"
    unit = "bin"

    def _items(self, d: Dataset):
        return d.agg_y, d.agg_start, float(d.meta.get("agg_seconds", 900.0))

    def fit_predict(self, f: Fold) -> np.ndarray:
        bd = f.forest_draws(bins=True)
        x_tr = np.concatenate([np.hstack([d.agg[m], self.feats[k][m]]) for k, (d, m) in enumerate(bd)])
        y_tr = np.concatenate([d.agg_y[m] for d, m in bd])
        d0 = f.draws[0]
        return agg_fit_predict(x_tr, y_tr, np.hstack([d0.agg[f.bins_test], self.feats[0][f.bins_test]]), f.seed + 7,
                               f.settings.rf_trees)

    def report(self) -> dict[str, Any]:
        return {"lag_window_s": {k: v for k, v in (self.pairing.window.items() if self.pairing else ())}}


_PAIRINGS: dict[int, tuple[HomePackets, Pairing]] = {}


def shared_pairing(d: Dataset, ss) -> Pairing:
    """One pairing per draw's frames, shared by the window and bin forms (the data are the
    same): keyed by the frames object itself, so that new frames on the same dataset are paired
    again."""
    p = d.packets
    hit = _PAIRINGS.get(id(p))
    if hit is not None and hit[0] is p:
        return hit[1]
    pr = pair_frames(p, max_gap=ss.xdev_max_gap)
    if len(_PAIRINGS) >= 4:
        _PAIRINGS.pop(next(iter(_PAIRINGS)))
    _PAIRINGS[id(p)] = (p, pr)
    return pr
