"""The cross-device attacker on hand-made homes (no binary needed), the per-device time folds, and
the evaluation's handling of a home the shipped model sets were not trained for."""

import json

import numpy as np
import pytest

pytest.importorskip("sklearn")

from ipet_train.attackers.crossdevice import (COPY, ORIGINAL, TIED, _active, attribution_scores,  # noqa: E402
                                             item_features, pair_frames)
from ipet_train.attackers.dataset import HomePackets  # noqa: E402
from ipet_train.attackers.folds import TimeFolds  # noqa: E402
from ipet_train.attackers.forest import kfp_fit_predict  # noqa: E402
from ipet_train.attackers.score import balanced_accuracy  # noqa: E402

@pytest.fixture(autouse=True)
def _one_thread():
    # OpenMP pools wider than the free cores spin (see evaluate.core): one thread, as the suite runs
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


SIZES = {0: [1460, 620, 88], 1: [310, 120], 2: [75, 75, 41]}  # each member's own outgoing frames


def mirrored_home(lag: float, seed: int = 0, members: int = 3, events: int = 400, leader_only: int | None = None):
    """A set of `members` devices whose real outgoing bursts (own sizes, own times) are copied
    onto every other member, each copy `lag` s after its original (the supersequence's mirrored
    cover, with a reaction lag). Incoming frames: none. Returns the frames and the burst starts
    with their sender. `leader_only`: only that member ever sends (the others only carry copies)."""
    rng = np.random.default_rng(seed)
    parts = {c: ([], [], []) for c in range(members)}
    starts, who = [], []
    t0 = 1.6e9
    for e in range(events):
        a = leader_only if leader_only is not None else int(rng.integers(members))
        t = t0 + e * 30.0 + rng.uniform(0, 5)
        starts.append(t)
        who.append(a)
        for k, s in enumerate(SIZES[a % 3]):
            ft = t + k * 0.004 + rng.uniform(0, 0.002)
            for c in range(members):
                parts[c][0].append(ft if c == a else ft + lag)
                parts[c][1].append(s)
                parts[c][2].append(c != a)
    hp = HomePackets.from_parts([(c, np.array(t), np.array(s, float), np.ones(len(t), np.int8), np.array(d))
                                 for c, (t, s, d) in parts.items()])
    return hp, np.array(starts), np.array(who)


def test_a_member_leading_by_1ms_is_found_and_its_frames_attributed():
    hp, _, _ = mirrored_home(0.001)
    pr = pair_frames(hp)
    lo, hi = pr.window["out"]
    assert lo <= 0.001 <= hi and hi - lo < 0.0005, pr.window
    real = ~hp.dummy
    assert (pr.label[real] == ORIGINAL).mean() > 0.99  # the frame that leads is the real one
    assert (pr.label[hp.dummy] == COPY).mean() > 0.99
    att = attribution_scores(hp, pr)["out"]
    assert att["real_attributed_fraction"] > 0.99 and att["attributed_real_fraction"] > 0.99
    # one member always sends, the others only mirror it: the leader is found, frame by frame
    hp, _, _ = mirrored_home(0.001, leader_only=1)
    pr = pair_frames(hp)
    leads = np.bincount(hp.cls[pr.label == ORIGINAL], minlength=3)
    assert leads[1] == (hp.cls == 1).sum() and leads[0] == leads[2] == 0


def _identify(hp: HomePackets, starts: np.ndarray, members: int = 3) -> tuple[float, float]:
    """Every member has a window at every burst start (copies or not, as the data plane's cutter
    makes them); identify the member from what the attacker attributes; the first half trains.
    Balanced accuracy on every tested window and on those the attacker keeps (where it attributes
    a frame: where it says the member really sends)."""
    pr = pair_frames(hp)
    cls = np.repeat(np.arange(members), starts.size)
    st = np.tile(starts, members)
    x = item_features(hp, pr, cls, st, 4.0)
    tr = st < np.median(starts)
    pred = kfp_fit_predict(x[tr], cls[tr], x[~tr], seed=0, iters=50)
    kept = _active(x[~tr])
    return (balanced_accuracy(cls[~tr], pred, members),
            balanced_accuracy(cls[~tr][kept], pred[kept], members) if kept.any() else float("nan"))


def test_with_a_lag_it_identifies_members_and_at_zero_lag_it_cannot_beat_chance():
    hp, starts, _ = mirrored_home(0.001)
    _, kept = _identify(hp, starts)
    assert kept > 0.95  # on the windows where it sees a member send, it names the member
    hp0, starts0, _ = mirrored_home(0.0)
    pr = pair_frames(hp0)
    assert pr.window["out"] is None
    assert (pr.label == TIED).all()  # identical copies: nothing to order
    assert attribution_scores(hp0, pr)["out"]["real_attributed_fraction"] == 0.0
    # every member's windows look the same: no classifier can beat chance within the set
    everything, kept = _identify(hp0, starts0)
    assert everything <= 1 / 3 + 0.02 and np.isnan(kept)


def test_undefended_frames_are_all_attributed():
    rng = np.random.default_rng(1)
    parts = [(c, np.sort(rng.uniform(0, 3600, 300)) + 1.6e9, rng.choice(SIZES[c], 300).astype(float),
              np.where(rng.random(300) < 0.5, 1, -1), np.zeros(300, bool)) for c in range(3)]
    hp = HomePackets.from_parts(parts)
    pr = pair_frames(hp)
    assert pr.attributed.mean() > 0.95


def test_folds_per_device_train_a_device_whose_history_starts_late():
    # device 0 recorded for 10 days, device 1 only in the last day (another home's captures)
    start = np.concatenate([1.6e9 + np.arange(0, 10 * 86400, 600.0), 1.6e9 + 9 * 86400 + np.arange(0, 86400, 600.0)])
    y = np.concatenate([np.zeros(1440, int), np.ones(144, int)])
    home = TimeFolds.over(start, 3)
    assert home.warnings(y, start, 4.0, 2)  # over the home's span it never trains on device 1
    dev = TimeFolds.over(start, 3, y)
    assert dev.by == "device" and dev.warnings(y, start, 4.0, 2) == []
    seen = np.zeros(start.size, int)
    for f in range(1, 4):
        tr, te = dev.split(f, start, 4.0, y)
        for c in (0, 1):
            assert tr[y == c].any() and te[y == c].any()
            assert start[tr & (y == c)].max() + 4.0 <= start[te & (y == c)].min()  # the device's own past
        seen += te
    assert (seen[dev.tested(start, y)] == 1).all() and (seen[~dev.tested(start, y)] == 0).all()


def test_rows_needing_another_homes_model_set_are_skipped_with_the_reason(tmp_path):
    from ipet_train.evaluate.core import model_set_gaps

    ms = tmp_path / "set"
    ms.mkdir()
    (ms / "manifest.json").write_text(json.dumps({"devices": [{"name": "blink-cam-01"}]}))
    rows = [{"key": "none", "params": {}}, {"key": "ipet-mix:set", "kind": "ipet", "params": {"models": str(ms)}},
            {"key": "t", "params": {"models": str(tmp_path / "absent")}}]
    gaps = model_set_gaps(rows, ["blink-cam-01", "HueBridge"])
    assert set(gaps) == {"ipet-mix:set", "t"}
    assert "HueBridge" in gaps["ipet-mix:set"] and "--ipet-models" in gaps["ipet-mix:set"]
    assert model_set_gaps(rows[:2], ["blink-cam-01"]) == {}


def test_the_suite_runs_it_behind_the_one_interface():
    """attack() with the cross-device attacker registered beside k-FP, on a hand-made home whose
    per-member windows (as a per-device attacker sees them) carry nothing: only the cross-device
    view names the member, and it scores itself on the windows where it sees the member send."""
    from ipet_train.attackers.crossdevice import CrossDevice
    from ipet_train.attackers.dataset import Dataset
    from ipet_train.attackers.registry import KFP
    from ipet_train.attackers.suite import SuiteSettings, attack

    hp, starts, who = mirrored_home(0.001)
    y = np.repeat(np.arange(3), starts.size)
    st = np.tile(starts, 3)
    n = y.size
    e = np.zeros(0)
    ds = Dataset(x=np.zeros((n, 40, 4), np.float32), silence=np.zeros(n, np.float32), y=y, start=st,
                 kfp=np.zeros((n, 37), np.float32), real=(np.tile(who, 3) == y).astype(np.int64),
                 agg=np.zeros((0, 10), np.float32), agg_transport=np.zeros((0, 20), np.float32),
                 agg_y=np.zeros(0, np.int64), agg_start=e, agg_real=np.zeros(0, np.int64),
                 meta={"windows_meta": {"total_time": 4.0}, "agg_seconds": 900.0}, packets=hp)
    ss = SuiteSettings(seq_models=[], kfp_iters=30, bootstrap=50, ablation=False)
    folds = TimeFolds.over(st, 2, y)
    out = attack([ds], folds, 3, 4.0, 900.0, ss, attackers=[KFP(), CrossDevice(ss)])
    a = out["attackers"]
    assert a["kfp"]["balanced_accuracy"] <= 0.34
    x = a["cross_device"]
    assert x["scored_on"] == "kept" and x["kept_by"] == "itself" and x["balanced_accuracy"] > 0.95
    assert x["attribution"]["out"]["real_attributed_fraction"] > 0.99
    assert x["activity"]["precision"] > 0.99 and x["activity"]["recall"] > 0.99
