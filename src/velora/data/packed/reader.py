"""PackedClipDataset: one split of a packed dataset, read through memory maps."""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from velora.data.check_report import Issue
from velora.data.labels import ClipEntry
from velora.data.names import BATCH_KEY, MODALITIES
from velora.data.packed.format import FULL_FRAME, SHARD_NAME, packed_event_resize, read_index
from velora.data.sampling import ClipSampling, SampledClips, modality_problems
from velora.errors import DataError
from velora.events.resize import resize_event_image


class PackedClipDataset(SampledClips):
    """One split of a packed dataset, with ClipDataset's item contract and randomness.

    root: the packed folder (holding index.json).
    split: a split name given to pack_dataset ("train", "val", ...).
    sampling, modalities, num_classes: as for ClipDataset; modalities must be packed ones, and
        sampling.image_size, when not None, must equal the packed S (a DataError says how to
        repack otherwise).
    device_crop: in training, leave the random resized crop to the training device: items hold the
        uncropped frames and a ``crop_box`` (4,) float tensor, applied to the batch by
        ``velora.data.augment.apply_device_crop`` (the LightningModule does this after the copy to
        the device). The loader then costs what an evaluation item costs.
    event_resize: the event resize method the caller expects (data.event_resize); a DataError when
        the data was packed with another, since the stored event images cannot be redrawn. None:
        take the packed one (``self.event_resize``).

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
        sampling: ClipSampling = ClipSampling(image_size=None),
        *,
        modalities: Sequence[str] = MODALITIES,
        num_classes: int | None = None,
        device_crop: bool = False,
        event_resize: str | None = None,
    ) -> None:
        self.root = Path(root)
        index = read_index(self.root)
        assert index is not None  # a missing index raises (missing_ok is False)
        header = self.header = index["header"]
        self.modalities = tuple(modalities)
        packed = tuple(header["modalities"])
        absent = [m for m in self.modalities if m in MODALITIES and m not in packed]
        if absent:
            raise DataError(
                f"{self.root} holds the modalities {packed}, not {absent}; pack again with them or leave them "
                "out of data.modalities"
            )
        problems = modality_problems(self.modalities, packed, f"the packed {packed}")
        if problems:
            raise ValueError("invalid PackedClipDataset arguments: " + "; ".join(problems))
        if sampling.image_size is not None and sampling.image_size != header["image_size"]:
            raise DataError(
                f"{self.root} was packed at {header['image_size']} px but image_size is {sampling.image_size}; "
                f"set image_size={header['image_size']}, or pack again with image_size={sampling.image_size}"
            )
        packed_with = packed_event_resize(header)
        assert isinstance(packed_with, str)  # read_index checked it is one of EVENT_RESIZE
        if event_resize is not None and "event" in self.modalities and event_resize != packed_with:
            raise DataError(
                f"{self.root} was packed with event images resized by {packed_with!r}, but data.event_resize is "
                f"{event_resize!r}; pack again (velora convert packed) to resize them by {event_resize!r}, or set "
                f"data.event_resize={packed_with} to use this copy as it is"
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
        self.sampling = dataclasses.replace(sampling, image_size=header["image_size"])
        self.num_classes = num_classes
        self.event_resize = packed_with
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

    @property
    def frame_size(self) -> int:
        """S, the side of the packed frames (the header's image_size, which the sampling holds)."""
        return self.header["image_size"]

    def clip_frames(self, index: int, modality: str) -> np.ndarray:
        """All stored frames of one clip and modality, a read-only view: uint8 (N, S, S, 3)."""
        shard = int(self._shard_ids[index])
        if shard not in self._shards:
            path = self.root / SHARD_NAME.format(shard)
            self._shards[shard] = np.memmap(path, dtype=np.uint8, mode="r").view(np.ndarray)
        size, count = self.frame_size, self.entries[index].num_frames
        start = int(self._offsets[modality][index])
        return self._shards[shard][start : start + count * size * size * 3].reshape(count, size, size, 3)

    def problems(
        self,
        *,
        decode: bool = True,
        min_frames: int = 1,
        exclude: Collection[str] = (),
        workers: int = 1,
        progress: bool = False,
    ) -> dict[str, list[Issue]]:
        """Every issue of every clip, by sample: with ``decode``, a CRC-32 that does not match (the
        shards are damaged); clips with fewer than ``min_frames`` stored frames are "short_clips".
        The index and shard sizes were checked when the dataset was opened. ``workers`` is accepted
        for the common signature: the clips are read through this process's memory maps."""
        found = {}
        for index, entry in enumerate(tqdm(self.entries, desc="check", unit="clip", disable=not progress)):
            if entry.sample in exclude:
                continue
            issues: list[Issue] = []
            if entry.num_frames < min_frames:
                issues.append(
                    (
                        "short_clips",
                        f"{self.root}:{entry.sample}",
                        f"fewer than {min_frames} frames: {entry.num_frames}",
                    )
                )
            if decode and self._crc(index) != self._crc32[index]:
                message = "fails its CRC-32 check: the shard files are damaged; delete the folder and pack again"
                issues.append(("unreadable_files", f"{self.root}:{entry.sample}", message))
            found[entry.sample] = issues
        return found

    def _crc(self, index: int) -> int:
        crc = 0
        for modality in self.header["modalities"]:  # the CRC covers every packed modality
            crc = zlib.crc32(np.ascontiguousarray(self.clip_frames(index, modality)).data.cast("B"), crc)
        return crc

    def verify(self) -> None:
        """Recompute every clip's CRC-32 (reads the whole split); DataError naming damaged clips."""
        damaged = [entry.sample for index, entry in enumerate(self.entries) if self._crc(index) != self._crc32[index]]
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
        size, count = self.frame_size, len(indices)
        batch: dict[str, torch.Tensor] = {
            BATCH_KEY[m]: _uint8_batch((count, self.sampling.num_frames, 3, size, size)) for m in self.modalities
        }
        boxes = []
        for slot, index in enumerate(indices):
            draw = self.draw(index, self.entries[index].num_frames, self.modalities)
            box = draw.box
            if self.device_crop and self.sampling.train and self.sampling.augmentation == "clip":
                # The box travels with the batch; velora.data.augment crops on the training device.
                boxes.append(box)
                box = FULL_FRAME
            for modality in self.modalities:
                frames = self.clip_frames(index, modality)  # (N, S, S, 3), a view of the shard
                frame_indices = draw.frames[modality]
                chosen: np.ndarray | Sequence[np.ndarray]
                if box == FULL_FRAME:
                    chosen = [frames[i] for i in frame_indices.tolist()]  # views: no copy yet
                else:
                    chosen = self._crop(frames, frame_indices, box, modality)
                chosen = [draw.transform(modality, k, frame) for k, frame in enumerate(chosen)]  # flips: views
                _channels_first(chosen, out=batch[BATCH_KEY[modality]][slot].numpy())
        batch["label"] = torch.tensor([self.entries[i].label for i in indices], dtype=torch.int64)
        batch["index"] = torch.tensor(indices, dtype=torch.int64)
        if boxes:
            batch["crop_box"] = torch.tensor(boxes, dtype=torch.float32)
        return batch

    def _crop(
        self, frames: np.ndarray, frame_indices: np.ndarray, box: tuple[float, float, float, float], modality: str
    ) -> np.ndarray | list[np.ndarray]:
        """Resize ``box`` of the chosen frames back to S x S: (N, S, S, 3) -> T frames (S, S, 3).

        The fractional box is rounded to whole pixels of the S x S frame (at most half a pixel
        off, so both modalities use one pixel grid). RGB: torch's uint8 bilinear interpolation
        of all T crops in one call (half-pixel centres, PIL's convention; ~5x faster than PIL
        here), reading only the crop from the shard. Events: the packed event_resize method
        (velora.events.resize), frame by frame straight from the shard.
        """
        size = self.frame_size
        left, top, right, bottom = (round(edge * size) for edge in box)
        right, bottom = max(right, left + 1), max(bottom, top + 1)
        if modality == "rgb":
            crops = torch.from_numpy(frames[frame_indices, top:bottom, left:right])  # (T, h, w, 3), a copy
            resized = F.interpolate(
                crops.permute(0, 3, 1, 2), size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )  # (T, 3, S, S) in channels-last memory, as its input
            return resized.permute(0, 2, 3, 1).numpy()  # (T, S, S, 3)
        return [
            resize_event_image(frames[i], size, (left, top, right, bottom), self.event_resize)
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


def _channels_first(frames: Sequence[np.ndarray], out: np.ndarray | None = None) -> np.ndarray:
    """T frames uint8 (S, S, 3) -> one contiguous (T, 3, S, S) array.

    One strided copy per frame, reading straight from its source (the shard map, a resize result,
    or a flipped view of either), so an evaluation item is copied once. Reordering interleaved RGB is most of an
    evaluation item's cost (~0.35 ms per modality at T=8, S=224 on one core); numpy does it about
    twice as fast as torch's permute().contiguous() on uint8.
    """
    height, width, channels = frames[0].shape
    clip = np.empty((len(frames), channels, height, width), dtype=np.uint8) if out is None else out
    for target, frame in zip(clip, frames):
        target[...] = frame.transpose(2, 0, 1)
    return clip
