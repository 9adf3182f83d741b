"""The windows directory written by `ipet windows` (the Rust data plane): read, checked, and written
(for tests and tools) in the same format."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

COLUMNS = ["in_packets", "in_bytes", "out_packets", "out_bytes"]
SCHEMA_VERSION = 1


class WindowsError(RuntimeError):
    """A windows directory is missing, malformed, or does not match the settings."""


@dataclass
class Windows:
    features: np.ndarray  # float32 [N, S, 4], raw counts / payload bytes
    silence: np.ndarray  # float32 [N], seconds
    labels: np.ndarray  # int64 [N], device id (index into meta["devices"])
    start_time: np.ndarray  # float64 [N], epoch seconds
    meta: dict[str, Any]  # windows.json

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    @property
    def slots(self) -> int:
        return int(self.features.shape[1])

    def subset(self, idx: np.ndarray) -> "Windows":
        return Windows(self.features[idx], self.silence[idx], self.labels[idx], self.start_time[idx], self.meta)


def load_windows(directory: str | Path) -> Windows:
    d = Path(directory)
    meta_path = d / "windows.json"
    if not meta_path.is_file():
        raise WindowsError(f"{d}: no windows.json (expected the output of `ipet windows --out {d}`)")
    meta = json.loads(meta_path.read_text())
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise WindowsError(f"{meta_path}: schema_version {meta.get('schema_version')!r}, expected {SCHEMA_VERSION}")
    if list(meta.get("columns", [])) != COLUMNS:
        raise WindowsError(f"{meta_path}: columns {meta.get('columns')!r}, expected {COLUMNS}")
    arrays = {}
    for name in ("features", "silence", "labels", "start_time"):
        p = d / f"{name}.npy"
        if not p.is_file():
            raise WindowsError(f"{d}: missing {name}.npy")
        arrays[name] = np.load(p, allow_pickle=False)
    f = arrays["features"].astype(np.float32, copy=False)
    n = f.shape[0]
    s = int(meta.get("slots_per_window", f.shape[1] if f.ndim == 3 else -1))
    if f.ndim != 3 or f.shape[2] != 4 or f.shape[1] != s:
        raise WindowsError(f"{d}/features.npy: shape {f.shape}, expected [N, {s}, 4]")
    for name in ("silence", "labels", "start_time"):
        if arrays[name].shape != (n,):
            raise WindowsError(f"{d}/{name}.npy: shape {arrays[name].shape}, expected [{n}]")
    labels = arrays["labels"].astype(np.int64, copy=False)
    n_dev = len(meta.get("devices", []))
    if n and (labels.min() < 0 or labels.max() >= n_dev):
        raise WindowsError(f"{d}/labels.npy: labels outside 0..{n_dev - 1}")
    if not np.isfinite(f).all() or (f < 0).any():
        raise WindowsError(f"{d}/features.npy: negative or non-finite values")
    return Windows(
        features=np.ascontiguousarray(f),
        silence=arrays["silence"].astype(np.float32, copy=False),
        labels=labels,
        start_time=arrays["start_time"].astype(np.float64, copy=False),
        meta=meta,
    )


def write_windows(directory: str | Path, features: np.ndarray, silence: np.ndarray, labels: np.ndarray,
                  start_time: np.ndarray, devices: Sequence[dict[str, Any]], total_time: float = 4.0,
                  omega: float = 0.1) -> Path:
    """Write a windows directory in the same format as `ipet windows` (used by tests and tools)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    np.save(d / "features.npy", np.asarray(features, dtype=np.float32))
    np.save(d / "silence.npy", np.asarray(silence, dtype=np.float32))
    np.save(d / "labels.npy", np.asarray(labels, dtype=np.int64))
    np.save(d / "start_time.npy", np.asarray(start_time, dtype=np.float64))
    devs = []
    for i, dev in enumerate(devices):
        dev = dict(dev)
        dev.setdefault("id", i)
        dev.setdefault("windows", int((np.asarray(labels) == dev["id"]).sum()))
        devs.append(dev)
    meta = {
        "schema_version": SCHEMA_VERSION,
        "total_time": float(total_time),
        "omega": float(omega),
        "slots_per_window": int(np.asarray(features).shape[1]),
        "columns": COLUMNS,
        "devices": devs,
        "stats": {"windows": int(len(labels))},
    }
    (d / "windows.json").write_text(json.dumps(meta, indent=2))
    return d
