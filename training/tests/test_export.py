import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from ipet_train.export import ExportError, export_generator, verify_generator
from ipet_train.models import Generator


def _gen(seed=0, scale=1.0, caps=(4, 100, 4, 100)):
    torch.manual_seed(seed)
    g = Generator(20, 40, caps)
    with torch.no_grad():
        g.dense.weight.mul_(scale)
    return g.eval()


@pytest.mark.parametrize("scale", [1.0, 20.0])
def test_export_round_trip(tmp_path, scale):
    g = _gen(scale=scale)
    path = export_generator(g, tmp_path / "dev" / "g0.onnx")
    report = verify_generator(g, path)
    assert report["max_abs_diff"] <= 1.0

    model = onnx.load(str(path))
    assert model.opset_import[0].version == 17
    assert "Round" in {n.op_type for n in model.graph.node}
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert inp.name == "z" and inp.shape[1] == 20 and isinstance(inp.shape[0], str)  # dynamic batch
    assert out.name == "perturbation"
    for batch in (1, 7, 300):
        z = np.random.default_rng(batch).standard_normal((batch, 20)).astype(np.float32)
        got = sess.run(["perturbation"], {"z": z})[0]
        assert got.shape == (batch, 40, 4) and got.dtype == np.float32
        assert np.array_equal(got, np.round(got))
        assert (got >= 0).all() and (got <= np.array([4, 100, 4, 100])).all()
        with torch.no_grad():
            raw = g(torch.from_numpy(z)).numpy()
        # unrounded values agree to 1e-4, so rounded ones agree except at exact .5 ties
        near_tie = np.abs(np.abs(raw - np.floor(raw)) - 0.5) <= 1e-4
        assert np.array_equal(got[~near_tie], np.round(raw)[~near_tie])


def test_rounding_is_half_to_even(tmp_path):
    """Outputs exactly at .5 round to even in torch and ONNX alike (caps 1 -> sigmoid(0) * 1 = 0.5)."""
    g = Generator(4, 40, (1, 5, 1, 5))
    with torch.no_grad():
        g.dense.weight.zero_()
        g.dense.bias.zero_()  # sigmoid(0) = 0.5 -> 0.5 and 2.5 -> round half to even: 0 and 2
    path = export_generator(g, tmp_path / "g.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(["perturbation"], {"z": np.zeros((2, 4), np.float32)})[0]
    assert np.all(got[..., [0, 2]] == 0) and np.all(got[..., [1, 3]] == 2)
    verify_generator(g, path)


def test_verify_detects_a_mismatch(tmp_path):
    g = _gen(0)
    path = export_generator(g, tmp_path / "g.onnx")
    other = _gen(1)
    with pytest.raises(ExportError, match="differs"):
        verify_generator(other, path)


def test_reexport_keeps_every_output_and_broadcasts_caps_over_whole_rows(tmp_path):
    import json
    from ipet_train.export import reexport_model_set

    g = _gen(seed=3)
    path = export_generator(g, tmp_path / "dev" / "g0.onnx")
    manifest = {"settings": {"latent_dim": 20, "slots_per_window": 40}, "caps": [4, 100, 4, 100],
                "generations": [{"index": 0, "files": {"dev": "dev/g0.onnx"}}]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    z = np.random.default_rng(0).standard_normal((257, 20)).astype(np.float32)
    before = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"z": z})[0]
    assert reexport_model_set(tmp_path) == [str(path)]
    after = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"z": z})[0]
    assert np.array_equal(before, after)
    graph = onnx.load(str(path)).graph
    ops = [n.op_type for n in graph.node]
    # The caps multiply the flat [batch, slots*4] output, before the reshape.
    assert ops.index("Mul") < ops.index("Reshape")
