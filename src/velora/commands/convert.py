"""`velora convert`: raw .aedat4 recordings -> PokerEvent frame folders, or a dataset -> the packed format."""

from __future__ import annotations

import argparse


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "convert",
        help="raw .aedat4 recordings -> PokerEvent frame folders, or a dataset -> the packed format",
        description="recordings SRC OUT: <SRC>/<class>/<recording>.aedat4 -> PokerEvent sample folders "
        "(APS frames + event images of the events between consecutive frames).\n"
        "packed OUT --config CFG: the config's dataset (train/val/test label files) -> pre-resized uint8 "
        "clips in memory-mapped shards with an index; train from it with data.format=packed "
        "data.packed_root=OUT.\nBoth resume after an interruption and skip finished work on a rerun.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("kind", choices=("recordings", "packed"))
    p.add_argument("paths", nargs="+", metavar="PATH", help="recordings: SRC OUT; packed: OUT")
    p.add_argument("--config", help="packed: the config whose data.root, model.image_size and data.modalities to pack")
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="section.field=value")
    p.add_argument("--image-size", type=int, help="recordings: resize to S x S (default: sensor size)")
    p.add_argument("--skip-bad", action="store_true", help="recordings: list unreadable recordings and go on")
    p.add_argument(
        "--event-window-ms",
        type=float,
        default=33.333,
        help="recordings without APS frames (.raw, .dat, ...): one event image per this many ms",
    )
    p.add_argument("--workers", type=int, default=0, help="packed: processes decoding PNGs")
    p.add_argument("--verify", action="store_true", help="packed: re-read every clip and check its CRC")
    return p


def run(args) -> int:
    from velora.config import ConfigError

    if args.kind == "recordings":
        from velora.data.convert import convert_recordings

        if len(args.paths) != 2:
            raise ConfigError("velora convert recordings needs SRC and OUT")
        stats = convert_recordings(
            args.paths[0],
            args.paths[1],
            image_size=args.image_size,
            skip_bad=args.skip_bad,
            event_window_us=max(1, round(args.event_window_ms * 1000)),
        )
        print(
            f"{stats.recordings} recordings, {stats.frames} frames, {stats.events} events in {stats.seconds:.1f} s "
            f"({stats.events_per_s:,.0f} events/s, {stats.frames_per_s:,.1f} frames/s)"
        )
        for failure in stats.failures:
            print(f"failed: {failure}")
        return 1 if stats.failures else 0

    from pathlib import Path

    from velora.config import load_config
    from velora.data.packed import PackedClipDataset, pack_dataset

    if len(args.paths) != 1 or not args.config:
        raise ConfigError("velora convert packed needs OUT and --config CFG")
    cfg = load_config(args.config, args.overrides)
    d = cfg.data
    root = Path(d.root)
    splits = {
        split: name
        for split, name in (("train", d.train_labels), ("val", d.val_labels), ("test", d.test_labels))
        if (root / name).is_file()
    }
    packed = pack_dataset(
        root,
        args.paths[0],
        splits=splits,
        image_size=cfg.model.image_size,
        modalities=tuple(d.modalities),
        event_resize=d.event_resize,
        frame_pairing=d.frame_pairing,
        frame_count_policy=d.frame_count_policy,
        workers=args.workers,
    )
    print(packed)
    if args.verify:
        for split in splits:
            PackedClipDataset(args.paths[0], split).verify()
        print("verified")
    print(f"train from it with: data.format=packed data.packed_root={args.paths[0]}")
    return 0
