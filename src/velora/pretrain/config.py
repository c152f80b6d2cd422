"""Settings of the fractal pre-training recipe (no torch import: `velora --help` stays fast)."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field


@dataclass
class PretrainConfig:
    """Settings of one pre-training run; every field is a command-line flag (`--num-categories 32`).

    The defaults are the recipe of the shipped `fractal_vit_tiny64` weights.
    """

    output: str = field(
        default="fractal_vit.safetensors",
        metadata={"help": "weights file to write (*.safetensors); the manifest goes next to it as <output>.json"},
    )
    backbone: str = field(
        default="vit_base_patch16_clip_quickgelu_224", metadata={"help": "timm architecture (block structure)"}
    )
    embed_dim: int = field(default=128, metadata={"help": "token width"})
    depth: int = field(default=4, metadata={"help": "Transformer blocks"})
    num_heads: int = field(default=4, metadata={"help": "attention heads"})
    image_size: int = field(default=64, metadata={"help": "image side in pixels (the demo's model.image_size)"})
    num_categories: int = field(default=32, metadata={"help": "fractal categories (classes)"})
    steps: int = field(default=4000, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=64, metadata={"help": "images per step"})
    lr: float = field(default=5e-4, metadata={"help": "peak AdamW learning rate"})
    weight_decay: float = field(default=0.05, metadata={"help": "AdamW weight decay on matrices"})
    warmup_steps: int = field(default=100, metadata={"help": "linear warmup, then cosine decay to 1 %% of lr"})
    rotation: float = field(
        default=0.0, metadata={"help": "span of the random rotation as a fraction of a full turn (0: upright)"}
    )
    bright_on_dark: bool = field(
        default=True, metadata={"help": "fractals brighter than the background in every channel (else any two colours)"}
    )
    label_smoothing: float = field(default=0.1, metadata={"help": "cross-entropy label smoothing"})
    val_images: int = field(default=1024, metadata={"help": "held-out rendered images for the accuracy check"})
    seed: int = field(default=0, metadata={"help": "seed of the categories, the images and the initialisation"})
    threads: int = field(
        default=1, metadata={"help": "torch CPU threads (on a shared machine more threads mostly wait)"}
    )
    log_every: int = field(default=100, metadata={"help": "log (and validate) every N steps"})


def recipe_flags(cfg: PretrainConfig) -> list[str]:
    """The flags that reproduce `cfg` (all of them, so a changed default does not change the recipe)."""
    flags = []
    for f in dataclasses.fields(cfg):
        name, value = f.name.replace("_", "-"), getattr(cfg, f.name)
        flags.append(f"--{'' if value else 'no-'}{name}" if isinstance(value, bool) else f"--{name} {value}")
    return flags


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """One flag per `PretrainConfig` field, for `python -m velora.pretrain` and `velora pretrain`."""
    for f in dataclasses.fields(PretrainConfig):
        kind = {"action": argparse.BooleanOptionalAction} if isinstance(f.default, bool) else {"type": type(f.default)}
        parser.add_argument(
            f"--{f.name.replace('_', '-')}",
            **kind,
            default=f.default,
            help=f"{f.metadata['help']} (default: {f.default})",
        )
    return parser


def config_from_args(args: argparse.Namespace) -> PretrainConfig:
    return PretrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(PretrainConfig)})
