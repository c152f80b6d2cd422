"""`velora demo`: offline demo: synthetic RGB-Event data, train VELoRA and baselines, report."""

from __future__ import annotations

import argparse
import textwrap

from velora.commands.common import add_config, split_list


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "demo",
        help="offline demo: synthetic RGB-Event data, train VELoRA and baselines, report",
        description=textwrap.dedent(
            """\
            Build a synthetic RGB-Event dataset in the PokerEvent layout (DVS-simulated events), train
            VELoRA (three training seeds) and the RGB-only and event-only baselines, evaluate them on the
            test split and write a report folder. --compare adds the frozen-backbone linear probe, LoRA on
            a random backbone and full fine-tuning (learning rate chosen on the validation split). The
            backbone is the fractal-pretrained ViT that ships with the package. Needs no network; the
            trainings run side by side, one per CPU core."""
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--output", default="velora-demo", help="folder for data, runs and the report (default: velora-demo)"
    )
    p.add_argument(
        "--quick", action="store_true", help="a tiny dataset and one epoch: checks the pipeline in under a minute"
    )
    p.add_argument(
        "--compare",
        action="store_true",
        help="also train the linear probe, LoRA on a random backbone and full fine-tuning (a learning-rate sweep)",
    )
    p.add_argument(
        "--variants",
        help="comma-separated models to train instead of velora,rgb_only,event_only (--compare adds its three); "
        "the released code's model: release, release_stream_path, release_shared_lora, release_head, "
        "release_random_blocks; ablations: fusion_random, recon_block, recon_attached, head_cls, no_frame_diff, no_recon, "
        "modality_dropout",
    )
    p.add_argument("--seeds", type=int, default=3, help="training seeds of VELoRA, for the spread (default: 3)")
    p.add_argument("--workers", type=int, help="trainings at once (default: one per CPU core)")
    add_config(p, "demo")
    return p


def run(args) -> int:
    from velora.demo.run import run_demo

    run_demo(
        args.output,
        config=args.config,
        overrides=args.overrides,
        quick=args.quick,
        compare=args.compare,
        variants=split_list(args.variants),
        seeds=args.seeds,
        workers=args.workers,
    )
    return 0
