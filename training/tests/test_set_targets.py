"""The set-targets family: sets, the pad-to-target proxy, a smoke training run (synthetic windows
and the in-repo slice through `ipet windows`), its ONNX files and manifest, determinism."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from ipet_train.ipet_binary import find_ipet_binary
from ipet_train.targets.settings import TargetSettings, resolve_sets
from ipet_train.targets.train import TargetGenerator, pad_to_target, train_targets

TRAINING = Path(__file__).resolve().parents[1]
SLICE = TRAINING.parent / "data" / "tj-oconnor-2021-slice"
TINY = dict(stages=1, attacker_epochs=1, generator_epochs=1, retrain_epochs=1, min_steps=2, hidden=16,
            attackers="mlp,cnn", progress=False)

DEVICES = [{"name": n} for n in ("a", "b", "c", "d", "e")]


def test_sets_from_argument_or_table_and_their_errors():
    assert resolve_sets(DEVICES, "a,b;c,d,e") == [("set-1", ["a", "b"]), ("set-2", ["c", "d", "e"])]
    table = [{"name": "a", "set": "x"}, {"name": "b", "set": "x"}, {"name": "c", "set": "y"}, {"name": "d", "set": "y"}]
    assert resolve_sets(table, None) == [("x", ["a", "b"]), ("y", ["c", "d"])]
    for arg, needle in [("a,b;b,c,d,e", "in two sets"), ("a,b,c;d", "needs at least 2"), ("a,b;c,d", "in no set"),
                        ("a,b,zz;c,d,e", "'zz' is not in the windows")]:
        with pytest.raises(ValueError, match=needle):
            resolve_sets(DEVICES, arg)
    with pytest.raises(ValueError, match="give --sets"):
        resolve_sets(DEVICES, None)


def test_pad_to_target_pads_waits_and_leaks():
    real = torch.zeros(1, 6, 4)
    real[0, 0] = torch.tensor([3.0, 300.0, 0.0, 0.0])
    target = torch.ones(1, 6, 4) * torch.tensor([1.0, 100.0, 1.0, 50.0])
    # pure padding: observed is the larger of the two, the excess leaks at once
    obs, leak, wait, carry = pad_to_target(real, target, 0)
    assert torch.equal(obs, torch.maximum(real, target))
    assert leak[0].tolist() == [2.0, 200.0, 0.0, 0.0] and wait.sum() == 0
    # a budget of 5 slots: the excess waits for the next slots with room, nothing leaks
    obs, leak, wait, carry = pad_to_target(real, target, 5)
    assert torch.equal(obs, target) and leak.sum() == 0 and carry.sum() == 0
    assert wait[0, 0] == 2 + 1  # 2 packets wait one slot, then 1 more slot
    # a budget of 1 slot: what waited a slot and still has no room leaks
    obs, leak, wait, carry = pad_to_target(real, target, 1)
    assert leak[0, 0] == 1.0 and obs[0, 1, 0] == 2.0


def test_generator_never_asks_for_bytes_without_packets_and_stays_within_caps():
    torch.manual_seed(0)
    g = TargetGenerator(8, 40, [3, 50], [[60, 1200], [40, 1400]], hidden=16).eval()
    with torch.no_grad():
        g.out.weight.mul_(30.0)
        out = torch.round(g(torch.randn(256, 8))).numpy()
    caps = g.caps.numpy()
    assert caps.tolist() == [3, 3600, 50, 70000]
    assert (out >= 0).all() and (out <= caps).all()
    assert not ((out[..., [1, 3]] > 0) & (out[..., [0, 2]] == 0)).any()


def _train(windows, out, sets, seed=0):
    return train_targets(windows, out, TargetSettings(seed=seed, **TINY), sets=sets)


def test_smoke_run_writes_a_servable_set_targets_model(windows_dir, tmp_path):
    m = _train(windows_dir, tmp_path / "m", "cam-a,hub-b,lock-c")
    assert m["family"] == "set-targets" and m["metrics"]["status"] == "complete"
    assert [s["members"] for s in m["sets"]] == [["cam-a", "hub-b", "lock-c"]]
    assert {d["set"] for d in m["devices"]} == {"set-1"}
    files = m["generations"][0]["files"]
    assert set(files) == {"cam-a", "hub-b", "lock-c"} and len(set(files.values())) == 1
    caps = m["sets"][0]["caps"]
    assert m["caps"] == [m["settings"]["max_packets_per_omega"], m["settings"]["max_payload_per_omega"]] * 2
    assert all(c <= top for c, top in zip(caps, m["caps"]))
    sess = ort.InferenceSession(str(tmp_path / "m" / files["cam-a"]), providers=["CPUExecutionProvider"])
    (inp,), (outp,) = sess.get_inputs(), sess.get_outputs()
    assert (inp.name, outp.name) == ("z", "perturbation")
    z = np.random.default_rng(0).standard_normal((9, m["settings"]["latent_dim"])).astype(np.float32)
    got = sess.run(["perturbation"], {"z": z})[0]
    assert got.shape == (9, 40, 4) and np.array_equal(got, np.round(got))
    assert (got >= 0).all() and (got <= np.array(caps)).all()
    ev = m["metrics"]["sets"]["set-1"]
    assert set(ev["retrained"]) == {"mlp", "cnn"} and ev["proxy_costs"]["byte_overhead"] > 0
    # deterministic under the seed: the same run gives the same generator
    _train(windows_dir, tmp_path / "m2", "cam-a,hub-b,lock-c")
    a = (tmp_path / "m" / files["cam-a"]).read_bytes()
    b = (tmp_path / "m2" / files["cam-a"]).read_bytes()
    assert a == b



def test_ids_are_positions_and_a_skipped_device_keeps_its_table_row(tmp_path):
    """The one definition of device ids (model_set.device_ids), as for iPET model sets: a device
    skipped for too few windows is listed with its table row and why; the rest are numbered by
    position, their table row kept apart."""
    from conftest import fabricate_windows
    d = fabricate_windows(tmp_path / "w", per_device=(60, 90, 5, 70))
    m = _train(d, tmp_path / "m", "cam-a,hub-b,cam-a3")
    assert [(x["name"], x["id"], x["class_index"], x["table_id"]) for x in m["devices"]] == \
        [("cam-a", 0, 0, 0), ("hub-b", 1, 1, 1), ("cam-a3", 2, 2, 3)]
    assert m["skipped_devices"] == [{"table_id": 2, "name": "lock-c", "windows": 5, "reason": "too_few_windows"}]


def test_a_member_with_nothing_before_its_time_cut_is_a_clear_error(tmp_path):
    """Each device is cut at 70 % of its own span: a member seen only late still trains on its own
    past; one whose windows all start at one instant has nothing before its cut."""
    from conftest import fabricate_windows
    d = fabricate_windows(tmp_path / "w")
    start, labels = np.load(d / "start_time.npy"), np.load(d / "labels.npy")
    start[labels == 2] = 1.6e9 + 86400 * 0.9 + np.arange((labels == 2).sum()) * 60.0
    np.save(d / "start_time.npy", start)
    _train(d, tmp_path / "late", "cam-a,hub-b,lock-c")
    start[labels == 2] = 1.6e9 + 86400 * 0.9
    np.save(d / "start_time.npy", start)
    with pytest.raises(ValueError, match="set set-1: no windows before the time cut for lock-c"):
        _train(d, tmp_path / "m", "cam-a,hub-b,lock-c")

@pytest.mark.real_data
def test_set_targets_command_on_the_slice(tmp_path):
    try:
        binary = find_ipet_binary()
    except FileNotFoundError as e:
        pytest.skip(f"ipet binary absent: {e}")
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({**TINY, "max_windows_per_device": 40}))
    sets = "blink-cam-01,blink-cam-02,blink-cam-03;lockly-hub-01,schlage-lock-01,sifely-hub-01,ultraloq-hub-01"
    out = tmp_path / "sets"
    proc = subprocess.run([sys.executable, "-m", "ipet_train", "set-targets", "--config", str(cfg),
                           "--captures", str(SLICE / "pcaps"), "--devices", str(SLICE / "devices.csv"),
                           "--sets", sets, "--out", str(out), "--ipet-bin", str(binary)],
                          cwd=TRAINING, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    m = json.loads((out / "manifest.json").read_text())
    assert [len(s["members"]) for s in m["sets"]] == [3, 4]
    # caps come from each set's own traffic: the cameras' byte caps dwarf the hubs'
    cams, hubs = m["sets"][0]["caps"], m["sets"][1]["caps"]
    assert cams[3] > 10 * hubs[3]
    for rel in set(m["generations"][0]["files"].values()):
        assert (out / rel).is_file()
    # a bad set is a clear error, not a traceback
    bad = subprocess.run([sys.executable, "-m", "ipet_train", "set-targets", "--config", str(cfg),
                          "--windows", str(tmp_path / "nowhere"), "--sets", "blink-cam-01", "--out", str(out)],
                         cwd=TRAINING, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "error:" in bad.stderr and "Traceback" not in bad.stderr
