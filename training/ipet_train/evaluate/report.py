"""report.md and the plots, from results.json and summary.json (matplotlib, Agg backend)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

REPORT_SECTIONS = ["## Headline", "## Every attacker", "## The distinguisher", "## Per-device recall", "## Plots",
                   "## Method"]
PLOTS = ["ba_vs_byte_overhead.png", "ba_vs_packet_overhead.png", "ba_vs_latency_p99.png"]
# Written when the set-defense rows have reaction lags to compare (`--supersequence-variants lag=...`).
LAG_PLOT = "ba_vs_lag.png"
# Where a lag preset sits on the lag axis: its median, ms (crates/traffic/src/shaper/lag.rs).
PRESET_MEDIAN_MS = {"zero": 0.0, "software-shaper": 0.082, "software-shaper-fifo": 0.071}
ATTACKER_NAMES = {"lstm": "LSTM", "cnn": "CNN", "kfp": "k-FP", "m_agg": "M_agg", "cross_device": "cross-device",
                  "cross_device_agg": "cross-device (15 min)"}


def _f(x: Optional[float], nd: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{nd}f}"


def _ov(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.3g}x"


def _ci(ci) -> str:
    return "" if not ci else f" [{ci[0]:.3f}, {ci[1]:.3f}]"


def _att(a: dict[str, Any]) -> str:
    mark = "*" if a.get("scored_on") == "kept" else ""
    return f"{_f(a['balanced_accuracy'])}{mark}{_ci(a['ci95'])}"


def headline_table(summary: dict[str, Any]) -> list[str]:
    atts = [a for a in ATTACKER_NAMES if any(a in r["attackers"] for r in summary["defenses"])]
    lines = ["| defense | " + " | ".join(ATTACKER_NAMES[a] for a in atts)
             + " | max attacker BA (who) | set floor | bytes | packets | latency p99 | distinguisher AUC |",
             "|---|" + "---|" * len(atts) + "---|---|---|---|---|---|"]
    for r in summary["defenses"]:
        cells = [_att(r["attackers"][a]) if a in r["attackers"] else "-" for a in atts]
        who = ATTACKER_NAMES.get(r["max_attacker"], r["max_attacker"])
        lines.append(f"| {r['label']} | " + " | ".join(cells)
                     + f" | **{_f(r['max_attacker_ba'])}**{_ci(r['max_attacker_ci95'])} ({who}) | "
                     + f"{_f(r.get('set_floor'))} | {_ov(r['byte_overhead'])} | {_ov(r['packet_overhead'])} | "
                     + f"{_f(r['latency_p99_s'], 2)} s | {_f(r['distinguisher_auc'])}{_ci(r['distinguisher_auc_ci95'])} |")
    return lines


def cross_device_table(summary: dict[str, Any]) -> list[str]:
    """The cross-device attacker's pairing per row: the lag window it found, how much real
    traffic it attributes to its device, and its activity inference."""
    rows = [r for r in summary["defenses"] if r.get("cross_device")]
    if not rows:
        return []
    L = ["", "Cross-device attacker (pairs same-size frames across the home's devices; the frame that leads "
              "is the original): lag window found per direction, real frames attributed to their device "
              "(out / in), precision of what it attributes, activity precision / recall, and its balanced "
              "accuracy on the windows that really hold real packets (a diagnostic selected by the truth).", "",
         "| defense | lag window out | lag window in | real attributed out / in | attributed real out / in | "
         "activity P / R | BA on really active windows |", "|---|---|---|---|---|---|---|"]

    def w(x):
        return "none" if not x else f"{x[0] * 1e3:.3f}-{x[1] * 1e3:.3f} ms"

    for r in rows:
        c = r["cross_device"]
        ra, ar, act = c["real_attributed_fraction"], c["attributed_real_fraction"], c["activity"]
        L.append(f"| {r['label']} | {w(c['lag_window_s'].get('out'))} | {w(c['lag_window_s'].get('in'))} | "
                 f"{_f(ra.get('out'))} / {_f(ra.get('in'))} | {_f(ar.get('out'))} / {_f(ar.get('in'))} | "
                 f"{_f(act.get('precision'))} / {_f(act.get('recall'))} | {_f(c.get('ba_on_really_active_windows'))} |")
    return L


def dropped_device_notes(res: dict[str, Any]) -> list[str]:
    """A line for every device of the table that kept no packet (`ipet features`' dropped_devices)."""
    L: list[str] = []
    for d in res.get("dropped_devices") or []:
        L += ["", f"Not judged: {d['name']} kept no packet ({d['reason']}): {d['why']}."]
    return L


def report_markdown(res: dict[str, Any], summary: dict[str, Any]) -> str:
    """report.md's text: from results.json and the summary made of it, nothing else."""
    n = len(res["devices"])
    s = res["settings"]
    L: list[str] = ["# Evaluation: every defense against the attacker suite", ""]
    L += [f"Command: `{res.get('command')}`", "",
          f"{n} devices, chance {1 / n:.3f}; {res['folds']['test_folds']} contiguous time folds (train on the past, "
          f"test on the next block); seed {s['seed']}; {res['seconds']:.0f} s on {res['provenance']['device']}; "
          f"peak disk of defended traffic {res['peak_disk_bytes'] / 1e6:.1f} MB.", ""]
    L += ["## Headline", "",
          "Balanced accuracy of each attacker with its bootstrap 95% interval (clusters of one device-hour). "
          "`*`: scored on the windows the attacker keeps after dropping what its distinguisher calls cover-only "
          "(the stronger of the two). max attacker BA is the worst case under the link observer of "
          "docs/threat-model.md. Overheads: cover over real, whole home; latency: added to real packets.", ""]
    L += headline_table(summary)
    tr = summary.get("transport_observer")
    if tr:
        m = tr["m_agg"]
        L += ["", f"Transport observer (labelled, not the headline): {tr['note']}: M_agg "
                  f"{_f(m['balanced_accuracy'])}{_ci(m['ci95'])}."]
    L += cross_device_table(summary)
    for sk in summary.get("skipped_defenses") or []:
        L += ["", f"Not run here: `{sk['key']}`: {sk['reason']}."]
    L += dropped_device_notes(res)
    for w in res.get("folds", {}).get("warnings") or []:
        L += ["", f"Warning: {w['device']} has no training {w.get('unit', 'windows')} in fold {w['fold']} "
                  f"({w['tested']} tested): it scores 0 there by construction."]
    L += ["", "## Every attacker", "",
          "Each attacker scored on all tested windows and on the windows kept after the distinguisher "
          "(per-fold balanced accuracy in results.json).", "",
          "| defense | attacker | all windows | kept windows | per fold | training |", "|---|---|---|---|---|---|"]
    for r in res["defenses"]:
        for a, v in r["attackers"].items():
            kept = v["kept"]
            tr_ = v.get("training")
            ep = "" if not tr_ else "epochs " + "/".join(str(t["epochs_run"]) for t in tr_)
            L.append(f"| {r['label']} | {ATTACKER_NAMES.get(a, a)} | {_f(v['all']['balanced_accuracy'])}"
                     f"{_ci(v['all']['ci95'])} (n={v['all']['n']}) | "
                     + ("-" if not kept else f"{_f(kept['balanced_accuracy'])}{_ci(kept['ci95'])} (n={kept['n']})")
                     + f" | {', '.join(_f(x) for x in v['per_fold'])} | {ep} |")
    L += ["", "## The distinguisher", "",
          "Gradient boosting on the per-window features, trained to tell windows holding real packets from "
          "cover-only ones (AUC 0.5: cannot). Windows: tested / of them cover-only.", "",
          "| defense | AUC | tested windows | cover-only | kept | real among kept | real dropped | AUC with "
          "feature groups left out |", "|---|---|---|---|---|---|---|---|"]
    for r in res["defenses"]:
        d = r["distinguisher"]
        w = r["windows"]
        L.append(f"| {r['label']} | {_f(d.get('auc'))}{_ci(d.get('ci95'))} | {w['tested']} | {w['tested_cover_only']} | "
                 f"{d.get('kept_windows', '-')} | {_f(d.get('kept_real_fraction'))} | {d.get('dropped_real_windows', '-')} | "
                 + "; ".join(f"{k}: {_f(v)}" for k, v in (d.get("ablations") or {}).items()) + " |")
    L += ["", "## Per-device recall", "", "Of the strongest attacker of each defense (scored as in the headline).", "",
          "| defense | " + " | ".join(res["devices"]) + " |", "|---|" + "---|" * n]
    for r in res["defenses"]:
        v = r["attackers"][r["max_attacker"]]
        sc = v["kept"] if v["scored_on"] == "kept" else v["all"]
        L.append(f"| {r['label']} ({ATTACKER_NAMES.get(r['max_attacker'])}) | "
                 + " | ".join(_f(x) for x in sc["per_device_recall"]) + " |")
    L += ["", "## Plots", ""] + [f"![{p}]({p})" for p in PLOTS]
    L += ["", "## Method", "",
          "- Observer: the link observer of docs/threat-model.md (per-device time, size, direction). Every attacker "
          "is retrained from scratch on the defended traffic of the defense it attacks, per fold.",
          "- Data: `ipet features` (undefended) and `ipet simulate --features` (defended) write the M_seq windows, "
          "per-window k-FP-style features, which windows hold real packets (a label, never a feature) and "
          "15-minute aggregates: Python restates no window, period or bin rule.",
          f"- Draws: {s['draws']} simulator runs per defense (different seeds); the sequence networks train on one "
          "draw per epoch in turn, the forests on all; draw 0 is scored.",
          f"- Attackers: LSTM and CNN (the M_seq networks of ipet_train.models; up to {s['suite']['epochs']} epochs, "
          f"early stopping on the last tenth of the training block), k-FP-style gradient boosting "
          f"({s['suite']['kfp_iters']} iterations), M_agg (random forest, {s['suite']['rf_trees']} trees, "
          "direction-only aggregates), distinguisher (gradient boosting on the same per-window features).",
          "- Baselines send random cover only up to "
          f"{s['idle_cover']} s after a device's last real packet (`--idle-cover`).",
          "- Intervals: bootstrap over device-hour clusters (each device keeps its count of clusters), "
          f"{s['suite']['bootstrap']} draws."]
    return "\n".join(L) + "\n"


def write_plots(summary: dict[str, Any], out: Path) -> None:
    """The PNGs of PLOTS (and LAG_PLOT where there are lag rows) into `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["defenses"]
    und = next((r for r in rows if r["kind"] == "none"), None)
    colors = {"ipet": "tab:red", "baseline": "tab:blue", "set": "tab:green"}
    for fname, key, xlabel in (("ba_vs_byte_overhead.png", "byte_overhead", "byte overhead (cover / real bytes)"),
                               ("ba_vs_packet_overhead.png", "packet_overhead", "packet overhead (cover / real packets)"),
                               ("ba_vs_latency_p99.png", "latency_p99_s", "added latency p99 (s)")):
        fig, ax = plt.subplots(figsize=(8, 5.5))
        xs = []
        for r in rows:
            if r["kind"] == "none" or r[key] is None:
                continue
            x = max(float(r[key]), 1e-3)
            xs.append(x)
            y = r["max_attacker_ba"]
            ci = r["max_attacker_ci95"] or [y, y]
            ax.errorbar([x], [y], yerr=[[y - ci[0]], [ci[1] - y]], fmt="o", color=colors.get(r["kind"], "k"), capsize=3)
            ax.annotate(r["label"], (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points")
            if r.get("set_floor"):
                ax.plot([x], [r["set_floor"]], marker="_", markersize=14, color="tab:green")
        ax.axhline(summary["chance"], color="gray", ls=":", label=f"chance 1/N = {summary['chance']:.3f}")
        if und:
            ax.axhline(und["max_attacker_ba"], color="k", ls="--", lw=0.8, label=f"undefended {und['max_attacker_ba']:.3f}")
        ax.set_xscale("log")
        ax.set_xlabel(xlabel + (" (0 plotted at 1e-3)" if key == "latency_p99_s" else ""))
        ax.set_ylabel("max attacker balanced accuracy (link observer)")
        ax.set_ylim(0, 1)
        for k_, c in colors.items():
            ax.plot([], [], "o", color=c, label={"ipet": "iPET", "baseline": "baselines", "set": "set defenses"}[k_])
        ax.plot([], [], "_", color="tab:green", markersize=14, label="set floor m/N")
        ax.legend(fontsize=7, loc="upper right")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / fname, dpi=110)
        plt.close(fig)
    _lag_plot(summary, out)


def lag_ms(release: dict[str, Any]) -> Optional[float]:
    """The copies' reaction lag of a row's release settings in ms: 0 without one (the ideal
    deployment), a fixed duration (`2ms`, `150us`) as given, a preset at its median; None for a
    distribution given inline."""
    lag = release.get("lag") if release else None
    if lag is None:
        return 0.0
    lag = str(lag)
    if lag in PRESET_MEDIAN_MS:
        return PRESET_MEDIAN_MS[lag]
    for unit, scale in (("ms", 1.0), ("us", 1e-3), ("s", 1e3)):
        if lag.endswith(unit):
            try:
                return float(lag[: -len(unit)]) * scale
            except ValueError:
                return None
    try:
        return float(lag) * 1e3  # bare seconds
    except ValueError:
        return None


def lag_family(release: dict[str, Any]) -> str:
    """A row's countermeasures and deployment, as the lag plot's series."""
    release = release or {}
    parts = [release.get("deployment", "ideal" if release.get("lag") is None else "bridge")]
    parts += [k.replace("_", "-") for k in ("held_release", "random_order", "slot_behind", "mirror_all") if release.get(k)]
    return ", ".join(parts)


def _lag_plot(summary: dict[str, Any], out: Path) -> None:
    """Max attacker BA against the copies' reaction lag, one series per deployment and set of
    countermeasures, for the supersequence rows (burst alignment and other knobs left out)."""
    import matplotlib.pyplot as plt

    rows = [r for r in summary["defenses"] if r["kind"] == "set" and r["params"].get("defense") == "supersequence"
            and r["params"].get("sets") != "all" and not r["params"].get("align")]
    points: dict[str, list[tuple[float, dict[str, Any]]]] = {}
    for r in rows:
        release = r.get("release") or r["params"].get("release") or {}
        x = lag_ms(release)
        if x is not None:
            points.setdefault(lag_family(release), []).append((x, r))
    if sum(len(v) for v in points.values()) < 3:
        return
    fig, ax = plt.subplots(figsize=(10.5, 5.5))
    for family, pts in sorted(points.items()):
        pts.sort(key=lambda p: p[0])
        xs = [p[0] for p in pts]
        ys = [p[1]["max_attacker_ba"] for p in pts]
        lo = [y - (p[1]["max_attacker_ci95"] or [y, y])[0] for y, p in zip(ys, pts)]
        hi = [(p[1]["max_attacker_ci95"] or [y, y])[1] - y for y, p in zip(ys, pts)]
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o-", capsize=3, label=family)
    floors = {r["set_floor"] for r in rows if r.get("set_floor")}
    for f in floors:
        ax.axhline(f, color="tab:green", ls="-.", lw=0.8, label=f"set floor {f:.3f}")
    und = next((r for r in summary["defenses"] if r["kind"] == "none"), None)
    if und:
        ax.axhline(und["max_attacker_ba"], color="k", ls="--", lw=0.8, label=f"undefended {und['max_attacker_ba']:.3f}")
    ax.axhline(summary["chance"], color="gray", ls=":", label=f"chance {summary['chance']:.3f}")
    ax.set_xscale("symlog", linthresh=0.05)
    ax.set_xlim(0, max(x for pts in points.values() for x, _ in pts) * 1.5 + 0.1)
    ax.set_xlabel("reaction lag of copies, ms (presets at their median)")
    ax.set_ylabel("max attacker balanced accuracy (cross-device included)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    ax.set_title("supersequence: max attacker vs reaction lag")
    fig.tight_layout()
    fig.savefig(out / LAG_PLOT, dpi=110)
    plt.close(fig)
