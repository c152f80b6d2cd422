"""`velora package`: a training run -> a folder to share (adapters, config, class names, model card) that velora.load reads."""

from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "package",
        help="a training run -> a folder to share (adapters, config, class names, model card) that velora.load reads",
        description="Write OUT_DIR with the run's best adapters (adapters.safetensors), config.yaml, class_names.json, "
        "weights_source.json (the base weights' id and sha256) and a README.md model card (task, data, splits, "
        "selection protocol, metrics with the eval command, trainable share, licence of the base weights). "
        "velora.load(OUT_DIR) loads it; uploaded to the Hugging Face hub, velora.load('hf:org/name') does.",
    )
    p.add_argument("run", help="a training run's folder (with best.safetensors) or one of its adapter files")
    p.add_argument("out_dir", help="the folder to write (must not exist, unless --force)")
    p.add_argument("--name", help="the model card's title (default: OUT_DIR's name)")
    p.add_argument("--dataset", help="the dataset's name in the model card (default: the name of data.root's folder)")
    p.add_argument("--force", action="store_true", help="replace OUT_DIR if it exists")
    return p


def run(args) -> int:
    from velora.evaluation.package import write_package

    out = write_package(args.run, args.out_dir, force=args.force, name=args.name, dataset=args.dataset)
    print(f"wrote {out}: {', '.join(sorted(p.name for p in out.iterdir()))}")
    print(f"load it with velora.load('{out}'); after uploading to the Hugging Face hub, velora.load('hf:<org>/<name>')")
    return 0
