"""The metrics table of a model set's manifest, as text (printed after training, `table`) or Markdown."""

from __future__ import annotations

from typing import Any, Optional


def _pair(sc: Optional[dict[str, Any]]) -> str:
    if not sc:
        return "      -      "
    return f"{sc['accuracy']:.3f} / {sc['balanced_accuracy']:.3f}"


def _rows(manifest: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The table's rows: (label, metrics) per generation, then `mix` where it was measured."""
    rows = [(str(g["index"]), g["metrics"]) for g in manifest["generations"]]
    if "mix" in manifest["metrics"]:
        rows.append(("mix", manifest["metrics"]["mix"]))
    return rows


def format_table(manifest: dict[str, Any]) -> str:
    """Attacker accuracy / balanced accuracy on held-out windows, per generation and for `mix`."""
    m = manifest["metrics"]
    und = m.get("undefended")
    lines = [
        f"model set {manifest['name']}: {len(manifest['devices'])} devices, chance {m['chance']:.3f}; "
        f"cells are accuracy / balanced accuracy on held-out windows",
        f"undefended (stage-0 discriminator, no cover): {_pair(und)}",
        f"silence-only attacker (histogram of the silence scalar, which cover never changes): "
        f"{_pair(m.get('silence_only'))}",
        "",
        f"{'generation':>10} | {'static':^15} | {'adapted':^15} | {'retrained':^15} | cover pkt/slot | cover B/slot",
        "-" * 96,
    ]
    real = None
    for label, r in _rows(manifest):
        cov = r.get("cover", {})
        real = real or cov
        lines.append(f"{label:>10} | {_pair(r.get('static')):^15} | {_pair(r.get('adapted')):^15} | "
                     f"{_pair(r.get('retrained')):^15} | {cov.get('cover_packets_per_slot', float('nan')):14.2f} | "
                     f"{cov.get('cover_bytes_per_slot', float('nan')):11.1f}")
    if real:
        lines.append(f"real traffic per slot (held-out): {real['real_packets_per_slot']:.3f} packets, "
                     f"{real['real_bytes_per_slot']:.1f} bytes")
    if "training_seconds" in m:
        lines.append(f"training time: {m['training_seconds']:.0f} s on {m.get('device', '?')}")
    return "\n".join(lines)


def format_markdown(manifest: dict[str, Any]) -> str:
    """The same table as `format_table`, as Markdown (accuracy / balanced accuracy per cell)."""
    m = manifest["metrics"]
    st = manifest["settings"]
    out = [f"`{manifest['name']}`: model {st['model']}, objective {st['objective']}, generators "
           f"{st.get('generators', 'per_device')}, adversaries {st.get('adversaries', 'current')}; "
           f"{len(manifest['devices'])} devices, chance {m['chance']:.3f}. "
           f"Cells: accuracy / balanced accuracy on held-out windows.", "",
           f"- undefended (static attacker, no cover): {_pair(m.get('undefended')).strip()}",
           f"- silence-only attacker (cover cannot change it): {_pair(m.get('silence_only')).strip()}", "",
           "| generation | static | adapted | retrained | cover packets/slot | cover bytes/slot |",
           "|---|---|---|---|---|---|"]
    real = None
    for label, r in _rows(manifest):
        cov = r.get("cover", {})
        real = real or cov
        out.append(f"| {label} | {_pair(r.get('static')).strip()} | {_pair(r.get('adapted')).strip()} | "
                   f"{_pair(r.get('retrained')).strip()} | {cov.get('cover_packets_per_slot', float('nan')):.2f} | "
                   f"{cov.get('cover_bytes_per_slot', float('nan')):.1f} |")
    if real:
        out += ["", f"Real traffic in the same windows: {real['real_packets_per_slot']:.3f} packets and "
                    f"{real['real_bytes_per_slot']:.1f} payload bytes per slot."]
    if "training_seconds" in m:
        out.append(f"Training time: {m['training_seconds']:.0f} s on {m.get('device', '?')}.")
    return "\n".join(out)
