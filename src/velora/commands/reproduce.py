"""`velora reproduce`: the paper's table on your machine: check, split, train, evaluate with both protocols, report."""

from __future__ import annotations

import argparse
import os
import textwrap

from velora.commands.common import add_val_fraction


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "reproduce",
        help="the paper's table on your machine: check, split, train, evaluate with both protocols, report",
        description=textwrap.dedent(
            """\
            Reproduce VELoRA's PokerEvent or HARDVS figure with the shipped config (--release: the released
            code's model) in OUTPUT: check every clip (stops with the full report on bad files), make a seeded
            validation split if the dataset ships none (PokerEvent; written to OUTPUT/split, never to ROOT),
            print the backbone's weight source, measure throughput on a few steps and print the expected wall
            time, train (recording the test top-1 of every epoch for the paper's protocol), evaluate the
            val-selected checkpoint on the full test split with one view and with the config's test-time views,
            and write OUTPUT/report.md and report.json: velora's figure, the views figure and the paper's
            protocol (best epoch on test, for comparison only) next to the published VELoRA and SAFE figures,
            trainable parameters, hardware, wall time and every command run. Rerun the same command after an
            interruption: finished steps are kept and training resumes. Without a GPU it stops after the
            estimate and asks for --cpu. One device; for several GPUs use velora train with OUTPUT/run/config.yaml."""
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dataset", choices=("pokerevent", "hardvs"))
    p.add_argument("root", help="the dataset root (frame folders and its label files)")
    p.add_argument("--release", action="store_true", help="the released code's model (<dataset>_vitb16_release)")
    p.add_argument("--output", help="folder for everything it writes (default: runs/reproduce_<config>)")
    p.add_argument("--cpu", action="store_true", help="train on the CPU when there is no GPU (days for ViT-B/16)")
    p.add_argument("--fast-check", action="store_true", help="check image headers only instead of decoding every image")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes decoding images in the check")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the validation split it makes (default 0)")
    add_val_fraction(p)
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="section.field=value",
        help="config overrides after ROOT, e.g. model.weights=/weights/vit_b16_clip.safetensors train.batch_size=32",
    )
    return p


def run(args) -> int:
    from velora.reproduce import ReproduceOptions, reproduce
    from velora.reproduce.report import report_markdown

    options = ReproduceOptions(
        dataset=args.dataset,
        root=args.root,
        output=args.output,
        release=args.release,
        cpu=args.cpu,
        fast_check=args.fast_check,
        workers=args.workers,
        split_seed=args.split_seed,
        val_fraction=args.val_fraction,
        overrides=list(args.overrides),
    )
    result = reproduce(options)
    if result.status != "done":
        return 1
    assert result.report is not None  # a finished run has its report
    print(report_markdown(result.report).split("\n## Commands")[0].rstrip())
    print(f"\nwrote {result.output_dir / 'report.md'} and report.json")
    return 0
