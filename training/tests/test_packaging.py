"""The package as a new user installs it: every third-party module it imports (at the top of a file or
inside a function) is a dependency in pyproject.toml and in the README's install line; every
subpackage is installed; no two modules import each other (type-only imports aside)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ipet_train"
# Import name -> distribution name, where they differ.
DISTRIBUTION = {"sklearn": "scikit-learn"}


def _modules() -> dict[str, Path]:
    mods = {}
    for f in PACKAGE.rglob("*.py"):
        parts = f.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.AST):
    """Every import statement, except those under `if TYPE_CHECKING:` (never run)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _third_party() -> set[str]:
    found = set()
    for f in _modules().values():
        for node in _imports(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                continue
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                top = name.split(".")[0]
                if top and top != "ipet_train" and top not in sys.stdlib_module_names:
                    found.add(DISTRIBUTION.get(top, top))
    return found


def _requirement_name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].strip().lower()


def test_every_imported_package_is_a_declared_dependency():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = {_requirement_name(r) for r in pyproject["project"]["dependencies"]}
    imported = _third_party()
    assert {"torch", "numpy", "scikit-learn", "matplotlib"} <= imported, imported
    assert imported <= declared, f"imported but not in pyproject.toml dependencies: {sorted(imported - declared)}"
    readme = (ROOT / "README.md").read_text()
    install = readme[readme.index("## Install"):]
    install = install[:install.index("```")]
    listed = set(re.findall(r"[A-Za-z0-9_.-]+", " ".join(re.findall(r"`([^`]*)`", install))))
    assert imported <= listed, f"imported but not in the README's install line: {sorted(imported - listed)}"


def test_every_subpackage_is_installed():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = pyproject["tool"]["setuptools"]
    subpackages = {".".join(f.parent.relative_to(ROOT).parts) for f in PACKAGE.rglob("__init__.py")}
    if "packages" in setuptools and isinstance(setuptools["packages"], list):
        missing = subpackages - set(setuptools["packages"])
    else:
        include = setuptools["packages"]["find"]["include"]
        missing = {p for p in subpackages if not any(re.fullmatch(i.replace(".", r"\.").replace("*", ".*"), p)
                                                     for i in include)}
    assert not missing, f"subpackages a `pip install training/` leaves out: {sorted(missing)}"


def test_no_two_modules_import_each_other():
    mods = _modules()
    deps: dict[str, set[str]] = {}
    for name, f in mods.items():
        base = name.split(".") if f.name == "__init__.py" else name.split(".")[:-1]
        found = set()
        for node in _imports(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    stem = ".".join(base[:len(base) - (node.level - 1)] + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                for a in node.names:
                    found.add(f"{stem}.{a.name}" if f"{stem}.{a.name}" in mods else stem)
            else:
                found.update(a.name for a in node.names)
        deps[name] = {d for d in found if d in mods and d != name}
    circles = sorted(f"{a} <-> {b}" for a in deps for b in deps[a] if a < b and a in deps[b])
    assert not circles, f"modules importing each other: {circles}"
