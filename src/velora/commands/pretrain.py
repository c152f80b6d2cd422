"""`velora pretrain`: pre-train a small ViT backbone on fractal images (the recipe of the demo's shipped weights)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    from velora.pretrain.config import add_arguments

    p = sub.add_parser(
        "pretrain",
        help="pre-train a small ViT backbone on fractal images (the recipe of the demo's shipped weights)",
        description="Supervised pre-training on formula-driven fractal categories (FractalDB-style, no data "
        "download), writing timm-named safetensors plus a <output>.json manifest; use the result with "
        "model.weights=<output>.",
    )
    add_arguments(p)
    return p


def run(args) -> int:
    from velora.pretrain.config import config_from_args
    from velora.pretrain.train import pretrain

    cfg = config_from_args(args)
    manifest = pretrain(cfg, log=lambda line: print(line, flush=True))
    print(
        f"wrote {cfg.output} ({manifest['bytes'] / 1e6:.2f} MB, sha256 {manifest['sha256'][:16]}) in {manifest['train_seconds']:.0f} s"
    )
    return 0
