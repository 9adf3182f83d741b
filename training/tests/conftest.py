"""Shared fixtures (fabricated windows directories in the `ipet windows` format) and the strict
mode of CI: with IPET_TEST_STRICT=1 (scripts/test.sh sets it) a test that skips fails instead, so
a missing binary, capture or Python package cannot pass unnoticed."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ipet_train.data import write_windows  # noqa: E402

DEVICE_NAMES = ["cam-a", "hub-b", "lock-c"]


def fabricate_windows(directory, per_device=(60, 90, 40), slots=40, seed=0):
    """Synthetic windows whose devices differ in rate and size, so a classifier can learn them."""
    rng = np.random.default_rng(seed)
    feats, sil, labels, start = [], [], [], []
    for dev, n in enumerate(per_device):
        rate = [0.2, 1.0, 0.05][dev % 3]
        size = [300.0, 80.0, 1200.0][dev % 3]
        inp = rng.poisson(rate, (n, slots))
        outp = rng.poisson(rate * 1.5, (n, slots))
        f = np.stack([inp, inp * rng.uniform(0.5, 1.5, (n, slots)) * size,
                      outp, outp * rng.uniform(0.5, 1.5, (n, slots)) * size], axis=-1)
        feats.append(f)
        sil.append(rng.exponential([5.0, 1.0, 60.0][dev % 3], n))
        labels.append(np.full(n, dev))
        start.append(1.6e9 + np.sort(rng.uniform(0, 86400, n)))
    devices = [{"id": i, "name": DEVICE_NAMES[i % 3] + ("" if i < 3 else str(i)), "mac": f"00:00:00:00:00:0{i}",
                "ip": f"192.168.1.{10 + i}", "matched_by": "mac", "packets": 100}
               for i in range(len(per_device))]
    return write_windows(directory, np.concatenate(feats), np.concatenate(sil), np.concatenate(labels),
                         np.concatenate(start), devices)


@pytest.fixture
def windows_dir(tmp_path):
    return fabricate_windows(tmp_path / "windows")


def strict() -> bool:
    """IPET_TEST_STRICT set (and not 0): every skip is a failure (scripts/test.sh, so CI)."""
    return os.environ.get("IPET_TEST_STRICT", "") not in ("", "0")


def _strict_failure(what: str, longrepr) -> str:
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return f"{what} skipped under IPET_TEST_STRICT=1, which makes every skip a failure: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A skipped test (pytest.skip, a skip mark, a missing binary) fails in strict mode; an
    expected failure (xfail) stays what it is."""
    outcome = yield
    rep = outcome.get_result()
    if strict() and rep.skipped and not hasattr(rep, "wasxfail"):
        rep.outcome = "failed"
        rep.longrepr = _strict_failure(item.nodeid, rep.longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A module skipped while it is collected (`pytest.importorskip` of a missing package) is a
    collection error in strict mode."""
    outcome = yield
    rep = outcome.get_result()
    if strict() and rep.skipped:
        rep.outcome = "failed"
        rep.longrepr = _strict_failure(collector.nodeid, rep.longrepr)
