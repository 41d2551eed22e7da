"""The import rules of ../shared/ARCHITECTURE.md, checked on the package's source: every arrow points down.

Faces (the public API) sit on workers, workers on parts, parts on `colab`. A part never imports a worker or a face, a
worker never imports a face, nothing inside the package imports the package's `__init__`, and `colab` imports nothing
of dcganlib but `_version`, which anyone may import. Optional toolkits stay in the one module that needs them.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dcganlib"
COLAB_STAND_IN = Path(__file__).resolve().parent / "colab_runtime"  # a google.colab that imports without Colab

# Higher imports lower, never the other way. A new module fails test_every_module_has_a_layer until it is added here.
FACE, WORKER, PART, BOTTOM = 3, 2, 1, 0
LAYERS = {
    "__init__": FACE, "__main__": FACE, "cli": FACE,
    "train": WORKER, "latent": WORKER, "sliders": WORKER, "viz": WORKER, "metrics": WORKER, "pretrained": WORKER,
    "step": WORKER, "directions": WORKER, "build": WORKER, "evaluation": WORKER, "timing": WORKER,
    "diagrams": WORKER, "diagnostics": WORKER, "onnx_export": WORKER, "playground": WORKER,
    "checkpoint": PART, "data": PART, "models": PART, "losses": PART, "config": PART, "runs": PART,
    "devices": PART, "images": PART, "distributed": PART, "augment": PART, "_version": PART, "catalog": PART,
    "seeds": PART, "ema": PART, "history": PART, "sources": PART, "prepared": PART, "celeba": PART, "storage": PART,
    "scores": PART, "hub": PART,
    "colab": BOTTOM,
}
LAYER_NAMES = {FACE: "face", WORKER: "worker", PART: "part", BOTTOM: "bottom"}
IMPORTABLE_BY_ALL = {"_version"}
# Optional toolkits and the only modules allowed to import them (a future `distributed` module handles ranks).
TOOLKIT_HOMES = {"google.colab": {"colab"}, "ipywidgets": {"sliders"}, "torch.distributed": {"distributed"},
                 "onnx": {"onnx_export"}, "huggingface_hub": {"hub"}}


@dataclass(frozen=True)
class Import:
    """One import, resolved to a dotted path: `dcganlib.cli`, `dcganlib` (the package face), `torch.distributed`."""

    module: str  # the importing module, relative to the package (`cli`)
    line: int
    target: str

    def __str__(self) -> str:
        return f"dcganlib/{self.module.replace('.', '/')}.py:{self.line} imports {self.target}"


def package_modules(package: Path) -> dict[str, Path]:
    """Every module of the package by its name relative to the package (`cli`, `sub.__init__`), from the files."""
    return {".".join(path.relative_to(package).with_suffix("").parts): path
            for path in sorted(package.rglob("*.py")) if "__pycache__" not in path.parts}


def _is_module(name: str, package: Path) -> bool:
    """True for a dotted name (`dcganlib.cli`) that is a module or sub-package file, not an attribute."""
    relative = Path(*name.split(".")[1:])
    return relative != Path() and ((package / relative).with_suffix(".py").is_file()
                                   or (package / relative / "__init__.py").is_file())


def imports_of(module: str, path: Path, package: Path) -> list[Import]:
    """Every import in the module's source (top level, inside functions, under try), with relative ones resolved."""
    top = package.name
    parts = [top, *module.split(".")]
    home = parts[:-1]  # the package a relative import starts from (for `__init__`, the package itself)
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [Import(module, node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(home[: len(home) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module
            for alias in node.names:
                # `from . import cli` imports a module; `from . import __version__` takes a name off the package face.
                submodule = f"{base}.{alias.name}"
                inside = base.split(".")[0] == top
                found.append(Import(module, node.lineno,
                                    base if inside and not _is_module(submodule, package) else submodule))
    return found


def _target_module(target: str, top: str) -> str | None:
    """The package module a resolved import reaches (`cli`, `__init__` for the face), or None outside the package."""
    if target.split(".")[0] != top:
        return None
    return "__init__" if target == top else target.split(".")[1]


def layer_violations(package: Path = PACKAGE) -> list[str]:
    """What breaks the layer rules, one line per import; empty when every arrow points down."""
    problems = []
    for module, path in package_modules(package).items():
        own = module.split(".")[0]
        for found in imports_of(module, path, package):
            target = _target_module(found.target, package.name)
            if target is None or target == own or target not in LAYERS or own not in LAYERS:
                continue  # outside the package, itself, or unassigned (test_every_module_has_a_layer says so)
            if target == "__init__":
                problems.append(f"{found}: nothing inside the package imports its __init__ (import the module "
                                "that defines the name, e.g. `from ._version import __version__`)")
            elif LAYERS[own] == BOTTOM and target not in IMPORTABLE_BY_ALL:
                problems.append(f"{found}: {own} is the bottom layer and imports no dcganlib module but _version")
            elif LAYERS[target] > LAYERS[own] and target not in IMPORTABLE_BY_ALL:
                problems.append(f"{found}: a {LAYER_NAMES[LAYERS[own]]} never imports a "
                                f"{LAYER_NAMES[LAYERS[target]]} (arrows point down)")
    return problems


def toolkit_violations(package: Path = PACKAGE) -> list[str]:
    """Imports of an optional toolkit outside the module that is its home."""
    problems = []
    for module, path in package_modules(package).items():
        for found in imports_of(module, path, package):
            for toolkit, homes in TOOLKIT_HOMES.items():
                reaches = found.target == toolkit or found.target.startswith(toolkit + ".")
                if reaches and module.split(".")[0] not in homes:
                    problems.append(f"{found}: {toolkit} belongs only in {', '.join(sorted(homes))}")
    return problems


def unassigned_modules(package: Path = PACKAGE) -> list[str]:
    """Modules (or sub-packages) of the package that LAYERS does not place."""
    return sorted({name.split(".")[0] for name in package_modules(package)} - LAYERS.keys())


def test_every_module_has_a_layer():
    unassigned = unassigned_modules()
    assert not unassigned, (f"dcganlib modules {unassigned} have no layer: add each to LAYERS in {__file__} "
                            "(face, worker, part or bottom, as in ARCHITECTURE.md)")


def test_imports_point_down():
    problems = layer_violations()
    assert not problems, "\n".join(problems)


def test_optional_toolkits_stay_in_their_module():
    problems = toolkit_violations()
    assert not problems, "\n".join(problems)


def _package_copy(tmp_path: Path, module: str = "", line: str = "") -> Path:
    """A copy of the package's sources; with module, that module gets a function whose body is line."""
    copy = tmp_path / "dcganlib"
    for path in package_modules(PACKAGE).values():
        (copy / path.relative_to(PACKAGE)).parent.mkdir(parents=True, exist_ok=True)
        (copy / path.relative_to(PACKAGE)).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    if module:
        target = copy / f"{module}.py"
        target.write_text(target.read_text(encoding="utf-8") + f"\n\ndef _broken():\n    {line}\n", encoding="utf-8")
    return copy


@pytest.mark.parametrize(("module", "line", "expected"), [
    ("checkpoint", "from .train import Trainer", "a part never imports a worker"),
    ("data", "from . import cli", "a part never imports a face"),
    ("viz", "import dcganlib.cli", "a worker never imports a face"),
    ("models", "from . import __version__", "imports its __init__"),
    ("latent", "from dcganlib import Config", "imports its __init__"),
    ("colab", "from .config import Config", "imports no dcganlib module but _version"),
])
def test_a_wrong_way_import_is_caught(tmp_path, module, line, expected):
    """The checker on a copy of the package with one wrong import added: exactly that import is reported."""
    problems = layer_violations(_package_copy(tmp_path, module, line))
    assert len(problems) == 1 and expected in problems[0] and f"{module}.py" in problems[0], problems


def test_a_new_module_needs_a_layer(tmp_path):
    copy = _package_copy(tmp_path)
    (copy / "ranks.py").write_text('"""Ranks."""\n', encoding="utf-8")
    assert set(unassigned_modules(copy)) - set(unassigned_modules()) == {"ranks"}
    assert toolkit_violations(copy) == []  # torch.distributed is at home in distributed.py


@pytest.mark.parametrize(("module", "line"), [
    ("viz", "import ipywidgets"), ("train", "from google.colab import drive"), ("cli", "from google import colab"),
    ("train", "import torch.distributed as dist"), ("data", "from torch import distributed"),
])
def test_a_misplaced_toolkit_import_is_caught(tmp_path, module, line):
    problems = toolkit_violations(_package_copy(tmp_path, module, line))
    assert len(problems) == 1 and f"{module}.py" in problems[0], problems


def test_importing_the_package_loads_no_optional_toolkit():
    # The stand-in google.colab is importable here, so an unguarded import would load it rather than fail quietly.
    code = ("import sys, dcganlib, dcganlib.cli, dcganlib.viz, dcganlib.latent; "
            "loaded = [name for name in ('ipywidgets', 'google.colab') if name in sys.modules]; "
            "assert not loaded, f'{loaded} imported'")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(COLAB_STAND_IN),
                                                                     os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-3000:]


def test_no_function_is_much_over_forty_lines():
    """ARCHITECTURE.md: no function much over 40 lines; the Trainer class is its loop and state, at most 250."""
    long = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            size = node.end_lineno - node.lineno + 1 if hasattr(node, "end_lineno") else 0
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and size > 40:
                long.append(f"dcganlib/{path.name}: {node.name} has {size} lines")
            if isinstance(node, ast.ClassDef) and node.name == "Trainer" and size > 250:
                long.append(f"dcganlib/{path.name}: the Trainer has {size} lines")
    assert not long, "; ".join(long)
