"""Training a generator against frozen discriminators (one stage of the adversarial loop)."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .discriminator import Data
from .models import Generator
from .runtime import frozen
from .settings import Settings


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
    opt = torch.optim.NAdam(gen.parameters(), lr=st.generator_lr)
    gen.train()
    losses = []
    with frozen(adversaries, device):
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
    gen.eval()
    return {"steps": len(losses), "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None}
