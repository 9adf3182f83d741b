"""The package as `pip install training/` installs it (as docker/Dockerfile.train does), not as the
other tests see it (PYTHONPATH=training or an editable install): the wheel is built from a copy of
the checkout, installed into a fresh virtual environment, and run from outside the repository, with
PYTHONPATH unset, so that every import resolves to the installed copy (checked: every module's
file lies in the environment). The environment sees this interpreter's site-packages for torch and
the other dependencies (nothing is downloaded: `--no-index`), so the installer still checks that
they satisfy the wheel's declared requirements.

Checked: the console script `ipet-train --help` and each subcommand's --help (the command line
imports subpackages while it builds its parser), and an import of every module of the checkout's
ipet_train, subpackages included."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TRAINING = Path(__file__).resolve().parents[1]
PACKAGE = TRAINING / "ipet_train"
SUBCOMMANDS = ["train", "pipeline", "set-targets", "reexport", "table", "evaluate"]


def _modules() -> list[str]:
    """Every module of the checkout's package, by import name."""
    out = []
    for f in sorted(PACKAGE.rglob("*.py")):
        parts = f.relative_to(TRAINING).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def _run(cmd, cwd: Path, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    p = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv, its python, a work directory outside the repository, the environment to run in)."""
    tmp = tmp_path_factory.mktemp("wheel")
    # Built from a copy: pip builds in the source tree and would leave build/ and *.egg-info in the
    # checkout (and two runs at once would share them).
    src = tmp / "src"
    shutil.copytree(TRAINING, src, ignore=shutil.ignore_patterns("tests", "__pycache__", "*.egg-info", "build",
                                                                 "dist", ".pytest_cache"))
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH", "VIRTUAL_ENV")}
    env.update(PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    work = tmp / "elsewhere"
    work.mkdir()
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
          "--wheel-dir", tmp / "dist", src], work, env)
    wheels = list((tmp / "dist").glob("ipet_train-*.whl"))
    assert len(wheels) == 1, wheels
    venv = tmp / "venv"
    # Without pip (so without the setuptools that comes with it, older than torch requires): this
    # pip installs into it (`--python`).
    _run([sys.executable, "-m", "venv", "--without-pip", venv], work, env)
    py = venv / "bin" / "python"
    # The dependencies: this interpreter's site-packages directories, as plain path entries, after
    # the environment's own. Not --system-site-packages: that also runs their .pth files, among
    # them an editable install's finder (scripts/setup.sh's `pip install -e`), which would serve
    # the checkout's subpackages that the wheel lacks.
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], work, env).stdout.strip())
    deps = [p for p in dict.fromkeys(sys.path) if Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()]
    assert deps, sys.path
    (site / "_ipet_test_dependencies.pth").write_text("".join(f"{p}\n" for p in deps))
    pip = [sys.executable, "-m", "pip", "--python", py, "install", "--no-index"]
    # --no-deps would skip the check that the environment satisfies the wheel's requirements;
    # --no-index: they must already be there. --force-reinstall --no-deps after it: a system-wide
    # ipet-train of the same version (scripts/setup.sh's editable install) would otherwise count
    # as already installed.
    _run(pip + [wheels[0]], work, env)
    _run(pip + ["--no-deps", "--force-reinstall", wheels[0]], work, env)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return venv, py, work, env


def test_the_console_script_and_every_subcommand_run_from_the_installed_wheel(installed):
    venv, _, work, env = installed
    script = venv / "bin" / "ipet-train"
    assert script.is_file(), "the wheel installed no `ipet-train` console script"
    top = _run([script, "--help"], work, env).stdout
    for sub in SUBCOMMANDS:
        assert sub in top, f"`ipet-train --help` lists no {sub}: {top}"
        assert "usage: " in _run([script, sub, "--help"], work, env).stdout


def test_every_module_imports_from_the_venv_not_the_checkout(installed):
    venv, py, work, env = installed
    mods = _modules()
    assert "ipet_train.evaluate.core" in mods and "ipet_train.attackers.suite" in mods, mods
    probe = ("import importlib, json, sys\n"
             "out = {}\n"
             "for m in sys.argv[1:]:\n"
             "    out[m] = importlib.import_module(m).__file__\n"
             "print(json.dumps(out))\n")
    files = json.loads(_run([py, "-c", probe, *mods], work, env).stdout.splitlines()[-1])
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], work, env)
                .stdout.strip()).resolve()
    assert site.is_relative_to(venv.resolve()), site
    outside = {m: f for m, f in files.items() if not Path(f).resolve().is_relative_to(site)}
    assert not outside, f"imported from outside the virtual environment's {site}: {outside}"
