"""Packed clips: every frame pre-resized to S x S uint8, in shard files read through memory maps.

Decoding and resizing PNGs dominates the cost of ClipDataset; a packed dataset pays it once. All
frames of a clip are stored (not T of them), so training still draws fresh frame offsets and crops
every epoch. Layout of a packed folder::

    <out_dir>/index.json        header, splits and clip records; replaced atomically on each commit
    <out_dir>/shard_00000.bin   raw uint8 bytes, clips appended back to back (no file header)
    <out_dir>/shard_00001.bin   a new shard starts when the next clip would pass shard_bytes

index.json::

    {"header": {"format": "velora-packed", "version": 1, "image_size": S,
                "modalities": ["rgb", "event"], "class_names": [...], "event_resample": "nearest",
                "frame_count_policy": "error", "shard_bytes": 1073741824,
                "source": {"root": "/abs/dataset", "label_files": {"train": {"path": ..., "sha256": ...}}}},
     "splits": {"train": ["<class_dir>/<sample>", ...], ...},   label-file order
     "clips": [{"sample": "<class_dir>/<sample>", "label": 0, "frames": N, "shard": 0,
                "offsets": {"rgb": 0, "event": N*S*S*3}, "crc32": ...}, ...],
     "complete": true}

Modality m of a clip is the bytes ``[offsets[m], offsets[m] + N*S*S*3)`` of its shard: frames
(N, S, S, 3) in C order (frame, row, column, RGB). The keys of ``offsets`` say which modalities a
clip holds; ``crc32`` covers its bytes in ``offsets`` order (checked by ``verify``). A sample
listed in several splits is stored once.

Writing is resumable: bytes are flushed and fsynced before the index that lists them is committed
(tmp file + os.replace), so a killed run leaves a consistent prefix. A rerun with the same
arguments truncates shard bytes no committed clip owns, skips committed clips and appends the rest,
giving the same bytes as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from velora.data.clips import (
    BATCH_KEY,
    EVENT_RESAMPLE,
    MODALITIES,
    ClipDataset,
    FrameFolder,
    read_frame,
)
from velora.data.errors import DataError
from velora.data.labels import ClipEntry, read_class_names
from velora.data.sampling import SampledClips, draw_clip, sampling_problems

FORMAT = "velora-packed"
VERSION = 1
INDEX_FILE = "index.json"
SHARD_NAME = "shard_{:05d}.bin"
DEFAULT_SHARD_BYTES = 1 << 30
COMMIT_INTERVAL_S = 2.0  # how often a running pack commits its index; a kill loses at most this
FULL_FRAME = (0.0, 0.0, 1.0, 1.0)


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
    event_resample: str = "nearest",
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
        (bilinear for RGB, ``event_resample`` for events), so eval items are bit-identical.
    modalities, event_resample, frame_count_policy: as for ClipDataset.
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
            root, labels, image_size=image_size, modalities=modalities,
            event_resample=event_resample, frame_count_policy=frame_count_policy,
        )
        for split, labels in splits.items()
    }
    plan = _plan(sources)
    all_entries = [entry for source in sources.values() for entry in source.entries]
    index = {
        "header": {
            "format": FORMAT,
            "version": VERSION,
            "image_size": image_size,
            "modalities": list(next(iter(sources.values())).modalities),
            "class_names": read_class_names(root, all_entries),
            "event_resample": event_resample,
            "frame_count_policy": frame_count_policy,
            "shard_bytes": shard_bytes,
            "source": {
                "root": str(Path(root).resolve()),
                "label_files": {
                    split: {"path": str(s.label_file.resolve()), "sha256": _sha256(s.label_file)}
                    for split, s in sources.items()
                },
            },
        },
        "splits": {split: [entry.sample for entry in s.entries] for split, s in sources.items()},
        "clips": [],
        "complete": False,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    existing = _read_index(out_dir, missing_ok=True)
    if existing is not None:
        _check_resumable(out_dir, existing, index, list(plan))
        index["clips"] = existing["clips"]
    shard_sizes = _truncate_uncommitted(out_dir, index["clips"], image_size * image_size * 3)

    stats = PackStats(skipped=len(index["clips"]))
    todo = list(plan)[len(index["clips"]):]
    tasks = (
        _ClipTask(sources[split].frame_folders(i), image_size, event_resample)
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
                index["clips"].append({
                    "sample": sample,
                    "label": sources[split].entries[i].label,
                    "frames": num_frames,
                    "shard": shard,
                    "offsets": offsets,
                    "crc32": crc,
                })
                stats.written += 1
                stats.frames += num_frames
                stats.bytes += sum(array.nbytes for array in frames.values())
                bar.update()
                # A large index costs a while to write: commit at most ~5 % of the time.
                if time.perf_counter() - last_commit > max(COMMIT_INTERVAL_S, 20 * commit_seconds):
                    commit_start = time.perf_counter()
                    writer.flush()
                    _write_index(out_dir, index)
                    last_commit = time.perf_counter()
                    commit_seconds = last_commit - commit_start
        index["complete"] = True
    finally:
        loaded.close()  # stops decoding workers, if any
        # Whatever stopped the loop, every clip listed in `index` has all its bytes in a shard.
        writer.close()
        _write_index(out_dir, index)
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
        self.file = None

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
            data = memoryview(np.ascontiguousarray(array)).cast("B")
            offsets[modality] = size
            self.file.write(data)
            crc = zlib.crc32(data, crc)
            size += len(data)
        self.sizes[self.shard] = size
        return self.shard, offsets, crc

    def flush(self) -> None:
        """Make every appended byte durable (before an index that lists it is committed)."""
        if self.file is not None:
            _flush(self.file)

    def close(self) -> None:
        self.flush()
        if self.file is not None:
            self.file.close()
            self.file = None


@dataclass(frozen=True)
class _ClipTask:
    folders: dict[str, FrameFolder]
    image_size: int
    event_resample: str


def _load_clip(task: _ClipTask) -> dict[str, np.ndarray]:
    """All frames of one clip resized to S x S as ClipDataset's eval path: modality -> (N, S, S, 3)."""
    resample = {"rgb": Image.Resampling.BILINEAR, "event": EVENT_RESAMPLE[task.event_resample]}
    size = task.image_size
    clip = {}
    for modality, frames in task.folders.items():
        first_size = None
        resized = np.empty((len(frames.names), size, size, 3), dtype=np.uint8)
        for i, name in enumerate(frames.names):
            image = read_frame(frames.folder / name)
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
            resized[i] = np.asarray(image.resize((size, size), resample[modality], box=box))
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


def _flush(file) -> None:
    file.flush()
    os.fsync(file.fileno())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_index(out_dir: Path, index: dict) -> None:
    tmp = out_dir / (INDEX_FILE + ".tmp")
    with tmp.open("w", encoding="utf-8") as file:
        json.dump(index, file, separators=(",", ":"))
        _flush(file)
    os.replace(tmp, out_dir / INDEX_FILE)


def _read_index(root: Path, missing_ok: bool = False) -> dict | None:
    path = root / INDEX_FILE
    if not path.is_file():
        if missing_ok:
            return None
        raise DataError(
            f"{path} does not exist; {root} is not a packed dataset. Pack one with "
            "velora.data.packed.pack_dataset (the `velora convert packed` command)"
        )
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
        header = index["header"]
        written_by = header.get("format"), header.get("version")
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, KeyError, TypeError, AttributeError) as error:
        raise DataError(f"{path} is not a valid packed index ({error}); delete {root} and pack again") from None
    if written_by != (FORMAT, VERSION):
        raise DataError(
            f"{path} is format {written_by[0]!r} version {written_by[1]!r}; this "
            f"velora reads {FORMAT!r} version {VERSION}. Delete {root} and pack again"
        )
    problems = _index_problems(index)
    if problems:
        raise DataError(f"{path} is not a valid packed index ({'; '.join(problems[:3])}); delete {root} and pack again")
    return index


def _index_problems(index: dict) -> list[str]:
    """What in an index (format and version already checked) does not have the layout of the module
    docstring; empty when every field the readers use has its type and range."""

    def natural(value, below: int = 1 << 63) -> bool:  # int64 offsets and counts
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < below

    def strings(value) -> bool:
        return isinstance(value, list) and all(isinstance(item, str) for item in value)

    header, problems = index["header"], []
    modalities = header.get("modalities")
    if not (natural(header.get("image_size")) and header["image_size"] > 0):
        problems.append(f"header.image_size {header.get('image_size')!r} is not a positive integer")
    if not (strings(modalities) and modalities and set(modalities) <= set(MODALITIES) and len(set(modalities)) == len(modalities)):
        problems.append(f"header.modalities {modalities!r} is not a list of distinct names from {MODALITIES}")
        modalities = []
    if not strings(header.get("class_names")):
        problems.append("header.class_names is not a list of names")
    if not (isinstance(header.get("event_resample"), str) and header["event_resample"] in EVENT_RESAMPLE):
        problems.append(f"header.event_resample {header.get('event_resample')!r} is not one of {tuple(EVENT_RESAMPLE)}")
    splits = index.get("splits")
    if not (isinstance(splits, dict) and all(strings(samples) for samples in splits.values())):
        problems.append("splits is not a mapping of split names to lists of samples")
    clips = index.get("clips")
    if not isinstance(clips, list):
        return [*problems, "clips is not a list"]
    for number, clip in enumerate(clips):
        ok = (
            isinstance(clip, dict)
            and isinstance(clip.get("sample"), str)
            and all(natural(clip.get(key)) for key in ("label", "frames", "shard"))
            and clip["frames"] > 0
            and isinstance(clip.get("offsets"), dict)
            and set(modalities) <= set(clip["offsets"])
            and all(natural(offset) for offset in clip["offsets"].values())
            and natural(clip.get("crc32"), below=1 << 32)
        )
        if not ok:
            problems.append(f"clip record {number} is malformed: {json.dumps(clip)[:200]}")
            break
    return problems


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


class PackedClipDataset(SampledClips):
    """One split of a packed dataset, with ClipDataset's item contract and randomness.

    root: the packed folder (holding index.json).
    split: a split name given to pack_dataset ("train", "val", ...).
    num_frames, modalities, train, seed, crop_scale, crop_ratio, horizontal_flip, num_classes: as
        for ClipDataset; modalities must be packed ones.
    image_size: when given, must equal the packed S (a DataError says how to repack otherwise).
    device_crop: in training, leave the random resized crop to the training device: items hold the
        uncropped frames and a ``crop_box`` (4,) float tensor, applied to the batch by
        ``velora.data.augment.apply_device_crop`` (the LightningModule does this after the copy to
        the device). The loader then costs what an evaluation item costs.

    ``entries`` are ClipEntry(sample, frames stored, label) in label-file order; ``class_names``,
    ``image_size`` and ``header`` come from the index.

    Items equal ClipDataset's for the same (seed, epoch, index): the same per-item generator
    ``default_rng([seed, epoch, index])`` draws the frame offsets, then the crop box, then the flip,
    applied to all T frames of both modalities. Evaluation items, and training items whose crop is
    the whole frame (crop_scale (1, 1)), are bit-identical. A training crop is cut from the stored
    S x S frame (see :meth:`_crop`), where ClipDataset cuts it from the full-resolution PNG: the
    same region to within half a pixel, but pixels differ slightly (upsampling an S x S frame is a
    little blurrier than resampling 346 x 260).

    Shards are memory-mapped on first use in each process, never pickled, so DataLoader workers
    open their own maps. With ``persistent_workers=True`` a DataLoader keeps its first copies, so
    :meth:`set_epoch` does not reach them; leave it off, as with ClipDataset.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        *,
        num_frames: int = 8,
        modalities: Sequence[str] = MODALITIES,
        train: bool = False,
        seed: int = 0,
        crop_scale: tuple[float, float] = (0.8, 1.0),
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        horizontal_flip: bool = False,
        image_size: int | None = None,
        num_classes: int | None = None,
        device_crop: bool = False,
    ) -> None:
        self.root = Path(root)
        index = _read_index(self.root)
        header = self.header = index["header"]
        self.modalities = tuple(modalities)
        packed = tuple(header["modalities"])
        absent = [m for m in self.modalities if m in MODALITIES and m not in packed]
        if absent:
            raise DataError(
                f"{self.root} holds the modalities {packed}, not {absent}; pack again with them or leave them "
                "out of data.modalities"
            )
        problems = sampling_problems(
            num_frames=num_frames, seed=seed, crop_scale=crop_scale, crop_ratio=crop_ratio,
            modalities=self.modalities, allowed=packed, allowed_name=f"the packed {packed}",
        )
        if problems:
            raise ValueError("invalid PackedClipDataset arguments: " + "; ".join(problems))
        if image_size is not None and image_size != header["image_size"]:
            raise DataError(
                f"{self.root} was packed at {header['image_size']} px but image_size is {image_size}; "
                f"set image_size={header['image_size']}, or pack again with image_size={image_size}"
            )
        if split not in index["splits"]:
            raise DataError(f"{self.root} has no split {split!r}; its splits are {sorted(index['splits'])}")

        clips = {clip["sample"]: clip for clip in index["clips"]}
        missing = [sample for sample in index["splits"][split] if sample not in clips]
        if missing:
            raise DataError(
                f"{self.root} is incompletely packed: split {split!r} lacks {len(missing)} of "
                f"{len(index['splits'][split])} clips (first {missing[0]}); rerun the pack command to finish it"
            )
        records = [clips[sample] for sample in index["splits"][split]]
        self.entries = [ClipEntry(r["sample"], r["frames"], r["label"]) for r in records]
        if num_classes is not None:
            for entry in self.entries:
                if not 0 <= entry.label < num_classes:
                    raise DataError(
                        f"clip {entry.sample} in {self.root} has label {entry.label}, outside "
                        f"[0, {num_classes}); pack again from fixed label files or fix num_classes"
                    )
        # Columns as arrays: cheap to pickle into DataLoader workers, unlike a list of dicts.
        self._shard_ids = np.array([r["shard"] for r in records], dtype=np.int64)  # (L,)
        self._offsets = {m: np.array([r["offsets"][m] for r in records], dtype=np.int64) for m in header["modalities"]}
        self._crc32 = np.array([r["crc32"] for r in records], dtype=np.int64)
        self._check_shards(records)

        self.split = split
        self.label_file = None
        self.init_sampling(
            num_frames=num_frames, image_size=header["image_size"], train=train, seed=seed, crop_scale=crop_scale,
            crop_ratio=crop_ratio, horizontal_flip=horizontal_flip, num_classes=num_classes,
        )
        self.event_resample = header["event_resample"]
        self.device_crop = device_crop
        self._shards: dict[int, np.ndarray] = {}

    def _check_shards(self, records: list[dict]) -> None:
        frame_bytes = self.header["image_size"] ** 2 * 3
        ends: dict[int, int] = {}
        for r in records:
            ends[r["shard"]] = max(ends.get(r["shard"], 0), max(r["offsets"].values()) + r["frames"] * frame_bytes)
        for shard, end in ends.items():
            path = self.root / SHARD_NAME.format(shard)
            size = path.stat().st_size if path.is_file() else None
            if size is None or size < end:
                raise DataError(
                    f"{path} {'is missing' if size is None else f'holds {size} bytes'} but the index "
                    f"needs {end}; the packed dataset is damaged. Delete {self.root} and pack again"
                )

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_shards"] = {}  # every process maps the shards itself
        return state

    @property
    def class_names(self) -> list[str]:
        """Class names in label order, as pack_dataset found them (classes.txt or class folders)."""
        return list(self.header["class_names"])

    def clip_frames(self, index: int, modality: str) -> np.ndarray:
        """All stored frames of one clip and modality, a read-only view: uint8 (N, S, S, 3)."""
        shard = int(self._shard_ids[index])
        if shard not in self._shards:
            path = self.root / SHARD_NAME.format(shard)
            self._shards[shard] = np.memmap(path, dtype=np.uint8, mode="r").view(np.ndarray)
        size, count = self.image_size, self.entries[index].num_frames
        start = int(self._offsets[modality][index])
        return self._shards[shard][start : start + count * size * size * 3].reshape(count, size, size, 3)

    def verify(self) -> None:
        """Recompute every clip's CRC-32 (reads the whole split); DataError naming damaged clips."""
        damaged = []
        for index, entry in enumerate(self.entries):
            crc = 0
            for modality in self.header["modalities"]:  # the CRC covers every packed modality
                crc = zlib.crc32(memoryview(np.ascontiguousarray(self.clip_frames(index, modality))).cast("B"), crc)
            if crc != self._crc32[index]:
                damaged.append(entry.sample)
        if damaged:
            raise DataError(
                f"{len(damaged)} of {len(self)} clips of {self.root} split {self.split!r} fail their "
                f"CRC-32 check (first {damaged[:5]}); the shard files are damaged. Delete the folder "
                "and pack again"
            )

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        index = range(len(self))[index]  # a plain non-negative int, also for -1 or numpy ints
        batch = self.__getitems__([index])
        return {key: value[0] if key != "index" else int(value[0]) for key, value in batch.items()}

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """A whole batch, already collated: what ``default_collate`` would build from the items.

        The DataLoader calls this with a batch of indices; every clip is written straight into one
        (B, T, 3, S, S) tensor per modality, in shared memory when in a worker process, so a batch is
        written once instead of item by item and then again by the collate. A DataLoader over this
        dataset needs ``collate_fn=collate_packed`` (``make_loader`` sets it). The items are those
        of ``__getitem__``, which is this with B = 1.
        """
        indices = [range(len(self))[i] for i in indices]
        size, count = self.image_size, len(indices)
        batch: dict[str, torch.Tensor] = {
            BATCH_KEY[m]: _uint8_batch((count, self.num_frames, 3, size, size)) for m in self.modalities
        }
        boxes = []
        for slot, index in enumerate(indices):
            frame_indices, box, flip = draw_clip(self, index, self.entries[index].num_frames)
            if self.device_crop and self.train:
                # The box travels with the batch; velora.data.augment crops on the training device.
                boxes.append(box)
                box = FULL_FRAME
            for modality in self.modalities:
                frames = self.clip_frames(index, modality)  # (N, S, S, 3), a view of the shard
                if box == FULL_FRAME:
                    chosen = [frames[i] for i in frame_indices.tolist()]  # views: no copy yet
                else:
                    chosen = self._crop(frames, frame_indices, box, modality)
                _channels_first(chosen, flip, out=batch[BATCH_KEY[modality]][slot].numpy())
        batch["label"] = torch.tensor([self.entries[i].label for i in indices], dtype=torch.int64)
        batch["index"] = torch.tensor(indices, dtype=torch.int64)
        if boxes:
            batch["crop_box"] = torch.tensor(boxes, dtype=torch.float32)
        return batch

    def _crop(
        self, frames: np.ndarray, frame_indices: np.ndarray, box: tuple[float, float, float, float], modality: str
    ) -> Sequence[np.ndarray]:
        """Resize ``box`` of the chosen frames back to S x S: (N, S, S, 3) -> T frames (S, S, 3).

        The fractional box is rounded to whole pixels of the S x S frame (at most half a pixel
        off, so both modalities use one pixel grid). RGB: torch's uint8 bilinear interpolation
        of all T crops in one call (half-pixel centres, PIL's convention; ~5x faster than PIL
        here), reading only the crop from the shard. Events: PIL with the packed event_resample
        filter (nearest keeps pure red / blue / white), frame by frame straight from the shard;
        PIL's nearest resize beats torch's and numpy's gathers of 3-byte pixels here.
        """
        size = self.image_size
        left, top, right, bottom = (round(edge * size) for edge in box)
        right, bottom = max(right, left + 1), max(bottom, top + 1)
        if modality == "rgb":
            crops = torch.from_numpy(frames[frame_indices, top:bottom, left:right])  # (T, h, w, 3), a copy
            resized = F.interpolate(
                crops.permute(0, 3, 1, 2), size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )  # (T, 3, S, S) in channels-last memory, as its input
            return resized.permute(0, 2, 3, 1).numpy()  # (T, S, S, 3)
        resample = EVENT_RESAMPLE[self.event_resample]
        return [
            np.asarray(Image.fromarray(frames[i]).resize((size, size), resample, box=(left, top, right, bottom)))
            for i in frame_indices.tolist()
        ]


def collate_packed(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The DataLoader ``collate_fn`` for PackedClipDataset: its ``__getitems__`` already collated."""
    return batch


def _uint8_batch(shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised uint8 tensor; in a DataLoader worker, in shared memory (as default_collate does),
    so sending it to the main process copies nothing."""
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(shape, dtype=torch.uint8)
    storage = torch.UntypedStorage._new_shared(math.prod(shape))
    return torch.empty(0, dtype=torch.uint8).set_(storage).view(shape)


def _channels_first(frames: Sequence[np.ndarray], flip: bool, out: np.ndarray | None = None) -> np.ndarray:
    """T frames uint8 (S, S, 3) -> one contiguous (T, 3, S, S) array, mirrored left-right if ``flip``.

    One strided copy per frame, reading straight from its source (the shard map or a resize
    result), so an evaluation item is copied once. Reordering interleaved RGB is most of an
    evaluation item's cost (~0.35 ms per modality at T=8, S=224 on one core); numpy does it about
    twice as fast as torch's permute().contiguous() on uint8.
    """
    height, width, channels = frames[0].shape
    clip = np.empty((len(frames), channels, height, width), dtype=np.uint8) if out is None else out
    for target, frame in zip(clip, frames):
        target[...] = (frame[:, ::-1] if flip else frame).transpose(2, 0, 1)
    return clip
