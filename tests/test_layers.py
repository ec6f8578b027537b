"""The package's floors import one way only, and ``import spectral_backprop`` stays light.

    linalg ← spectral ← density, geometry, manifold ← analysis | train ← studies ← cli

``data`` and ``models`` (data sets, networks) and the ground-floor modules ``stats``,
``progress``, ``runfiles`` and ``pictures`` import nothing of the package, so any floor
may use them; ``report`` reads saved artifacts and imports only those. Every import
statement is checked, inside functions too: a lazy import that runs back up the
floors is still a dependency. The root facade's lazy ``__getattr__`` is the one
exception (only its module-level imports are checked).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import spectral_backprop

PACKAGE = Path(spectral_backprop.__file__).parent
ROOT = "__init__"
GROUND = {"stats", "progress", "runfiles", "pictures"}
LEAVES = {"data", "models"}
CORE = {"linalg", "spectral", "density", "geometry", "manifold"}
ALLOWED: dict[str, set[str]] = {
    **{name: set() for name in GROUND | LEAVES},
    "linalg": set(),
    "spectral": {"linalg"},
    "density": {"linalg", "spectral"},
    "geometry": {"linalg", "spectral", "density"},
    "manifold": {"linalg", "spectral", "density"},
    "analysis": CORE | LEAVES,
    "train": CORE | LEAVES,
    "report": set(),
    "studies": CORE | LEAVES | {"analysis", "train", "report"},
    "cli": CORE | LEAVES | {"analysis", "train", "report", "studies", ROOT},
    "__main__": {"cli"},
    ROOT: {"linalg", "spectral", "density", "geometry"},
}
for _name, _allowed in ALLOWED.items():
    if _name not in GROUND | LEAVES:
        _allowed |= GROUND


def unit_of(module: str) -> str:
    """The floor of a dotted module name inside the package (``ROOT`` for the package)."""
    parts = module.split(".")
    assert parts[0] == "spectral_backprop", module
    return parts[1] if len(parts) > 1 else ROOT


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool, top_level_only: bool):
    """``(line, absolute module)`` of every package import in ``source``."""
    tree = ast.parse(source)
    nodes = tree.body if top_level_only else ast.walk(tree)
    package = module if is_package else module.rpartition(".")[0]
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield node.lineno, target


def violations(source: str, module: str, is_package: bool) -> list[str]:
    """Imports in ``source`` (the text of ``module``) against the order of the floors."""
    unit = unit_of(module)
    found = []
    for line, target in imported_modules(source, module, is_package,
                                         top_level_only=module == "spectral_backprop"):
        if target != "spectral_backprop" and not target.startswith("spectral_backprop."):
            continue
        other = unit_of(target)
        if other != unit and other not in ALLOWED[unit]:
            found.append(f"{module}:{line} imports {target} ({unit} may not import {other})")
    return found


def test_floors_import_one_way_only():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        assert unit_of(module) in ALLOWED, f"{module}: a new floor needs a place in ALLOWED"
        problems += violations(path.read_text(), module, path.name == "__init__.py")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("module", "source", "bad"), [
    ("spectral_backprop.train.gan", "def f():\n    from spectral_backprop import entropy\n", 1),
    ("spectral_backprop.train.gan", "from ..analysis import search\n", 1),
    ("spectral_backprop.analysis.x", "from ..train.config import GANConfig\n", 1),
    ("spectral_backprop.linalg.cg", "from ..spectral import spectral_sum\n", 1),
    ("spectral_backprop.report.html", "from ..studies.demo import run_demo\n", 1),
    ("spectral_backprop.spectral.exact", "from ..linalg.jacobian import jacobian\n", 0),
    ("spectral_backprop.studies.demo", "from ..train import train_gan\nimport torch\n", 0),
])
def test_the_checker_catches_upward_imports(module, source, bad):
    assert len(violations(source, module, is_package=False)) == bad


def _modules_after(statement: str) -> list[str]:
    code = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def test_import_is_light():
    loaded = _modules_after("import spectral_backprop")
    heavy = [m for m in loaded if m.split(".")[0] == "matplotlib"
             or m.startswith(tuple(f"spectral_backprop.{f}" for f in
                                   ("analysis", "train", "studies", "report", "cli",
                                    "data", "models", "pictures")))]
    assert not heavy, f"import spectral_backprop loads {heavy}"


def test_lazy_names_are_served():
    loaded = _modules_after("import spectral_backprop as s; s.analyze_generator")
    assert "spectral_backprop.analysis" in loaded
    assert "analyze_generator" in dir(spectral_backprop)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        spectral_backprop.nope  # noqa: B018
