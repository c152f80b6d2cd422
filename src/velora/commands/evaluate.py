"""`velora eval`: evaluate a checkpoint: top-1/top-5, per-class accuracy, confusion matrix."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from velora.commands.common import add_device, add_modalities, add_weights, split_list


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint: top-1/top-5, per-class accuracy, confusion matrix",
        description="Evaluate an adapter checkpoint on a split of its dataset with one view (segment centres, the "
        "whole frame) and, when eval.views x eval.crops > 1 (the checkpoint's config, or eval.* overrides), with "
        "test-time views too, each clip's scores averaged: both figures are printed and written to eval_<split>.json.",
    )
    p.add_argument("checkpoint", help="adapter checkpoint (.safetensors) written by velora train")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--data-root", help="dataset root (default: the one stored in the checkpoint)")
    add_modalities(p)
    p.add_argument(
        "--output", help="folder for eval_<split>.json and confusion_<split>.png (default: next to the checkpoint)"
    )
    add_device(p)
    add_weights(p)
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="data.field=value",
        help="data and evaluation settings other than the checkpoint's, e.g. data.layout=recordings "
        "data.num_workers=8, or eval.views=3 eval.crops=3 for the multi-view figure beside the single view",
    )
    return p


def run(args) -> int:
    import velora

    recognizer = velora.load(args.checkpoint, device=args.device, weights=args.weights)
    report = recognizer.evaluate(
        split=args.split,
        data_root=args.data_root,
        modalities=split_list(args.modalities),
        output_dir=args.output,
        overrides=args.overrides,
    )
    print(
        f"{args.split}: {report['num_clips']} clips, top-1 {report['top1']:.2%}, top-5 {report['top5']:.2%}, "
        f"mean class accuracy {report['mean_class_accuracy']:.2%} (one view: segment centres, whole frame)"
    )
    views = report["views"]
    if views:
        print(
            f"{args.split}, {views['views']} views ({views['temporal_views']} temporal x {views['crops']} crops, "
            f"{views['average']} averaged): top-1 {views['top1']:.2%}, top-5 {views['top5']:.2%}, "
            f"mean class accuracy {views['mean_class_accuracy']:.2%}"
        )
    paper = Path(recognizer.checkpoint).parent / "paper_protocol.json"  # a run trained with eval.test_every_epoch
    if args.split == "test" and not args.data_root and paper.is_file():
        best = json.loads(paper.read_text())["best_epoch_on_test"]
        print(
            f"paper's protocol, for comparison only (best epoch on the test set, {paper}): top-1 "
            f"{best['test_top1']:.2%} at epoch {best['epoch']}"
        )
    return 0
