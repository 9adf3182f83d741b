"""A features directory written by the Rust data plane (`ipet features` for captures, `ipet
simulate --features` for defended traffic), loaded into memory as compact arrays. Nothing here
cuts windows, periods or bins: that is the data plane's job."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..data import load_windows


@dataclass
class Dataset:
    """One defended (or undefended) view of a home: per window and per aggregate bin."""

    x: np.ndarray  # float32 [N, S, 4] M_seq windows
    silence: np.ndarray  # float32 [N]
    y: np.ndarray  # int64 [N] class index
    start: np.ndarray  # float64 [N] Unix s
    kfp: np.ndarray  # float32 [N, F] k-FP-style features
    real: np.ndarray  # int64 [N] real packets in the window (label only: 0 = cover-only)
    agg: np.ndarray  # float32 [B, 10] direction-only aggregates (link observer)
    agg_transport: np.ndarray  # float32 [B, 20] split by transport (transport observer)
    agg_y: np.ndarray  # int64 [B]
    agg_start: np.ndarray  # float64 [B]
    agg_real: np.ndarray  # int64 [B]
    meta: dict[str, Any]
    # every device's frames of the home (the cross-device attacker's input), when loaded
    packets: Optional["HomePackets"] = None

    @property
    def n(self) -> int:
        return int(self.y.shape[0])


@dataclass
class HomePackets:
    """Every frame of the home as the link observer sees it, one row per frame, sorted by time:
    its device (class index), time (Unix s), size (bytes) and direction (+1 out, -1 in).
    `dummy` is the ground truth (cover or not), for scoring only: no attacker reads it."""

    cls: np.ndarray  # int64
    time: np.ndarray  # float64 Unix s
    size: np.ndarray  # float64
    direction: np.ndarray  # int8
    dummy: np.ndarray  # bool

    @property
    def n(self) -> int:
        return int(self.cls.shape[0])

    @staticmethod
    def from_parts(parts: Sequence[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> "HomePackets":
        """From (class, time, size, direction, dummy) per device."""
        cls = np.concatenate([np.full(len(t), c, np.int64) for c, t, *_ in parts]) if parts else np.zeros(0, np.int64)
        t = np.concatenate([np.asarray(p[1], np.float64) for p in parts]) if parts else np.zeros(0)
        order = np.argsort(t, kind="stable")
        cat = lambda i, dt: (np.concatenate([np.asarray(p[i], dt) for p in parts]) if parts  # noqa: E731
                             else np.zeros(0, dt))[order]
        return HomePackets(cls=cls[order], time=t[order], size=cat(2, np.float64), direction=cat(3, np.int8),
                           dummy=cat(4, bool))


def load_home_traces(directory: str | Path, class_of_name: dict[str, int], origin_s: float) -> HomePackets:
    """Each member's defended trace as `ipet simulate --out-dir` writes it (`<device>.npy`, rows
    [direction, is_dummy, size_bytes, time_s], times from the home's first packet `origin_s`)."""
    parts = []
    for name, c in class_of_name.items():
        f = Path(directory) / f"{name}.npy"
        if not f.is_file():
            continue
        a = np.load(f)
        parts.append((c, origin_s + a[:, 3], a[:, 2], a[:, 0], a[:, 1] > 0))
    return HomePackets.from_parts(parts)


def load_packets(directory: str | Path, class_of: dict[int, int]) -> HomePackets:
    """Undefended frames as `ipet packets` writes them (device ids = table rows)."""
    d = Path(directory)
    dev = np.load(d / "device.npy")
    t, size, direction = np.load(d / "time.npy"), np.load(d / "size.npy"), np.load(d / "direction.npy")
    parts = [(c, t[dev == i], size[dev == i], direction[dev == i], np.zeros(int((dev == i).sum()), bool))
             for i, c in class_of.items()]
    return HomePackets.from_parts(parts)


def load_features(directory: str | Path, class_of: dict[int, int]) -> Dataset:
    """Load a features directory; `class_of` maps device ids (table rows) to class indices, and
    devices not in it are left out."""
    d = Path(directory)
    meta = json.loads((d / "features.json").read_text())
    w = load_windows(d)
    kfp = np.load(d / "kfp.npy").astype(np.float32, copy=False)
    real = np.load(d / "real_packets.npy").astype(np.int64, copy=False)
    if kfp.shape != (w.n, len(meta["kfp_columns"])) or real.shape != (w.n,):
        raise ValueError(f"{d}: kfp.npy {kfp.shape} / real_packets.npy {real.shape} do not match {w.n} windows")
    lut = np.full(max(max(class_of, default=0), int(w.labels.max(initial=0))) + 1, -1, dtype=np.int64)
    for dev, c in class_of.items():
        lut[dev] = c
    keep = lut[w.labels] >= 0
    ay = np.load(d / "agg_labels.npy").astype(np.int64)
    ak = lut[ay] >= 0 if ay.size else np.zeros(0, bool)
    meta["windows_meta"] = w.meta
    return Dataset(
        x=w.features[keep], silence=w.silence[keep], y=lut[w.labels[keep]], start=w.start_time[keep],
        kfp=kfp[keep], real=real[keep],
        agg=np.load(d / "agg.npy").astype(np.float32)[ak],
        agg_transport=np.load(d / "agg_transport.npy").astype(np.float32)[ak],
        agg_y=lut[ay[ak]], agg_start=np.load(d / "agg_start.npy")[ak], agg_real=np.load(d / "agg_real_packets.npy")[ak],
        meta=meta)


def concat(parts: Sequence[Dataset]) -> Dataset:
    """Several devices' (or runs') datasets as one."""
    cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
    names = ["x", "silence", "y", "start", "kfp", "real", "agg", "agg_transport", "agg_y", "agg_start", "agg_real"]
    return Dataset(**{n: cat(n) for n in names}, meta=parts[0].meta)
