"""Reaction-lag rows of the evaluation: the variants' flags, the lag axis and the lag plot."""
from pathlib import Path

import pytest

from ipet_train.evaluate import report
from ipet_train.evaluate.defenses import variant_args


def test_variants_take_release_flags_and_the_supersequences_knobs():
    flags, release, knobs = variant_args("deployment=ap,lag=software-shaper,held-release,mirror-all")
    assert flags == ["--deployment", "ap", "--lag", "software-shaper", "--held-release", "--mirror-all"]
    assert release == {"deployment": "ap", "lag": "software-shaper", "held_release": True, "mirror_all": True}
    assert knobs == {}
    # A lag implies the bridge, as ipet simulate decides; mirroring alone does not.
    assert variant_args("lag=2ms")[1]["deployment"] == "bridge"
    assert "deployment" not in variant_args("mirror-all")[1]
    flags, release, knobs = variant_args("mirror-all,align=1,latency-budget=1")
    assert knobs == {"align": 1.0, "latency_budget": 1.0} and flags[-4:] == ["--align", "1", "--latency-budget", "1"]
    for bad in ("align=soon", "lagg=2ms"):
        with pytest.raises(ValueError):
            variant_args(bad)


def test_lags_are_read_in_milliseconds():
    assert report.lag_ms({}) == 0.0
    assert report.lag_ms({"lag": "2ms"}) == 2.0
    assert report.lag_ms({"lag": "150us"}) == pytest.approx(0.15)
    assert report.lag_ms({"lag": "software-shaper"}) == report.PRESET_MEDIAN_MS["software-shaper"]
    assert report.lag_ms({"lag": "{\"bins\": []}"}) is None
    assert report.lag_family({"deployment": "bridge", "lag": "2ms", "held_release": True, "mirror_all": True}) \
        == "bridge, held-release, mirror-all"


def test_the_lag_plot_is_drawn_from_supersequence_rows(tmp_path: Path):
    def row(key, release, ba):
        return {"key": key, "kind": "set", "label": key, "params": {"defense": "supersequence", "release": release},
                "release": release, "max_attacker_ba": ba, "max_attacker_ci95": [ba - 0.01, ba + 0.01],
                "set_floor": 0.286}
    summary = {"chance": 0.143, "defenses": [
        {"key": "none", "kind": "none", "label": "undefended", "params": {}, "max_attacker_ba": 0.7},
        row("supersequence", {}, 0.29),
        row("lag", {"deployment": "bridge", "lag": "2ms"}, 0.69),
        row("held", {"deployment": "bridge", "lag": "2ms", "held_release": True, "mirror_all": True}, 0.29)]}
    report._lag_plot(summary, tmp_path)
    assert (tmp_path / report.LAG_PLOT).stat().st_size > 10_000
    # Fewer than three lag rows: no plot.
    summary["defenses"] = summary["defenses"][:2]
    (tmp_path / "none").mkdir()
    report._lag_plot(summary, tmp_path / "none")
    assert not (tmp_path / "none" / report.LAG_PLOT).exists()


def test_summary_rows_spell_out_deployment_and_lag(tmp_path: Path):
    import json

    from ipet_train.evaluate.core import _deployment_and_lag, attach_wire
    assert _deployment_and_lag({"kind": "set", "params": {}}) == {"deployment": "ideal", "lag": "0"}
    assert _deployment_and_lag({"kind": "set", "params": {"release": {"lag": "2ms"}}}) == \
        {"deployment": "bridge", "lag": "2ms"}
    assert _deployment_and_lag({"kind": "set", "params": {"release": {"deployment": "ap", "held_release": True}}}) == \
        {"deployment": "ap", "lag": "software-shaper"}
    assert _deployment_and_lag({"kind": "ipet", "params": {}}) == {}
    wire = tmp_path / "wire.json"
    wire.write_text(json.dumps({"observer": "taps", "rows": [{"source": "wire", "run": "bridge-pass-through"}]}))
    s = attach_wire({"defenses": []}, wire)
    assert s["wire"]["rows"][0]["source"] == "wire" and s["defenses"] == []
