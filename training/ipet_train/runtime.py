"""Where training runs: the torch device, seeding for reproducible runs, and the log line."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from tqdm.auto import tqdm


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


@contextmanager
def frozen(modules: Sequence[torch.nn.Module], device: torch.device) -> Iterator[None]:
    """Trains against `modules` held fixed: each in eval mode, its parameters without gradient
    until the block ends. cuDNN is off on CUDA inside, since it refuses RNN backward in eval mode."""
    for m in modules:
        m.eval()
        for p in m.parameters():
            p.requires_grad_(False)
    ctx = torch.backends.cudnn.flags(enabled=False) if device.type == "cuda" else torch.backends.cudnn.flags()
    with ctx:
        yield
    for m in modules:
        for p in m.parameters():
            p.requires_grad_(True)


def log(msg: str) -> None:
    tqdm.write(msg, file=sys.stderr)
