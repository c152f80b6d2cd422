"""`velora train`: train adapters on a dataset."""

from __future__ import annotations

import argparse

from velora.commands.common import add_config


def add_parser(sub) -> argparse.ArgumentParser:
    from velora.config import describe_fields

    p = sub.add_parser(
        "train",
        help="train adapters on a dataset",
        description="Train VELoRA adapters; model selection on the validation split.\n\nConfig fields:\n"
        + describe_fields(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--resume", metavar="CKPT", help="resume from <output_dir>/checkpoints/last.ckpt of an earlier run")
    add_config(p, None)
    return p


def run(args) -> int:
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    from velora.config import load_config
    from velora.training.run import train

    if not args.config and not args.overrides:
        raise SystemExit("velora train: give --config FILE and/or section.field=value overrides (see --help)")
    result = train(load_config(args.config, args.overrides), resume=args.resume)
    # under torchrun / SLURM every rank runs this; lightning sets `rank` on the function at import,
    # which its annotations do not declare
    if rank_zero_only.rank == 0:  # type: ignore[attr-defined]
        print(f"best val top-1 {result.best_val_top1:.2%} at epoch {result.best_epoch}: {result.best_checkpoint}")
        if result.paper_protocol:
            best = result.paper_protocol["best_epoch_on_test"]
            print(
                f"paper's protocol, for comparison only (selected on the test set, not velora's figure): best test "
                f"top-1 {best['test_top1']:.2%} at epoch {best['epoch']} ({result.output_dir / 'paper_protocol.json'})"
            )
    return 0
