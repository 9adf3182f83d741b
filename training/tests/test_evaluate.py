"""`evaluate`: unit checks of its pieces, and a smoke run on the in-repo capture slice through the
Rust simulator (skipped when the binary is absent) that checks the report's shape."""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from ipet_train.evaluate.core import active_overheads, aggregate_rows, defense_list, EvalSettings, scores  # noqa: E402
from ipet_train.evaluate.packets import align_transport  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SLICE = ROOT / "data" / "tj-oconnor-2021-slice"
MODELS = ROOT / "models" / "tj-oconnor-2021"


def test_aggregates_per_bin_direction_transport():
    t = np.array([0.0, 1.0, 2.0, 10.0, 905.0, 906.0])
    d = np.array([1, 1, -1, 1, -1, -1])
    z = np.array([10.0, 30.0, 5.0, 100.0, 7.0, 9.0])
    udp = np.array([False, False, False, True, True, True])
    bins, f = aggregate_rows(t, d, z, udp, origin=0.0, bin_s=900.0)
    assert bins.tolist() == [0, 1] and f.shape == (2, 20)
    # bin 0, out/tcp: 2 packets, mean 20, min 10, max 30, duration 1
    assert f[0, 0:5].tolist() == [2, 20, 10, 30, 1]
    assert f[0, 5:10].tolist() == [1, 100, 100, 100, 0]  # out/udp
    assert f[0, 10:15].tolist() == [1, 5, 5, 5, 0]  # in/tcp
    assert f[1, 15:20].tolist() == [2, 8, 7, 9, 1]  # in/udp


def test_active_overheads_count_only_cover_inside_periods():
    rows = np.array([[1, 0, 100, 0.0], [1, 1, 50, 1.0], [-1, 0, 100, 2.0], [1, 1, 50, 100.0]], dtype=float)
    a = active_overheads(rows, gap=5.0)
    assert a["out"]["dummy_packets"] == 1 and a["total"]["byte_overhead"] == 50 / 200
    assert a["active_time_s"] == pytest.approx(7.0)


def test_scores_and_alignment():
    s = scores(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 3)
    assert s["balanced_accuracy"] == pytest.approx(0.75) and s["per_device_recall"][2] is None
    assert s["confusion"] == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]
    pk = {"dir": np.array([1, -1, 1]), "size": np.array([5.0, 6.0, 7.0]), "udp": np.array([True, False, False])}
    u = align_transport(np.array([-1, 1, 1]), np.array([6.0, 5.0, 7.0]), np.array([1.5, 1.0, 3.0]), pk)
    assert u.tolist() == [False, True, False]
    assert align_transport(np.array([1]), np.array([5.0]), np.array([0.0]), pk) is None


def test_defense_list_has_every_generation_mix_and_baseline_curves():
    keys = [d["key"] for d in defense_list(EvalSettings(rates=[0.1, 1.0]), 3)]
    assert keys[:5] == ["none", "ipet-0", "ipet-1", "ipet-2", "ipet-mix"]
    assert "random+@0.1" in keys and "constant@1" in keys and len(keys) == 5 + 6


def test_evaluate_smoke_on_the_slice(tmp_path):
    from ipet_train.cli import main
    from ipet_train.evaluate.core import find_simulate_binary
    from ipet_train.evaluate.report import PLOTS, REPORT_SECTIONS

    try:
        binary = find_simulate_binary()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    if not (SLICE / "devices.csv").is_file() or not (MODELS / "manifest.json").is_file():
        pytest.skip("slice or model set absent")
    out = tmp_path / "report"
    rc = main(["evaluate", "--captures", str(SLICE / "pcaps"), "--devices", str(SLICE / "devices.csv"),
               "--models", str(MODELS), "--out", str(out), "--ipet-bin", str(binary), "--rates", "0.01",
               "--epochs", "1", "--rf-trees", "10", "--max-train-windows", "150", "--max-test-windows", "150",
               "--seed", "0"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    for k in ("settings", "model_set", "devices", "chance", "split", "defenses", "timing", "command"):
        assert k in res, k
    n = len(res["devices"])
    assert res["chance"] == pytest.approx(1 / n)
    n_gen = res["model_set"]["generations"]
    keys = [r["key"] for r in res["defenses"]]
    assert keys[0] == "none" and "ipet-mix" in keys and sum(k.startswith("ipet-") for k in keys) == n_gen + 1
    assert {"constant@0.01", "random@0.01", "random+@0.01"} <= set(keys)
    for r in res["defenses"]:
        for att in ("static", "retrained", "m_agg"):
            s = r[att]
            assert 0.0 <= s["balanced_accuracy"] <= 1.0
            assert len(s["per_device_recall"]) == n and np.array(s["confusion"]).shape == (n, n)
        if r["key"] != "none":
            c = r["costs"]["total"]
            assert c["byte_overhead"] > 0 and c["packet_overhead"] > 0
            assert "active_byte_overhead" in c and "mean_s" in r["costs"]["latency"]
    for r in res["defenses"]:
        if r["kind"] == "ipet":
            assert r["costs"]["latency"]["max_s"] == 0.0
    md = (out / "report.md").read_text()
    for sec in REPORT_SECTIONS:
        assert sec in md, sec
    for p in PLOTS:
        assert (out / p).stat().st_size > 1000, p
