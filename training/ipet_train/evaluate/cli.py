"""Arguments of `python -m ipet_train evaluate` (kept here so cli.py only dispatches)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Optional, Sequence

from ..settings import MODELS


def add_arguments(e: argparse.ArgumentParser) -> None:
    from .core import BASELINES, EvalSettings

    d = EvalSettings()
    e.add_argument("--captures", nargs="+", required=True, help="pcap files or directories")
    e.add_argument("--devices", required=True, help="devices.csv")
    e.add_argument("--models", default="models/tj-oconnor-2021", help="model set directory (default: %(default)s)")
    e.add_argument("--out", required=True, help="report directory (results.json, report.md, PNGs)")
    e.add_argument("--work", help="keep intermediate windows here (default: a temporary directory)")
    e.add_argument("--ipet-bin", help="ipet binary (else $IPET_BIN, PATH, target/{release,debug}/ipet)")
    e.add_argument("--seed", type=int, default=d.seed, help="seed of everything (default: %(default)s)")
    e.add_argument("--attacker", choices=MODELS, default=d.attacker, help="retrained M_seq variant (default: %(default)s)")
    e.add_argument("--rates", type=float, nargs="+", default=d.rates,
                   help="baseline --rate-scale values (default: %(default)s)")
    e.add_argument("--baselines", nargs="+", choices=BASELINES, default=d.baselines)
    e.add_argument("--generations", nargs="+", help="iPET generations to evaluate (indices or mix; default: all + mix)")
    e.add_argument("--epochs", type=int, default=d.epochs, help="max epochs of the retrained attacker (default: %(default)s)")
    e.add_argument("--patience", type=int, default=d.patience, help="early stopping patience (default: %(default)s)")
    e.add_argument("--max-train-windows", type=int, default=d.max_train_windows,
                   help="cap of training windows per device and defense, 0 = none (default: %(default)s)")
    e.add_argument("--max-test-windows", type=int, default=d.max_test_windows,
                   help="cap of test windows per device and defense, 0 = none (default: %(default)s)")
    e.add_argument("--train-fraction", type=float, default=d.train_fraction,
                   help="first part of each device's time span used for training (default: %(default)s)")
    e.add_argument("--rf-trees", type=int, default=d.rf_trees, help="M_agg forest size (default: %(default)s)")
    e.add_argument("--agg-seconds", type=float, default=d.agg_seconds, help="M_agg bin (default: %(default)s)")
    e.add_argument("--jobs", type=int, default=d.jobs, help="simulations run at once (default: %(default)s)")
    e.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads (default: %(default)s)")


def run(args: argparse.Namespace, argv: Optional[Sequence[str]]) -> int:
    from .core import EvalSettings, evaluate

    es = EvalSettings(seed=args.seed, attacker=args.attacker, rates=list(args.rates), baselines=list(args.baselines),
                      generations=args.generations, epochs=args.epochs, patience=args.patience,
                      max_train_windows=args.max_train_windows or None, max_test_windows=args.max_test_windows or None,
                      train_fraction=args.train_fraction, rf_trees=args.rf_trees, agg_seconds=args.agg_seconds,
                      jobs=args.jobs, threads=args.threads)
    argv = list(argv) if argv is not None else sys.argv[1:]
    command = "python -m ipet_train " + " ".join(shlex.quote(a) for a in argv)
    evaluate(args.captures, args.devices, args.models, args.out, es,
             binary=Path(args.ipet_bin) if args.ipet_bin else None, work=args.work, command=command)
    return 0
