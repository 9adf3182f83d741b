"""The command line of `python -m ipet_train set-targets`: its flags (no torch import, so that
`--help` stays fast) and the run that reads the settings, windows the captures with `ipet windows`
and hands them to the training (`targets.train`)."""

from __future__ import annotations

import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from .settings import TargetSettings

HELP = {
    "latent_dim": "generator noise dimension",
    "hidden": "generator hidden width",
    "stages": "adversarial stages (attackers retrained from scratch each stage, then the generator)",
    "attacker_epochs": "epochs of each stage's attackers (fresh targets every epoch)",
    "generator_epochs": "generator epochs per stage",
    "retrain_epochs": "max epochs of the evaluation attackers retrained from scratch (early stopping)",
    "attackers": "comma-separated attacker ensemble (lstm, gru, cnn, mlp)",
    "latency_budget": "seconds real traffic may wait for room in the target (training proxy; 0 = pure padding)",
    "cap_quantile": "per set: max packets per slot = this quantile of the members' non-zero slots",
    "byte_weight": "cost weight of padding bytes (relative to the set's real bytes per window)",
    "packet_weight": "cost weight of padding packets",
    "leak_weight": "cost weight of leaked bytes (waited past the budget)",
    "latency_weight": "cost weight of waiting (seconds per real byte)",
    "max_windows_per_device": "random cap of windows per device (speed)",
    "min_steps": "every epoch count is raised so that a small set still gets this many optimiser steps",
}


def add_arguments(p) -> None:
    import argparse
    import typing

    p.add_argument("--config", help="JSON file of settings (and windows/captures/devices/out/work/sets)")
    p.add_argument("--windows", default=argparse.SUPPRESS, help="windows directory from `ipet windows`")
    p.add_argument("--captures", nargs="+", default=argparse.SUPPRESS, help="pcap/pcapng/CSV files or directories")
    p.add_argument("--devices", default=argparse.SUPPRESS, help="devices.csv (name,mac,ip[,description][,set])")
    p.add_argument("--out", default=argparse.SUPPRESS, help="model set directory to write")
    p.add_argument("--work", default=argparse.SUPPRESS, help="directory for the windows (kept)")
    p.add_argument("--ipet-bin", default=argparse.SUPPRESS, help="path of the ipet binary")
    p.add_argument("--sets", default=argparse.SUPPRESS,
                   help="anonymity sets as `a,b,c;d,e,f` (else the devices' `set` from the device table)")
    g = p.add_argument_group("settings")
    hints = typing.get_type_hints(TargetSettings)
    defaults = TargetSettings()
    for f in fields(TargetSettings):
        tp = hints[f.name]
        if typing.get_origin(tp) is typing.Union:
            tp = [a for a in typing.get_args(tp) if a is not type(None)][0]
        flag = "--" + f.name.replace("_", "-")
        help_ = f"{HELP.get(f.name, '')} (default: {getattr(defaults, f.name)})"
        if tp is bool:
            g.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                           help=help_)
        else:
            g.add_argument(flag, dest=f.name, type=tp, default=argparse.SUPPRESS, help=help_)


RUN_KEYS = {"windows", "captures", "devices", "out", "work", "ipet_bin", "sets"}


def run(args) -> int:
    import shutil
    import tempfile

    from ..ipet_binary import find_ipet_binary, run_ipet_windows
    from ..settings import load_config_file

    merged: dict[str, Any] = {}
    if getattr(args, "config", None):
        merged.update(load_config_file(args.config))
    merged.update({k: v for k, v in vars(args).items() if k not in ("command", "config")})
    run_ = {k: merged.pop(k) for k in list(merged) if k in RUN_KEYS}
    try:
        st = TargetSettings.from_dict(merged)
    except (TypeError, ValueError) as e:
        raise SystemExit(f"error: {e}")
    if not run_.get("out"):
        raise SystemExit("error: missing --out")
    tmp = None
    try:
        if run_.get("windows"):
            windows, info = Path(run_["windows"]), {}
        else:
            if not (run_.get("captures") and run_.get("devices")):
                raise SystemExit("error: give --windows, or --captures and --devices")
            try:
                binary = Path(run_["ipet_bin"]) if run_.get("ipet_bin") else find_ipet_binary()
            except FileNotFoundError as e:
                raise SystemExit(f"error: {e}")
            if run_.get("work"):
                work = Path(run_["work"])
            else:
                tmp = tempfile.mkdtemp(prefix="ipet-windows-")
                work = Path(tmp)
            caps_ = run_["captures"] if isinstance(run_["captures"], list) else [run_["captures"]]
            t0 = time.time()
            windows = run_ipet_windows(caps_, run_["devices"], work / "windows", st.total_time, st.omega, binary=binary)
            info = {"captures": [str(c) for c in caps_], "devices_csv": str(run_["devices"]), "ipet_bin": str(binary),
                    "windowing_seconds": round(time.time() - t0, 1)}
        from ..data import WindowsError
        from .train import train_targets

        try:
            train_targets(windows, run_["out"], st, sets=run_.get("sets"), windows_info=info)
        except (ValueError, WindowsError) as e:
            raise SystemExit(f"error: {e}")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0
