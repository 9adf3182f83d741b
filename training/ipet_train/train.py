"""The adversarial training loop (reference section 5): the stage-0 discriminator, then per stage
the generators, the adapted discriminator, their ONNX files and the held-out metrics, into a model
set on disk."""

from __future__ import annotations

import copy
import datetime as _dt
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .attackers.score import scores
from .attackers.silence import silence_only_attacker
from .data import COLUMNS
from .discriminator import Data, class_weights, fit_discriminator, predict
from .export import export_generator, verify_generator
from .generator_training import train_generator
from .model_set import (MANIFEST_SCHEMA_VERSION, device_ids, onnx_section, provenance, safe_dir_name,
                        write_manifest)
from .models import Generator, build_discriminator, discriminator_config, save_discriminator
from .perturbations import GenTable, cover_stats, make_perturber
from .report_format import format_table
from .runtime import log, resolve_device, seed_everything
from .settings import Settings
from .training_windows import load_training_windows, select_devices, split_devices


def train(windows_dir: str | Path, out_dir: str | Path, st: Settings,
          windows_info: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Train a model set from a windows directory into out_dir; returns the manifest."""
    st.validate()
    t0 = time.time()
    if st.threads:
        torch.set_num_threads(st.threads)
    seed_everything(st.seed)
    device = resolve_device(st.device)
    np_rng = np.random.default_rng(st.seed)
    rng = torch.Generator().manual_seed(st.seed)  # all torch randomness (CPU) comes from here
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    w = load_training_windows(windows_dir, st, np_rng)
    meta = w.meta
    slots = w.slots
    sel = select_devices(w, st.min_windows_per_device)
    w, y_np, split = split_devices(w, sel, st, np_rng)
    devices_meta, class_ids = sel.devices, sel.class_ids
    n_cls = len(class_ids)
    data = Data(torch.from_numpy(w.features).to(device), torch.from_numpy(w.silence).to(device),
                torch.from_numpy(y_np).to(device), n_cls)
    tr = torch.from_numpy(split.train).to(device)
    va = torch.from_numpy(split.val).to(device)
    te = torch.from_numpy(split.test).to(device)
    y_test = y_np[split.test]
    start_test = w.start_time[split.test]  # the scorer's bootstrap resamples a device's hours
    weight = class_weights(y_np[split.train], n_cls, st.class_weight).to(device)
    names = [devices_meta[i]["name"] for i in class_ids]
    dirs = [safe_dir_name(n) for n in names]
    chance = 1.0 / n_cls
    log(f"{w.n} windows, {n_cls} devices, {slots} slots; train {len(split.train)} / val {len(split.val)} / "
        f"test {len(split.test)} ({st.split} split); device {device}")
    for c, n in enumerate(names):
        log(f"  {n:24s} train {int((y_np[split.train] == c).sum()):6d}  val {int((y_np[split.val] == c).sum()):5d}"
            f"  test {int((y_test == c).sum()):6d}  weight {float(weight[c]):.3f}")

    dcfg = discriminator_config(st.model, n_cls, slots)
    disc_dir = out / "discriminators"
    disc_dir.mkdir(exist_ok=True)
    settings_out = st.to_dict()
    if st.name is None:
        settings_out["name"] = out.resolve().name

    devices_out = []
    for c, i in enumerate(class_ids):
        d = devices_meta[i]
        devices_out.append({
            **device_ids(c, i), "name": d["name"], "mac": d.get("mac"), "ip": d.get("ip"),
            "matched_by": d.get("matched_by"),
            "train_windows": int((y_np[split.train] == c).sum() + (y_np[split.val] == c).sum()),
            "val_windows": int((y_np[split.val] == c).sum()),
            "test_windows": int((y_test == c).sum()),
            "dir": dirs[c],
        })

    manifest: dict[str, Any] = {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "name": settings_out["name"],
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "settings": settings_out,
        "columns": list(COLUMNS),
        "caps": st.caps,
        "onnx": onnx_section(st.latent_dim, slots),
        "devices": devices_out,
        "skipped_devices": sel.skipped,
        "lan_traffic": bool(meta.get("lan_traffic", False)),
        "discriminators": {"static": "discriminators/static.pt", "adapted": [], "config": dcfg},
        "generations": [],
        "metrics": {"chance": chance, "status": "running"},
        "windows": {k: meta.get(k) for k in ("total_time", "omega", "slots_per_window", "stats")},
        "provenance": provenance(windows_dir, windows_info),
    }

    def held_out(pred: np.ndarray) -> dict[str, Any]:
        return scores(y_test, pred, n_cls, start=start_test, seed=st.seed)

    def save() -> None:
        manifest["metrics"]["training_seconds"] = round(time.time() - t0, 1)
        write_manifest(out, manifest)

    def eval_attackers(gen_table: GenTable, mix: bool, adapted: nn.Module, label: str) -> dict[str, Any]:
        draw_rng = torch.Generator().manual_seed(st.seed * 1000 + 17 + len(manifest["generations"]) + (999 if mix else 0))
        perturber = make_perturber(gen_table, data.y, draw_rng, st.latent_dim, slots, mix)
        pert = perturber()  # the one defended test draw scored by every attacker
        row: dict[str, Any] = {
            "static": held_out(predict(static, data, te, pert)),
            "adapted": held_out(predict(adapted, data, te, pert)),
        }
        if st.retrain_epochs > 0:
            fresh = build_discriminator(st.model, n_cls, slots).to(device)
            hist = fit_discriminator(fresh, data, tr, va, st.retrain_epochs, st, weight, rng, perturber,
                                     early_stopping=True, desc=f"retrained attacker {label}")
            row["retrained"] = held_out(predict(fresh, data, te, pert))
            row["retrained"]["epochs_run"] = hist["epochs_run"]
        row["cover"] = cover_stats(data.x[te], pert[te])
        return row

    # ---- stage 0 discriminator on undefended windows (the static attacker)
    torch.manual_seed(st.seed)
    disc = build_discriminator(st.model, n_cls, slots).to(device)
    hist0 = fit_discriminator(disc, data, tr, va, st.disc_epochs, st, weight, rng, None, early_stopping=True,
                              desc="discriminator (undefended)")
    static = copy.deepcopy(disc).eval()
    save_discriminator(disc_dir / "static.pt", static, dcfg, {"trained_on": "undefended", "history": hist0})
    und = held_out(predict(static, data, te, None))
    manifest["metrics"]["undefended"] = und
    fit_np = np.concatenate([split.train, split.val])
    manifest["metrics"]["silence_only"] = held_out(
        silence_only_attacker(w.silence[fit_np], y_np[fit_np], w.silence[split.test], n_cls))
    manifest["metrics"]["static_training"] = hist0
    log(f"undefended: accuracy {und['accuracy']:.3f}  balanced {und['balanced_accuracy']:.3f}  "
        f"(chance {chance:.3f}; {hist0['epochs_run']} epochs)")
    save()

    gen_table: list[list[Generator]] = []
    adapted_snapshots: list[nn.Module] = []
    for stage in tqdm(range(st.training_stages), desc="stages", disable=not st.progress, file=sys.stderr):
        ts = time.time()
        if st.adversaries == "all":
            adversaries = [static, *adapted_snapshots]
        else:
            adversaries = [disc]
        gens, gen_info = [], []
        if st.generators == "shared":
            # one cover distribution for every device: the cover itself carries no identity
            torch.manual_seed(st.seed * 7919 + stage * 131)
            g = Generator(st.latent_dim, slots, st.caps).to(device)
            info = train_generator(g, adversaries, data, tr, st, rng, device, class_weight=weight)
            gens = [g] * n_cls
            gen_info.append({"device": "*shared*", **info})
        else:
            for c in range(n_cls):
                torch.manual_seed(st.seed * 7919 + stage * 131 + c)
                g = Generator(st.latent_dim, slots, st.caps).to(device)
                idx_c = tr[data.y[tr] == c]
                info = train_generator(g, adversaries, data, idx_c, st, rng, device)
                gens.append(g)
                gen_info.append({"device": names[c], **info})
        # adapt the discriminator to this stage's (rounded) cover traffic, all devices
        adapt_perturber = make_perturber([gens], data.y, rng, st.latent_dim, slots, mix=False)
        fit_discriminator(disc, data, tr, va, st.adapt_epochs, st, weight, rng, adapt_perturber,
                          early_stopping=False, desc=f"adapt stage {stage}")
        snap = copy.deepcopy(disc).eval()
        adapted_snapshots.append(snap)
        gen_table.append(gens)
        dpath = f"discriminators/d{stage}.pt"
        save_discriminator(out / dpath, snap, dcfg, {"trained_on": f"adapted through stage {stage}"})
        manifest["discriminators"]["adapted"].append(dpath)
        # export + verify this generation
        files, verify = {}, {}
        for c in range(n_cls):
            rel = f"{dirs[c]}/g{stage}.onnx"
            export_generator(gens[c], out / rel)
            verify[names[c]] = verify_generator(gens[c], out / rel)
            files[names[c]] = rel
        row = eval_attackers([gens], False, snap, f"stage {stage}")
        row["undefended"] = {"accuracy": und["accuracy"], "balanced_accuracy": und["balanced_accuracy"]}
        row["generators"] = gen_info
        row["onnx_verification"] = {"max_abs_diff": max(v["max_abs_diff"] for v in verify.values()),
                                    "tie_differences": sum(v["tie_differences"] for v in verify.values())}
        row["seconds"] = round(time.time() - ts, 1)
        manifest["generations"].append({"index": stage, "files": files, "metrics": row})
        log(f"stage {stage}: static {row['static']['accuracy']:.3f}/{row['static']['balanced_accuracy']:.3f}  "
            f"adapted {row['adapted']['accuracy']:.3f}/{row['adapted']['balanced_accuracy']:.3f}  "
            + (f"retrained {row['retrained']['accuracy']:.3f}/{row['retrained']['balanced_accuracy']:.3f}  "
               if "retrained" in row else "")
            + f"cover {row['cover']['cover_packets_per_slot']:.2f} pkt {row['cover']['cover_bytes_per_slot']:.1f} B"
            f" per slot  ({row['seconds']} s)")
        save()

    mix = eval_attackers(gen_table, True, adapted_snapshots[-1], "mix")
    mix["generations"] = len(gen_table)
    mix["adapted_is"] = f"d{len(gen_table) - 1}"
    manifest["metrics"]["mix"] = mix
    manifest["metrics"]["device"] = str(device)
    manifest["metrics"]["threads"] = torch.get_num_threads()
    manifest["metrics"]["status"] = "complete"
    save()
    print(format_table(manifest))
    return manifest
