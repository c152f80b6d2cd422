"""`velora convert-weights`: CLIP/open_clip/Hugging Face/timm/TorchScript ViT weights -> timm-named .safetensors."""

from __future__ import annotations

import argparse
import json


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "convert-weights",
        help="CLIP/open_clip/Hugging Face/timm/TorchScript ViT weights -> timm-named .safetensors",
        description="Convert backbone weights once into timm-named safetensors (with their normalisation in "
        "the header), then point model.weights at the result. A TorchScript archive (OpenAI's ViT-B-16.pt) "
        "runs code when loaded: it is read only with --allow-torchscript, for files you trust.",
    )
    p.add_argument("source", help="weights file or folder")
    p.add_argument("output", help="the .safetensors file to write")
    p.add_argument("--allow-torchscript", action="store_true", help="load a TorchScript archive (runs code from it)")
    return p


def run(args) -> int:
    from velora.model.weights import convert_weights

    meta = convert_weights(args.source, args.output, allow_torchscript=args.allow_torchscript)
    print(json.dumps(meta, indent=1, default=str))
    print(f"wrote {args.output}; use it with model.weights={args.output}")
    return 0
