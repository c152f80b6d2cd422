"""`velora export`: write a checkpoint as one ONNX file (inputs rgb, events; dynamic batch) for onnxruntime."""

from __future__ import annotations

import argparse

from velora.commands.common import add_weights


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "export",
        help="write a checkpoint as one ONNX file (inputs rgb, events; dynamic batch) for onnxruntime",
        description="Export a trained model to ONNX: inputs rgb and events, uint8 (batch, T, 3, S, S) with a dynamic "
        "batch (T and S are the config's); output logits (batch, classes). A model with both modalities holds its "
        "three graphs (both, RGB alone, events alone) in one file: an empty input (batch 0) is a missing sensor. "
        "The config, class names, weights source, opset and velora version are in the file's metadata, so "
        "`velora predict OUT.onnx CLIP` needs nothing else. After writing, the file is run by onnxruntime against "
        "PyTorch on random clips of every case and the largest logit difference is printed.",
    )
    p.add_argument("checkpoint", help="adapter checkpoint (.safetensors), run folder, package folder or hf:org/name")
    p.add_argument("output", help="the .onnx file to write")
    p.add_argument(
        "--merge",
        action="store_true",
        help="fold each stream's LoRA into its own copy of the weights it touches: no low-rank branches in the graph",
    )
    p.add_argument("--opset", type=int, help="ai.onnx opset to write (18 or later; default: torch's exporter's)")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime-against-PyTorch check")
    add_weights(p)
    return p


def run(args) -> int:
    from velora.export.onnx import TOLERANCE, export_onnx

    report = export_onnx(
        args.checkpoint, args.output, merge=args.merge, opset=args.opset, check=not args.no_check, weights=args.weights
    )
    kind = "LoRA merged" if report.merged else "LoRA branches kept"
    print(
        f"wrote {report.path} ({report.bytes / 1e6:.2f} MB, opset {report.opset}, {kind}; graphs: "
        f"{', '.join(report.cases)}) in {report.seconds:.0f} s"
    )
    for case, diff in report.max_abs_diff.items():
        verdict = "ok" if diff <= TOLERANCE else f"ABOVE {TOLERANCE:g}"
        print(f"  {case:>10s}: max |onnxruntime - PyTorch| logit {diff:.1e} ({verdict})")
    print(f"run it with: velora predict {report.path} CLIP")
    return 0
