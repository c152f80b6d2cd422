"""The folder layout is the architecture: each package imports only from the layers below it.

Layers, top first: the command line, the demo and the tools (cli, info, demo, reproduce, bench, pretrain);
training, evaluation and export, side by side; data and model; events; config, errors and files (writing a
file without losing its previous version). Only the code that trains (the `train` command, the demo and
`reproduce`) imports from training/. Checked on the source's
import statements (lazy imports inside functions included), so it needs no import side effects.
"""

from __future__ import annotations

import ast
from pathlib import Path

import velora

SRC = Path(velora.__file__).resolve().parent
# package -> velora packages it may import from (besides itself)
ALLOWED = {
    "version": set(),
    # The config takes its choices from the registries below it: the layouts table (data/layouts) and
    # the event representations, windows and resizes (events/).
    "config": {"errors", "events", "data"},
    "errors": set(),
    "files": {"errors"},
    "events": {"errors", "files"},
    "model": {"config", "errors", "files", "events"},
    "data": {"errors", "files", "events"},  # the factory and the check name Config for type checkers only
    "evaluation": {"config", "errors", "files", "events", "data", "model", "version"},
    "training": {"config", "errors", "files", "events", "data", "model", "evaluation", "version"},
    "export": {"config", "errors", "files", "events", "data", "model", "evaluation", "version"},
}


def runtime_nodes(path: Path) -> list[ast.AST]:
    """Every node of a source file but those under `if TYPE_CHECKING:` (imports for type checkers only)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
    return [node for node in ast.walk(tree) if id(node) not in skipped]


def imported_modules(path: Path) -> set[str]:
    """The velora modules (dotted names of files under src/velora) a source file imports, lazily or not."""
    found = set()
    for node in runtime_nodes(path):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("velora"):
            for alias in node.names:  # `from velora.x import y` names module velora.x.y when y is a file
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if module_path(candidate) else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("velora."))
    return {name for name in found if module_path(name)}


def module_path(name: str) -> Path | None:
    """The file of a velora module (a package means its __init__.py), or None."""
    parts = name.split(".")[1:]
    for candidate in (SRC.joinpath(*parts).with_suffix(".py"), SRC.joinpath(*parts, "__init__.py")):
        if parts and candidate.is_file():
            return candidate
    return None


def test_no_module_imports_itself_through_others():
    graph = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(("velora", *path.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__")
        graph[name] = imported_modules(path) - {name}
    cycles = []

    def visit(node: str, stack: list[str], done: set[str]) -> None:
        for imported in sorted(graph.get(node, set())):
            if imported in stack:
                cycles.append(" -> ".join(stack[stack.index(imported) :] + [imported]))
            elif imported not in done:
                visit(imported, stack + [imported], done)
        done.add(node)

    done: set[str] = set()
    for name in sorted(graph):
        if name not in done:
            visit(name, [name], done)
    # velora/__init__.py re-exports load lazily (an import inside __getattr__): the package is not a layer.
    cycles = [c for c in cycles if not c.startswith("velora ->") and " velora ->" not in c]
    assert not cycles, "import cycles:\n" + "\n".join(sorted(set(cycles)))


def velora_imports(path: Path) -> set[str]:
    """The velora packages (first part after `velora.`) a source file imports from."""
    found = set()
    for node in runtime_nodes(path):
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
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if package_of(path) != "training" and "training" in velora_imports(path)
    )
    # The code that trains: the train command, the demo, and velora reproduce (its run and its throughput measurement).
    assert importers == ["commands/train.py", "demo/jobs.py", "reproduce/run.py", "reproduce/throughput.py"]
