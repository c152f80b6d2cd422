"""The `velora` command. Each command is a module of velora.commands that declares its arguments
(`add_parser`) next to the code that runs it (`run`); COMMANDS lists them, in the order `--help`
shows them.

Every command that takes a config accepts `--config FILE` (a YAML path or a shipped name:
demo, pokerevent_vitb16, hardvs_vitb16, ...) followed by `section.field=value` overrides.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from velora.version import __version__

# name -> module of velora.commands
COMMANDS = {
    "demo": "demo",
    "train": "train",
    "eval": "evaluate",
    "predict": "predict",
    "stream": "stream",
    "export": "export",
    "package": "package",
    "reproduce": "reproduce",
    "bench": "bench",
    "info": "info",
    "check-data": "check_data",
    "split": "split",
    "convert": "convert",
    "convert-weights": "convert_weights",
    "pretrain": "pretrain",
}


def command(name: str):
    return importlib.import_module(f"velora.commands.{COMMANDS[name]}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="velora",
        description="VELoRA: LoRA adaptation of a frozen ViT for RGB + event-camera clip recognition.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"velora {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        command(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from velora.errors import VeloraError

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # argparse takes a positional list in one run: `velora eval CKPT --split val data.x=1`
        # leaves data.x=1 over. Overrides may come anywhere on the line.
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return command(args.command).run(args)
    # VeloraError: every error for a user to act on (a bad file, field, checkpoint, weights, source).
    # FloatingPointError: a NaN or infinite training loss (VELoRAModule.training_step).
    except (VeloraError, FileNotFoundError, FloatingPointError) as exc:
        print(f"velora {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
