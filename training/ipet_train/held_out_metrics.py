"""What training reports on its held-out windows: attacker scores, the silence-only attacker, and
the cover traffic's size next to the real traffic's."""

from __future__ import annotations


import numpy as np
import torch

from .attackers.score import scores  # noqa: F401  (the one scorer, shared with the evaluation)


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


def cover_stats(x_test: torch.Tensor, pert_test: torch.Tensor) -> dict[str, float]:
    real_p = float(x_test[..., [0, 2]].sum(-1).mean())
    real_b = float(x_test[..., [1, 3]].sum(-1).mean())
    cov_p = float(pert_test[..., [0, 2]].sum(-1).mean())
    cov_b = float(pert_test[..., [1, 3]].sum(-1).mean())
    return {
        "cover_packets_per_slot": cov_p, "cover_bytes_per_slot": cov_b,
        "real_packets_per_slot": real_p, "real_bytes_per_slot": real_b,
        "packet_overhead": cov_p / real_p if real_p > 0 else None,
        "byte_overhead": cov_b / real_b if real_b > 0 else None,
    }
