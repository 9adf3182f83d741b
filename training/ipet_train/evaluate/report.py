"""report.md and PNG plots from results.json (matplotlib, Agg backend)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

REPORT_SECTIONS = ["## Headline", "## Every defense", "## Per-device recall", "## Plots", "## Settings and method"]
PLOTS = ["ba_vs_byte_overhead.png", "ba_vs_packet_overhead.png", "confusion.png"]
ATTACKERS = [("static", "static M_seq"), ("retrained", "retrained M_seq"), ("m_agg", "M_agg")]


def _ba(r: dict[str, Any], att: str) -> Optional[float]:
    s = r.get(att)
    return None if not s else s.get("balanced_accuracy")


def _f(x: Optional[float], nd: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{nd}f}"


def _ov(x: Optional[float]) -> str:
    if x is None:
        return "-"
    return f"{x:.3g}"


def strongest(r: dict[str, Any]) -> float:
    vals = [_ba(r, a) for a in ("retrained", "m_agg")]
    vals = [v for v in vals if v is not None]
    return max(vals) if vals else float("nan")


def closest_baselines(res: dict[str, Any], target_key: str = "ipet-mix") -> dict[str, dict[str, Any]]:
    """For each baseline, the rate whose total byte overhead is closest (in log ratio) to target's."""
    rows = {r["key"]: r for r in res["defenses"]}
    tgt = rows.get(target_key)
    if tgt is None:
        ipet = [r for r in res["defenses"] if r["kind"] == "ipet"]
        if not ipet:
            return {}
        tgt = ipet[-1]
    tb = tgt["costs"]["total"]["byte_overhead"] or 1e-12
    out = {}
    for r in res["defenses"]:
        if r["kind"] != "baseline":
            continue
        b = r["costs"]["total"]["byte_overhead"] or 1e-12
        d = abs(math.log(b / tb))
        cur = out.get(r["defense"])
        if cur is None or d < cur[0]:
            out[r["defense"]] = (d, r)
    return {k: v[1] for k, v in out.items()}


def best_defense(res: dict[str, Any]) -> Optional[dict[str, Any]]:
    cands = [r for r in res["defenses"] if r["kind"] != "none"]
    if not cands:
        return None
    return min(cands, key=lambda r: (strongest(r), r["costs"]["total"]["byte_overhead"] or 0))


def _headline_rows(res: dict[str, Any]) -> list[str]:
    rows = {r["key"]: r for r in res["defenses"]}
    lines = ["| defense | static | retrained M_seq | M_agg | byte overhead | packet overhead | "
             "active byte ovh. | latency mean / p99 (s) |", "|---|---|---|---|---|---|---|---|"]

    def line(r, label=None):
        c = r.get("costs")
        lat = c["latency"] if c else None
        lines.append(f"| {label or r['label']} | {_f(_ba(r, 'static'))} | {_f(_ba(r, 'retrained'))} | "
                     f"{_f(_ba(r, 'm_agg'))} | {_ov(c['total']['byte_overhead']) if c else '0'} | "
                     f"{_ov(c['total']['packet_overhead']) if c else '0'} | "
                     f"{_ov(c['total']['active_byte_overhead']) if c else '0'} | "
                     + (f"{lat['mean_s']:.3f} / {lat['p99_s_max_over_devices']:.3f}" if lat else "0 / 0") + " |")

    line(rows["none"])
    for r in res["defenses"]:
        if r["kind"] == "ipet":
            line(r)
    for b, r in closest_baselines(res).items():
        line(r, f"{r['label']} (rate closest to iPET mix)")
    return lines


def write_report(res: dict[str, Any], out: Path) -> None:
    out = Path(out)
    make_plots(res, out)
    names = res["devices"]
    chance = res["chance"]
    es = res["settings"]
    rows = res["defenses"]
    und = next(r for r in rows if r["key"] == "none")
    best = best_defense(res)
    md: list[str] = [f"# iPET evaluation: `{res['model_set']['name']}`", ""]
    md += [f"{len(names)} devices ({', '.join(names)}), chance = 1/{len(names)} = {chance:.3f}. Balanced accuracy "
           f"= mean per-device recall on the held-out (later {1 - es['train_fraction']:.0%} of each device's time "
           f"span) part. Overheads are dummy / real, summed over devices.", ""]
    if res.get("command"):
        md += ["Command:", "", "```", res["command"], "```", ""]
    md += [f"Running time: {res['timing']['total_seconds']:.0f} s (simulations {res['timing']['simulate_seconds']:.0f} s, "
           f"attackers {res['timing']['attackers_seconds']:.0f} s), created {res['created']}.", ""]
    md += ["## Headline", "",
           "Balanced accuracy of each attacker (lower = better hidden; chance "
           f"{chance:.3f}); baselines at the rate whose byte overhead is closest to iPET mix's.", ""]
    md += _headline_rows(res)
    ipet_rows = [r for r in rows if r["kind"] == "ipet"]
    if ipet_rows:
        ur = _ba(und, "retrained")
        better = [r["label"] for r in ipet_rows if ur is not None and (_ba(r, "retrained") or 0) >= ur - 0.02]
        md += ["", f"Undefended: static {_f(_ba(und, 'static'))}, retrained {_f(ur)}, M_agg {_f(_ba(und, 'm_agg'))}. "
               f"iPET rows where the retrained attacker does as well as on undefended traffic or better (within 0.02): "
               f"{', '.join(better) if better else 'none'}."]
    if best:
        md += ["", f"Best defense by its strongest attacker (max of retrained M_seq and M_agg balanced accuracy): "
               f"**{best['label']}** ({_f(strongest(best))}, byte overhead {_ov(best['costs']['total']['byte_overhead'])})."]
    md += ["", "## Every defense", "",
           "Whole-trace overheads per direction and total; 'active' counts only the dummies sent inside the device's "
           "active periods (real packets less than the active gap apart, until the gap after the last). "
           "Latency: packet-weighted mean over devices / worst per-device p99.", "",
           "| defense | static | retrained | M_agg | bytes in | bytes out | bytes total | packets in | packets out | "
           "packets total | active bytes | active packets | latency mean / p99 (s) | test windows |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c = r.get("costs")
        if c:
            cells = [_ov(c["incoming"]["byte_overhead"]), _ov(c["outgoing"]["byte_overhead"]),
                     _ov(c["total"]["byte_overhead"]), _ov(c["incoming"]["packet_overhead"]),
                     _ov(c["outgoing"]["packet_overhead"]), _ov(c["total"]["packet_overhead"]),
                     _ov(c["total"]["active_byte_overhead"]), _ov(c["total"]["active_packet_overhead"]),
                     f"{c['latency']['mean_s']:.3f} / {c['latency']['p99_s_max_over_devices']:.3f}"]
        else:
            cells = ["0"] * 8 + ["0 / 0"]
        md.append(f"| {r['label']} | {_f(_ba(r, 'static'))} | {_f(_ba(r, 'retrained'))} | {_f(_ba(r, 'm_agg'))} | "
                  + " | ".join(cells) + f" | {r['windows_used']['test']} |")
    md += ["", "## Per-device recall", ""]
    for att, title in (("retrained", "Retrained M_seq"), ("m_agg", "M_agg"), ("static", "Static M_seq")):
        md += [f"{title}:", "", "| defense | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for r in rows:
            s = r.get(att)
            rec = s["per_device_recall"] if s else [None] * len(names)
            md.append(f"| {r['label']} | " + " | ".join(_f(x, 2) for x in rec) + " |")
        md.append("")
    md += ["## Plots", "",
           "![balanced accuracy vs byte overhead](ba_vs_byte_overhead.png)", "",
           "![balanced accuracy vs packet overhead](ba_vs_packet_overhead.png)", "",
           f"![confusion matrices, undefended vs {best['label'] if best else '-'}](confusion.png)", ""]
    md += ["## Settings and method", "",
           f"- Model set `{res['model_set']['path']}` ({res['model_set']['generations']} generations, trained "
           f"{res['model_set'].get('created')}); static attacker = its `discriminators/static.pt`.",
           f"- Defended traffic: `ipet simulate --mode {es['mode']}` per device and defense (iPET generations, `mix`, "
           f"baselines {', '.join(es['baselines'])} at --rate-scale {', '.join(f'{x:g}' for x in es['rates'])}); "
           "undefended windows: `ipet windows` on the same captures. Every simulate command and seed is in results.json.",
           f"- Split by time: per device, windows starting (and ending) before {es['train_fraction']:.0%} of its "
           "undefended span train attackers, windows starting after it test them; same cut for every defense.",
           f"- Retrained M_seq: a fresh `{es['attacker']}` discriminator per defense (undefended included), up to "
           f"{es['epochs']} epochs, early stopping (patience {es['patience']}) on a random {es['val_fraction']:.0%} of the "
           "training windows, class-balanced loss. "
           f"Windows per device and defense capped at {es['max_train_windows']} (training) and "
           f"{es['max_test_windows']} (testing), a seeded random subset.",
           f"- M_agg: random forest ({es['rf_trees']} trees, balanced class weights) on {es['agg_seconds'] / 60:g}-minute "
           "bins of the defended trace rows (`ipet simulate -o`): per direction and TCP/UDP, packet count, mean/min/max "
           "payload size, duration from first to last packet; dummies count as UDP; real packets get their transport "
           "from the captures (aligned per direction, sizes checked; failures: "
           f"{len(res.get('transport_alignment_failures', []))}). Bins with no packet are not samples; bins "
           "straddling the cut are dropped. Because cover counts as UDP, M_agg's TCP features describe real traffic "
           "only (moved only by a baseline's latency): no cover changes them, so M_agg is a floor for every defense.",
           "- Baselines shape real packets into their cover rate: at low --rate-scale the queue grows and the "
           "latency column (from the simulator) is hours; windows and bins see the delayed packets.",
           "- The static attacker was trained by the model set's own run on its first 70% of windows by count; that "
           "may overlap this report's test part slightly for devices whose traffic is uneven in time.",
           f"- Seed {es['seed']}: same seed, same report (up to timings).", ""]
    (out / "report.md").write_text("\n".join(md))


def make_plots(res: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = res["defenses"]
    chance = res["chance"]
    und = next(r for r in rows if r["key"] == "none")
    colors = {"constant": "tab:blue", "random": "tab:orange", "random+": "tab:green"}
    for metric, fname, xlabel in (("byte_overhead", "ba_vs_byte_overhead.png", "byte overhead (dummy / real bytes)"),
                                  ("packet_overhead", "ba_vs_packet_overhead.png",
                                   "packet overhead (dummy / real packets)")):
        fig, axes = plt.subplots(1, 3, figsize=(16, 5), sharey=True)
        for ax, (att, title) in zip(axes, ATTACKERS):
            for b in sorted({r["defense"] for r in rows if r["kind"] == "baseline"}):
                br = sorted((r for r in rows if r.get("defense") == b), key=lambda r: r["rate_scale"])
                xs = [r["costs"]["total"][metric] for r in br]
                ys = [_ba(r, att) for r in br]
                ax.plot(xs, ys, "-o", color=colors.get(b, "gray"), label=b)
                for r, x, y in zip(br, xs, ys):
                    if y is not None:
                        ax.annotate(f"x{r['rate_scale']:g}", (x, y), fontsize=7, textcoords="offset points",
                                    xytext=(3, 3))
            ip = [r for r in rows if r["kind"] == "ipet"]
            for r in ip:
                x, y = r["costs"]["total"][metric], _ba(r, att)
                if y is None:
                    continue
                mix = r["generation"] == "mix"
                ax.scatter([x], [y], marker="*" if mix else "D", s=160 if mix else 50, color="crimson" if mix else "purple",
                           zorder=5, label="iPET mix" if mix else ("iPET generations" if r is ip[0] else None))
                ax.annotate(r["label"].replace("iPET ", ""), (x, y), fontsize=8, textcoords="offset points",
                            xytext=(4, -10))
            ax.axhline(chance, color="gray", ls=":", label=f"chance {chance:.3f}")
            u = _ba(und, att)
            if u is not None:
                ax.axhline(u, color="black", ls="--", label=f"undefended {u:.3f}")
            ax.set_xscale("log")
            ax.set_title(title)
            ax.set_xlabel(xlabel)
            ax.set_ylim(0, 1.02)
            ax.grid(alpha=0.3, which="both")
        axes[0].set_ylabel("balanced accuracy (held-out, later part of each device's span)")
        handles, labels = [], []
        for ax in axes:
            for h, l in zip(*ax.get_legend_handles_labels()):
                if l not in labels and not l.startswith("undefended"):
                    handles.append(h)
                    labels.append(l)
        axes[-1].legend(handles, labels, fontsize=8, loc="upper right")
        for ax in axes:
            h, l = ax.get_legend_handles_labels()
            hu = [(hh, ll) for hh, ll in zip(h, l) if ll.startswith("undefended")]
            if hu and ax is not axes[-1]:
                ax.legend([hu[0][0]], [hu[0][1]], fontsize=8, loc="upper right")
        fig.suptitle(f"{res['model_set']['name']}: attacker balanced accuracy vs cost")
        fig.tight_layout()
        fig.savefig(out / fname, dpi=110)
        plt.close(fig)

    best = best_defense(res)
    names = res["devices"]
    cols = [und] + ([best] if best else [])
    fig, axes = plt.subplots(2, len(cols), figsize=(6.5 * len(cols), 11), squeeze=False)
    for j, r in enumerate(cols):
        for i, (att, title) in enumerate((("retrained", "retrained M_seq"), ("m_agg", "M_agg"))):
            ax = axes[i][j]
            s = r.get(att)
            if not s:
                ax.axis("off")
                continue
            cm = np.array(s["confusion"], dtype=float)
            norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
            ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
            for a in range(len(names)):
                for b in range(len(names)):
                    ax.text(b, a, f"{norm[a, b]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if norm[a, b] > 0.5 else "black")
            ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
            ax.set_yticks(range(len(names)), names, fontsize=7)
            ax.set_xlabel("predicted")
            ax.set_ylabel("true")
            ax.set_title(f"{r['label']}: {title}\nbalanced accuracy {_f(s['balanced_accuracy'])}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "confusion.png", dpi=110)
    plt.close(fig)
