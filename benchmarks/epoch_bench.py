"""End-to-end training epoch time on a PokerEvent-sized packed dataset of generated clips (issue #5).

The data path is inside the figure: the packed memory-mapped reader, the DataLoader workers and
their shared-memory batches, the pinned copy to the device, the device crop, and the real
LightningModule training step (VELoRA, AdamW, the config's precision), as `velora train` runs them.

The dataset is written in the packed format (see velora.data.packed) from generated frames:
`--clips` clip records (PokerEvent's training split has 16,216), whose bytes cycle over
`--distinct` generated clips so that a PokerEvent-sized epoch needs ~0.6 GB of disk, not ~39 GB.
Every record is read through the memory map as a distinct clip would be; the repeated bytes are
served from the page cache, as a real packed PokerEvent (39 GB at 224 px, T = 8 stored frames)
would be from the second epoch on, on a machine with more memory than that.

Usage (GPU):  python benchmarks/epoch_bench.py --device cuda --clips 16216 --workers 8 --json out.json
Usage (CPU):  python benchmarks/epoch_bench.py --config demo --clips 256 --batch-size 16 --workers 2
With --clips below 16,216 the result also gives the full epoch extrapolated from the steady rate,
labelled as such.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import warnings
import zlib
from collections import Counter
from datetime import date
from pathlib import Path

import lightning as L
import numpy as np
import torch

POKEREVENT_TRAIN_CLIPS = 16_216
POKEREVENT_CLASSES = 114


def write_packed(
    root: Path, *, clips: int, distinct: int, frames: int, image_size: int, classes: int, val: int
) -> float:
    """Write a packed dataset of generated clips; returns the seconds it took."""
    from velora.data.packed import FORMAT, INDEX_FILE, SHARD_NAME, VERSION

    start = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    S = image_size
    modality_bytes = frames * S * S * 3
    stored = []  # (offsets, crc32) of each distinct clip
    with open(root / SHARD_NAME.format(0), "wb") as shard:
        for i in range(distinct):
            # Smooth random patterns (upsampled noise) for RGB; sparse dots on white for events.
            low = rng.integers(0, 256, (frames, S // 8 + 1, S // 8 + 1, 3), dtype=np.uint8)
            rgb = np.repeat(np.repeat(low, 8, axis=1), 8, axis=2)[:, :S, :S]
            events = np.full((frames, S, S, 3), 255, dtype=np.uint8)
            dots = rng.random((frames, S, S)) < 0.05
            events[dots] = (255, 0, 0) if i % 2 else (0, 0, 255)
            offsets = {}
            crc = 0
            for name, array in (("rgb", rgb), ("event", events)):
                offsets[name] = shard.tell()
                data = np.ascontiguousarray(array).tobytes()
                assert len(data) == modality_bytes
                crc = zlib.crc32(data, crc)
                shard.write(data)
            stored.append((offsets, crc))
    samples = {"train": [f"class_{k % classes:03d}/clip_{k:05d}" for k in range(clips)]}
    samples["val"] = [f"class_{k % classes:03d}/val_{k:05d}" for k in range(val)]
    records = []
    for split in ("train", "val"):
        for k, sample in enumerate(samples[split]):
            offsets, crc = stored[k % distinct]
            records.append(
                {
                    "sample": sample,
                    "label": k % classes,
                    "frames": frames,
                    "shard": 0,
                    "offsets": offsets,
                    "crc32": crc,
                }
            )
    index = {
        "header": {
            "format": FORMAT,
            "version": VERSION,
            "image_size": S,
            "modalities": ["rgb", "event"],
            "class_names": [f"class_{c:03d}" for c in range(classes)],
            "event_resample": "nearest",
            "frame_count_policy": "error",
            "shard_bytes": 1 << 40,
            "source": {"generated": f"benchmarks/epoch_bench.py, {distinct} distinct clips"},
        },
        "splits": samples,
        "clips": records,
        "complete": True,
    }
    (root / INDEX_FILE).write_text(json.dumps(index))
    return time.perf_counter() - start


class EpochTimer(L.Callback):
    """Wall time of the training epoch (device work finished at both ends) and of each step's end.

    On CUDA it also counts the host-device syncs of each step (torch.cuda.set_sync_debug_mode
    warnings from the main process): each one stops the host from queueing ahead of the GPU.
    """

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.start = self.end = 0.0
        self.step_ends: list[float] = []
        self.syncs: list[warnings.WarningMessage] = []
        self.syncs_at_step: list[int] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.syncs_at_step.append(len(self.syncs))

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def on_train_epoch_start(self, trainer, module) -> None:
        self._sync()
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.step_ends.append(time.perf_counter())

    def on_train_epoch_end(self, trainer, module) -> None:
        self._sync()
        self.end = time.perf_counter()

    def syncs_per_step(self) -> dict:
        """Syncs per step over the second half of the epoch, and where the most common ones come from."""
        marks = self.syncs_at_step[len(self.syncs_at_step) // 2 :]
        counts = [b - a for a, b in zip(marks, marks[1:])]
        steady = self.syncs[marks[0] :] if marks else []
        sources = Counter(f"{w.filename.rsplit('/', 1)[-1]}:{w.lineno}" for w in steady)
        return {
            "mean": sum(counts) / len(counts) if counts else None,
            "max": max(counts, default=None),
            "top_sources": dict(sources.most_common(5)),
        }


def run(args) -> dict:
    from velora.config import load_config
    from velora.training.datamodule import ClipDataModule
    from velora.training.module import VELoRAModule

    cuda = args.device.startswith("cuda")
    base = load_config(args.config, ["model.weights=none"])
    T, S = base.data.num_frames, base.model.image_size
    root = Path(args.root or tempfile.mkdtemp(prefix="velora_epoch_bench_"))
    gen_seconds = write_packed(
        root,
        clips=args.clips,
        distinct=min(args.distinct, args.clips),
        frames=max(T, args.frames),
        image_size=S,
        classes=POKEREVENT_CLASSES,
        val=args.batch_size,
    )
    overrides = [
        "model.weights=none",
        f"model.num_classes={POKEREVENT_CLASSES}",
        "data.format=packed",
        f"data.packed_root={root}",
        f"data.num_workers={args.workers}",
        f"train.batch_size={args.batch_size}",
        "train.epochs=1",
        f"train.precision={args.precision or ('bf16-mixed' if cuda else '32-true')}",
        f"train.accelerator={'gpu' if cuda else 'cpu'}",
        "train.progress=false",
        f"model.compile={str(args.compile).lower()}",
        f"model.grad_checkpointing={str(args.checkpointing).lower()}",
        *args.overrides,
    ]
    cfg = load_config(args.config, overrides)
    setup_start = time.perf_counter()
    data = ClipDataModule(cfg)
    module = VELoRAModule(cfg, data.class_names)
    timer = EpochTimer(cuda)
    trainer = L.Trainer(
        max_epochs=1,
        accelerator=cfg.train.accelerator,
        devices=1,
        precision=cfg.train.precision,
        gradient_clip_val=cfg.train.grad_clip or None,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        logger=False,
        callbacks=[timer],
        default_root_dir=str(root),
    )
    with warnings.catch_warnings(record=cuda) as caught:  # on the CPU, warnings print as usual
        if cuda:
            warnings.simplefilter("always")
            timer.syncs = caught
            torch.cuda.set_sync_debug_mode("warn")
        try:
            trainer.fit(module, datamodule=data)
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode("default")
    total = time.perf_counter() - setup_start

    epoch = timer.end - timer.start
    steps = len(timer.step_ends)
    # Steady rate: the second half of the epoch (after warmup, compilation and worker start-up).
    half = steps // 2
    steady_clips = (steps - half - 1) * args.batch_size
    steady = steady_clips / (timer.step_ends[-1] - timer.step_ends[half]) if steps - half > 1 else None
    results = {
        "date": date.today().isoformat(),
        "device": torch.cuda.get_device_name() if cuda else f"{platform.processor() or platform.machine()} CPU",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "config": args.config,
        "overrides": overrides,
        "clips": args.clips,
        "distinct_clips": min(args.distinct, args.clips),
        "stored_frames": max(T, args.frames),
        "num_frames": T,
        "image_size": S,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "generate_seconds": gen_seconds,
        "epoch_seconds": epoch,
        "setup_and_epoch_seconds": total,
        "epoch_clips_per_s": args.clips / epoch,
        "steady_clips_per_s": steady,
        "steps": steps,
    }
    if cuda:
        results["host_syncs_per_step"] = timer.syncs_per_step()
    if args.clips < POKEREVENT_TRAIN_CLIPS and steady:
        # The measured epoch plus the missing clips at the steady rate.
        results["pokerevent_epoch_seconds_extrapolated"] = epoch + (POKEREVENT_TRAIN_CLIPS - args.clips) / steady
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="pokerevent_vitb16")
    p.add_argument("--device", default="cpu")
    p.add_argument("--clips", type=int, default=POKEREVENT_TRAIN_CLIPS, help="training clip records")
    p.add_argument("--distinct", type=int, default=256, help="distinct generated clips the records cycle over")
    p.add_argument("--frames", type=int, default=8, help="frames stored per clip (at least data.num_frames)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--precision", help="Lightning precision (default: bf16-mixed on CUDA, 32-true on the CPU)")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--checkpointing", action="store_true")
    p.add_argument("--root", help="where to write the packed dataset (default: a new temporary folder)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("overrides", nargs="*", metavar="section.field=value")
    args = p.parse_args()
    results = run(args)
    print(json.dumps(results, indent=1))
    extra = results.get("pokerevent_epoch_seconds_extrapolated")
    print(
        f"epoch of {results['clips']} clips: {results['epoch_seconds']:.1f} s ({results['epoch_clips_per_s']:.1f} clips/s, "
        f"steady {results['steady_clips_per_s'] or float('nan'):.1f} clips/s)"
        + (f"; PokerEvent epoch ({POKEREVENT_TRAIN_CLIPS} clips) extrapolated: {extra:.0f} s" if extra else "")
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
