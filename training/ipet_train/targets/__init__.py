"""Learned anonymity-set targets (family `set-targets`): settings/CLI in `settings`, training in `train`."""
