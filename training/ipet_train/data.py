"""The windows directory written by `ipet windows` (the Rust data plane), splits, and the binary."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

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


@dataclass
class Split:
    train: np.ndarray  # indices into Windows, used to fit (minus val)
    val: np.ndarray  # indices, early stopping / LR schedule (part of the training portion)
    test: np.ndarray  # held-out indices, only for metrics


def make_split(w: Windows, classes: Sequence[int], how: str, train_fraction: float, val_fraction: float,
               rng: np.random.Generator) -> Split:
    """`time`: the evaluation's time rule (`attackers.folds.TimeFolds.holdout`): one cut at
    train_fraction of the home's span (all devices' windows); windows ending before it train,
    windows starting after it are held out, the few straddling it are dropped. `random`: a random
    train_fraction/rest split per device. The validation set is a random val_fraction of each
    device's training portion."""
    from .attackers.folds import TimeFolds

    in_classes = np.isin(w.labels, list(classes))
    if how == "time":
        length = float(w.meta.get("total_time", 4.0))
        is_tr, is_te = TimeFolds.holdout(w.start_time, length, train_fraction)
        is_tr = is_tr & in_classes
        is_te = is_te & in_classes
    tr, va, te = [], [], []
    for c in classes:
        idx = np.flatnonzero(w.labels == c)
        if how == "time":
            train_part, test_part = idx[is_tr[idx]], idx[is_te[idx]]
        else:
            idx = idx[rng.permutation(len(idx))]
            n_train = int(np.floor(train_fraction * len(idx)))
            n_train = min(max(n_train, 1), len(idx) - 1)
            train_part, test_part = idx[:n_train], idx[n_train:]
        n_val = int(round(val_fraction * len(train_part)))
        if val_fraction > 0 and len(train_part) >= 2:
            n_val = min(max(n_val, 1), len(train_part) - 1)
        else:
            n_val = 0
        perm = rng.permutation(len(train_part))
        va.append(np.sort(train_part[perm[:n_val]]))
        tr.append(np.sort(train_part[perm[n_val:]]))
        te.append(np.sort(test_part))
    cat = lambda xs: np.concatenate(xs).astype(np.int64) if xs else np.zeros(0, np.int64)  # noqa: E731
    return Split(cat(tr), cat(va), cat(te))


def cap_per_device(w: Windows, max_per_device: Optional[int], rng: np.random.Generator) -> np.ndarray:
    """Indices of at most max_per_device windows per device (a random, seeded subset), in order."""
    keep = []
    for c in np.unique(w.labels):
        idx = np.flatnonzero(w.labels == c)
        if max_per_device is not None and len(idx) > max_per_device:
            idx = np.sort(rng.choice(idx, size=max_per_device, replace=False))
        keep.append(idx)
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)


# ---------------------------------------------------------------------------------------------
# The Rust binary


def repo_root() -> Optional[Path]:
    """The repository holding this package (the directory with Cargo.toml above training/)."""
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for p in [start, *start.parents]:
            if (p / "Cargo.toml").is_file() and (p / "training").is_dir():
                return p
    return None


def find_ipet_binary() -> Path:
    """`IPET_BIN`, else `ipet` on PATH, else <repo>/target/{release,debug}/ipet."""
    env = os.environ.get("IPET_BIN")
    if env:
        p = Path(env)
        if not (p.is_file() and os.access(p, os.X_OK)):
            raise FileNotFoundError(f"IPET_BIN={env} is not an executable file")
        return p
    on_path = shutil.which("ipet")
    if on_path:
        return Path(on_path)
    tried = ["$IPET_BIN (unset)", "ipet on PATH"]
    root = repo_root()
    if root is not None:
        for profile in ("release", "debug"):
            p = root / "target" / profile / "ipet"
            tried.append(str(p))
            if p.is_file() and os.access(p, os.X_OK):
                return p
    raise FileNotFoundError(
        "the `ipet` binary was not found (tried: " + ", ".join(tried) + "). Build it with "
        "`cargo build --release` in the repository root, or set IPET_BIN=/path/to/ipet.")


def run_ipet_windows(captures: Sequence[str | Path], devices_csv: str | Path, out_dir: str | Path,
                     total_time: float, omega: float, binary: Optional[Path] = None) -> Path:
    """Cut captures into M_seq windows with the Rust data plane (`ipet windows`)."""
    binary = binary or find_ipet_binary()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cmd = [str(binary), "windows", "--captures", *[str(c) for c in captures], "--devices", str(devices_csv),
           "--out", str(out), "--total-time", repr(float(total_time)), "--omega", repr(float(omega))]
    print("+ " + " ".join(cmd), flush=True)
    proc = subprocess.run(cmd)
    if proc.returncode != 0:
        raise RuntimeError(f"`ipet windows` failed with exit code {proc.returncode}")
    return out
