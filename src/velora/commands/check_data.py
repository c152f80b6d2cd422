"""`velora check-data`: walk a dataset and report every problem (missing folders, unreadable images, bad labels, ...)."""

from __future__ import annotations

import argparse
from pathlib import Path

from velora.commands.common import add_config, split_list


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "check-data",
        help="walk a dataset and report every problem (missing folders, unreadable images, bad labels, ...)",
        description="Check a dataset before a long run: label lines, clip and modality folders, every image "
        "decoded (or headers only with --fast), frame counts and sizes, labels in range, class counts. "
        "Either a folder on its own (ROOT: each label file's layout is told from its lines), or the dataset "
        "of a config, read exactly as training reads it (--config, with data.*/model.num_classes overrides, "
        "e.g. data.root=/data/poker). Exit code 1 when anything is wrong.",
    )
    p.add_argument(
        "root",
        nargs="?",
        help="dataset folder (PokerEvent/HARDVS frame layout, or event files with a "
        "labels file); leave it out with --config",
    )
    p.add_argument(
        "--splits",
        default="train,val,test",
        help="--config: splits to check, those whose label files exist (default train,val,test)",
    )
    p.add_argument("--fast", action="store_true", help="read image headers only, do not decode")
    p.add_argument("--workers", type=int, default=1, help="processes decoding images")
    p.add_argument("--max-shown", type=int, default=20, help="problems shown per kind")
    add_config(p, None)
    return p


def run(args) -> int:
    from velora.config import ConfigError, load_config
    from velora.data.check import check_config, check_dataset

    if args.root and "=" in args.root and not Path(args.root).exists():  # argparse took an override for ROOT
        args.overrides, args.root = [args.root, *args.overrides], None
    if args.config or args.overrides:
        if args.root:
            raise ConfigError(
                f"give the dataset folder '{args.root}' or --config, not both; with a config set data.root={args.root}"
            )
        cfg = load_config(args.config, args.overrides)
        report = check_config(
            cfg,
            split_list(args.splits) or [],
            decode=not args.fast,
            workers=args.workers,
            progress=True,
            missing_ok=True,
        )
    elif args.root:
        report = check_dataset(args.root, decode_images=not args.fast, workers=args.workers)
    else:
        raise ConfigError("velora check-data needs a dataset folder or --config FILE (see --help)")
    print(report.format(max_per_kind=args.max_shown))
    return 0 if report.ok else 1
