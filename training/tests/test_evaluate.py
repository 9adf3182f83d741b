"""`evaluate` and the attacker suite: the split, the scorer, and a smoke run on the in-repo capture
slice through the Rust data plane (skipped when the binary is absent, a failure under
IPET_TEST_STRICT=1) that checks the report's shape and that the same seed gives the same summary."""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from ipet_train.attackers.folds import TimeFolds  # noqa: E402
from ipet_train.attackers.score import auc, auc_scores, balanced_accuracy, scores  # noqa: E402
from ipet_train.evaluate.defenses import defense_list  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SLICE = ROOT / "data" / "tj-oconnor-2021-slice"


def test_time_folds_train_on_the_past_and_test_every_later_window_once():
    start = np.arange(0.0, 100.0, 1.0)
    f = TimeFolds.over(start, 3)
    assert f.folds == 3 and f.edges[0] == 0.0
    seen = np.zeros(start.size, int)
    for i in range(1, 4):
        tr, te = f.split(i, start, 4.0)
        assert (start[tr] + 4.0 <= start[te].min()).all()  # training windows end before the test block
        seen += te
    assert (seen[f.tested(start)] == 1).all() and (seen[~f.tested(start)] == 0).all()
    assert f.tested(start).sum() == 75  # block 0 (a quarter) only trains
    with pytest.raises(ValueError):
        f.split(0, start, 4.0)


def test_scores_balanced_accuracy_and_cluster_bootstrap():
    y = np.array([0, 0, 0, 0, 1, 1])
    p = np.array([0, 0, 1, 1, 1, 1])
    assert balanced_accuracy(y, p, 3) == pytest.approx(0.75)
    s = scores(y, p, 3, start=np.array([0, 10, 4000, 4010, 0, 4000.0]), seed=1, draws=500)
    assert s["balanced_accuracy"] == 0.75 and s["per_device_recall"] == [0.5, 1.0, None]
    lo, hi = s["ci95"]
    # device 0 has two hour-clusters (both right, both wrong): its recall is 0, 0.5 or 1 per draw
    assert lo == pytest.approx(0.5) and hi == pytest.approx(1.0)
    assert s["confusion"] == [[2, 2, 0], [0, 2, 0], [0, 0, 0]]


def test_auc_counts_ties_half_and_has_an_interval():
    assert auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert auc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5
    assert np.isnan(auc(np.array([1, 1]), np.array([0.1, 0.2])))
    rng = np.random.default_rng(0)
    truth = rng.random(400) < 0.5
    a = auc_scores(truth, truth + rng.normal(0, 1, 400), np.zeros(400, int), np.arange(400) * 60.0)
    assert 0.6 < a["auc"] < 0.9 and a["ci95"][0] < a["auc"] < a["ci95"][1]


def test_defense_list_has_every_family(tmp_path):
    tf = tmp_path / "t.json"
    tf.write_text(json.dumps({"defenses": [{"key": "t1", "label": "T1", "params": {}, "simulate_args": ["--defense", "targets"]}]}))
    keys = [d["key"] for d in defense_list(["models/a"], ["constant"], [0.1, 1.0], 10.0, None, 3, True, [1.0], ["t1"], str(tf))]
    assert keys == ["none", "ipet-mix:a", "constant@0.1", "constant@1", "supersequence", "supersequence-all",
                    "regulator@lb1", "t1"]
    with pytest.raises(ValueError):
        defense_list([], [], [], 10.0, None, 3, False, [], ["nope"], str(tf))


def _binary_with_features():
    """The ipet binary (skips without one, which fails under IPET_TEST_STRICT=1); one whose
    `simulate` lacks --features is a stale build and fails: it is not this checkout's."""
    import subprocess

    from ipet_train.ipet_binary import find_ipet_binary
    try:
        b = find_ipet_binary()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    h = subprocess.run([str(b), "simulate", "--help"], capture_output=True, text=True).stdout
    assert "--features" in h, f"{b}: `simulate` has no --features: a stale build, rebuild it (cargo build)"
    return b


def test_evaluate_smoke_on_the_slice(tmp_path):
    from ipet_train.cli import main
    from ipet_train.evaluate.report import PLOTS, REPORT_SECTIONS

    binary = _binary_with_features()
    assert (SLICE / "devices.csv").is_file(), f"the in-repo slice is missing: {SLICE}"
    args = ["evaluate", "--captures", str(SLICE / "pcaps"), "--devices", str(SLICE / "devices.csv"),
            "--ipet-bin", str(binary), "--seed", "3", "--folds", "2", "--draws", "2", "--epochs", "1",
            "--kfp-iters", "20", "--dist-iters", "20", "--rf-trees", "20", "--bootstrap", "50",
            "--ipet-models", str(ROOT / "models" / "tj-oconnor-2021"), "--baselines", "constant", "--rates", "1",
            "--regulator-budgets", "--targets", "--no-all-in-one", "--seq-models", "cnn", "--device", "cpu",
            "--threads", "1"]
    out = tmp_path / "a"
    assert main(args + ["--out", str(out)]) == 0
    summ = json.loads((out / "summary.json").read_text())
    res = json.loads((out / "results.json").read_text())
    n = len(summ["devices"])
    assert n == 7 and summ["chance"] == pytest.approx(1 / 7)
    keys = [r["key"] for r in summ["defenses"]]
    assert keys == ["none", "ipet-mix:tj-oconnor-2021", "constant@1", "supersequence"]
    for r in summ["defenses"]:
        # the cross-device attacker runs where it has every device's frames: undefended and the
        # set defenses (a per-device defense makes no cross-device copies)
        xdev = {"cross_device", "cross_device_agg"} if r["kind"] in ("none", "set") else set()
        assert set(r["attackers"]) == {"cnn", "kfp", "m_agg"} | xdev
        assert ("cross_device" in r) == bool(xdev)
        for a in r["attackers"].values():
            lo, hi = a["ci95"]
            assert 0 <= lo <= a["balanced_accuracy"] <= hi <= 1
        assert r["max_attacker_ba"] == max(a["balanced_accuracy"] for a in r["attackers"].values())
        if r["kind"] != "none":
            assert r["byte_overhead"] > 0 and r["packet_overhead"] > 0 and r["latency_p99_s"] >= 0
    sup = summ["defenses"][-1]
    assert sup["kind"] == "set" and 0 < sup["set_floor"] < 1
    # the defended rows carry cover-only windows the distinguisher is scored on
    assert any(r["windows"]["tested_cover_only"] > 0 for r in res["defenses"][1:])
    assert res["peak_disk_bytes"] > 0 and summ["transport_observer"]["m_agg"]["balanced_accuracy"] is not None
    md = (out / "report.md").read_text()
    for sec in REPORT_SECTIONS:
        assert sec in md, sec
    for p in PLOTS:
        assert (out / p).stat().st_size > 1000, p
    assert "wire" not in summ
    # same seed, same summary; the testbed's rows attached where given
    out2 = tmp_path / "b"
    wire = ROOT / "docs" / "evaluation" / "wire-summary.json"
    assert main(args + ["--out", str(out2), "--only", "constant@1", "--wire-summary", str(wire)]) == 0
    again = json.loads((out2 / "summary.json").read_text())
    assert again["defenses"] == [summ["defenses"][0], summ["defenses"][2]]
    assert again["wire"]["rows"] == json.loads(wire.read_text())["rows"]
