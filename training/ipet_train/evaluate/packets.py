"""Transport (TCP/UDP) of each real packet, from the Rust data plane.

The simulator's output rows `[direction, is_dummy, size_bytes, time_s]` carry no transport, but
M_agg (reference section 3) splits its aggregates by TCP and UDP. `ipet packets` writes every kept
packet with its transport (the same capture code as `ipet windows` and `ipet simulate`), so the
k-th real packet of a device in a direction can be given its transport. `align_transport` checks
the alignment (same count, same sizes in order) and says when it fails, in which case the caller
treats that trace's real packets as TCP and records it.
"""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path
from typing import Optional, Sequence

import numpy as np


def read_device_table(path: str | Path) -> list[dict]:
    """Device names and ids (their row in the table), as `ipet` numbers them."""
    with open(path, newline="") as f:
        return [{"id": i, "name": row["name"].strip()} for i, row in enumerate(csv.DictReader(f))]


def capture_files(captures: Sequence[str | Path]) -> list[Path]:
    files: list[Path] = []
    for c in captures:
        p = Path(c)
        if p.is_dir():
            files += sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in (".pcap", ".pcapng", ".cap", ".csv"))
        else:
            files.append(p)
    return files


def read_packets(binary: Path, captures: Sequence[str | Path], devices_csv: str | Path, out_dir: str | Path
                 ) -> tuple[dict[int, dict[str, np.ndarray]], dict[int, set]]:
    """Kept packets per device id, from the Rust data plane (`ipet packets`): {"time": float s,
    "dir": +1 out/-1 in, "size", "udp": bool}, in time order; and per device id the set of files
    holding its packets."""
    out = Path(out_dir)
    cmd = [str(binary), "packets", "--captures", *[str(c) for c in captures], "--devices", str(devices_csv),
           "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"`ipet packets` failed ({proc.returncode}): {proc.stderr.strip()}")
    meta = json.loads((out / "packets.json").read_text())
    files = [Path(f) for f in meta["files"]]
    cols = {n: np.load(out / f"{n}.npy") for n in ("device", "time", "direction", "size", "udp", "file")}
    packets: dict[int, dict[str, np.ndarray]] = {}
    where: dict[int, set] = {}
    for dev in np.unique(cols["device"]):
        m = cols["device"] == dev
        packets[int(dev)] = {"time": cols["time"][m], "dir": cols["direction"][m].astype(np.int8),
                             "size": cols["size"][m].astype(np.float64), "udp": cols["udp"][m].astype(bool)}
        where[int(dev)] = {files[i] for i in np.unique(cols["file"][m])}
    return packets, where


def align_transport(real_dir: np.ndarray, real_size: np.ndarray, real_time: np.ndarray,
                    pk: Optional[dict[str, np.ndarray]]) -> Optional[np.ndarray]:
    """is_udp for each real row (given in any order), by aligning, per direction, the rows in time
    order with the device's captured packets in time order. None when counts or sizes disagree."""
    if pk is None:
        return None
    out = np.zeros(real_dir.shape[0], dtype=bool)
    for d in (1, -1):
        m = np.flatnonzero(real_dir == d)
        ref = pk["dir"] == d
        if m.size != int(ref.sum()):
            return None
        order = m[np.argsort(real_time[m], kind="stable")]
        if not np.array_equal(real_size[order], pk["size"][ref]):
            return None
        out[order] = pk["udp"][ref]
    return out
