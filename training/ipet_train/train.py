"""The adversarial training loop (reference section 5), its metrics, and the model set on disk."""

from __future__ import annotations

import copy
import datetime as _dt
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import __version__
from .data import COLUMNS, Windows, cap_per_device, load_windows, make_split
from .export import INPUT_NAME, OPSET, OUTPUT_NAME, export_generator, verify_generator
from .models import Generator, build_discriminator, discriminator_config, save_discriminator
from .settings import Settings

MANIFEST_SCHEMA_VERSION = 1


# ---------------------------------------------------------------------------------------------
# plumbing


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda but torch sees no CUDA device")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.benchmark = False


def _rnn_grad_ctx(device: torch.device):
    # cuDNN refuses RNN backward in eval mode; the frozen discriminator is in eval mode.
    return torch.backends.cudnn.flags(enabled=False) if device.type == "cuda" else torch.backends.cudnn.flags()


def _log(msg: str) -> None:
    tqdm.write(msg, file=sys.stderr)


@dataclass
class Data:
    """All windows as tensors on the training device; labels mapped to class indices 0..C-1."""

    x: torch.Tensor  # [N, S, 4] raw
    s: torch.Tensor  # [N]
    y: torch.Tensor  # [N] class index
    n_classes: int


def scores(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict[str, Any]:
    """accuracy, balanced accuracy (mean per-class recall over classes present) and per-class recall."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    recall = []
    for c in range(n_classes):
        m = y_true == c
        recall.append(float((y_pred[m] == c).mean()) if m.any() else float("nan"))
    present = [r for r in recall if not math.isnan(r)]
    return {
        "accuracy": float((y_true == y_pred).mean()) if len(y_true) else float("nan"),
        "balanced_accuracy": float(np.mean(present)) if present else float("nan"),
        "per_device_recall": [None if math.isnan(r) else round(r, 4) for r in recall],
        "n": int(len(y_true)),
    }


def silence_only_attacker(s_train: np.ndarray, y_train: np.ndarray, s_test: np.ndarray, n_classes: int,
                          bins: int = 60) -> np.ndarray:
    """Predictions of a histogram classifier on the silence scalar alone (quantile bins of
    log1p(silence) on the training windows, equal class priors). Cover traffic never changes the
    silence, so this is an attacker no generator can hurt: a floor for every defended row."""
    ls_tr, ls_te = np.log1p(s_train.astype(np.float64)), np.log1p(s_test.astype(np.float64))
    edges = np.unique(np.quantile(ls_tr, np.linspace(0, 1, bins + 1))[1:-1])
    b_tr, b_te = np.digitize(ls_tr, edges), np.digitize(ls_te, edges)
    hist = np.zeros((len(edges) + 1, n_classes))
    for c in range(n_classes):
        m = y_train == c
        if m.any():
            hist[:, c] = np.bincount(b_tr[m], minlength=len(edges) + 1) / m.sum()
    return hist[b_te].argmax(1)


def class_weights(y_train: np.ndarray, n_classes: int, how: str) -> torch.Tensor:
    counts = np.bincount(y_train, minlength=n_classes).astype(np.float64)
    counts = np.maximum(counts, 1.0)
    if how == "none":
        w = np.ones(n_classes)
    else:
        w = counts.sum() / (n_classes * counts)
        if how == "sqrt":
            w = np.sqrt(w)
        w = w / (w * counts).sum() * counts.sum()  # mean weight per training window = 1
    return torch.tensor(w, dtype=torch.float32)


# ---------------------------------------------------------------------------------------------
# perturbations


GenTable = Sequence[Sequence[Generator]]  # [stage][class]


@torch.no_grad()
def draw_perturbations(gen_table: GenTable, y: torch.Tensor, stage_of: torch.Tensor, rng: torch.Generator,
                       latent_dim: int, slots: int, rounded: bool = True) -> torch.Tensor:
    """One perturbation per window: window j of class c gets gen_table[stage_of[j]][c](z), fresh z."""
    out = torch.zeros((y.shape[0], slots, 4), dtype=torch.float32, device=y.device)
    for k, gens in enumerate(gen_table):
        for c, g in enumerate(gens):
            m = (y == c) & (stage_of == k)
            cnt = int(m.sum())
            if cnt == 0:
                continue
            z = torch.randn((cnt, latent_dim), generator=rng).to(y.device)
            was_training = g.training
            g.eval()
            p = g(z)
            g.train(was_training)
            out[m] = torch.round(p) if rounded else p
    return out


def make_perturber(gen_table: GenTable, y: torch.Tensor, rng: torch.Generator, latent_dim: int, slots: int,
                   mix: bool) -> Callable[[], torch.Tensor]:
    """A function returning a fresh perturbation of every window (fresh noise, and for `mix` a fresh
    random generation per window)."""
    n_stages = len(gen_table)

    def draw() -> torch.Tensor:
        if mix:
            stage_of = torch.randint(0, n_stages, (y.shape[0],), generator=rng).to(y.device)
        else:
            stage_of = torch.zeros_like(y)
        return draw_perturbations(gen_table, y, stage_of, rng, latent_dim, slots)

    return draw


# ---------------------------------------------------------------------------------------------
# discriminator training


@torch.no_grad()
def predict(model: nn.Module, data: Data, idx: torch.Tensor, pert: Optional[torch.Tensor], batch: int = 2048
            ) -> np.ndarray:
    model.eval()
    out = []
    for i in range(0, idx.shape[0], batch):
        b = idx[i:i + batch]
        x = data.x[b] if pert is None else data.x[b] + pert[b]
        out.append(model(x, data.s[b]).argmax(1).cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, np.int64)


@torch.no_grad()
def eval_loss(model: nn.Module, data: Data, idx: torch.Tensor, pert: Optional[torch.Tensor], weight: torch.Tensor,
              batch: int = 2048) -> float:
    model.eval()
    tot, wsum = 0.0, 0.0
    for i in range(0, idx.shape[0], batch):
        b = idx[i:i + batch]
        x = data.x[b] if pert is None else data.x[b] + pert[b]
        logits = model(x, data.s[b])
        w = weight[data.y[b]]
        tot += float((F.cross_entropy(logits, data.y[b], reduction="none") * w).sum())
        wsum += float(w.sum())
    return tot / max(wsum, 1e-12)


def fit_discriminator(model: nn.Module, data: Data, train_idx: torch.Tensor, val_idx: torch.Tensor,
                      epochs: int, st: Settings, weight: torch.Tensor, rng: torch.Generator,
                      perturber: Optional[Callable[[], torch.Tensor]] = None, early_stopping: bool = True,
                      desc: str = "discriminator") -> dict[str, Any]:
    """Adam + (class-weighted) cross-entropy. With early_stopping: stop when the validation loss has
    not improved for `patience` epochs, reduce the LR on plateau, and restore the best weights."""
    opt = torch.optim.Adam(model.parameters(), lr=st.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=max(1, st.patience // 2))
    best, best_state, bad, hist = float("inf"), None, 0, []
    use_val = early_stopping and val_idx.numel() > 0
    bar = tqdm(range(epochs), desc=desc, leave=False, disable=not st.progress, file=sys.stderr)
    for ep in bar:
        pert = perturber() if perturber is not None else None
        model.train()
        perm = train_idx[torch.randperm(train_idx.shape[0], generator=rng).to(train_idx.device)]
        tot, nb = 0.0, 0
        for i in range(0, perm.shape[0], st.batch_size):
            b = perm[i:i + st.batch_size]
            x = data.x[b] if pert is None else data.x[b] + pert[b]
            loss = F.cross_entropy(model(x, data.s[b]), data.y[b], weight=weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += loss.item()
            nb += 1
        rec = {"epoch": ep + 1, "loss": tot / max(nb, 1)}
        if use_val:
            vl = eval_loss(model, data, val_idx, pert, weight)
            rec["val_loss"] = vl
            sched.step(vl)
            if vl < best - 1e-4:
                best, bad = vl, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                bad += 1
        hist.append(rec)
        bar.set_postfix({k: round(v, 4) for k, v in rec.items() if k != "epoch"})
        if use_val and bad >= st.patience:
            break
    bar.close()
    if not st.progress and hist:
        _log(f"{desc}: {len(hist)} epochs, last {hist[-1]}")
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return {"epochs_run": len(hist), "best_val_loss": None if best == float("inf") else best,
            "last": hist[-1] if hist else None}


# ---------------------------------------------------------------------------------------------
# generator training


def generator_loss(logits: torch.Tensor, target: torch.Tensor | int, objective: str,
                   weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The generator's loss on a batch of defended windows (lower = better for the defender).

    neg_ce: minus the cross-entropy against the TRUE label (reference): the generator pushes the
    classifier away from the right answer. uniform: cross-entropy against the uniform distribution
    (minimised when the classifier's output is uniform, i.e. it learns nothing about the device).
    `weight` (per window) weighs the mean, e.g. by class for a generator shared by all devices."""
    if isinstance(target, int):
        target = torch.full((logits.shape[0],), target, dtype=torch.long, device=logits.device)
    if objective == "neg_ce":
        per = -F.cross_entropy(logits, target, reduction="none")
    elif objective == "uniform":
        per = -F.log_softmax(logits, dim=1).mean(dim=1)
    else:
        raise ValueError(f"unknown objective {objective!r}")
    if weight is None:
        return per.mean()
    return (per * weight).sum() / weight.sum()


def train_generator(gen: Generator, adversaries: Sequence[nn.Module], data: Data, idx: torch.Tensor,
                    st: Settings, rng: torch.Generator, device: torch.device,
                    class_weight: Optional[torch.Tensor] = None) -> dict[str, Any]:
    """Train a generator for generator_epochs over the windows `idx` (one device's, or all devices'
    for a shared generator) with Nadam against frozen discriminators (loss averaged over them);
    each window's true label is its device."""
    for d in adversaries:
        d.eval()
        for p in d.parameters():
            p.requires_grad_(False)
    opt = torch.optim.NAdam(gen.parameters(), lr=st.generator_lr)
    gen.train()
    losses = []
    with _rnn_grad_ctx(device):
        for _ in range(st.generator_epochs):
            perm = idx[torch.randperm(idx.shape[0], generator=rng).to(idx.device)]
            for i in range(0, perm.shape[0], st.batch_size):
                b = perm[i:i + st.batch_size]
                z = torch.randn((b.shape[0], gen.latent_dim), generator=rng).to(device)
                x = data.x[b] + gen(z)
                y = data.y[b]
                w = class_weight[y] if class_weight is not None else None
                loss = sum(generator_loss(d(x, data.s[b]), y, st.objective, w) for d in adversaries)
                loss = loss / len(adversaries)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(loss.item())
    for d in adversaries:
        for p in d.parameters():
            p.requires_grad_(True)
    gen.eval()
    return {"steps": len(losses), "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None}


# ---------------------------------------------------------------------------------------------
# the run


def _cover_stats(x_test: torch.Tensor, pert_test: torch.Tensor) -> dict[str, float]:
    real_p = float(x_test[..., [0, 2]].sum(-1).mean())
    real_b = float(x_test[..., [1, 3]].sum(-1).mean())
    cov_p = float(pert_test[..., [0, 2]].sum(-1).mean())
    cov_b = float(pert_test[..., [1, 3]].sum(-1).mean())
    return {
        "cover_packets_per_slot": cov_p, "cover_bytes_per_slot": cov_b,
        "real_packets_per_slot": real_p, "real_bytes_per_slot": real_b,
        "packet_overhead": cov_p / real_p if real_p > 0 else None,
        "byte_overhead": cov_b / real_b if real_b > 0 else None,
    }


def _safe_name(name: str) -> str:
    bad = set('/\\\0') | {":"}
    out = "".join("_" if ch in bad else ch for ch in name).strip()
    if out in ("", ".", ".."):
        raise ValueError(f"device name {name!r} cannot be a directory name")
    return out



def device_ids(position: int, table_id: int) -> dict[str, int]:
    """The one definition of a served device's ids, shared with the Rust service (manifest.rs):
    `id` is the device's position in the manifest's `devices` (what every Rust command and the
    generators' class index use); `table_id` is its row in the device table (the windows' label),
    which differs once a device before it was skipped. `class_index` repeats `id` for readers of
    older manifests."""
    return {"id": int(position), "class_index": int(position), "table_id": int(table_id)}


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

    w = load_windows(windows_dir)
    meta = w.meta
    for key in ("total_time", "omega"):
        if key in meta and abs(float(meta[key]) - float(getattr(st, key))) > 1e-9:
            _log(f"note: windows were cut with {key}={meta[key]}; using that (setting said {getattr(st, key)})")
            setattr(st, key, float(meta[key]))
    slots = w.slots
    if slots != st.slots_per_window:
        raise ValueError(f"windows have {slots} slots, total_time/omega gives {st.slots_per_window}")

    keep = cap_per_device(w, st.max_windows_per_device, np_rng)
    w = w.subset(keep)
    devices_meta = {int(d["id"]): d for d in meta["devices"]}
    counts = np.bincount(w.labels, minlength=max(devices_meta, default=-1) + 1)
    class_ids = [i for i in sorted(devices_meta) if counts[i] >= st.min_windows_per_device]
    # Devices of the table left out of the set. Their `table_id` is their row in the device table;
    # a served device's `id` is its position in the manifest (see device_entry).
    dropped = {int(d["id"]): d for d in meta.get("dropped_devices", [])}
    skipped = []
    for i in sorted(devices_meta):
        if counts[i] >= st.min_windows_per_device:
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
        _log(f"warning: device {s_['name']} has {s_['windows']} windows (< min_windows_per_device="
             f"{st.min_windows_per_device}); no generator is trained for it{'; ' + why if why else ''}")
    if len(class_ids) < 2:
        raise ValueError(f"need at least 2 devices with >= {st.min_windows_per_device} windows, got {len(class_ids)}")
    keep = np.flatnonzero(np.isin(w.labels, class_ids))
    w = w.subset(keep)
    n_cls = len(class_ids)
    to_class = {dev: c for c, dev in enumerate(class_ids)}
    y_np = np.array([to_class[int(v)] for v in w.labels], dtype=np.int64)
    split = make_split(Windows(w.features, w.silence, y_np, w.start_time, meta), range(n_cls), st.split,
                       st.train_fraction, st.val_fraction, np_rng)
    data = Data(torch.from_numpy(w.features).to(device), torch.from_numpy(w.silence).to(device),
                torch.from_numpy(y_np).to(device), n_cls)
    tr = torch.from_numpy(split.train).to(device)
    va = torch.from_numpy(split.val).to(device)
    te = torch.from_numpy(split.test).to(device)
    y_test = y_np[split.test]
    weight = class_weights(y_np[split.train], n_cls, st.class_weight).to(device)
    names = [devices_meta[i]["name"] for i in class_ids]
    dirs = [_safe_name(n) for n in names]
    chance = 1.0 / n_cls
    _log(f"{w.n} windows, {n_cls} devices, {slots} slots; train {len(split.train)} / val {len(split.val)} / "
         f"test {len(split.test)} ({st.split} split); device {device}")
    for c, n in enumerate(names):
        _log(f"  {n:24s} train {int((y_np[split.train] == c).sum()):6d}  val {int((y_np[split.val] == c).sum()):5d}"
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
        "onnx": {"input": INPUT_NAME, "output": OUTPUT_NAME, "opset": OPSET, "rounded": True,
                 "input_shape": ["batch", st.latent_dim], "output_shape": ["batch", slots, 4],
                 "rounding": "half_to_even"},
        "devices": devices_out,
        "skipped_devices": skipped,
        "lan_traffic": bool(meta.get("lan_traffic", False)),
        "discriminators": {"static": "discriminators/static.pt", "adapted": [], "config": dcfg},
        "generations": [],
        "metrics": {"chance": chance, "status": "running"},
        "windows": {k: meta.get(k) for k in ("total_time", "omega", "slots_per_window", "stats")},
        "provenance": {"ipet_train": __version__, "torch": torch.__version__, "python": platform.python_version(),
                       "windows_dir": str(windows_dir), **(windows_info or {})},
    }

    def write_manifest() -> None:
        manifest["metrics"]["training_seconds"] = round(time.time() - t0, 1)
        tmp = out / "manifest.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
        tmp.replace(out / "manifest.json")

    def eval_attackers(gen_table: GenTable, mix: bool, adapted: nn.Module, label: str) -> dict[str, Any]:
        draw_rng = torch.Generator().manual_seed(st.seed * 1000 + 17 + len(manifest["generations"]) + (999 if mix else 0))
        perturber = make_perturber(gen_table, data.y, draw_rng, st.latent_dim, slots, mix)
        pert = perturber()  # the one defended test draw scored by every attacker
        row: dict[str, Any] = {
            "static": scores(y_test, predict(static, data, te, pert), n_cls),
            "adapted": scores(y_test, predict(adapted, data, te, pert), n_cls),
        }
        if st.retrain_epochs > 0:
            fresh = build_discriminator(st.model, n_cls, slots).to(device)
            hist = fit_discriminator(fresh, data, tr, va, st.retrain_epochs, st, weight, rng, perturber,
                                     early_stopping=True, desc=f"retrained attacker {label}")
            row["retrained"] = scores(y_test, predict(fresh, data, te, pert), n_cls)
            row["retrained"]["epochs_run"] = hist["epochs_run"]
        row["cover"] = _cover_stats(data.x[te], pert[te])
        return row

    # ---- stage 0 discriminator on undefended windows (the static attacker)
    torch.manual_seed(st.seed)
    disc = build_discriminator(st.model, n_cls, slots).to(device)
    hist0 = fit_discriminator(disc, data, tr, va, st.disc_epochs, st, weight, rng, None, early_stopping=True,
                              desc="discriminator (undefended)")
    static = copy.deepcopy(disc).eval()
    save_discriminator(disc_dir / "static.pt", static, dcfg, {"trained_on": "undefended", "history": hist0})
    und = scores(y_test, predict(static, data, te, None), n_cls)
    manifest["metrics"]["undefended"] = und
    fit_np = np.concatenate([split.train, split.val])
    manifest["metrics"]["silence_only"] = scores(
        y_test, silence_only_attacker(w.silence[fit_np], y_np[fit_np], w.silence[split.test], n_cls), n_cls)
    manifest["metrics"]["static_training"] = hist0
    _log(f"undefended: accuracy {und['accuracy']:.3f}  balanced {und['balanced_accuracy']:.3f}  "
         f"(chance {chance:.3f}; {hist0['epochs_run']} epochs)")
    write_manifest()

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
        _log(f"stage {stage}: static {row['static']['accuracy']:.3f}/{row['static']['balanced_accuracy']:.3f}  "
             f"adapted {row['adapted']['accuracy']:.3f}/{row['adapted']['balanced_accuracy']:.3f}  "
             + (f"retrained {row['retrained']['accuracy']:.3f}/{row['retrained']['balanced_accuracy']:.3f}  "
                if "retrained" in row else "")
             + f"cover {row['cover']['cover_packets_per_slot']:.2f} pkt {row['cover']['cover_bytes_per_slot']:.1f} B"
             f" per slot  ({row['seconds']} s)")
        write_manifest()

    mix = eval_attackers(gen_table, True, adapted_snapshots[-1], "mix")
    mix["generations"] = len(gen_table)
    mix["adapted_is"] = f"d{len(gen_table) - 1}"
    manifest["metrics"]["mix"] = mix
    manifest["metrics"]["device"] = str(device)
    manifest["metrics"]["threads"] = torch.get_num_threads()
    manifest["metrics"]["status"] = "complete"
    write_manifest()
    print(format_table(manifest))
    return manifest


# ---------------------------------------------------------------------------------------------
# reporting


def _pair(sc: Optional[dict[str, Any]]) -> str:
    if not sc:
        return "      -      "
    return f"{sc['accuracy']:.3f} / {sc['balanced_accuracy']:.3f}"


def format_table(manifest: dict[str, Any]) -> str:
    """Attacker accuracy / balanced accuracy on held-out windows, per generation and for `mix`."""
    m = manifest["metrics"]
    und = m.get("undefended")
    lines = [
        f"model set {manifest['name']}: {len(manifest['devices'])} devices, chance {m['chance']:.3f}; "
        f"cells are accuracy / balanced accuracy on held-out windows",
        f"undefended (stage-0 discriminator, no cover): {_pair(und)}",
        f"silence-only attacker (histogram of the silence scalar, which cover never changes): "
        f"{_pair(m.get('silence_only'))}",
        "",
        f"{'generation':>10} | {'static':^15} | {'adapted':^15} | {'retrained':^15} | cover pkt/slot | cover B/slot",
        "-" * 96,
    ]
    real = None
    rows = [(str(g["index"]), g["metrics"]) for g in manifest["generations"]]
    if "mix" in m:
        rows.append(("mix", m["mix"]))
    for label, r in rows:
        cov = r.get("cover", {})
        real = real or cov
        lines.append(f"{label:>10} | {_pair(r.get('static')):^15} | {_pair(r.get('adapted')):^15} | "
                     f"{_pair(r.get('retrained')):^15} | {cov.get('cover_packets_per_slot', float('nan')):14.2f} | "
                     f"{cov.get('cover_bytes_per_slot', float('nan')):11.1f}")
    if real:
        lines.append(f"real traffic per slot (held-out): {real['real_packets_per_slot']:.3f} packets, "
                     f"{real['real_bytes_per_slot']:.1f} bytes")
    if "training_seconds" in m:
        lines.append(f"training time: {m['training_seconds']:.0f} s on {m.get('device', '?')}")
    return "\n".join(lines)


def format_markdown(manifest: dict[str, Any]) -> str:
    """The same table as `format_table`, as Markdown (accuracy / balanced accuracy per cell)."""
    m = manifest["metrics"]
    st = manifest["settings"]
    out = [f"`{manifest['name']}`: model {st['model']}, objective {st['objective']}, generators "
           f"{st.get('generators', 'per_device')}, adversaries {st.get('adversaries', 'current')}; "
           f"{len(manifest['devices'])} devices, chance {m['chance']:.3f}. "
           f"Cells: accuracy / balanced accuracy on held-out windows.", "",
           f"- undefended (static attacker, no cover): {_pair(m.get('undefended')).strip()}",
           f"- silence-only attacker (cover cannot change it): {_pair(m.get('silence_only')).strip()}", "",
           "| generation | static | adapted | retrained | cover packets/slot | cover bytes/slot |",
           "|---|---|---|---|---|---|"]
    rows = [(str(g["index"]), g["metrics"]) for g in manifest["generations"]]
    if "mix" in m:
        rows.append(("mix", m["mix"]))
    real = None
    for label, r in rows:
        cov = r.get("cover", {})
        real = real or cov
        out.append(f"| {label} | {_pair(r.get('static')).strip()} | {_pair(r.get('adapted')).strip()} | "
                   f"{_pair(r.get('retrained')).strip()} | {cov.get('cover_packets_per_slot', float('nan')):.2f} | "
                   f"{cov.get('cover_bytes_per_slot', float('nan')):.1f} |")
    if real:
        out += ["", f"Real traffic in the same windows: {real['real_packets_per_slot']:.3f} packets and "
                    f"{real['real_bytes_per_slot']:.1f} payload bytes per slot."]
    if "training_seconds" in m:
        out.append(f"Training time: {m['training_seconds']:.0f} s on {m.get('device', '?')}.")
    return "\n".join(out)
