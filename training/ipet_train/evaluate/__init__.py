"""Every defense judged by the attacker suite on defended real traffic (`python -m ipet_train
evaluate`); see core.py for the method."""

from .core import EvalSettings, evaluate  # noqa: F401
