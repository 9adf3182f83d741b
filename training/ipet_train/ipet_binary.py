"""The Rust binary `ipet`: where it is, and `ipet windows` run on captures."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Optional, Sequence


def repo_root() -> Optional[Path]:
    """The repository holding this package (the directory with Cargo.toml above training/)."""
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for p in [start, *start.parents]:
            if (p / "Cargo.toml").is_file() and (p / "training").is_dir():
                return p
    return None


def find_ipet_binary() -> Path:
    """`IPET_BIN`, else `ipet` on PATH, else <repo>/target/{release,debug}/ipet."""
    env = os.environ.get("IPET_BIN")
    if env:
        p = Path(env)
        if not (p.is_file() and os.access(p, os.X_OK)):
            raise FileNotFoundError(f"IPET_BIN={env} is not an executable file")
        return p
    on_path = shutil.which("ipet")
    if on_path:
        return Path(on_path)
    tried = ["$IPET_BIN (unset)", "ipet on PATH"]
    root = repo_root()
    if root is not None:
        for profile in ("release", "debug"):
            p = root / "target" / profile / "ipet"
            tried.append(str(p))
            if p.is_file() and os.access(p, os.X_OK):
                return p
    raise FileNotFoundError(
        "the `ipet` binary was not found (tried: " + ", ".join(tried) + "). Build it with "
        "`cargo build --release` in the repository root, or set IPET_BIN=/path/to/ipet.")


def run_ipet_windows(captures: Sequence[str | Path], devices_csv: str | Path, out_dir: str | Path,
                     total_time: float, omega: float, binary: Optional[Path] = None) -> Path:
    """Cut captures into M_seq windows with the Rust data plane (`ipet windows`)."""
    binary = binary or find_ipet_binary()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cmd = [str(binary), "windows", "--captures", *[str(c) for c in captures], "--devices", str(devices_csv),
           "--out", str(out), "--total-time", repr(float(total_time)), "--omega", repr(float(omega))]
    print("+ " + " ".join(cmd), flush=True)
    proc = subprocess.run(cmd)
    if proc.returncode != 0:
        raise RuntimeError(f"`ipet windows` failed with exit code {proc.returncode}")
    return out
