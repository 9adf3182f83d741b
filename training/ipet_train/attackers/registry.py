"""The attackers of the suite behind the one interface (attackers.interface), and the one list
they are registered in (`registry`). Each is retrained from scratch per defense and fold."""

from __future__ import annotations

import numpy as np

from .forest import agg_fit_predict, distinguisher_fit_score, kfp_fit_predict
from .interface import Fold
from .sequence import fit_predict


def _cap(mask: np.ndarray, y: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    if cap <= 0:
        return mask
    out = np.zeros_like(mask)
    for c in np.unique(y[mask]):
        idx = np.flatnonzero(mask & (y == c))
        out[rng.choice(idx, cap, replace=False) if idx.size > cap else idx] = True
    return out


class KFP:
    """k-FP-style gradient boosting on the data plane's per-window features."""

    name = "kfp"
    unit = "window"

    def __init__(self) -> None:
        self.records: list = []

    def fit_predict(self, f: Fold) -> np.ndarray:
        fd = f.forest_draws()
        x_tr = np.concatenate([d.kfp[m] for d, m in fd])
        y_tr = np.concatenate([d.y[m] for d, m in fd])
        return kfp_fit_predict(x_tr, y_tr, f.draws[0].kfp[f.test], f.seed, f.settings.kfp_iters)


class Sequence:
    """An M_seq network (LSTM, CNN, ...) on the raw 40-slot windows and the silence scalar,
    trained on every draw (one per epoch in turn), at most `seq_max_per_device` windows per
    device and draw."""

    unit = "window"

    def __init__(self, kind: str) -> None:
        self.name = kind
        self.records: list = []

    def fit_predict(self, f: Fold) -> np.ndarray:
        ss = f.settings
        crng = np.random.default_rng(f.seed)
        capped = [_cap(m, d.y, ss.seq_max_per_device, crng) for d, m in zip(f.draws, f.train)]
        tr_sets = [(d.x[m], d.silence[m], d.y[m], d.start[m]) for d, m in zip(f.draws, capped)]
        d0 = f.draws[0]
        pr, rec = fit_predict(self.name, tr_sets, (d0.x[f.test], d0.silence[f.test]), f.n, ss.epochs, f.seed,
                              batch=ss.batch_size, patience=ss.patience, device=ss.device)
        rec["fold"] = f.index
        self.records.append(rec)
        return pr


class MAgg:
    """M_agg: a random forest on the 15-minute aggregates per direction (link observer), or on
    the real TCP aggregates alone (`transport_tcp_only`: the transport observer's row)."""

    name = "m_agg"
    unit = "bin"

    def __init__(self, transport_tcp_only: bool = False) -> None:
        self.transport_tcp_only = transport_tcp_only

    def features(self, d) -> np.ndarray:
        # agg_transport: [in_tcp(5), in_udp(5), out_tcp(5), out_udp(5)]; TCP only = what the
        # transport observer sees of real traffic untouched when all cover is UDP.
        if self.transport_tcp_only:
            return d.agg_transport[:, np.r_[0:5, 10:15]]
        return d.agg[:, np.arange(10)]

    def fit_predict(self, f: Fold) -> np.ndarray:
        bd = f.forest_draws(bins=True)
        x_tr = np.concatenate([self.features(d)[m] for d, m in bd])
        y_tr = np.concatenate([d.agg_y[m] for d, m in bd])
        return agg_fit_predict(x_tr, y_tr, self.features(f.draws[0])[f.bins_test], f.seed, f.settings.rf_trees)


class Distinguisher:
    """The cover-vs-real distinguisher: P(real) per tested window (gradient boosting on the
    per-window features) or per tested bin (on the aggregates of `bins`); None when the training
    items hold only one kind. With `drop`, the same refit without those feature columns."""

    def __init__(self, unit: str, bins: MAgg | None = None) -> None:
        self.unit = unit
        self.bins = bins

    def fit_score(self, f: Fold, drop=None) -> np.ndarray | None:
        if self.unit == "bin":
            bd = f.forest_draws(bins=True)
            x_tr = np.concatenate([self.bins.features(d)[m] for d, m in bd])
            r_tr = np.concatenate([d.agg_real[m] > 0 for d, m in bd])
            x_te = self.bins.features(f.draws[0])[f.bins_test]
        else:
            fd = f.forest_draws()
            x_tr = np.concatenate([d.kfp[m] for d, m in fd])
            r_tr = np.concatenate([d.real[m] > 0 for d, m in fd])
            x_te = f.draws[0].kfp[f.test]
        if drop is not None:
            cols = np.setdiff1d(np.arange(x_tr.shape[1]), drop)
            x_tr, x_te = x_tr[:, cols], x_te[:, cols]
        return distinguisher_fit_score(x_tr, r_tr, x_te, f.seed, f.settings.dist_iters)


def registry(ss, transport_tcp_only: bool = False, aggregates_only: bool = False) -> list:
    """Every attacker of the suite, in report order: the sequence networks, k-FP, the
    cross-device attacker on windows, M_agg, the cross-device attacker on bins. Attackers that
    need what a dataset does not hold (the cross-device ones: every device's packets) drop out
    per defense (`applies`)."""
    from .crossdevice import CrossDevice, CrossDeviceBins

    out: list = []
    if not aggregates_only:
        out += [Sequence(k) for k in ss.seq_models]
        out.append(KFP())
        if ss.cross_device:
            out.append(CrossDevice(ss))
    out.append(MAgg(transport_tcp_only))
    if ss.cross_device and not aggregates_only and not transport_tcp_only:
        out.append(CrossDeviceBins(ss))
    return out
