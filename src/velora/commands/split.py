"""`velora split`: carve a validation split out of a training list (stratified by class, deterministic)."""

from __future__ import annotations

import argparse
from pathlib import Path

from velora.commands.common import add_val_fraction


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "split",
        help="carve a validation split out of a training list (stratified by class, deterministic)",
        description="Write <ROOT>/val_label.txt with --val-fraction of each class of the training list and "
        "<ROOT>/train_split_label.txt with the rest; the training and test lists are never changed, and a "
        "sample the test list holds goes to neither output. Train with data.train_labels=train_split_label.txt "
        "(the shipped PokerEvent configs do). Refuses to overwrite without --force.",
    )
    p.add_argument("root", help="dataset root holding the training list")
    add_val_fraction(p)
    p.add_argument("--seed", type=int, default=0, help="which samples are drawn (default 0)")
    p.add_argument("--train-labels", default="train_label.txt", help="the training list (default train_label.txt)")
    p.add_argument("--test-labels", default="test_label.txt", help="the test list, read for overlaps only")
    p.add_argument("--force", action="store_true", help="overwrite the lists it writes")
    p.add_argument(
        "--output",
        metavar="DIR",
        help="write val_label.txt and train_split_label.txt to DIR instead of ROOT (a read-only dataset); train "
        "with data.train_labels and data.val_labels set to their full paths",
    )
    p.add_argument(
        "--from-folders",
        action="store_true",
        help="a dataset of class folders of event files with no lists (N-Caltech101): write train/val/test_label.txt "
        "and classes.txt, each class split --val-fraction / --test-fraction / the rest",
    )
    p.add_argument("--test-fraction", type=float, default=0.2, help="--from-folders: share of each class for test")
    return p


def run(args) -> int:
    from velora.config import ConfigError
    from velora.data.split import (
        TRAIN_SPLIT_FILE,
        VAL_FILE,
        split_folders,
        split_train_val,
    )

    if args.from_folders:
        if args.output:
            raise ConfigError("--output writes a validation split of a training list; --from-folders writes to ROOT")
        result = split_folders(
            args.root,
            val_fraction=args.val_fraction,
            test_fraction=args.test_fraction,
            seed=args.seed,
            force=args.force,
        )
    else:
        folder = Path(args.output).resolve() if args.output else None
        if folder:
            folder.mkdir(parents=True, exist_ok=True)
        result = split_train_val(
            args.root,
            val_fraction=args.val_fraction,
            seed=args.seed,
            train_labels=args.train_labels,
            test_labels=args.test_labels,
            force=args.force,
            val_out=str(folder / VAL_FILE) if folder else VAL_FILE,
            train_out=str(folder / TRAIN_SPLIT_FILE) if folder else TRAIN_SPLIT_FILE,
        )
    print(result.format())
    return 0
