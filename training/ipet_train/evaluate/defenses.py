"""The defenses the evaluation judges, and how each is simulated by the Rust data plane into the
attackers' dataset (`ipet simulate --features`), one run (draw) at a time, its files deleted as
soon as they are loaded."""

from __future__ import annotations

import json
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional, Sequence

from ..attackers.dataset import Dataset, concat, load_features, load_home_traces

BASELINES = ("constant", "random", "random+")


def dir_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.exists() else 0


def defense_list(ipet_models: Sequence[str], baselines: Sequence[str], rates: Sequence[float], idle_cover: float,
                 sets: Optional[str], k: int, all_in_one: bool, regulator_budgets: Sequence[float],
                 targets: Sequence[str], targets_file: Optional[str],
                 supersequence_variants: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Every defense configuration, in report order: its key, kind, label, parameters and the
    `ipet simulate` arguments that make it (`home`: one run for the whole home).
    `supersequence_variants`: further supersequence rows (same sets), each a comma-separated list
    of `ipet simulate` release flags without their dashes, `name=value` or a bare switch, e.g.
    `lag=2ms`, `deployment=bridge,lag=software-shaper,held-release`, `deployment=ap,lag=2ms`."""
    out: list[dict[str, Any]] = [{"key": "none", "kind": "none", "label": "undefended", "params": {}}]
    for m in ipet_models:
        name = Path(m).name
        out.append({"key": f"ipet-mix:{name}", "kind": "ipet", "label": f"iPET mix ({name})",
                    "params": {"models": m, "generation": "mix"},
                    "args": ["--generation", "mix", "--models", m], "home": False})
    for b in baselines:
        for r in rates:
            out.append({"key": f"{b}@{r:g}", "kind": "baseline", "label": f"{b} x{r:g}",
                        "params": {"defense": b, "rate_scale": r, "idle_cover_s": idle_cover},
                        "args": ["--defense", b, "--rate-scale", repr(float(r)), "--idle-cover", repr(float(idle_cover))],
                        "home": False})
    part = ["--sets", sets] if sets else ["--k", str(k)]
    part_label = "table sets" if sets else f"clustered, k={k}"
    out.append({"key": "supersequence", "kind": "set", "label": f"supersequence ({part_label})",
                "params": {"defense": "supersequence", "sets": sets, "k": k},
                "args": ["--defense", "supersequence", *part], "home": True})
    for spec in supersequence_variants:
        flags, release, knobs = variant_args(spec)
        out.append({"key": f"supersequence+{spec}", "kind": "set", "label": f"supersequence ({part_label}, {spec})",
                    "params": {"defense": "supersequence", "sets": sets, "k": k, **knobs, "release": release},
                    "args": ["--defense", "supersequence", *part, *flags], "home": True})
    if all_in_one:
        out.append({"key": "supersequence-all", "kind": "set", "label": "supersequence (all devices in one set)",
                    "params": {"defense": "supersequence", "sets": "all"},
                    "args": ["--defense", "supersequence", "--sets", "@all"], "home": True})
    for lb in regulator_budgets:
        out.append({"key": f"regulator@lb{lb:g}", "kind": "set", "label": f"regulator ({part_label}, budget {lb:g} s)",
                    "params": {"defense": "regulator", "sets": sets, "k": k, "latency_budget": lb},
                    "args": ["--defense", "regulator", *part, "--latency-budget", repr(float(lb))], "home": True})
    if targets:
        conf = {d["key"]: d for d in json.loads(Path(targets_file).read_text())["defenses"]} if targets_file else {}
        for key in targets:
            if key not in conf:
                raise ValueError(f"--targets {key}: not in {targets_file} (has {', '.join(conf)})")
            d = conf[key]
            out.append({"key": key, "kind": "set", "label": d["label"], "params": d["params"],
                        "args": list(d["simulate_args"]), "home": True})
    return out


RELEASE_FLAGS = ("deployment", "lag", "lag-downlink", "lag-uplink", "held-release", "random-order", "slot-behind",
                 "mirror-all")
# Knobs of the supersequence itself that a variant may set beside its release (burst alignment and
# the latency budget it needs: `align=1,latency-budget=1`).
KNOB_FLAGS = ("align", "latency-budget")


def variant_args(spec: str) -> tuple[list[str], dict[str, Any], dict[str, float]]:
    """`lag=2ms,held-release,align=1,latency-budget=1` -> (the flags, the release {"lag": "2ms",
    "held_release": True, "deployment": "bridge"}, the knobs {"align": 1.0, "latency_budget": 1.0});
    knobs alone imply no deployment."""
    flags: list[str] = []
    release: dict[str, Any] = {}
    knobs: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, value = part.partition("=")
        if name not in RELEASE_FLAGS + KNOB_FLAGS:
            raise ValueError(f"variant {spec!r}: {name!r} is not one of {', '.join(RELEASE_FLAGS + KNOB_FLAGS)}")
        if name in KNOB_FLAGS:
            try:
                knobs[name.replace("-", "_")] = float(value)
            except ValueError:
                raise ValueError(f"variant {spec!r}: {name} needs a number of seconds, not {value!r}") from None
        else:
            release[name.replace("-", "_")] = value if value else True
        flags += [f"--{name}"] + ([value] if value else [])
    if release and deployment_of(release) != "ideal":
        release["deployment"] = deployment_of(release)
    return flags, release, knobs


def deployment_of(release: dict[str, Any]) -> str:
    """The deployment `ipet simulate` runs with these release settings: the one named, else the
    bridge where a lag or a lag's countermeasure is given (`ReleaseKnobs::settings`), else ideal."""
    implies_bridge = ("lag", "lag_downlink", "lag_uplink", "held_release", "random_order")
    return release.get("deployment") or ("bridge" if any(release.get(k) for k in implies_bridge) else "ideal")


def _run(cmd: list[str]) -> dict[str, Any]:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    s = proc.stdout
    return json.loads(s[s.index("{"):s.rindex("}") + 1])


def simulate_draw(binary: Path, captures: Sequence[str], devices_csv: str, names: Sequence[str],
                  class_of: dict[int, int], dfn: dict[str, Any], seed: int, work: Path, jobs: int,
                  disk: list[int], traces: bool = False) -> tuple[Dataset, dict[str, Any]]:
    """One run of a defense over the home; returns its dataset and its costs. `disk` gets the
    largest size the run's files reached before they were deleted. With `traces` a home run also
    writes every member's defended frames (`--out-dir`), loaded into the dataset's `packets` for
    the cross-device attacker."""
    base = [str(binary), "simulate", "--trace", *map(str, captures), "--devices", str(devices_csv),
            "--seed", str(seed), "--inference-threads", "1"]
    work.mkdir(parents=True, exist_ok=True)
    try:
        if dfn["home"]:
            args = list(dfn["args"])
            if "@all" in args:
                args[args.index("@all")] = ",".join(names)
            out = work / "home"
            tr = ["--out-dir", str(work / "traces")] if traces else []
            summ = _run(base + args + ["--features", str(out)] + tr)
            disk.append(dir_bytes(work))
            ds = load_features(out, class_of)
            if traces:
                ds.packets = load_home_traces(work / "traces", {names[c]: c for c in class_of.values()},
                                              float(summ["start_time_s"]))
            return ds, home_costs(summ)

        def one(name: str):
            out = work / name
            summ = _run(base + ["--device", name, *dfn["args"], "--features", str(out)])
            return name, summ

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as ex:
            results = list(ex.map(one, names))
        disk.append(dir_bytes(work))
        parts = [load_features(work / n, class_of) for n, _ in results]
        return concat(parts), device_costs({n: s for n, s in results})
    finally:
        shutil.rmtree(work, ignore_errors=True)


def device_costs(sims: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Costs of per-device runs: overheads over the whole home, packet-weighted mean latency and
    the largest per-device p99 (an upper bound of the home's p99)."""
    t = {k: sum(s["total"][k] for s in sims.values()) for k in ("real_packets", "real_bytes", "dummy_packets", "dummy_bytes")}
    n = max(t["real_packets"], 1)
    return {"real_packets": t["real_packets"], "real_bytes": t["real_bytes"], "dummy_packets": t["dummy_packets"],
            "dummy_bytes": t["dummy_bytes"],
            "byte_overhead": t["dummy_bytes"] / t["real_bytes"] if t["real_bytes"] else None,
            "packet_overhead": t["dummy_packets"] / t["real_packets"] if t["real_packets"] else None,
            "leaked_bytes": 0,
            "latency_mean_s": sum(s["latency"]["mean_s"] * s["total"]["real_packets"] for s in sims.values()) / n,
            "latency_p99_s": max(s["latency"]["p99_s"] for s in sims.values()),
            "latency_p99_note": "largest per-device p99",
            "per_device": {k: {"byte_overhead": s["total"].get("bandwidth_overhead"),
                               "packet_overhead": s["total"].get("packet_overhead"),
                               "latency_p99_s": s["latency"]["p99_s"]} for k, s in sims.items()}}


def home_costs(summ: dict[str, Any]) -> dict[str, Any]:
    t = summ["total"]["total"]
    lat = summ["total"]["latency"]
    return {"real_packets": t["real_packets"], "real_bytes": t["real_bytes"], "dummy_packets": t["dummy_packets"],
            "dummy_bytes": t["dummy_bytes"], "byte_overhead": t["bandwidth_overhead"],
            "packet_overhead": t["packet_overhead"], "leaked_bytes": t["leaked_bytes"],
            "leaked_fraction": t["leaked_bytes"] / t["real_bytes"] if t["real_bytes"] else None,
            "latency_mean_s": lat["mean_s"], "latency_p99_s": lat["p99_s"], "latency_p99_note": "home",
            "sets": [{"name": s.get("name"), "members": s.get("members")} for s in summ.get("sets", [])]}
