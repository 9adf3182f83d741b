"""The silence-only attacker: a histogram classifier on the silence scalar (seconds since the
device's previous packet) alone. Cover traffic never changes the silence, so no generator can hurt
it: training reports it as the floor under every defended row."""

from __future__ import annotations

import numpy as np


def silence_only_attacker(s_train: np.ndarray, y_train: np.ndarray, s_test: np.ndarray, n_classes: int,
                          bins: int = 60) -> np.ndarray:
    """Predictions of a histogram classifier on the silence scalar alone (quantile bins of
    log1p(silence) on the training windows, equal class priors). Cover traffic never changes the
    silence, so this is an attacker no generator can hurt: a floor for every defended row."""
    ls_tr, ls_te = np.log1p(s_train.astype(np.float64)), np.log1p(s_test.astype(np.float64))
    edges = np.unique(np.quantile(ls_tr, np.linspace(0, 1, bins + 1))[1:-1])
    b_tr, b_te = np.digitize(ls_tr, edges), np.digitize(ls_te, edges)
    hist = np.zeros((len(edges) + 1, n_classes))
    for c in range(n_classes):
        m = y_train == c
        if m.any():
            hist[:, c] = np.bincount(b_tr[m], minlength=len(edges) + 1) / m.sum()
    return hist[b_te].argmax(1)
