"""Pieces of a model set on disk shared by both families (iPET generators, set targets): the
manifest's schema version, device ids, directory names, the ONNX and provenance sections, and
writing manifest.json atomically."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any, Optional

import torch

from . import __version__
from .export import INPUT_NAME, OPSET, OUTPUT_NAME

MANIFEST_SCHEMA_VERSION = 1


def device_ids(position: int, table_id: int) -> dict[str, int]:
    """The one definition of a served device's ids, shared with the Rust service (manifest.rs):
    `id` is the device's position in the manifest's `devices` (what every Rust command and the
    generators' class index use); `table_id` is its row in the device table (the windows' label),
    which differs once a device before it was skipped. `class_index` repeats `id` for readers of
    older manifests."""
    return {"id": int(position), "class_index": int(position), "table_id": int(table_id)}


def safe_dir_name(name: str) -> str:
    """A device or set name as a directory name inside the model set."""
    out = "".join("_" if ch in '/\\\0:' else ch for ch in name).strip()
    if out in ("", ".", ".."):
        raise ValueError(f"name {name!r} cannot be a directory name")
    return out


def onnx_section(latent_dim: int, slots: int) -> dict[str, Any]:
    return {"input": INPUT_NAME, "output": OUTPUT_NAME, "opset": OPSET, "rounded": True,
            "input_shape": ["batch", latent_dim], "output_shape": ["batch", slots, 4],
            "rounding": "half_to_even"}


def provenance(windows_dir: str | Path, windows_info: Optional[dict[str, Any]]) -> dict[str, Any]:
    return {"ipet_train": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "windows_dir": str(windows_dir), **(windows_info or {})}


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(out / "manifest.json")
