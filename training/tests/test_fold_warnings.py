"""Fold warnings cover the 15-minute bins too (another home's captures, docs/evaluation/other-home.md)."""

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ipet_train.attackers.folds import TimeFolds  # noqa: E402
from ipet_train.evaluate.core import fold_training_warnings  # noqa: E402


def test_short_session_device_warned_for_bins_not_windows():
    # device 0: a day of traffic; device 1: one 15-minute session (as IoT Sentinel's setup captures),
    # whose windows span 4 folds but whose bins (aligned to multiples of 900 s) never end before a test block
    t0 = 1_471_453_200.0 + 100.0  # 100 s into a bin: its second bin starts in the session's last block
    w0 = t0 + np.arange(0, 86_400, 60.0)
    w1 = t0 + np.arange(0, 935, 4.0)
    start = np.concatenate([w0, w1])
    y = np.concatenate([np.zeros(w0.size, np.int64), np.ones(w1.size, np.int64)])
    b0 = np.unique((w0 // 900) * 900)
    b1 = np.unique((w1 // 900) * 900)
    agg_y = np.concatenate([np.zeros(b0.size, np.int64), np.ones(b1.size, np.int64)])
    und = SimpleNamespace(y=y, start=start, agg_y=agg_y, agg_start=np.concatenate([b0, b1]))
    folds = TimeFolds.over(start, 3, y)
    assert folds.warnings(y, start, 4.0, 2) == []  # the windows alone look fine
    ws = fold_training_warnings(folds, und, ["day", "short"], 4.0, 900.0)
    assert ws and all(w["device"] == "short" and w["unit"] == "15-minute bins" for w in ws)
    assert [w["fold"] for w in ws] == [3] and ws[0]["tested"] == 1
