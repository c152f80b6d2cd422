"""Loader throughput from PNG folders vs the packed format, and raw-recording conversion speed.

    .venv/bin/python benchmarks/loader_bench.py [--work DIR] [--clips 48] [--batches 60] [--json FILE]

1. Writes a synthetic PokerEvent-layout dataset at the DAVIS346 resolution, 346 x 260, built from
   the real recording tests/data/real/davis346/street_davis346.aedat4 so the PNGs have realistic
   sizes: APS PNGs are its frames, shifted, tinted to RGB and given sensor-like noise (sigma 3);
   event PNGs are event images of its real event windows at random shifts.
2. Packs it at 224 px (velora.data.packed.pack_dataset).
3. Times clips/s through a torch DataLoader (2 workers, batch 8, T = 8, 224 px, both modalities)
   for ClipDataset (PNG) and PackedClipDataset, in training and in evaluation mode, with the page
   cache warm for both (every file read once first) and after warmup batches; both read the same
   random sequence of clips. PNG and packed rounds alternate (--rounds) so that load from other
   processes hits both; the best round of each is compared.
   Also: each dataset's per-clip cost in one process (what a worker pays), and the DataLoader's
   own ceiling: the same loader over a dataset that returns ready tensors.
4. Times convert_recordings on copies of the real recording (events/s and frames/s).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from velora.data.augment import apply_device_crop
from velora.data.clips import ClipDataset
from velora.data.convert import convert_recordings
from velora.data.factory import loader_collate
from velora.data.packed import PackedClipDataset, pack_dataset
from velora.data.sampling import ClipSampling
from velora.events.aedat4 import read_aedat4
from velora.events.render import event_image
from velora.events.representations import frame_windows

REPO_ROOT = Path(__file__).resolve().parents[1]
STREET = REPO_ROOT / "tests" / "data" / "real" / "davis346" / "street_davis346.aedat4"
NUM_FRAMES, IMAGE_SIZE, BATCH_SIZE, WORKERS, WARMUP_BATCHES = 8, 224, 8, 2, 5
FRAMES_PER_CLIP, CLASSES = 16, 4


def write_dataset(root: Path, num_clips: int, seed: int = 0) -> None:
    """<root>/<class>/<clip>/<clip>_aps|_dvs/0000.png at 346 x 260, and train_label.txt."""
    recording = read_aedat4(STREET)
    events = recording.events
    windows = frame_windows(events.t, recording.frame_timestamps_us)[1:]
    rng = np.random.default_rng(seed)
    lines = []
    for clip in range(num_clips):
        label = clip % CLASSES
        sample = f"class_{label}/clip_{clip:04d}"
        aps_dir, dvs_dir = (root / sample / f"clip_{clip:04d}{suffix}" for suffix in ("_aps", "_dvs"))
        aps_dir.mkdir(parents=True), dvs_dir.mkdir(parents=True)
        tint = rng.uniform(0.7, 1.0, 3)
        for k in range(FRAMES_PER_CLIP):
            shift = rng.integers(-20, 21, 2)
            gray = np.roll(recording.aps_frames[k % len(recording.aps_frames)], tuple(shift), axis=(0, 1))
            rgb = gray[..., None] * tint + rng.normal(0, 3, (*gray.shape, 3))  # (260, 346, 3)
            Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(aps_dir / f"{k:04d}.png", compress_level=1)
            window = windows[k % len(windows)]
            x = (events.x[window] + shift[1]) % events.width
            y = (events.y[window] + shift[0]) % events.height
            drawn = event_image(x, y, events.p[window], events.height, events.width)
            Image.fromarray(drawn).save(dvs_dir / f"{k:04d}.png", compress_level=1)
        lines.append(f"{sample} {FRAMES_PER_CLIP} {label}\n")
    (root / "train_label.txt").write_text("".join(lines))


def warm_page_cache(folder: Path) -> int:
    """Read every file under folder once; returns the bytes read."""
    total = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as file:
                while chunk := file.read(1 << 24):
                    total += len(chunk)
    return total


def clips_per_second(dataset, batches: int, seed: int = 0) -> float:
    order = np.random.default_rng(seed).integers(0, len(dataset), (WARMUP_BATCHES + batches) * BATCH_SIZE)
    loader = DataLoader(
        dataset,
        batch_size=BATCH_SIZE,
        sampler=order.tolist(),
        num_workers=WORKERS,
        prefetch_factor=4,
        collate_fn=loader_collate(dataset),  # as training uses it
    )
    iterator = iter(loader)
    for _ in range(WARMUP_BATCHES):
        next(iterator)
    start = time.perf_counter()
    clips = sum(len(batch["label"]) for batch in iterator)
    return clips / (time.perf_counter() - start)


def milliseconds_per_clip(dataset, clips: int, seed: int = 0) -> float:
    """One process, no DataLoader: the CPU cost of one item, what each worker pays."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    order = np.random.default_rng(seed).integers(0, len(dataset), clips)
    dataset[int(order[0])]
    start = time.perf_counter()
    for index in order.tolist():
        dataset[index]
    seconds = time.perf_counter() - start
    torch.set_num_threads(threads)
    return seconds / clips * 1e3


def dataloader_bound(batches: int) -> float:
    """clips/s of the same DataLoader over a dataset that returns ready tensors (no work)."""
    ready = {"rgb": torch.zeros(NUM_FRAMES, 3, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8)}
    ready["events"] = ready["rgb"].clone()

    class Ready(torch.utils.data.Dataset):
        def __len__(self):
            return 1 << 20

        def __getitem__(self, index):
            return {**ready, "label": torch.tensor(0), "index": index}

    return clips_per_second(Ready(), batches)


def packed_train_item(packed_root: Path, index: int) -> dict:
    dataset = PackedClipDataset(
        packed_root, "train", ClipSampling(num_frames=NUM_FRAMES, image_size=IMAGE_SIZE, train=True), device_crop=True
    )
    return dataset[index]


def folder_megabytes(folder: Path, pattern: str) -> float:
    return sum(p.stat().st_size for p in folder.rglob(pattern)) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--work", type=Path, default=Path("/tmp/velora_loader_bench"), help="scratch folder (deleted first)"
    )
    parser.add_argument("--clips", type=int, default=48, help=f"synthetic clips of {FRAMES_PER_CLIP} frames")
    parser.add_argument("--batches", type=int, default=60, help="timed batches per loader and mode")
    parser.add_argument("--rounds", type=int, default=2, help="alternating PNG / packed rounds; the best is reported")
    parser.add_argument("--recordings", type=int, default=50, help="copies of the real recording to convert")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    png_root, packed_root, raw_root = args.work / "png", args.work / "packed", args.work / "raw"
    results: dict = {"cpu_count": os.cpu_count(), "clips": args.clips, "frames_per_clip": FRAMES_PER_CLIP}

    start = time.perf_counter()
    write_dataset(png_root, args.clips)
    print(
        f"wrote {args.clips} clips x {FRAMES_PER_CLIP} frames at 346x260 in {time.perf_counter() - start:.1f} s: "
        f"APS PNG {folder_megabytes(png_root, '*_aps/*.png') / (args.clips * FRAMES_PER_CLIP) * 1e3:.0f} kB, "
        f"event PNG {folder_megabytes(png_root, '*_dvs/*.png') / (args.clips * FRAMES_PER_CLIP) * 1e3:.0f} kB each"
    )
    stats = pack_dataset(
        png_root,
        packed_root,
        splits={"train": "train_label.txt"},
        image_size=IMAGE_SIZE,
        workers=WORKERS,
        progress=False,
    )
    results["pack"] = {
        "seconds": stats.seconds,
        "clips_per_s": stats.written / stats.seconds,
        "packed_mb": folder_megabytes(packed_root, "shard_*.bin"),
        "png_mb": folder_megabytes(png_root, "*.png"),
    }
    print(
        f"packed at {IMAGE_SIZE} px in {stats.seconds:.1f} s ({stats.written / stats.seconds:.1f} clips/s, "
        f"{WORKERS} workers): {results['pack']['packed_mb']:.0f} MB of shards from {results['pack']['png_mb']:.0f} MB of PNGs"
    )

    print(
        f"\nDataLoader: {WORKERS} workers, batch {BATCH_SIZE}, T={NUM_FRAMES}, {IMAGE_SIZE} px, rgb + event, "
        f"{args.batches} batches after {WARMUP_BATCHES} warmup, page cache warm"
    )
    print(f"{'mode':<6} {'PNG clips/s':>12} {'packed clips/s':>15} {'packed / PNG':>13}")
    results["loader"] = {}
    # "train+dc": the packed loader leaves the random resized crop to the training device
    # (data.device_crop); the crop itself is timed separately below.
    for mode, train, device_crop in (("train", True, False), ("train+dc", True, True), ("eval", False, False)):
        sampling = ClipSampling(num_frames=NUM_FRAMES, image_size=IMAGE_SIZE, train=train, seed=0)
        png = ClipDataset(png_root, "train_label.txt", sampling)
        packed = PackedClipDataset(packed_root, "train", sampling, device_crop=device_crop)
        warm_page_cache(png_root), warm_page_cache(packed_root)
        rates = {"png": [], "packed": []}
        for round_ in range(args.rounds):
            rates["png"].append(clips_per_second(png, args.batches, seed=round_))
            rates["packed"].append(clips_per_second(packed, args.batches, seed=round_))
            print(
                f"{mode:<6} {rates['png'][-1]:>12.1f} {rates['packed'][-1]:>15.1f} "
                f"{rates['packed'][-1] / rates['png'][-1]:>12.1f}x   round {round_ + 1}"
            )
        best_png, best_packed = max(rates["png"]), max(rates["packed"])
        print(f"{mode:<6} {best_png:>12.1f} {best_packed:>15.1f} {best_packed / best_png:>12.1f}x   best")
        cost = {"png": milliseconds_per_clip(png, 48), "packed": milliseconds_per_clip(packed, 240)}
        print(
            f"{mode:<6} {cost['png']:>9.1f} ms {cost['packed']:>12.2f} ms {cost['png'] / cost['packed']:>12.1f}x   "
            "one process, per clip (no DataLoader)"
        )
        results["loader"][mode] = {
            "png_clips_per_s": rates["png"],
            "packed_clips_per_s": rates["packed"],
            "png_ms_per_clip": cost["png"],
            "packed_ms_per_clip": cost["packed"],
        }
    batch = torch.utils.data.default_collate([packed_train_item(packed_root, i) for i in range(BATCH_SIZE)])
    start = time.perf_counter()
    for _ in range(5):
        apply_device_crop(batch)
    crop_ms = (time.perf_counter() - start) / 5 / BATCH_SIZE * 1e3
    results["loader"]["device_crop_cpu_ms_per_clip"] = crop_ms
    print(
        f"the device crop itself, run here on the CPU: {crop_ms:.2f} ms per clip (on a GPU it is one small kernel per batch)"
    )
    bound = dataloader_bound(args.batches)
    results["loader"]["ready_tensors_clips_per_s"] = bound
    print(f"the same DataLoader over ready tensors (no loading at all): {bound:.1f} clips/s")

    (raw_root / "street").mkdir(parents=True)
    for copy in range(args.recordings):
        shutil.copy(STREET, raw_root / "street" / f"street_{copy:03d}.aedat4")
    stats = convert_recordings(raw_root, args.work / "converted", progress=False)
    results["convert"] = {
        "recordings": stats.recordings,
        "events": stats.events,
        "frames": stats.frames,
        "seconds": stats.seconds,
        "events_per_s": stats.events_per_s,
        "frames_per_s": stats.frames_per_s,
    }
    print(
        f"\nconvert_recordings: {stats.recordings} copies of {STREET.name} (346x260, PNG at sensor size): "
        f"{stats.events} events, {stats.frames} sample frames (APS + event PNG) in {stats.seconds:.2f} s = "
        f"{stats.events_per_s:,.0f} events/s, {stats.frames_per_s:.1f} frames/s"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
