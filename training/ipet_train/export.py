"""ONNX export of generators (rounding included) and its verification with onnxruntime."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import torch

from .models import Generator, RoundedGenerator

INPUT_NAME = "z"
OUTPUT_NAME = "perturbation"
OPSET = 17
TIE_TOLERANCE = 1e-4


class ExportError(RuntimeError):
    pass


def export_generator(generator: Generator, path: str | Path) -> Path:
    """Export `round(generator(z))`: input `z` float32 [batch, latent], output `perturbation`
    float32 [batch, slots, 4] whole numbers in [0, cap]. The batch axis is dynamic."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    g = copy.deepcopy(generator).cpu().eval()
    wrapper = RoundedGenerator(g).eval()
    dummy = torch.zeros(2, g.latent_dim, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, (dummy,), str(path), dynamo=False, opset_version=OPSET,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )
    return path


def verify_generator(generator: Generator, path: str | Path, n: int = 512, seed: int = 1234) -> dict:
    """Run the ONNX file with onnxruntime against torch on random z (and a batch of 1).

    The rounded outputs must be equal, except where torch's unrounded value lies within 1e-4 of a
    .5 tie (float differences may legitimately round those either way): there they may differ by 1.
    Also checks shapes, names, whole numbers and the [0, cap] range."""
    import onnx
    import onnxruntime as ort

    path = Path(path)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    ops = {node.op_type for node in model.graph.node}
    if "Round" not in ops:
        raise ExportError(f"{path}: no Round node in the graph")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ins, outs = sess.get_inputs(), sess.get_outputs()
    if [i.name for i in ins] != [INPUT_NAME] or [o.name for o in outs] != [OUTPUT_NAME]:
        raise ExportError(f"{path}: io names {[i.name for i in ins]} -> {[o.name for o in outs]}")
    g = copy.deepcopy(generator).cpu().eval()
    caps = g.caps.numpy()
    rng = np.random.default_rng(seed)
    worst, ties = 0.0, 0
    for batch in (n, 1):
        z = rng.standard_normal((batch, g.latent_dim)).astype(np.float32)
        with torch.no_grad():
            raw = g(torch.from_numpy(z)).numpy()
        ref = np.round(raw)  # numpy rounds half to even, as torch.round and ONNX Round
        got = sess.run([OUTPUT_NAME], {INPUT_NAME: z})[0]
        if got.shape != (batch, g.slots, 4) or got.dtype != np.float32:
            raise ExportError(f"{path}: output {got.shape} {got.dtype}, expected ({batch}, {g.slots}, 4) float32")
        if not np.array_equal(got, np.round(got)):
            raise ExportError(f"{path}: output holds non-whole numbers")
        if (got < 0).any() or (got > caps).any():
            raise ExportError(f"{path}: output outside [0, caps={caps.tolist()}]")
        diff = np.abs(got - ref)
        near_tie = np.abs(np.abs(raw - np.floor(raw)) - 0.5) <= TIE_TOLERANCE
        bad = (diff > 0) & ~(near_tie & (diff <= 1.0))
        if bad.any():
            raise ExportError(f"{path}: onnxruntime differs from torch at {int(bad.sum())} values "
                              f"(max abs diff {float(diff.max())})")
        ties += int(((diff > 0) & near_tie).sum())
        worst = max(worst, float(diff.max()))
    return {"max_abs_diff": worst, "tie_differences": ties}


def generator_from_onnx(path: str | Path, latent_dim: int, slots: int, caps) -> Generator:
    """The generator whose weights an exported file holds (its dense layer's weight and bias)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    arrays = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    weight = [a for a in arrays.values() if a.shape == (slots * 4, latent_dim)]
    bias = [a for a in arrays.values() if a.shape == (slots * 4,) and a.dtype == np.float32]
    if len(weight) != 1 or len(bias) != 1:
        raise ExportError(f"{path}: cannot find one dense weight [{slots * 4}, {latent_dim}] and one bias "
                          f"[{slots * 4}] among {[(k, a.shape) for k, a in arrays.items()]}")
    g = Generator(latent_dim, slots, caps)
    with torch.no_grad():
        g.dense.weight.copy_(torch.from_numpy(weight[0].copy()))
        g.dense.bias.copy_(torch.from_numpy(bias[0].copy()))
    return g.eval()


def reexport_model_set(model_dir: str | Path, n: int = 4096, seed: int = 7) -> list[str]:
    """Re-exports every generator of a model set with the current exporter, in place: the same
    weights, and outputs that must be bit-identical to the old file's on `n` random inputs (else
    nothing is replaced). Returns the files rewritten."""
    import json
    import onnxruntime as ort

    model_dir = Path(model_dir)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    st = manifest["settings"]
    latent, slots, caps = st["latent_dim"], st["slots_per_window"], manifest["caps"][:4]
    z = np.random.default_rng(seed).standard_normal((n, latent)).astype(np.float32)
    staged = []
    for gen in manifest["generations"]:
        for rel in gen["files"].values():
            old = model_dir / rel
            g = generator_from_onnx(old, latent, slots, caps)
            new = old.with_name(old.name + ".new")
            export_generator(g, new)
            verify_generator(g, new)
            run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {INPUT_NAME: z})[0]
            if not np.array_equal(run(old), run(new)):
                for _, p in staged:
                    p.unlink(missing_ok=True)
                new.unlink(missing_ok=True)
                raise ExportError(f"{old}: the re-exported generator gives different outputs; nothing replaced")
            staged.append((old, new))
    for old, new in staged:
        new.replace(old)
    return [str(old) for old, _ in staged]
