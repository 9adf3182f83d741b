"""Drawing cover traffic from trained generators for every window (one generation, or `mix`), and
its size next to the real traffic's."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from .models import Generator

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


def cover_stats(x_test: torch.Tensor, pert_test: torch.Tensor) -> dict[str, float]:
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
