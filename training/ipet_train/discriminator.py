"""Fitting and querying a discriminator (M_seq) on windows held as tensors on the training device."""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .runtime import log
from .settings import Settings


@dataclass
class Data:
    """All windows as tensors on the training device; labels mapped to class indices 0..C-1."""

    x: torch.Tensor  # [N, S, 4] raw
    s: torch.Tensor  # [N]
    y: torch.Tensor  # [N] class index
    n_classes: int


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
        log(f"{desc}: {len(hist)} epochs, last {hist[-1]}")
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return {"epochs_run": len(hist), "best_val_loss": None if best == float("inf") else best,
            "last": hist[-1] if hist else None}
