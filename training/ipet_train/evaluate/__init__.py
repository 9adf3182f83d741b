"""Evaluation of a model set's iPET cover and the baselines on defended real traffic
(`python -m ipet_train evaluate`); see core.py for the method."""

from .core import EvalSettings, evaluate  # noqa: F401
