"""The windows a training run uses: loaded from `ipet windows` output with its own window length,
capped per device, the devices with enough windows to get a generator, and their split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .data import Windows, load_windows
from .runtime import log


@dataclass
class Split:
    train: np.ndarray  # indices into Windows, used to fit (minus val)
    val: np.ndarray  # indices, early stopping / LR schedule (part of the training portion)
    test: np.ndarray  # held-out indices, only for metrics


def make_split(w: Windows, classes: Sequence[int], how: str, train_fraction: float, val_fraction: float,
               rng: np.random.Generator) -> Split:
    """`time`: the evaluation's time rule (`attackers.folds.TimeFolds.holdout`) cut per device: at
    train_fraction of each device's own span, windows ending before the cut train, windows
    starting after it are held out, the few straddling it are dropped (the past trains, the future
    tests, and every device with windows at two times has both). `random`: a random
    train_fraction/rest split per device. The validation set is a random val_fraction of each
    device's training portion."""
    from .attackers.folds import TimeFolds

    in_classes = np.isin(w.labels, list(classes))
    if how == "time":
        length = float(w.meta.get("total_time", 4.0))
        is_tr, is_te = TimeFolds.holdout(w.start_time, length, train_fraction, groups=w.labels)
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
            if dropped[i].get("multicast_packets"):
                entry["multicast_packets"] = int(dropped[i]["multicast_packets"])
        skipped.append(entry)
    for s_ in skipped:
        why = {"lan_only": f"it talked only to the LAN ({s_.get('lan_packets', 0)} packets; "
                           "`ipet windows --lan-traffic` counts them)",
               "multicast_only": f"only multicast/broadcast frames of it were seen ({s_.get('multicast_packets', 0)} "
                                 "frames: discovery, which crosses no LAN boundary)",
               "not_seen": "it has no packet in the captures"}.get(s_["reason"], "")
        log(f"warning: device {s_['name']} has {s_['windows']} windows (< min_windows_per_device="
            f"{min_windows}); no generator is trained for it{'; ' + why if why else ''}")
    if len(class_ids) < 2:
        raise ValueError(f"need at least 2 devices with >= {min_windows} windows, got {len(class_ids)}")
    return DeviceSelection(devices_meta, class_ids, skipped)


def split_devices(w: Windows, sel: DeviceSelection, st: Any, np_rng: np.random.Generator
                  ) -> tuple[Windows, np.ndarray, Split]:
    """The windows of the selected devices, their class indices (position in `sel.class_ids`) and
    their split (make_split). Under the time split (each device cut at train_fraction of its own
    span) a device with no window that ends before its cut (all its windows within one window's
    length) has nothing to train a generator on: it is skipped too (reason
    `no_windows_before_cut`), warned of, and the rest is split again. One with no window after its
    cut keeps its generator, untested (warned of; its recall is null)."""
    while True:
        ws = w.subset(np.flatnonzero(np.isin(w.labels, sel.class_ids)))
        to_class = {dev: c for c, dev in enumerate(sel.class_ids)}
        y = np.array([to_class[int(v)] for v in ws.labels], dtype=np.int64)
        n = len(sel.class_ids)
        split = make_split(Windows(ws.features, ws.silence, y, ws.start_time, ws.meta), range(n), st.split,
                           st.train_fraction, st.val_fraction, np_rng)
        n_fit = np.bincount(y[np.concatenate([split.train, split.val])], minlength=n)
        bad = [c for c in range(n) if n_fit[c] == 0]
        if not bad:
            n_test = np.bincount(y[split.test], minlength=n)
            for c in np.flatnonzero(n_test == 0):
                log(f"warning: device {sel.devices[sel.class_ids[c]]['name']} has no windows after the time cut "
                    f"at train_fraction={st.train_fraction} of its span; its generator is trained but "
                    f"not tested")
            return ws, y, split
        for c in bad:
            i = sel.class_ids[c]
            sel.skipped.append({"table_id": i, "name": sel.devices[i]["name"], "windows": int((y == c).sum()),
                                "reason": "no_windows_before_cut"})
            log(f"warning: device {sel.devices[i]['name']} has no windows before the time cut at "
                f"train_fraction={st.train_fraction} of its span; no generator is trained for it "
                f"(`--split random` splits every device's own windows)")
        sel.skipped.sort(key=lambda e: e["table_id"])
        sel.class_ids = [i for c, i in enumerate(sel.class_ids) if c not in bad]
        if len(sel.class_ids) < 2:
            raise ValueError(f"need at least 2 devices with windows before the time cut, got {len(sel.class_ids)}")
