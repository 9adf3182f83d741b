"""The one attacker interface of the suite.

Every attacker is an object with a `name`, the `unit` it labels (`"window"`: the 4 s windows,
`"bin"`: the 15-minute aggregate bins) and `fit_predict(fold)`: trained from scratch on the
fold's training items of every draw it wants, it returns a class index for each tested item of
the first draw (the scored one). Optional hooks:

- `applies(draws)`: whether it can attack this dataset at all (the cross-device attacker needs
  every device's packets; default: yes);
- `prepare(draws)`: unsupervised work done once per defense before the folds (the cross-device
  attacker's pairing of frames), never looking at labels;
- `kept(draws)`: a per-item mask of the first draw the attacker itself selects to identify on
  (the cross-device attacker's "windows where it sees the device really send"); the suite scores
  the attacker on every tested item and on its kept ones, the stronger counts;
- `report()`: what else it measured (a dict that goes into results.json beside its scores);
- `records`: per-fold training records (the sequence networks' epochs).

`suite.attack` runs the registered attackers (`registry`) fold by fold and scores them with the
one scorer; the cover-vs-real distinguisher (`scorer`-style: P(real) rather than a class) keeps
its own small interface, `Distinguisher`, since its output also selects the windows the other
attackers are scored on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Protocol, Sequence, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from .dataset import Dataset
    from .suite import SuiteSettings


@dataclass
class Fold:
    """One time fold as every attacker sees it."""

    index: int  # 1..folds
    seed: int  # the fold's seed (suite seed * 1000 + index)
    draws: Sequence["Dataset"]  # draws[0] is scored; every draw may train (fresh cover)
    train: list[np.ndarray]  # per draw: training windows
    test: np.ndarray  # windows of draws[0] this fold tests
    bins_train: list[np.ndarray]  # per draw: training bins
    bins_test: np.ndarray  # bins of draws[0] this fold tests
    n: int  # classes (devices)
    settings: "SuiteSettings"

    def forest_draws(self, bins: bool = False) -> list[tuple["Dataset", np.ndarray]]:
        """(draw, training mask) of the draws the forests and boosting train on (the first
        `forest_draws`)."""
        masks = self.bins_train if bins else self.train
        return list(zip(self.draws, masks))[:max(1, self.settings.forest_draws)]


@runtime_checkable
class Attacker(Protocol):
    name: str
    unit: str  # "window" | "bin"

    def fit_predict(self, fold: Fold) -> np.ndarray: ...


def applies(a: Any, draws: Sequence["Dataset"]) -> bool:
    f = getattr(a, "applies", None)
    return True if f is None else bool(f(draws))


def prepare(a: Any, draws: Sequence["Dataset"]) -> None:
    f = getattr(a, "prepare", None)
    if f is not None:
        f(draws)


def kept(a: Any, draws: Sequence["Dataset"]) -> Optional[np.ndarray]:
    f = getattr(a, "kept", None)
    return None if f is None else f(draws)


def report(a: Any) -> Optional[dict[str, Any]]:
    f = getattr(a, "report", None)
    return None if f is None else f()
