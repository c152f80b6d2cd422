"""`velora predict`: top-5 classes of one clip, optionally with an image panel."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from velora.commands.common import add_device, add_modalities, add_weights, split_list


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("predict", help="top-5 classes of one clip, optionally with an image panel")
    p.add_argument(
        "checkpoint",
        help="adapter checkpoint (.safetensors), run folder, package folder, hf:org/name, or an ONNX file written by "
        "velora export (.onnx: run by onnxruntime)",
    )
    p.add_argument(
        "clips",
        nargs="+",
        metavar="clip",
        help="clip folder <sample>/ holding <sample>_aps/ and <sample>_dvs/ frames, or a raw .aedat4 recording; "
        "for a model trained on event files (data.layout events), one event file. Several clips: one panel row each",
    )
    p.add_argument("--json", metavar="FILE", help="write the predictions (and ground truths) as JSON")
    add_modalities(p)
    p.add_argument("--panel", metavar="PNG", help="write a prediction panel (RGB frames, event frames, top-5)")
    add_device(p)
    add_weights(p)
    return p


def run(args) -> int:
    import velora

    recognizer = velora.load(args.checkpoint, device=args.device, weights=args.weights)
    results = recognizer.predict(args.clips, modalities=split_list(args.modalities), panel=args.panel)
    for result in results:
        if len(results) > 1:
            truth = f" (folder: {result.ground_truth})" if result.ground_truth else ""
            print(f"{result.source}{truth}")
        for rank, (name, prob) in enumerate(result.topk, 1):
            print(f"{'  ' if len(results) > 1 else ''}top-{rank}: {name} ({prob:.3f})")
    if args.json:
        Path(args.json).write_text(json.dumps([r.as_dict() for r in results], indent=1))
        print(f"predictions: {args.json}")
    if args.panel:
        print(f"panel: {args.panel}")
    return 0
