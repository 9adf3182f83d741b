"""Attacker strength on data whose answer is known (issue 20, item 2).

Range checks (0 <= BA <= 1, shapes) pass for an attacker that always names one class, and such an
attacker makes every defense look perfect. Here every attacker of the suite runs the way
`evaluate` runs it (`suite.attack`: the registry behind the one interface, the suite's time folds,
the one scorer, the stronger of "all" and "kept") on REAL traffic, the in-repo 12-hour slice
through the Rust data plane (`ipet features`, `ipet packets`, `ipet simulate --features`; nothing
about packets, windows or aggregates is computed here), and must

- score well above chance where the answer is known: three devices with clearly different
  traffic, undefended (a deadbolt and two vendors' lock hubs). Left out of this home: the three
  Blink cameras (10 to 16 windows each in 12 hours, and alike) and the Lockly hub, whose idle
  windows the sequence networks take for the Ultraloq hub's;
- score near chance where there is nothing to learn: the same data with the labels shuffled.

What "shuffled" means, per the unit each attacker labels:

- windows (the sequence networks, k-FP, the cross-device attacker's window form): the windows'
  labels permuted (seeded; each class keeps its number of windows, so balanced accuracy's chance
  stays 1/n, and the labels no longer depend on time, so every fold trains and tests on the same
  mix);
- bins (M_agg, also on the transport observer's TCP-only aggregates, and the cross-device
  attacker's bin form): the bins' labels permuted likewise;
- the cross-device attacker reads a third view that names devices, the home's frames: an item's
  features come from the frames of the item's class (`crossdevice.item_features`), so permuting
  only the items' labels would hand it the label through the frames. Its shuffle is a link whose
  frames carry no device: each frame's device drawn uniformly at random (uniformly, not permuted:
  a device with more frames would still mark its class by volume);
- the folds are cut from the shuffled labels by the suite's own rule (each class's own span, now
  the whole home's for every class), as `evaluate` would cut them for that dataset; a fold that
  trained on its own test items would let the forests recall the shuffled labels.

The cross-device attacker also gets the answers its threat model makes known: the home in one
supersequence set (every member padded to the same per-slot maximum, so k-FP and M_agg are at
chance by construction) with every copy moved 2 ms after its original on the link (moved here:
the simulator's gateways no longer send copies a fixed lag after originals they forwarded) must be
named through the lag, and with no lag (identical copies) nobody can beat chance. The
cover-vs-real distinguisher must tell the constant-rate baseline's cover-only windows from windows
with real packets, and be at AUC ~0.5 on the same windows with their real/cover flags permuted.

Thresholds come from measured scores (the constants say what was measured); each check was seen
to fail on a deliberately broken attacker (one class always, the test labels read, a fold that
trains on its test items, the pairing without a lag window or its features unused, a constant
P(real))."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("torch")

from ipet_train.attackers.crossdevice import CrossDevice  # noqa: E402
from ipet_train.attackers.dataset import Dataset, HomePackets, load_features, load_packets  # noqa: E402
from ipet_train.attackers.folds import TimeFolds  # noqa: E402
from ipet_train.attackers.suite import SuiteSettings, attack  # noqa: E402
from ipet_train.evaluate.core import EvalSettings, _features, _packets  # noqa: E402
from ipet_train.evaluate.defenses import defense_list, simulate_draw, variant_args  # noqa: E402
from ipet_train.ipet_binary import find_ipet_binary  # noqa: E402
from ipet_train.models import DISCRIMINATORS  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SLICE = ROOT / "data" / "tj-oconnor-2021-slice"
DEVICES = ("schlage-lock-01", "sifely-hub-01", "ultraloq-hub-01")
SEQ_KINDS = tuple(sorted(DISCRIMINATORS))  # every sequence network the suite offers (--seq-models)
WINDOW_ATTACKERS = (*SEQ_KINDS, "kfp", "cross_device")
BIN_ATTACKERS = ("m_agg", "cross_device_agg")
FOLDS = 3
SEED = 0
ES = EvalSettings()  # the evaluation's window length, slot and bin length

# ---- thresholds. Chance is 1/3 (three devices); an attacker that names one class scores 1/3
# exactly. Scores below were measured with these settings (suite seeds 0-4, shuffle seeds 0-19).
#
# Well above chance, undefended: k-FP 0.999, cross-device 0.996 (windows) and 1.0 (bins), M_agg
# 0.976-1.0 (the transport observer's too); the sequence networks, small and trained 15 epochs at
# most on 300-850 windows: CNN 0.87-0.94, MLP 0.89-0.90, LSTM 0.76-0.93, GRU 0.66-0.83. Floors:
# 0.9 for the forests (chance + 0.57), 0.6 for the networks (chance + 0.27; GRU's worst seed is
# 0.06 above it).
KNOWN_MIN = {**{k: 0.6 for k in SEQ_KINDS}, "kfp": 0.9, "cross_device": 0.9, "m_agg": 0.9, "cross_device_agg": 0.9}
# Near chance, shuffled labels: |BA - 1/3| at most this. Predictions that do not depend on the
# labels score 1/n on average, spread by the smallest class: ~30 tested windows of the deadbolt
# (measured sd of BA 0.014-0.022, largest deviation 0.066 over 20 shuffles, MLP), ~25 tested bins
# a class (sd 0.04-0.05, largest deviation 0.11, the cross-device bins). Tolerances: windows 0.10
# (4.5 sd or more), bins 0.16 (3.2 sd or more), both 1.5 times the largest measured deviation. A
# leak (the test labels read, a fold training on its test items) scores 0.9 or more.
NULL_TOL = {**{k: 0.10 for k in WINDOW_ATTACKERS}, **{k: 0.16 for k in BIN_ATTACKERS}}
# The cross-device attacker's window form was once NOT near chance on shuffled labels (0.32-0.46
# over 20 shuffles, mean 0.384): its min and max of attributed sizes (`crossdevice._range_reduce`)
# were reduced from an item's first attributed frame up to the NEXT item of the same class, so they
# depended on how that class's items are spaced: on the labels. Reduced over the item's own frames,
# the same 20 shuffles measure mean 0.335, sd 0.017, largest deviation 0.036; one shuffle's spread
# hides a bias of a few hundredths, so `test_cross_device_windows_are_near_chance_on_average_over
# _shuffles` holds the tight check on the mean of several.
# Mean over XDEV_SHUFFLES shuffles: with the reduction fixed, means of 4 of those 20 shuffles
# deviate at most 0.019 from 1/3; with the old reduction, 0.016-0.068 (0.060 for shuffles 0-3).
XDEV_SHUFFLES = 4
XDEV_MEAN_TOL = 0.035
# Identical copies (one set, no lag): every attacker measured within 0.01 of 1/3.
IDENTICAL_TOL = 0.05
# Copies trailing by 2 ms: cross-device 0.99 (windows) and 0.97-1.0 (bins); k-FP 0.33, M_agg
# 0.33-0.35 (they must stay near chance: only the lag carries the answer).
LAG_MIN = 0.9
LAG_S = 0.002
ATTRIBUTED_MIN = 0.95
# Distinguisher: constant-rate cover against real windows, AUC 1.0 (5 draws); with the real/cover
# flags permuted over ~2,500 tested windows (~870 real), AUC 0.484-0.523 (20 permutations, sd
# 0.010): tolerance 6 sd, 2.6 times the largest measured deviation.
DIST_KNOWN_MIN = 0.9
DIST_NULL_TOL = 0.06


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # OpenMP pools wider than the free cores spin (see evaluate.core): one thread, as the suite runs
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(before)


def suite_settings(seed: int = SEED, seq: bool = True) -> SuiteSettings:
    """Every attacker of the suite, small: at most 15 epochs at batch 32 (~30 steps an epoch),
    early stopping after 5 without progress, few trees and boosting rounds, no bootstrap interval
    (the point estimate is what is checked)."""
    return SuiteSettings(seed=seed, seq_models=list(SEQ_KINDS) if seq else [], epochs=15, patience=5, batch_size=32,
                         kfp_iters=30, dist_iters=30, rf_trees=30, bootstrap=0, ablation=False)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """The three devices' undefended dataset (windows, features, bins, every frame) as the data
    plane writes it, the suite's folds over it, and what a defense run needs."""
    binary = find_ipet_binary()  # absent: the tests fail (they do not skip)
    work = tmp_path_factory.mktemp("strength")
    lines = (SLICE / "devices.csv").read_text().splitlines()
    rows = [r for r in lines[1:] if r.split(",")[0] in DEVICES]
    assert len(rows) == len(DEVICES), f"{SLICE / 'devices.csv'} lacks one of {DEVICES}"
    devices_csv = work / "devices.csv"
    devices_csv.write_text("\n".join([lines[0], *rows]) + "\n")
    captures = [str(SLICE / "pcaps")]
    _features(binary, captures, str(devices_csv), work / "undefended", ES)
    meta = json.loads((work / "undefended" / "windows.json").read_text())
    devs = [d for d in meta["devices"] if d["windows"] > 0]
    assert [d["name"] for d in devs] == list(DEVICES)
    class_of = {int(d["id"]): c for c, d in enumerate(devs)}
    und = load_features(work / "undefended", class_of)
    _packets(binary, captures, str(devices_csv), work / "packets")
    und.packets = load_packets(work / "packets", class_of)
    return SimpleNamespace(binary=binary, work=work, devices_csv=str(devices_csv), captures=captures, und=und,
                           names=list(DEVICES), class_of=class_of, n=len(DEVICES),
                           folds=TimeFolds.over(und.start, FOLDS, und.y))


def run_suite(h, draws: list[Dataset], folds: TimeFolds, ss: SuiteSettings, **kw) -> dict:
    return attack(draws, folds, h.n, ES.total_time, ES.agg_seconds, ss, **kw)


def ba(out: dict) -> dict[str, float]:
    return {a: r["balanced_accuracy"] for a, r in out["attackers"].items()}


def shuffled(d: Dataset, n: int, seed: int) -> Dataset:
    """The same windows, bins and frames with every label made meaningless (module doc): window
    and bin labels permuted, each frame's device drawn uniformly."""
    rng = np.random.default_rng(seed)
    p = d.packets
    frames = None if p is None else HomePackets(cls=rng.integers(0, n, p.n), time=p.time, size=p.size,
                                                direction=p.direction, dummy=p.dummy)
    return dataclasses.replace(d, y=rng.permutation(d.y), agg_y=rng.permutation(d.agg_y), packets=frames)


def folds_of(d: Dataset) -> TimeFolds:
    return TimeFolds.over(d.start, FOLDS, d.y)  # the suite's rule, on the labels it is given


def defended(h, key: str, variant: str | None = None, seed: int = 5) -> Dataset:
    """One draw of a defense of `evaluate`'s list (`key`; `variant`: simulator release flags as
    --supersequence-variants spells them), with the home's frames for a home defense."""
    dfn = next(d for d in defense_list([], ["constant"], [1.0], ES.idle_cover, None, ES.k, True, [], [], None)
               if d["key"] == key)
    if variant:
        dfn = {**dfn, "args": [*dfn["args"], *variant_args(variant)[0]]}
    ds, _ = simulate_draw(h.binary, h.captures, h.devices_csv, h.names, h.class_of, dfn, seed,
                          h.work / f"run-{key}-{variant}", 2, [], traces=dfn["home"])
    return ds


def off_chance(got: dict[str, float], n: int, tol: dict[str, float]) -> dict[str, float]:
    return {a: v for a, v in got.items() if not abs(v - 1 / n) <= tol[a]}


def test_every_attacker_is_well_above_chance_on_devices_with_clearly_different_traffic(home):
    got = ba(run_suite(home, [home.und], home.folds, suite_settings()))
    # the registry's every attacker ran (the cross-device ones need the frames: `applies`)
    assert set(got) == {*WINDOW_ATTACKERS, *BIN_ATTACKERS}, got
    low = {a: (v, KNOWN_MIN[a]) for a, v in got.items() if not v >= KNOWN_MIN[a]}
    assert not low, f"chance is {1 / home.n:.3f}; under their floor (score, floor): {low}; all: {got}"
    # the transport observer's row: M_agg on the real TCP aggregates alone
    tr = ba(run_suite(home, [home.und], home.folds, suite_settings(seq=False), transport_tcp_only=True,
                      aggregates_only=True))
    assert tr["m_agg"] >= KNOWN_MIN["m_agg"], tr


def test_every_attacker_is_near_chance_when_the_labels_are_shuffled(home):
    sh = shuffled(home.und, home.n, SEED)
    got = ba(run_suite(home, [sh], folds_of(sh), suite_settings()))
    assert set(got) == {*WINDOW_ATTACKERS, *BIN_ATTACKERS}, got
    off = off_chance(got, home.n, NULL_TOL)
    assert not off, f"chance is {1 / home.n:.3f}; further from it than {NULL_TOL}: {off}; all: {got}"
    tr = ba(run_suite(home, [sh], folds_of(sh), suite_settings(seq=False), transport_tcp_only=True,
                      aggregates_only=True))
    assert not off_chance(tr, home.n, NULL_TOL), tr


def test_cross_device_windows_are_near_chance_on_average_over_shuffles(home):
    """The window form on its own, over several shuffles: one shuffle's spread (sd ~0.017 when
    sound) hides a bias of a few hundredths, the mean of four does not."""
    ss = suite_settings(seq=False)
    got = []
    for s in range(XDEV_SHUFFLES):
        sh = shuffled(home.und, home.n, s)
        got.append(ba(run_suite(home, [sh], folds_of(sh), dataclasses.replace(ss, seed=s),
                                attackers=[CrossDevice(ss)]))["cross_device"])
    assert abs(float(np.mean(got)) - 1 / home.n) <= XDEV_MEAN_TOL, got


def trailing(d: Dataset, lag_s: float) -> Dataset:
    """The same draw with every cover frame moved `lag_s` later on the link (frames re-sorted by
    time); the per-device windows and bins are left as they were."""
    p = d.packets
    t = p.time + np.where(p.dummy, lag_s, 0.0)
    order = np.argsort(t, kind="stable")
    return dataclasses.replace(d, packets=HomePackets(cls=p.cls[order], time=t[order], size=p.size[order],
                                                      direction=p.direction[order], dummy=p.dummy[order]))


def test_cross_device_attacker_names_members_through_copies_trailing_by_a_known_lag(home):
    """All three in one supersequence set, every member padded to the set's per-slot maximum with
    copies of the lead's frames, and every copy 2 ms after its original on the link: the
    cross-device attacker, which pairs frames across members, must name the member from the lag.

    The lag is put in here, on the ideal draw (copies at their original's time, the next test):
    it is what a gateway that forwards originals at once and reacts in exactly 2 ms would send.
    The simulator sends no such thing any more: a gateway that holds originals until their slot
    is decided (one slot behind, held release, mirror-all) releases them from the timer of their
    copies, with the same reaction, and one that forwards them sends their copies when the slot is
    decided, on the slot grid (where k-FP tells the original apart too). Only the link view is
    moved, so k-FP and M_agg, which read the per-device windows and bins, are not checked here."""
    ds = trailing(defended(home, "supersequence-all"), LAG_S)
    out = run_suite(home, [ds], home.folds, suite_settings(seq=False))
    got = ba(out)
    assert got["cross_device"] >= LAG_MIN and got["cross_device_agg"] >= LAG_MIN, got
    # and it names them for the reason it should: the lag window it estimates holds 2 ms (measured
    # 1.9992-2.0004 ms both ways) and the frames it calls originals are the real ones (measured
    # 100% of the real frames, all of them real)
    for direction, att in out["attackers"]["cross_device"]["attribution"].items():
        lo, hi = att["lag_window_s"] or (0.0, 0.0)
        assert lo <= LAG_S <= hi and hi - lo < 0.1 * LAG_S, (direction, att)
        assert att["real_attributed_fraction"] >= ATTRIBUTED_MIN, (direction, att)
        assert att["attributed_real_fraction"] >= ATTRIBUTED_MIN, (direction, att)


def test_with_identical_copies_no_attacker_beats_chance(home):
    """The same set with no lag (the ideal deployment): every member's frames are the same frames
    at the same times, so no attacker, the cross-device one included, does better than 1/3."""
    ds = defended(home, "supersequence-all")
    got = ba(run_suite(home, [ds], home.folds, suite_settings(seq=False)))
    assert set(got) == {"kfp", "cross_device", "m_agg", "cross_device_agg"}, got
    assert not off_chance(got, home.n, {a: IDENTICAL_TOL for a in got}), got


def test_distinguisher_tells_constant_rate_cover_from_real_and_not_shuffled_flags(home):
    """The cover-vs-real distinguisher, the suite's (through `attack`), on the constant-rate
    baseline: cover-only windows against windows with real packets. Shuffled: the same windows
    with their real/cover flags permuted (its label is per window; the folds, over the devices'
    windows, are the suite's and unchanged)."""
    ds = defended(home, "constant@1")
    assert (ds.real == 0).sum() > 500 and (ds.real > 0).sum() > 500
    ss = suite_settings(seq=False)
    known = run_suite(home, [ds], home.folds, ss, attackers=[])["distinguisher"]
    assert known["auc"] >= DIST_KNOWN_MIN, known
    flags = dataclasses.replace(ds, real=np.random.default_rng(SEED).permutation(ds.real))
    null = run_suite(home, [flags], home.folds, ss, attackers=[])["distinguisher"]
    assert abs(null["auc"] - 0.5) <= DIST_NULL_TOL, null
