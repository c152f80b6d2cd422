"""`velora bench`: training/inference throughput vs an original-style execution."""

from __future__ import annotations

import argparse
import json
import sys

from velora.commands.common import add_config, add_device


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "bench",
        help="training/inference throughput vs an original-style execution",
        description="Time VELoRA's batched execution against the original code's execution (one image per "
        "backbone call, three fp32 backbone copies) with the same model config, in one run.",
    )
    add_device(p)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--steps", type=int, default=5, help="timed steps per measurement (after warmup)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument(
        "--peak-tflops",
        type=float,
        help="peak FLOP rate for MFU (default on CUDA: the card's dense bf16 peak "
        "from a table; on the CPU MFU is printed only with this)",
    )
    p.add_argument("--compile", action="store_true", help="model.compile: torch.compile the low-level blocks")
    p.add_argument("--checkpointing", action="store_true", help="model.grad_checkpointing: activation checkpointing")
    p.add_argument("--max-batch", action="store_true", help="CUDA: double the training batch until out of memory")
    p.add_argument("--no-original", action="store_true", help="skip the original-style execution")
    p.add_argument("--original-batch-size", type=int, help="the original style's batch (default: --batch-size)")
    p.add_argument(
        "--modes", default="train,infer,latency", help="comma-separated: train, infer, latency (one clip, median)"
    )
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    add_config(p, "demo")
    return p


def run(args) -> int:
    from velora.bench.run import run_bench

    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    unknown = [m for m in modes if m not in ("train", "infer", "latency")]
    if unknown or not modes:
        print(f"velora bench: --modes {args.modes!r}: use some of train, infer, latency", file=sys.stderr)
        return 2
    if args.max_batch and not args.device.startswith("cuda"):
        print("velora bench: --max-batch searches up to the GPU's memory; use it with --device cuda", file=sys.stderr)
        return 2
    results = run_bench(
        args.config,
        args.overrides,
        device=args.device,
        batch_size=args.batch_size,
        steps=args.steps,
        precision=args.precision,
        peak_tflops=args.peak_tflops,
        compile=args.compile,
        checkpointing=args.checkpointing,
        max_batch=args.max_batch,
        original=not args.no_original,
        original_batch_size=args.original_batch_size,
        modes=modes,
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0
