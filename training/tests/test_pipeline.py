"""`pipeline` on real captures through the Rust binary: the in-repo slice
(data/tj-oconnor-2021-slice, 12 hours of the 7 devices), so it runs wherever the repository is.
Without the binary it skips, which fails under IPET_TEST_STRICT=1 (CI)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ipet_train.ipet_binary import find_ipet_binary

TRAINING = Path(__file__).resolve().parents[1]
SLICE = TRAINING.parent / "data" / "tj-oconnor-2021-slice"


def _binary_or_skip():
    try:
        return find_ipet_binary()
    except FileNotFoundError as e:
        pytest.skip(f"ipet binary absent: {e}")


@pytest.mark.real_data
def test_pipeline_on_the_in_repo_slice(tmp_path):
    binary = _binary_or_skip()
    pcaps = sorted((SLICE / "pcaps").glob("*.pcap"))
    # Part of the repository, never skipped: a missing slice is a broken checkout.
    assert (SLICE / "devices.csv").is_file() and len(pcaps) == 7, f"the in-repo slice is incomplete: {SLICE}"
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({"max_windows_per_device": 150, "disc_epochs": 2, "training_stages": 1,
                               "generator_epochs": 1, "adapt_epochs": 1, "retrain_epochs": 1,
                               "progress": False}))
    out = tmp_path / "models"
    proc = subprocess.run([sys.executable, "-m", "ipet_train", "pipeline", "--config", str(cfg),
                           "--captures", *map(str, pcaps), "--devices", str(SLICE / "devices.csv"),
                           "--out", str(out), "--work", str(tmp_path / "work"), "--ipet-bin", str(binary)],
                          cwd=TRAINING, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    m = json.loads((out / "manifest.json").read_text())
    assert m["metrics"]["status"] == "complete"
    # every device of the slice has at least min_windows_per_device (10) windows: all are served
    assert [d["name"] for d in m["devices"]] == [p.stem for p in pcaps] and m["skipped_devices"] == []
    for rel in m["generations"][0]["files"].values():
        assert (out / rel).is_file()
    w = json.loads((tmp_path / "work" / "windows" / "windows.json").read_text())
    assert w["columns"] == ["in_packets", "in_bytes", "out_packets", "out_bytes"]
