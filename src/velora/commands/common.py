"""Arguments several commands share, each declared once."""

from __future__ import annotations

import argparse


def add_config(p: argparse.ArgumentParser, default: str | None) -> None:
    """--config FILE and the `section.field=value` overrides after it."""
    p.add_argument(
        "--config",
        default=default,
        help=f"YAML config: a path or a shipped name (demo, pokerevent_vitb16, hardvs_vitb16, ...). Default: {default}",
    )
    p.add_argument("overrides", nargs="*", metavar="section.field=value", help="config overrides, e.g. train.lr=3e-4")


def add_weights(p: argparse.ArgumentParser) -> None:
    """--weights FILE: the backbone's weights instead of the checkpoint's model.weights."""
    p.add_argument(
        "--weights",
        metavar="FILE",
        help="backbone weights instead of the checkpoint's model.weights (a model trained on a local file that is "
        "elsewhere here; its sha256 is checked)",
    )


def split_list(text: str | None) -> list[str] | None:
    """'rgb, event' -> ['rgb', 'event']; None or '' -> None."""
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def add_val_fraction(p: argparse.ArgumentParser) -> None:
    """--val-fraction: the share of each class a validation split takes (velora split, velora reproduce)."""
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of each class for validation (default 0.1)")


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="where the model runs: cpu, cuda, cuda:1, ... (default cpu)")


def add_modalities(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--modalities",
        help="comma-separated subset of the model's rgb,event: as if a sensor were missing (e.g. event: no RGB camera)",
    )
