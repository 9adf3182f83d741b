"""Settings and anonymity sets of the set-targets training (no torch import here; the command
line is `targets.command`, the training `targets.train`)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Optional, Sequence

ATTACKER_MODELS = ("lstm", "gru", "cnn", "mlp")


@dataclass
class TargetSettings:
    """Every knob of a set-targets run (also the `settings` of its manifest)."""

    total_time: float = 4.0
    omega: float = 0.1
    latent_dim: int = 20
    hidden: int = 128
    stages: int = 4
    attacker_epochs: int = 6
    generator_epochs: int = 3
    retrain_epochs: int = 15
    # every epoch count is raised so that a set with few windows still gets this many steps
    min_steps: int = 150
    patience: int = 4
    attackers: str = "lstm,cnn,mlp"
    batch_size: int = 128
    lr: float = 1e-3
    generator_lr: float = 2e-3
    # training proxy of the simulator's latency budget (seconds); 0 = pure padding
    latency_budget: float = 1.0
    # caps: per set, this quantile of the members' non-zero per-slot packet counts (per direction)
    cap_quantile: float = 0.99
    # cost weights (each cost is relative to the set's real traffic per window)
    privacy_weight: float = 3.0
    byte_weight: float = 0.3
    packet_weight: float = 0.1
    leak_weight: float = 5.0
    latency_weight: float = 0.3
    split: str = "time"
    train_fraction: float = 0.7
    val_fraction: float = 0.15
    max_windows_per_device: Optional[int] = None
    min_windows_per_device: int = 10
    seed: int = 0
    device: str = "auto"
    threads: int = 1
    progress: bool = False
    name: Optional[str] = None

    def validate(self) -> "TargetSettings":
        def check(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(msg)

        check(self.total_time > 0 and self.omega > 0, "total_time and omega must be positive")
        check(self.latent_dim > 0 and self.hidden > 0, "latent_dim and hidden must be positive")
        check(self.stages >= 1, "stages must be >= 1")
        for k in ("attacker_epochs", "generator_epochs", "retrain_epochs", "patience", "min_steps"):
            check(getattr(self, k) >= 0, f"{k} must be >= 0")
        check(len(self.attacker_list) >= 1, "attackers must name at least one model")
        bad = [a for a in self.attacker_list if a not in ATTACKER_MODELS]
        check(not bad, f"attackers {bad} unknown; choose from {ATTACKER_MODELS}")
        check(self.batch_size >= 1, "batch_size must be >= 1")
        check(self.latency_budget >= 0, "latency_budget must be >= 0")
        check(0.5 <= self.cap_quantile <= 1.0, "cap_quantile must be in [0.5, 1]")
        for k in ("privacy_weight", "byte_weight", "packet_weight", "leak_weight", "latency_weight"):
            check(getattr(self, k) >= 0, f"{k} must be >= 0")
        check(self.split in ("time", "random"), "split must be time or random")
        check(0.0 < self.train_fraction < 1.0, "train_fraction must be in (0, 1)")
        check(0.0 <= self.val_fraction < 1.0, "val_fraction must be in [0, 1)")
        check(self.max_windows_per_device is None or self.max_windows_per_device >= 2,
              "max_windows_per_device must be >= 2")
        check(self.device in ("auto", "cpu", "cuda"), "device must be auto, cpu or cuda")
        check(self.threads >= 0, "threads must be >= 0")
        return self

    @property
    def attacker_list(self) -> list[str]:
        return [a.strip() for a in self.attackers.split(",") if a.strip()]

    @property
    def slots_per_window(self) -> int:
        return int(round(self.total_time / self.omega))

    @property
    def budget_slots(self) -> int:
        return int(round(self.latency_budget / self.omega))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TargetSettings":
        names = {f.name for f in fields(cls)}
        unknown = sorted(k for k in d if k not in names)
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(unknown)}")
        return cls(**d).validate()


# ---------------------------------------------------------------------------------------------
# sets


def parse_sets(text: str) -> list[list[str]]:
    """`a,b,c;d,e,f,g` -> [[a, b, c], [d, e, f, g]]."""
    sets = [[n.strip() for n in part.split(",") if n.strip()] for part in text.split(";")]
    return [s for s in sets if s]


def resolve_sets(devices: Sequence[dict[str, Any]], sets_arg: Optional[str | Sequence[Sequence[str]]]
                 ) -> list[tuple[str, list[str]]]:
    """Named sets [(name, members)] from `--sets` or the devices' `set` field (from the device
    table, as `ipet windows` reports it). Every device with windows must be in exactly one set."""
    names = [d["name"] for d in devices]
    if sets_arg:
        groups = parse_sets(sets_arg) if isinstance(sets_arg, str) else [list(g) for g in sets_arg]
        named = [(f"set-{i + 1}", g) for i, g in enumerate(groups)]  # as `ipet` names a --sets override
    else:
        by: dict[str, list[str]] = {}
        for d in devices:
            s = d.get("set")
            if not s:
                raise ValueError(f"device {d['name']!r} has no set: give --sets or a `set` column in the device "
                                 f"table")
            by.setdefault(str(s), []).append(d["name"])
        named = sorted(by.items())
    seen: dict[str, str] = {}
    for set_name, members in named:
        for m in members:
            if m not in names:
                raise ValueError(f"set {set_name}: device {m!r} is not in the windows (devices: {', '.join(names)})")
            if m in seen:
                raise ValueError(f"device {m!r} is in two sets ({seen[m]} and {set_name})")
            seen[m] = set_name
        if len(members) < 2:
            raise ValueError(f"set {set_name} has {len(members)} member(s); a set needs at least 2")
    missing = [n for n in names if n not in seen]
    if missing:
        raise ValueError(f"devices {missing} are in no set")
    return named
