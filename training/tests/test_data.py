import json

import numpy as np
import pytest

from ipet_train.data import COLUMNS, WindowsError, load_windows
from ipet_train.ipet_binary import find_ipet_binary
from ipet_train.training_windows import cap_per_device, make_split


def test_load_fabricated(windows_dir):
    w = load_windows(windows_dir)
    assert w.features.shape == (190, 40, 4) and w.features.dtype == np.float32
    assert w.meta["columns"] == COLUMNS
    assert w.labels.dtype == np.int64


def test_load_rejects_wrong_columns(windows_dir):
    meta = json.loads((windows_dir / "windows.json").read_text())
    meta["columns"] = ["out_packets", "out_bytes", "in_packets", "in_bytes"]
    (windows_dir / "windows.json").write_text(json.dumps(meta))
    with pytest.raises(WindowsError, match="columns"):
        load_windows(windows_dir)


def test_load_rejects_missing_dir(tmp_path):
    with pytest.raises(WindowsError, match="windows.json"):
        load_windows(tmp_path)


def test_time_split_is_the_evaluations_rule_cut_per_device(windows_dir):
    from ipet_train.attackers.folds import TimeFolds

    w = load_windows(windows_dir)
    sp = make_split(w, range(3), "time", 0.7, 0.15, np.random.default_rng(0))
    assert not (set(sp.train) & set(sp.test)) and not (set(sp.val) & set(sp.test))
    fit = np.concatenate([sp.train, sp.val])
    # per device: every window of a device that trains ends before any held-out window of it starts
    for c in range(3):
        f, t = fit[w.labels[fit] == c], sp.test[w.labels[sp.test] == c]
        assert w.start_time[f].max() + w.meta["total_time"] <= w.start_time[t].min()
    is_tr, is_te = TimeFolds.holdout(w.start_time, w.meta["total_time"], 0.7, groups=w.labels)
    assert sorted(fit) == list(np.flatnonzero(is_tr)) and list(sp.test) == list(np.flatnonzero(is_te))
    assert 0.6 < len(fit) / w.n < 0.8
    for c in range(3):
        assert (w.labels[sp.test] == c).sum() > 0 and (w.labels[sp.val] == c).sum() > 0


def test_random_split_is_stratified(windows_dir):
    w = load_windows(windows_dir)
    sp = make_split(w, range(3), "random", 0.7, 0.0, np.random.default_rng(0))
    assert len(sp.val) == 0
    for c in range(3):
        assert (w.labels[sp.test] == c).sum() > 0


def test_cap_per_device(windows_dir):
    w = load_windows(windows_dir)
    idx = cap_per_device(w, 45, np.random.default_rng(0))
    assert np.bincount(w.labels[idx]).tolist() == [45, 45, 40]


def test_missing_binary_message(monkeypatch, tmp_path):
    monkeypatch.setenv("IPET_BIN", str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="IPET_BIN"):
        find_ipet_binary()
    exe = tmp_path / "ipet"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("IPET_BIN", str(exe))
    assert find_ipet_binary() == exe
