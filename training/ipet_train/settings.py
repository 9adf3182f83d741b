"""Training settings: one dataclass, shared by the CLI, the config file and the manifest."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

MODELS = ("lstm", "gru", "cnn", "mlp")
OBJECTIVES = ("neg_ce", "uniform")
ADVERSARIES = ("current", "all")
GENERATORS = ("per_device", "shared")
SPLITS = ("time", "random")
CLASS_WEIGHTS = ("balanced", "sqrt", "none")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class Settings:
    """Every knob of a training run. Defaults are the reference's (ipet-reference.md sections 2-5)."""

    # windowing (passed to the Rust `ipet windows`; checked against windows.json when training)
    total_time: float = 4.0
    omega: float = 0.1
    # generators
    latent_dim: int = 20
    max_packets_per_omega: int = 4
    max_payload_per_omega: int = 100
    # adversarial loop
    training_stages: int = 5
    generator_epochs: int = 3
    adapt_epochs: int = 2
    disc_epochs: int = 100
    # attacker retrained from scratch on defended training windows (evaluation only)
    retrain_epochs: int = 20
    patience: int = 5
    batch_size: int = 128
    lr: float = 1e-3
    generator_lr: float = 2e-3
    model: str = "lstm"
    objective: str = "neg_ce"
    # which discriminators a stage's generators are trained against:
    # "current" (reference: the current one) or "all" (ensemble of stage-0 and every adapted one so far)
    adversaries: str = "current"
    # per_device (reference): one generator per device and stage; shared: one generator per stage,
    # trained on all devices' windows and served for every device (the cover carries no identity)
    generators: str = "per_device"
    class_weight: str = "balanced"
    seed: int = 0
    device: str = "auto"
    split: str = "time"
    train_fraction: float = 0.7
    val_fraction: float = 0.15
    max_windows_per_device: Optional[int] = None
    min_windows_per_device: int = 10
    name: Optional[str] = None
    progress: bool = True
    # torch intra-op CPU threads. 1 by default: these models are tiny, and OpenMP threads on shared
    # cores (a build running beside) slowed an epoch 20-40x in measurements; 0 = torch's choice
    threads: int = 1

    def validate(self) -> "Settings":
        def check(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(msg)

        check(self.model in MODELS, f"model must be one of {MODELS}, got {self.model!r}")
        check(self.objective in OBJECTIVES, f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        check(self.adversaries in ADVERSARIES, f"adversaries must be one of {ADVERSARIES}, got {self.adversaries!r}")
        check(self.generators in GENERATORS, f"generators must be one of {GENERATORS}, got {self.generators!r}")
        check(self.split in SPLITS, f"split must be one of {SPLITS}, got {self.split!r}")
        check(self.class_weight in CLASS_WEIGHTS, f"class_weight must be one of {CLASS_WEIGHTS}")
        check(self.device in DEVICES, f"device must be one of {DEVICES}, got {self.device!r}")
        check(self.total_time > 0 and self.omega > 0, "total_time and omega must be positive")
        check(self.latent_dim > 0, "latent_dim must be positive")
        check(self.max_packets_per_omega >= 0 and self.max_payload_per_omega >= 0, "caps must be >= 0")
        check(self.training_stages >= 1, "training_stages must be >= 1")
        for k in ("generator_epochs", "adapt_epochs", "disc_epochs", "retrain_epochs"):
            check(getattr(self, k) >= 0, f"{k} must be >= 0")
        check(self.threads >= 0, "threads must be >= 0")
        check(self.batch_size >= 1, "batch_size must be >= 1")
        check(0.0 < self.train_fraction < 1.0, "train_fraction must be in (0, 1)")
        check(0.0 <= self.val_fraction < 1.0, "val_fraction must be in [0, 1)")
        check(self.max_windows_per_device is None or self.max_windows_per_device >= 2,
              "max_windows_per_device must be >= 2")
        return self

    @property
    def slots_per_window(self) -> int:
        return int(round(self.total_time / self.omega))

    @property
    def caps(self) -> list[int]:
        p, b = self.max_packets_per_omega, self.max_payload_per_omega
        return [p, b, p, b]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["slots_per_window"] = self.slots_per_window
        return d

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Settings":
        names = set(cls.field_names())
        unknown = sorted(k for k in d if k not in names)
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(unknown)}")
        return cls(**d).validate()


def load_config_file(path: str | Path) -> dict[str, Any]:
    with open(path) as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a JSON object")
    return data
