"""The windows a training run uses: loaded from `ipet windows` output with its own window length,
capped per device, and the devices with enough windows to get a generator."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .data import Windows, cap_per_device, load_windows
from .runtime import log


def load_training_windows(windows_dir: str | Path, st: Any, np_rng: np.random.Generator) -> Windows:
    """The windows of `windows_dir`, at most `st.max_windows_per_device` per device. The window
    length and slot are the ones the windows were cut with (`st` takes them, with a note)."""
    w = load_windows(windows_dir)
    meta = w.meta
    for key in ("total_time", "omega"):
        if key in meta and abs(float(meta[key]) - float(getattr(st, key))) > 1e-9:
            log(f"note: windows were cut with {key}={meta[key]}; using that (setting said {getattr(st, key)})")
            setattr(st, key, float(meta[key]))
    if w.slots != st.slots_per_window:
        raise ValueError(f"windows have {w.slots} slots, total_time/omega gives {st.slots_per_window}")
    return w.subset(cap_per_device(w, st.max_windows_per_device, np_rng))


@dataclass
class DeviceSelection:
    devices: dict[int, dict[str, Any]]  # windows.json's devices by their id (row in the device table)
    class_ids: list[int]  # the ids of the devices that get a generator, in order: class c is class_ids[c]
    skipped: list[dict[str, Any]]  # the others, with why (for the manifest's skipped_devices)


def select_devices(w: Windows, min_windows: int) -> DeviceSelection:
    """Devices with at least `min_windows` windows; the others are listed with the reason
    (`too_few_windows`, or the data plane's reason for a device without any packet) and warned of."""
    meta = w.meta
    devices_meta = {int(d["id"]): d for d in meta["devices"]}
    counts = np.bincount(w.labels, minlength=max(devices_meta, default=-1) + 1)
    class_ids = [i for i in sorted(devices_meta) if counts[i] >= min_windows]
    # Devices of the table left out of the set. Their `table_id` is their row in the device table;
    # a served device's `id` is its position in the manifest (see model_set.device_ids).
    dropped = {int(d["id"]): d for d in meta.get("dropped_devices", [])}
    skipped = []
    for i in sorted(devices_meta):
        if counts[i] >= min_windows:
            continue
        entry = {"table_id": i, "name": devices_meta[i]["name"], "windows": int(counts[i]),
                 "reason": "too_few_windows"}
        if i in dropped:  # no packet at all: say why (LAN-only, or not in the captures)
            entry["reason"] = dropped[i]["reason"]
            entry["lan_packets"] = int(dropped[i].get("lan_packets", 0))
        skipped.append(entry)
    for s_ in skipped:
        why = {"lan_only": f"it talked only to the LAN ({s_.get('lan_packets', 0)} packets; "
                           "`ipet windows --lan-traffic` counts them)",
               "not_seen": "it has no packet in the captures"}.get(s_["reason"], "")
        log(f"warning: device {s_['name']} has {s_['windows']} windows (< min_windows_per_device="
            f"{min_windows}); no generator is trained for it{'; ' + why if why else ''}")
    if len(class_ids) < 2:
        raise ValueError(f"need at least 2 devices with >= {min_windows} windows, got {len(class_ids)}")
    return DeviceSelection(devices_meta, class_ids, skipped)
