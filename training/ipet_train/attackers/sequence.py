"""Sequence attackers on the 4 s M_seq windows (LSTM and CNN of `ipet_train.models`), retrained
from scratch for every defense and fold on that defense's training windows. Where the defense is
random, the training windows come from several simulator runs (draws) with different seeds, one
draw per epoch in turn, so that the network sees fresh cover every epoch. The last tenth (by
time) of the first draw's training windows is held out for early stopping; test folds are never
looked at."""

from __future__ import annotations

import copy
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..models import build_discriminator


def class_weight(y: np.ndarray, n: int) -> torch.Tensor:
    counts = np.maximum(np.bincount(y, minlength=n), 1).astype(np.float64)
    w = counts.sum() / (n * counts)
    return torch.tensor(w / (w * counts).sum() * counts.sum(), dtype=torch.float32)


@torch.no_grad()
def _logits(model, x: torch.Tensor, s: torch.Tensor, batch: int = 4096) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i:i + batch], s[i:i + batch]) for i in range(0, x.shape[0], batch)]) \
        if x.shape[0] else torch.zeros(0)


def fit_predict(kind: str, draws: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
                test: tuple[np.ndarray, np.ndarray], n: int, epochs: int, seed: int, batch: int = 256,
                lr: float = 1e-3, patience: int = 3, device: str = "cpu") -> tuple[np.ndarray, dict]:
    """Train a fresh `kind` network on `draws` (each: windows [N,S,4], silence, class, start) and
    return its predictions on `test` (windows, silence) and a training record."""
    dev = torch.device(device)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x0, s0, y0, t0 = draws[0]
    order = np.argsort(t0, kind="stable")
    n_val = max(1, len(order) // 10) if len(order) >= 20 else 0
    val = order[len(order) - n_val:]
    val_t0 = t0[val].min() if n_val else np.inf
    tensors = []
    for x, s, y, t in draws:
        keep = t < val_t0  # training part: before the validation block (in every draw)
        tensors.append((torch.from_numpy(x[keep]).to(dev), torch.from_numpy(s[keep]).to(dev),
                        torch.from_numpy(y[keep]).to(dev)))
    xv, sv, yv = (torch.from_numpy(a[val]).to(dev) for a in (x0, s0, y0))
    weight = class_weight(np.concatenate([y[t < val_t0] for _, _, y, t in draws]), n).to(dev)
    model = build_discriminator(kind, n, x0.shape[1]).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    best, best_state, bad, run = float("inf"), None, 0, 0
    for ep in range(epochs):
        x, s, y = tensors[ep % len(tensors)]
        model.train()
        perm = torch.randperm(x.shape[0], generator=g).to(dev)
        for i in range(0, perm.shape[0], batch):
            b = perm[i:i + batch]
            loss = F.cross_entropy(model(x[b], s[b]), y[b], weight=weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        run = ep + 1
        if n_val:
            vl = float(F.cross_entropy(_logits(model, xv, sv), yv, weight=weight))
            if vl < best - 1e-4:
                best, bad, best_state = vl, 0, copy.deepcopy(model.state_dict())
            else:
                bad += 1
                if bad >= patience:
                    break
    if best_state is not None:
        model.load_state_dict(best_state)
    xt, st = (torch.from_numpy(a).to(dev) for a in test)
    pred = _logits(model, xt, st).argmax(1).cpu().numpy() if xt.shape[0] else np.zeros(0, np.int64)
    return pred, {"epochs_run": run, "best_val_loss": None if best == float("inf") else round(best, 4),
                  "train_windows": int(sum(t[0].shape[0] for t in tensors))}
