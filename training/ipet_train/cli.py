"""Command line: `python -m ipet_train {train,pipeline,table,evaluate} ...`.

Every setting is a flag (`--disc-epochs 20`) and may also come from `--config FILE.json`, whose keys
are the same names with underscores (`{"disc_epochs": 20, "windows": "..."}`); flags override it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
import typing
from pathlib import Path
from typing import Any, Optional, Sequence

from . import __version__
from .settings import (ADVERSARIES, CLASS_WEIGHTS, DEVICES, GENERATORS, MODELS, OBJECTIVES, SPLITS, Settings,
                       load_config_file)

HELP = {
    "total_time": "window length in seconds (passed to `ipet windows`)",
    "omega": "slot length in seconds (passed to `ipet windows`)",
    "latent_dim": "generator noise dimension",
    "max_packets_per_omega": "cap on cover packets per slot and direction",
    "max_payload_per_omega": "cap on cover payload bytes per slot and direction",
    "training_stages": "adversarial stages = generations",
    "generator_epochs": "epochs per generator and stage (over that device's training windows)",
    "adapt_epochs": "epochs the discriminator adapts to each stage's cover traffic",
    "disc_epochs": "max epochs of the stage-0 discriminator (early stopping on val loss)",
    "retrain_epochs": "max epochs of the evaluation-only attacker retrained on defended windows (0: skip)",
    "patience": "early-stopping patience in epochs (LR halves after patience//2 flat epochs)",
    "batch_size": "batch size",
    "lr": "Adam learning rate of the discriminators",
    "generator_lr": "Nadam learning rate of the generators",
    "model": "discriminator (M_seq) variant",
    "objective": "generator loss: neg_ce (reference) or uniform (push the attacker's output to uniform)",
    "adversaries": "train generators against the current discriminator (reference) or all so far",
    "generators": "per_device (reference) or shared: one generator per stage for all devices, so the cover "
                  "carries no device identity",
    "class_weight": "class weights of the discriminator loss (imbalanced devices)",
    "seed": "random seed (numpy, torch)",
    "device": "torch device",
    "split": "time: per device first train_fraction of windows by time to train, rest held out; "
             "random: random per-device split",
    "train_fraction": "fraction of each device's windows used for training (incl. validation)",
    "val_fraction": "fraction of the training part held out for early stopping",
    "max_windows_per_device": "random cap of windows per device (smoke runs)",
    "min_windows_per_device": "devices with fewer windows get no generator (warned, listed in the manifest)",
    "name": "model set name (default: the output directory's name)",
    "progress": "tqdm progress bars",
    "threads": "torch CPU threads (0: torch's choice; 1 avoids OpenMP thrashing on shared cores)",
}


def _unwrap(tp: Any) -> Any:
    if typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0]
    return tp


CHOICES = {"model": MODELS, "objective": OBJECTIVES, "adversaries": ADVERSARIES, "split": SPLITS,
           "class_weight": CLASS_WEIGHTS, "device": DEVICES,
           "generators": GENERATORS}


def _add_settings(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("settings (defaults: the reference's; also settable in --config)")
    hints = typing.get_type_hints(Settings)
    defaults = Settings()
    for f in dataclasses.fields(Settings):
        tp = _unwrap(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        help_ = f"{HELP.get(f.name, '')} (default: {default})"
        if tp is bool:
            g.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                           help=help_)
        else:
            g.add_argument(flag, dest=f.name, type=tp, choices=CHOICES.get(f.name), default=argparse.SUPPRESS,
                           help=help_)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m ipet_train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version", version=f"ipet_train {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model set from a windows directory (`ipet windows` output)")
    t.add_argument("--config", help="JSON file of settings (and windows/out)")
    t.add_argument("--windows", default=argparse.SUPPRESS, help="windows directory from `ipet windows`")
    t.add_argument("--out", default=argparse.SUPPRESS, help="model set directory to write")
    _add_settings(t)

    p = sub.add_parser("pipeline", help="captures -> `ipet windows` -> train: the one command from captures "
                                        "to a model set")
    p.add_argument("--config", help="JSON file of settings (and captures/devices/out/work)")
    p.add_argument("--captures", nargs="+", default=argparse.SUPPRESS, help="pcap/pcapng/CSV files or directories")
    p.add_argument("--devices", default=argparse.SUPPRESS, help="devices.csv (name,mac,ip[,description])")
    p.add_argument("--out", default=argparse.SUPPRESS, help="model set directory to write")
    p.add_argument("--work", default=argparse.SUPPRESS,
                   help="directory for the windows (kept); default: a temporary directory, removed afterwards")
    p.add_argument("--ipet-bin", default=argparse.SUPPRESS, help="path of the ipet binary (else $IPET_BIN, PATH, "
                                                                 "target/{release,debug}/ipet)")
    _add_settings(p)

    stp = sub.add_parser("set-targets", help="captures (or windows) + anonymity sets -> one learned target "
                                             "generator per set (family set-targets)")
    from .targets.command import add_arguments as _targets_args
    _targets_args(stp)

    rx = sub.add_parser("reexport", help="re-export every generator of a model set with the current exporter, "
                                         "in place (same weights; outputs checked bit-identical)")
    rx.add_argument("modeldir")
    tb = sub.add_parser("table", help="print the metrics table of a model set")
    tb.add_argument("modeldir")
    tb.add_argument("--markdown", action="store_true", help="print Markdown instead of plain text")
    e = sub.add_parser("evaluate", help="every defense (iPET, baselines, set defenses) on defended real traffic "
                                        "against the attacker suite (LSTM, CNN, k-FP, M_agg, distinguisher): "
                                        "summary.json, results.json, report.md, plots")
    from .evaluate.cli import add_arguments as _eval_args
    _eval_args(e)
    return ap


RUN_KEYS = {"windows", "out", "captures", "devices", "work", "ipet_bin"}


def _resolve(args: argparse.Namespace) -> tuple[Settings, dict[str, Any]]:
    given = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
    merged: dict[str, Any] = {}
    if getattr(args, "config", None):
        merged.update(load_config_file(args.config))
    merged.update(given)
    run = {k: merged.pop(k) for k in list(merged) if k in RUN_KEYS}
    if isinstance(run.get("captures"), str):
        run["captures"] = [run["captures"]]
    return Settings.from_dict(merged), run


def _require(run: dict[str, Any], *keys: str) -> None:
    missing = [k for k in keys if not run.get(k)]
    if missing:
        raise SystemExit("error: missing " + ", ".join("--" + k for k in missing) + " (flag or config entry)")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "table":
        from .report_format import format_markdown, format_table
        manifest = json.loads((Path(args.modeldir) / "manifest.json").read_text())
        print(format_markdown(manifest) if args.markdown else format_table(manifest))
        return 0
    if args.command == "set-targets":
        from .targets.command import run as _targets_run
        return _targets_run(args)
    if args.command == "reexport":
        from .export import reexport_model_set
        for f in reexport_model_set(args.modeldir):
            print(f"re-exported {f}")
        return 0
    if args.command == "evaluate":
        from .evaluate.cli import run as _eval_run
        return _eval_run(args, argv)
    try:
        st, run = _resolve(args)
    except ValueError as e:
        raise SystemExit(f"error: {e}")

    from .train import train  # torch import is slow; keep --help fast

    from .data import WindowsError
    from .ipet_binary import find_ipet_binary, run_ipet_windows

    if args.command == "train":
        _require(run, "windows", "out")
        try:
            train(run["windows"], run["out"], st)
        except (ValueError, WindowsError) as e:
            raise SystemExit(f"error: {e}")
        return 0

    _require(run, "captures", "devices", "out")
    try:
        binary = Path(run["ipet_bin"]) if run.get("ipet_bin") else find_ipet_binary()
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e}")
    tmp = None
    if run.get("work"):
        work = Path(run["work"])
    else:
        tmp = tempfile.mkdtemp(prefix="ipet-windows-")
        work = Path(tmp)
    try:
        t0 = time.time()
        windows = run_ipet_windows(run["captures"], run["devices"], work / "windows", st.total_time, st.omega,
                                   binary=binary)
        info = {"captures": [str(c) for c in run["captures"]], "devices_csv": str(run["devices"]),
                "ipet_bin": str(binary), "windowing_seconds": round(time.time() - t0, 1)}
        train(windows, run["out"], st, windows_info=info)
    except (ValueError, WindowsError) as e:
        raise SystemExit(f"error: {e}")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
