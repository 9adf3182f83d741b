"""Devices of the table that kept no packet are named with the reason: by the training's device
selection and by the evaluation's report (`ipet features` writes them as `dropped_devices`)."""

from __future__ import annotations

import json

from ipet_train.evaluate.report import dropped_device_notes
from ipet_train.settings import Settings
from ipet_train.train import train

TINY = dict(disc_epochs=3, training_stages=2, generator_epochs=1, adapt_epochs=1, retrain_epochs=2,
            progress=False)


def test_the_report_names_every_dropped_device_and_why():
    why = "only multicast/broadcast frames of it were seen (10 frames: discovery such as mDNS, SSDP or DHCP)"
    res = {"dropped_devices": [{"name": "speaker", "reason": "multicast_only", "why": why},
                               {"name": "ghost", "reason": "not_seen", "why": "no packet of it is in the captures"}]}
    text = "\n".join(dropped_device_notes(res))
    assert f"Not judged: speaker kept no packet (multicast_only): {why}." in text
    assert "Not judged: ghost kept no packet (not_seen)" in text
    assert dropped_device_notes({}) == []


def test_training_says_a_device_was_heard_only_announcing_itself(tmp_path, capsys):
    from conftest import fabricate_windows
    d = fabricate_windows(tmp_path / "w", per_device=(60, 0, 90))
    meta = json.loads((d / "windows.json").read_text())
    meta["dropped_devices"] = [{"id": 1, "name": meta["devices"][1]["name"], "reason": "multicast_only",
                                "lan_packets": 0, "multicast_packets": 10}]
    (d / "windows.json").write_text(json.dumps(meta))
    m = train(d, tmp_path / "m", Settings(**TINY))
    assert m["skipped_devices"] == [{"table_id": 1, "name": "hub-b", "windows": 0, "reason": "multicast_only",
                                     "lan_packets": 0, "multicast_packets": 10}]
    assert "only multicast/broadcast frames of it were seen (10 frames" in capsys.readouterr().err
