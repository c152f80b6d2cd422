"""Which frames of a clip to load: TSN-style segment sampling (Wang et al., ECCV 2016)."""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from velora.errors import DataError


def segment_indices(
    num_frames: int,
    num_segments: int,
    *,
    random_offset: bool,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Pick one frame index per segment of a clip.

    The clip's frames ``0 .. num_frames-1`` are cut into ``num_segments`` contiguous segments whose
    integer bounds are ``start_k = floor(k * num_frames / num_segments)``. With ``random_offset``
    (training) each segment contributes a uniformly random frame of itself, drawn from ``rng``;
    otherwise (evaluation) its centre frame ``(start_k + end_k - 1) // 2``, so evaluation is
    deterministic.

    A clip shorter than ``num_segments`` is padded by repetition in both modes: index ``k`` is
    ``floor(k * num_frames / num_segments)``, so every frame is used, in order, each one repeated
    ``num_segments / num_frames`` times, rounded down or up (3 frames, 8 segments ->
    0 0 0 1 1 1 2 2).

    Returns an int64 array of shape (num_segments,), non-decreasing, values in [0, num_frames).
    Raises DataError when ``num_frames < 1`` (a clip without frames).
    """
    if num_frames < 1:
        raise DataError(f"cannot sample a clip with {num_frames} frames; it needs at least one")
    if num_segments < 1:
        raise ValueError(f"num_segments must be >= 1, got {num_segments}")
    if random_offset and rng is None:
        raise ValueError("random_offset=True needs an rng (a np.random.Generator)")

    k = np.arange(num_segments + 1, dtype=np.int64)
    bounds = (k * num_frames) // num_segments  # (num_segments + 1,)
    starts, ends = bounds[:-1], bounds[1:]
    if num_frames < num_segments:
        return starts
    if random_offset:
        return rng.integers(starts, ends, dtype=np.int64)
    return (starts + ends - 1) // 2


def random_crop_box(
    rng: np.random.Generator, scale: tuple[float, float], ratio: tuple[float, float]
) -> tuple[float, float, float, float]:
    """A random-resized-crop box ``(left, top, right, bottom)`` in fractions of the frame.

    The area fraction is uniform in ``scale``; the aspect ratio is log-uniform in ``ratio`` and is
    relative to the frame's own, so ratio 1 keeps the frame's shape (and the same squash to S x S
    as evaluation). After 10 failed draws (box outside the frame) the whole frame is used.
    """
    log_ratio = np.log(ratio)
    for _ in range(10):
        area = rng.uniform(*scale)
        aspect = np.exp(rng.uniform(*log_ratio))
        width, height = np.sqrt(area * aspect), np.sqrt(area / aspect)
        if width <= 1 and height <= 1:
            left, top = rng.uniform(0, 1 - width), rng.uniform(0, 1 - height)
            return (left, top, left + width, top + height)
    return (0.0, 0.0, 1.0, 1.0)


def draw_clip(dataset, index: int, num_clip_frames: int) -> tuple[np.ndarray, tuple[float, float, float, float], bool]:
    """The per-item randomness every clip dataset shares: (frame indices, crop box, flip).

    dataset: anything with num_frames, train, seed, epoch, crop_scale, crop_ratio and
    horizontal_flip (ClipDataset, PackedClipDataset, RecordingDataset). In training, one generator
    ``default_rng([seed, epoch, index])`` draws the frame offsets, then the crop box, then the flip,
    so an item depends only on (seed, epoch, index) and the datasets give the same draws. In
    evaluation: segment centres, the whole frame, no flip.
    """
    if not dataset.train:
        return segment_indices(num_clip_frames, dataset.num_frames, random_offset=False), (0.0, 0.0, 1.0, 1.0), False
    rng = np.random.default_rng([dataset.seed, dataset.epoch, index])
    frame_indices = segment_indices(num_clip_frames, dataset.num_frames, random_offset=True, rng=rng)
    box = random_crop_box(rng, dataset.crop_scale, dataset.crop_ratio)
    flip = dataset.horizontal_flip and bool(rng.random() < 0.5)
    return frame_indices, box, flip


class SampledClips(Dataset):
    """The state every clip dataset shares: its entries, the settings `draw_clip` reads, the epoch.

    Subclasses fill `self.entries` and call `init_sampling` from their constructor.
    """

    entries: list

    def init_sampling(
        self,
        *,
        num_frames: int,
        image_size: int | None,
        train: bool,
        seed: int,
        crop_scale: tuple[float, float],
        crop_ratio: tuple[float, float],
        horizontal_flip: bool,
        num_classes: int | None,
    ) -> None:
        self.num_frames, self.image_size = num_frames, image_size
        self.train, self.seed, self.epoch = train, seed, 0
        self.crop_scale, self.crop_ratio, self.horizontal_flip = crop_scale, crop_ratio, horizontal_flip
        self.num_classes = num_classes

    def __len__(self) -> int:
        return len(self.entries)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws (frame offsets, crops, flips, windows) the next items use."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch


def sampling_problems(
    *,
    num_frames: int,
    seed: int,
    crop_scale: tuple[float, float],
    crop_ratio: tuple[float, float],
    image_size: int | None = None,
    modalities: tuple[str, ...] | None = None,
    allowed: tuple[str, ...] = (),
    allowed_name: str = "",
) -> list[str]:
    """Every problem with the arguments that `draw_clip` and the clip datasets share (empty: fine).

    modalities, when given, must be a non-empty subset of `allowed` without repeats;
    `allowed_name` describes `allowed` in the message (default: the tuple itself).
    """
    problems = []
    if modalities is not None:
        if not modalities or any(m not in allowed for m in modalities):
            problems.append(f"modalities {modalities} must be a non-empty subset of {allowed_name or allowed}")
        if len(set(modalities)) != len(modalities):
            problems.append(f"modalities {modalities} repeats a name")
    if image_size is None and num_frames < 1:
        problems.append(f"num_frames must be >= 1, got {num_frames}")
    if image_size is not None and (num_frames < 1 or image_size < 1):
        problems.append(f"num_frames ({num_frames}) and image_size ({image_size}) must be >= 1")
    if seed < 0:
        problems.append(f"seed must be >= 0, got {seed}")
    if not 0 < crop_scale[0] <= crop_scale[1] <= 1:
        problems.append(f"crop_scale {crop_scale} must satisfy 0 < low <= high <= 1")
    if not 0 < crop_ratio[0] <= crop_ratio[1]:
        problems.append(f"crop_ratio {crop_ratio} must satisfy 0 < low <= high")
    return problems
