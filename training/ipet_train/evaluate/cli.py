"""Arguments of `python -m ipet_train evaluate` (kept here so cli.py only dispatches)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Optional, Sequence


def add_arguments(e: argparse.ArgumentParser) -> None:
    from ..attackers.suite import SuiteSettings
    from .core import EvalSettings
    from .defenses import BASELINES

    d, s = EvalSettings(), SuiteSettings()
    e.add_argument("--captures", nargs="+", required=True, help="pcap files or directories")
    e.add_argument("--devices", required=True, help="devices.csv")
    e.add_argument("--out", required=True, help="report directory (summary.json, results.json, report.md, PNGs)")
    e.add_argument("--work", help="scratch directory for one simulator run at a time (default: a temporary one)")
    e.add_argument("--ipet-bin", help="ipet binary (else $IPET_BIN, PATH, target/{release,debug}/ipet)")
    e.add_argument("--seed", type=int, default=d.seed, help="seed of everything (default: %(default)s)")
    e.add_argument("--folds", type=int, default=d.folds, help="contiguous time folds tested (default: %(default)s)")
    e.add_argument("--draws", type=int, default=d.draws,
                   help="simulator runs per defense, rotated per training epoch (default: %(default)s)")
    e.add_argument("--ipet-models", nargs="*", default=d.ipet_models, help="iPET model sets, each run as `mix`")
    e.add_argument("--baselines", nargs="*", choices=BASELINES, default=d.baselines)
    e.add_argument("--rates", type=float, nargs="+", default=d.rates, help="baseline --rate-scale values")
    e.add_argument("--idle-cover", type=float, default=d.idle_cover,
                   help="baselines: random cover only this many s after the last real packet (default: %(default)s)")
    e.add_argument("--sets", help="anonymity sets for the set defenses (`a,b;c,d`), else clustering with --k")
    e.add_argument("--k", type=int, default=d.k, help="minimum set size when clustering (default: %(default)s)")
    e.add_argument("--no-all-in-one", action="store_true", help="skip the supersequence with every device in one set")
    e.add_argument("--regulator-budgets", type=float, nargs="*", default=d.regulator_budgets,
                   help="latency budgets (s) of the regulator rows (default: %(default)s)")
    e.add_argument("--supersequence-variants", nargs="*", default=[], metavar="SPEC",
                   help="further supersequence rows (same sets) with `ipet simulate`'s release flags, each SPEC a "
                        "comma-separated list without dashes: `lag=2ms`, `deployment=bridge,lag=2ms,held-release`, "
                        "`deployment=ap,lag=software-shaper` (keys supersequence+SPEC)")
    e.add_argument("--targets", nargs="*", default=d.targets, help="learned-target configurations (keys of --targets-file)")
    e.add_argument("--targets-file", default=d.targets_file)
    e.add_argument("--only", nargs="+", help="evaluate only these defense keys (and the undefended row)")
    e.add_argument("--seq-models", nargs="*", default=s.seq_models, choices=["lstm", "cnn", "gru", "mlp"])
    e.add_argument("--seq-max-per-device", type=int, default=s.seq_max_per_device,
                   help="sequence networks: at most this many training windows per device and draw (0: all)")
    e.add_argument("--forest-draws", type=int, default=s.forest_draws, help="draws the forests train on")
    e.add_argument("--ablation-on", nargs="*", default=None,
                   help="defense keys whose distinguisher is also refit without feature groups (default: every one)")
    e.add_argument("--epochs", type=int, default=s.epochs, help="max epochs of the sequence attackers")
    e.add_argument("--patience", type=int, default=s.patience)
    e.add_argument("--kfp-iters", type=int, default=s.kfp_iters, help="k-FP gradient-boosting iterations")
    e.add_argument("--dist-iters", type=int, default=s.dist_iters, help="distinguisher gradient-boosting iterations")
    e.add_argument("--rf-trees", type=int, default=s.rf_trees, help="M_agg forest size")
    e.add_argument("--bootstrap", type=int, default=s.bootstrap, help="bootstrap draws per interval")
    e.add_argument("--device", default=s.device, help="torch device for the sequence attackers (auto, cpu, cuda)")
    e.add_argument("--jobs", type=int, default=d.jobs, help="simulations run at once (default: %(default)s)")
    e.add_argument("--threads", type=int, default=d.threads, help="CPU threads of torch and the forests (default: %(default)s)")
    e.add_argument("--fold-by", choices=["device", "home"], default=d.fold_by,
                   help="time folds over each device's own history (device) or over the home's span (home, the "
                        "rule before issue 18) (default: %(default)s)")
    e.add_argument("--wire-summary", help="the testbed's rows (`scripts/wire_compare.py`'s wire-summary.json) to "
                                          "put beside the simulated ones, as summary.json's `wire`")
    e.add_argument("--no-cross-device", action="store_true",
                   help="leave out the cross-device attacker (it needs every device's frames: `ipet packets` and "
                        "`ipet simulate --out-dir` of the set defenses)")


def run(args: argparse.Namespace, argv: Optional[Sequence[str]]) -> int:
    from ..attackers.suite import SuiteSettings
    from .core import EvalSettings, evaluate

    ss = SuiteSettings(seed=args.seed, seq_models=list(args.seq_models), epochs=args.epochs, patience=args.patience,
                       kfp_iters=args.kfp_iters, dist_iters=args.dist_iters, rf_trees=args.rf_trees,
                       bootstrap=args.bootstrap, device=args.device, seq_max_per_device=args.seq_max_per_device,
                       forest_draws=args.forest_draws, cross_device=not args.no_cross_device)
    es = EvalSettings(seed=args.seed, folds=args.folds, draws=args.draws, ipet_models=list(args.ipet_models),
                      baselines=list(args.baselines), rates=list(args.rates), idle_cover=args.idle_cover,
                      sets=args.sets, k=args.k, all_in_one=not args.no_all_in_one,
                      regulator_budgets=list(args.regulator_budgets), targets=list(args.targets),
                      supersequence_variants=list(args.supersequence_variants),
                      targets_file=args.targets_file, only=args.only, ablation_on=args.ablation_on, jobs=args.jobs, threads=args.threads, suite=ss,
                      fold_by=args.fold_by)
    argv = list(argv) if argv is not None else sys.argv[1:]
    command = "python -m ipet_train " + " ".join(shlex.quote(a) for a in argv)
    evaluate(args.captures, args.devices, args.out, es, binary=Path(args.ipet_bin) if args.ipet_bin else None,
             work=args.work, command=command, wire_summary=Path(args.wire_summary) if args.wire_summary else None)
    return 0
