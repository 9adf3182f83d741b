"""`pipeline` on the real captures through the Rust binary (skipped when either is absent)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ipet_train.ipet_binary import find_ipet_binary

TRAINING = Path(__file__).resolve().parents[1]
DATA = TRAINING.parent.parent / "shared" / "data" / "tj-oconnor-2021"


def _binary_or_skip():
    try:
        return find_ipet_binary()
    except FileNotFoundError as e:
        pytest.skip(f"ipet binary absent: {e}")


@pytest.mark.real_data
def test_pipeline_on_real_captures(tmp_path):
    binary = _binary_or_skip()
    if not (DATA / "devices.csv").is_file():
        pytest.skip(f"real captures absent: {DATA}")
    pcaps = sorted((DATA / "pcaps").glob("*.pcap"))[:3]
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({"max_windows_per_device": 150, "disc_epochs": 2, "training_stages": 1,
                               "generator_epochs": 1, "adapt_epochs": 1, "retrain_epochs": 1,
                               "progress": False}))
    out = tmp_path / "models"
    proc = subprocess.run([sys.executable, "-m", "ipet_train", "pipeline", "--config", str(cfg),
                           "--captures", *map(str, pcaps), "--devices", str(DATA / "devices.csv"),
                           "--out", str(out), "--work", str(tmp_path / "work"), "--ipet-bin", str(binary)],
                          cwd=TRAINING, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    m = json.loads((out / "manifest.json").read_text())
    assert m["metrics"]["status"] == "complete"
    names = {d["name"] for d in m["devices"]}
    assert names <= {p.stem for p in pcaps} and len(names) >= 2
    for rel in m["generations"][0]["files"].values():
        assert (out / rel).is_file()
    w = json.loads((tmp_path / "work" / "windows" / "windows.json").read_text())
    assert w["columns"] == ["in_packets", "in_bytes", "out_packets", "out_bytes"]
