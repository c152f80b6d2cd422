"""The reference pages of the documentation, generated from the code at build time: the commands from
the parsers (velora.cli), the configuration from the dataclasses (velora.config), the API pages from
the package's modules (rendered by mkdocstrings from their docstrings).

Each function returns Markdown; docs/gen/hooks.py adds the pages to the site, and the tests call the
same functions, so what the site shows is what the code says.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "src" / "velora"
# The width --help is rendered at, whatever the terminal that builds the site.
HELP_COLUMNS = "100"

# API pages: one per package (or top-level module) of velora, in the order of the layers, top first.
API_GROUPS = [
    ("velora", "The package: velora.load, Recognizer, Prediction; the command line, velora info"),
    ("config", "The typed configuration"),
    ("errors", "The errors a user acts on"),
    ("evaluation", "Loading, predicting, evaluating, packaging"),
    ("stream", "Live recognition"),
    ("export", "ONNX export"),
    ("events", "Event streams, readers, representations, windows"),
    ("data", "Datasets, layouts, label files, conversion"),
    ("model", "The backbone, LoRA, the VELoRA forward pass"),
    ("training", "Training with Lightning"),
    ("reproduce", "velora reproduce"),
    ("demo", "The offline demo"),
    ("pretrain", "Fractal pre-training of the demo backbone"),
    ("bench", "Benchmarks and FLOP counting"),
    ("commands", "The command line, one module per command"),
]


@contextlib.contextmanager
def _columns(width: str):
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = width
    try:
        yield
    finally:
        if before is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = before


def subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    """velora's subcommands by name, in the order of velora.cli.COMMANDS."""
    from velora.cli import COMMANDS, build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: sub.choices[name] for name in COMMANDS}


def command_help(name: str) -> str:
    """What `velora NAME --help` prints, at a fixed width (the config field list of train is linked,
    not repeated: it is the configuration reference)."""
    from velora.config import describe_fields

    with _columns(HELP_COLUMNS):
        text = subcommand_parsers()[name].format_help()
    return text.replace(describe_fields(), "(every field: see the configuration reference)")


def commands_page() -> str:
    from velora.cli import build_parser

    with _columns(HELP_COLUMNS):
        top = build_parser().format_help()
    parsers = subcommand_parsers()
    lines = [
        "# Command reference",
        "",
        "Generated from the command line's parsers (`velora.cli.COMMANDS`, one module of `velora.commands` "
        "each) when the site is built: each section is what `velora COMMAND --help` prints.",
        "",
        "```text",
        top.rstrip(),
        "```",
        "",
    ]
    for name in parsers:
        summary = _one_line_help(name)
        lines += [f"## velora {name}", "", f"{summary}.", "", "```text", command_help(name).rstrip(), "```", ""]
        if name == "train":
            lines += ["Every `section.field` it takes: [configuration reference](config.md).", ""]
    return "\n".join(lines)


def _one_line_help(name: str) -> str:
    from velora.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for choice in sub._choices_actions:
        if choice.dest == name:
            return (choice.help or "").rstrip(".").capitalize()
    return ""


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _default(f: dataclasses.Field) -> object:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def shipped_configs() -> dict[str, Path]:
    """The configs that ship with the package, by name."""
    return {p.stem: p for p in sorted((PACKAGE / "configs").glob("*.yaml"))}


def config_page() -> str:
    from velora.config import Config, field_choices

    lines = [
        "# Configuration reference",
        "",
        "Generated from the dataclasses of `velora.config` when the site is built: every field, its default, "
        "the values it accepts and its help text, which is also what `velora train --help` prints. A config is "
        "YAML with these sections, given to `--config` as a path or as a shipped name, and overridden on the "
        "command line with `section.field=value` (`velora train --config demo train.epochs=3`).",
        "",
    ]
    for section in dataclasses.fields(Config):
        lines += [f"## {section.name}", "", "| field | default | choices | meaning |", "| --- | --- | --- | --- |"]
        for f in dataclasses.fields(section.default_factory()):
            choices = field_choices(f)
            shown = ", ".join(f"`{c}`" for c in choices) if choices else ""
            lines.append(
                f"| `{section.name}.{f.name}` | `{_cell(repr(_default(f)))}` | {shown} | {_cell(f.metadata.get('help', ''))} |"
            )
        lines.append("")
    lines += [
        "## Shipped configs",
        "",
        "`--config NAME` takes any of these (they are in `src/velora/configs/`; "
        "`configs/` at the repository root links there). Each opens with what it is for.",
        "",
    ]
    for name, path in shipped_configs().items():
        text = path.read_text(encoding="utf-8")
        lines += [f"### {name}", "", "```yaml", text.rstrip(), "```", ""]
    return "\n".join(lines)


def api_modules(group: str) -> list[str]:
    """The dotted names of the modules of one API group, in file order (no private modules)."""
    if group == "velora":  # the package and its top-level modules that are no group of their own
        own = {g for g, _ in API_GROUPS}
        return [
            "velora",
            *(
                f"velora.{f.stem}"
                for f in sorted(PACKAGE.glob("*.py"))
                if f.stem not in own and not f.stem.startswith("_")
            ),
        ]
    path = PACKAGE / group
    if path.with_suffix(".py").is_file():
        return [f"velora.{group}"]
    names = []
    for file in sorted(path.rglob("*.py")):
        parts = file.relative_to(PACKAGE.parent).with_suffix("").parts
        if any(part.startswith("_") and part != "__init__" for part in parts):
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return sorted(names, key=lambda n: (n != f"velora.{group}", n))  # the package first


def api_pages() -> dict[str, str]:
    """reference/api/<group>.md -> Markdown with one mkdocstrings block per module, and the index."""
    pages = {}
    index = [
        "# Python API reference",
        "",
        "Generated from the docstrings by mkdocstrings when the site is built, one page per package, in the "
        "order of the layers (a package imports only from those below it; [the layout](../../development.md#the-layout)). "
        "The everyday entry points are `velora.load` and `Recognizer.predict` "
        "([guide](../../guides/predict.md)).",
        "",
    ]
    for group, title in API_GROUPS:
        modules = api_modules(group)
        body = [f"# {title}", "", f"Modules: {', '.join(f'`{m}`' for m in modules)}.", ""]
        for module in modules:
            body += [f"::: {module}", ""]
        pages[f"reference/api/{group}.md"] = "\n".join(body)
        index.append(f"- [{title}]({group}.md): " + ", ".join(f"`{m}`" for m in modules))
    pages["reference/api/index.md"] = "\n".join(index) + "\n"
    return pages
