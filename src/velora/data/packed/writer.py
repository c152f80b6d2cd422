"""pack_dataset: write a dataset's clips, resized once, into shards and a committed index (resumable)."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from velora.data.clips import ClipDataset, FrameFolder, read_frame_at
from velora.data.labels import read_class_names
from velora.data.names import MODALITIES
from velora.data.packed.format import (
    DEFAULT_SHARD_BYTES,
    FORMAT,
    FULL_FRAME,
    SHARD_NAME,
    VERSION,
    flush_to_disk,
    read_index,
    write_index,
)
from velora.data.sampling import ClipSampling
from velora.errors import DataError
from velora.events.resize import resize_event_image

COMMIT_INTERVAL_S = 2.0  # how often a running pack commits its index; a kill loses at most this


@dataclass
class PackStats:
    """What one `pack_dataset` run did: clips written now / found committed, bytes written now."""

    written: int = 0
    skipped: int = 0
    frames: int = 0
    bytes: int = 0
    seconds: float = 0.0


def pack_dataset(
    root: str | Path,
    out_dir: str | Path,
    *,
    splits: Mapping[str, str | Path],
    image_size: int = 224,
    modalities: Sequence[str] = MODALITIES,
    event_resize: str = "keep_events",
    frame_pairing: str = "number",
    frame_count_policy: str = "error",
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    workers: int = 0,
    progress: bool = True,
) -> PackStats:
    """Pack the clips of a PokerEvent / HARDVS-layout dataset into ``out_dir`` (resumable).

    root: dataset root, as for ClipDataset.
    splits: split name -> label file (relative paths are looked up under ``root`` first), e.g.
        {"train": "train_label.txt", "test": "test_label.txt"}.
    image_size: S; every frame is resized to S x S exactly as ClipDataset does in evaluation
        (bilinear for RGB, ``event_resize`` for events), so eval items are bit-identical.
    modalities, event_resize, frame_pairing, frame_count_policy: as for ClipDataset; the packed
        clips hold the paired frames (an accumulated event frame stored as one), and the index
        records the pairing.
    shard_bytes: a new shard file starts when the next clip would make the current one larger
        (a clip is never split; a clip larger than this gets a shard of its own).
    workers: processes decoding PNGs (0: in this process); bytes are written in clip order either way.
    progress: show a tqdm progress bar over the clips.

    Raises DataError when ``out_dir`` holds a packed dataset made from other data or settings, and
    for any problem ClipDataset would raise (missing folders, unreadable frames, ...).
    """
    out_dir = Path(out_dir)
    if shard_bytes < 1 or workers < 0:
        raise ValueError(f"shard_bytes ({shard_bytes}) must be >= 1 and workers ({workers}) >= 0")
    if not splits:
        raise ValueError("splits is empty; pass e.g. {'train': 'train_label.txt'}")
    sources = {
        split: ClipDataset(
            root,
            labels,
            ClipSampling(image_size=image_size),
            modalities=modalities,
            event_resize=event_resize,
            frame_pairing=frame_pairing,
            frame_count_policy=frame_count_policy,
        )
        for split, labels in splits.items()
    }
    plan = _plan(sources)
    all_entries = [entry for source in sources.values() for entry in source.entries]
    label_files: dict[str, Path] = {}
    for split, source in sources.items():
        assert source.label_file is not None  # read from the label file `splits` names
        label_files[split] = source.label_file
    index: dict[str, Any] = {
        "header": {
            "format": FORMAT,
            "version": VERSION,
            "image_size": image_size,
            "modalities": list(next(iter(sources.values())).modalities),
            "class_names": read_class_names(root, all_entries),
            "event_resize": event_resize,
            "frame_pairing": frame_pairing,
            "frame_count_policy": frame_count_policy,
            "shard_bytes": shard_bytes,
            "source": {
                "root": str(Path(root).resolve()),
                "label_files": {
                    split: {"path": str(path.resolve()), "sha256": _sha256(path)} for split, path in label_files.items()
                },
            },
        },
        "splits": {split: [entry.sample for entry in s.entries] for split, s in sources.items()},
        "clips": [],
        "complete": False,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    existing = read_index(out_dir, missing_ok=True)
    if existing is not None:
        _check_resumable(out_dir, existing, index, list(plan))
        index["clips"] = existing["clips"]
    shard_sizes = _truncate_uncommitted(out_dir, index["clips"], image_size * image_size * 3)

    stats = PackStats(skipped=len(index["clips"]))
    todo = list(plan)[len(index["clips"]) :]
    tasks = (
        _ClipTask(sources[split].frame_folders(i), image_size, event_resize)
        for split, i in (plan[sample] for sample in todo)
    )
    writer = _ShardWriter(out_dir, shard_sizes, shard_bytes)
    loaded = _run(tasks, workers)
    start = last_commit = time.perf_counter()
    commit_seconds = 0.0
    try:
        with tqdm(total=len(plan), initial=stats.skipped, desc="pack", unit="clip", disable=not progress) as bar:
            for sample, frames in zip(todo, loaded):
                shard, offsets, crc = writer.append(frames)
                split, i = plan[sample]
                num_frames = len(next(iter(frames.values())))
                index["clips"].append(
                    {
                        "sample": sample,
                        "label": sources[split].entries[i].label,
                        "frames": num_frames,
                        "shard": shard,
                        "offsets": offsets,
                        "crc32": crc,
                    }
                )
                stats.written += 1
                stats.frames += num_frames
                stats.bytes += sum(array.nbytes for array in frames.values())
                bar.update()
                # A large index costs a while to write: commit at most ~5 % of the time.
                if time.perf_counter() - last_commit > max(COMMIT_INTERVAL_S, 20 * commit_seconds):
                    commit_start = time.perf_counter()
                    writer.flush()
                    write_index(out_dir, index)
                    last_commit = time.perf_counter()
                    commit_seconds = last_commit - commit_start
        index["complete"] = True
    finally:
        loaded.close()  # stops decoding workers, if any
        # Whatever stopped the loop, every clip listed in `index` has all its bytes in a shard.
        writer.close()
        write_index(out_dir, index)
    stats.seconds = time.perf_counter() - start
    return stats


def _plan(sources: dict[str, ClipDataset]) -> dict[str, tuple[str, int]]:
    """Each distinct sample, in split then label-file order -> (split, index) of its first listing."""
    plan: dict[str, tuple[str, int]] = {}
    for split, source in sources.items():
        for index, entry in enumerate(source.entries):
            first_split, first_index = plan.setdefault(entry.sample, (split, index))
            first_label = sources[first_split].entries[first_index].label
            if first_label != entry.label:
                raise DataError(
                    f"clip {entry.sample} has label {first_label} in {sources[first_split].label_file} "
                    f"but {entry.label} in {source.label_file}; fix one label file"
                )
    return plan


class _ShardWriter:
    """Appends clips to shard files; a new shard starts when a clip would pass ``shard_bytes``."""

    def __init__(self, out_dir: Path, shard_sizes: dict[int, int], shard_bytes: int) -> None:
        self.out_dir, self.shard_bytes = out_dir, shard_bytes
        self.sizes = shard_sizes  # shard -> bytes, the committed ones after _truncate_uncommitted
        self.shard = max(shard_sizes, default=0)
        self.file: IO[bytes] | None = None

    def append(self, frames: dict[str, np.ndarray]) -> tuple[int, dict[str, int], int]:
        """Write modality -> (N, S, S, 3) arrays back to back; returns (shard, offsets, crc32)."""
        clip_bytes = sum(array.nbytes for array in frames.values())
        size = self.sizes.get(self.shard, 0)
        if size and size + clip_bytes > self.shard_bytes:
            self.close()
            self.shard, size = self.shard + 1, 0
        if self.file is None:
            self.file = open(self.out_dir / SHARD_NAME.format(self.shard), "ab")  # noqa: SIM115
        offsets, crc = {}, 0
        for modality, array in frames.items():
            data = np.ascontiguousarray(array).data.cast("B")
            offsets[modality] = size
            self.file.write(data)
            crc = zlib.crc32(data, crc)
            size += len(data)
        self.sizes[self.shard] = size
        return self.shard, offsets, crc

    def flush(self) -> None:
        """Make every appended byte durable (before an index that lists it is committed)."""
        if self.file is not None:
            flush_to_disk(self.file)

    def close(self) -> None:
        self.flush()
        if self.file is not None:
            self.file.close()
            self.file = None


@dataclass(frozen=True)
class _ClipTask:
    folders: dict[str, FrameFolder]
    image_size: int
    event_resize: str


def _load_clip(task: _ClipTask) -> dict[str, np.ndarray]:
    """All frames of one clip resized to S x S as ClipDataset's eval path: modality -> (N, S, S, 3)."""
    size = task.image_size
    clip = {}
    for modality, frames in task.folders.items():
        first_size = None
        resized = np.empty((len(frames.names), size, size, 3), dtype=np.uint8)
        for i, name in enumerate(frames.names):
            image = read_frame_at(frames, i)
            if first_size is None:
                first_size = image.size
            elif image.size != first_size:
                raise DataError(
                    f"frames of one clip differ in size: {frames.folder / frames.names[0]} is "
                    f"{first_size[0]}x{first_size[1]}, {frames.folder / name} is {image.size[0]}x"
                    f"{image.size[1]}; re-export the clip at one resolution"
                )
            width, height = image.size
            # The same box argument as ClipDataset's full-frame crop, so PIL takes the same path.
            box = (FULL_FRAME[0] * width, FULL_FRAME[1] * height, FULL_FRAME[2] * width, FULL_FRAME[3] * height)
            if modality == "rgb":
                resized[i] = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR, box=box))
            else:
                resized[i] = resize_event_image(np.asarray(image), size, box, task.event_resize)
        clip[modality] = resized
    return clip


def _run(tasks, workers: int):
    """_load_clip over tasks in order; with workers, at most 2 clips per worker in flight."""
    if workers == 0:
        yield from map(_load_clip, tasks)
        return
    with multiprocessing.get_context().Pool(workers) as pool:
        pending = []
        for task in tasks:
            pending.append(pool.apply_async(_load_clip, (task,)))
            if len(pending) >= 2 * workers:
                yield pending.pop(0).get()
        for result in pending:
            yield result.get()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_resumable(out_dir: Path, existing: dict, index: dict, plan: list[str]) -> None:
    """DataError unless ``existing`` was packed from the same data with the same settings."""
    different = sorted(k for k in index["header"] if existing["header"].get(k) != index["header"][k])
    if existing.get("splits") != index["splits"]:
        different.append("splits")
    committed = [clip["sample"] for clip in existing["clips"]]
    if not different and committed != plan[: len(committed)]:
        different.append("clip order")
    if different:
        raise DataError(
            f"{out_dir} holds a packed dataset made from other data or settings (differences: "
            f"{', '.join(different)}); pass another out_dir, or delete it to pack again"
        )


def _truncate_uncommitted(out_dir: Path, clips: list[dict], frame_bytes: int) -> dict[int, int]:
    """Cut every shard to the bytes its committed clips own, delete unused ones; shard -> size."""
    ends: dict[int, int] = {}
    for clip in clips:
        end = max(clip["offsets"].values()) + clip["frames"] * frame_bytes
        ends[clip["shard"]] = max(ends.get(clip["shard"], 0), end)
    for path in out_dir.glob("shard_*.bin"):
        number = path.stem.removeprefix("shard_")
        if not number.isdigit():
            continue  # not a file this writer names
        shard = int(number)
        if shard not in ends:
            path.unlink()
            continue
        size = path.stat().st_size
        if size < ends[shard]:
            raise DataError(
                f"{path} holds {size} bytes but its committed clips need {ends[shard]}; the shard "
                f"was cut or overwritten. Delete {out_dir} and pack again"
            )
        if size > ends[shard]:
            os.truncate(path, ends[shard])
    return ends
