"""The folder layout is the architecture: each package imports only from the layers below it.

Layers, top first: the command line, the demo and the tools (cli, info, demo, bench, pretrain);
training, evaluation and export, side by side; data and model; events; config, errors and files (writing
a file without losing its previous version). Only the code
that trains (the `train` command and the demo) imports from training/. Checked on the source's
import statements (lazy imports inside functions included), so it needs no import side effects.
"""

from __future__ import annotations

import ast
from pathlib import Path

import velora

SRC = Path(velora.__file__).resolve().parent
# package -> velora packages it may import from (besides itself)
ALLOWED = {
    "config": {"errors"},
    "errors": set(),
    "files": {"errors"},
    "events": {"errors", "files"},
    "model": {"config", "errors", "files", "events"},
    "data": {"config", "errors", "files", "events"},
    "evaluation": {"config", "errors", "files", "events", "data", "model"},
    "training": {"config", "errors", "files", "events", "data", "model", "evaluation"},
    "export": {"config", "errors", "files", "events", "data", "model", "evaluation"},
}


def velora_imports(path: Path) -> set[str]:
    """The velora packages (first part after `velora.`) a source file imports from."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "velora" and len(parts) > 1:
                found.add(parts[1])
    return found


def package_of(path: Path) -> str:
    return path.relative_to(SRC).with_suffix("").parts[0]


def test_every_package_imports_only_from_the_layers_below():
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        package = package_of(path)
        if package not in ALLOWED:
            continue  # the top layer may import anything
        for imported in velora_imports(path) - {package} - ALLOWED[package]:
            wrong.append(f"{path.relative_to(SRC)} imports velora.{imported}")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_only_the_code_that_trains_imports_training():
    importers = sorted(
        str(path.relative_to(SRC)) for path in SRC.rglob("*.py")
        if package_of(path) != "training" and "training" in velora_imports(path)
    )
    assert importers == ["cli.py", "demo/jobs.py"]  # the two that train: the train command and the demo
