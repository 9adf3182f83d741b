"""Feature attackers: k-FP-style gradient boosting on per-window features, M_agg (random forest
on 15-minute aggregates), and the cover-vs-real distinguisher (gradient boosting on the same
per-window features, or on aggregates for bins). All retrained per defense and fold."""

from __future__ import annotations

import numpy as np


def kfp_fit_predict(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, seed: int, iters: int = 200) -> np.ndarray:
    from sklearn.ensemble import HistGradientBoostingClassifier

    if x_te.shape[0] == 0:
        return np.zeros(0, np.int64)
    if np.unique(y_tr).size < 2:
        return np.full(x_te.shape[0], y_tr[0] if y_tr.size else 0, np.int64)
    m = HistGradientBoostingClassifier(max_iter=iters, learning_rate=0.1, class_weight="balanced",
                                       early_stopping=False, random_state=seed)
    return m.fit(x_tr, y_tr).predict(x_te).astype(np.int64)


def agg_fit_predict(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, seed: int, trees: int = 200) -> np.ndarray:
    from sklearn.ensemble import RandomForestClassifier

    if x_te.shape[0] == 0:
        return np.zeros(0, np.int64)
    if np.unique(y_tr).size < 2:
        return np.full(x_te.shape[0], y_tr[0] if y_tr.size else 0, np.int64)
    m = RandomForestClassifier(n_estimators=trees, class_weight="balanced", random_state=seed, n_jobs=1)
    return m.fit(np.nan_to_num(x_tr), y_tr).predict(np.nan_to_num(x_te)).astype(np.int64)


def distinguisher_fit_score(x_tr: np.ndarray, real_tr: np.ndarray, x_te: np.ndarray, seed: int,
                            iters: int = 100) -> np.ndarray | None:
    """P(real) for the test items; None when training holds only one kind (nothing to learn)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    if np.unique(real_tr).size < 2 or x_te.shape[0] == 0:
        return None
    m = HistGradientBoostingClassifier(max_iter=iters, learning_rate=0.1, class_weight="balanced",
                                       early_stopping=False, random_state=seed)
    return m.fit(x_tr, real_tr.astype(np.int64)).predict_proba(x_te)[:, 1]
