"""Which frames of a clip to load: TSN-style segment sampling (Wang et al., ECCV 2016)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from torch.utils.data import Dataset

from velora.errors import DataError


def segment_indices(
    num_frames: int,
    num_segments: int,
    *,
    random_offset: bool,
    rng: np.random.Generator | None = None,
    view: int = 0,
    views: int = 1,
) -> np.ndarray:
    """Pick one frame index per segment of a clip.

    The clip's frames ``0 .. num_frames-1`` are cut into ``num_segments`` contiguous segments whose
    integer bounds are ``start_k = floor(k * num_frames / num_segments)``. With ``random_offset``
    (training) each segment contributes a uniformly random frame of itself, drawn from ``rng``;
    otherwise (evaluation) its centre frame ``(start_k + end_k - 1) // 2``, so evaluation is
    deterministic. Test-time view ``view`` of ``views`` takes instead the frame at the
    ``(2 view + 1) / (2 views)`` quantile of each segment, ``start_k + ((2 view + 1) len_k - 1) //
    (2 views)`` (evenly spread views; one view is the centre frame).

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
    if not 0 <= view < views:
        raise ValueError(f"view must be in [0, views), got view {view} of {views}")

    k = np.arange(num_segments + 1, dtype=np.int64)
    bounds = (k * num_frames) // num_segments  # (num_segments + 1,)
    starts, ends = bounds[:-1], bounds[1:]
    if num_frames < num_segments:
        return starts
    if random_offset:
        assert rng is not None  # checked above
        return rng.integers(starts, ends, dtype=np.int64)
    return starts + ((2 * view + 1) * (ends - starts) - 1) // (2 * views)


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


def release_indices(num_frames: int, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """The released code's frame choice: an unordered random subset of ``num_samples`` of a clip's
    ``num_frames`` frames, without repeats (Python's ``random.sample``), or with repeats
    (``np.random.choice``) when the clip has fewer than ``num_samples`` frames. Returns int64
    (num_samples,), in draw order (not sorted), values in [0, num_frames)."""
    if num_frames < 1:
        raise DataError(f"cannot sample a clip with {num_frames} frames; it needs at least one")
    replace = num_frames < num_samples
    return rng.choice(num_frames, size=num_samples, replace=replace).astype(np.int64)


FULL_FRAME = (0.0, 0.0, 1.0, 1.0)
FRAME_SAMPLING = ("segments", "release")
AUGMENTATION = ("clip", "release")
# The released code's per-frame augmentation: torchvision Pad(10), then RandomCrop back to S x S.
RELEASE_PAD = 10


class ClipDraw(NamedTuple):
    """What ClipSampling.draw chose for one item.

    frames: modality -> (T,) int64 indices into the clip's frames (one array for all modalities
        with frame_sampling "segments"; one per modality with "release").
    box: the crop box (left, top, right, bottom) in fractions of the frame, for every frame of
        every modality (augmentation "clip"; the whole frame otherwise).
    flip: mirror every frame left-right (augmentation "clip").
    per_frame: augmentation "release" in training: modality -> (T, 3) int64 rows (dx, dy, flip)
        for each frame, applied after the resize by :func:`pad_crop_flip`; None otherwise.
    """

    frames: dict[str, np.ndarray]
    box: tuple[float, float, float, float]
    flip: bool
    per_frame: dict[str, np.ndarray] | None = None

    def transform(self, modality: str, k: int, frame: np.ndarray) -> np.ndarray:
        """Frame ``k`` of ``modality`` (S, S, 3), resized from ``box``, with its flip and per-frame augmentation."""
        if self.flip:
            frame = frame[:, ::-1]
        if self.per_frame is not None:
            dx, dy, flip = self.per_frame[modality][k].tolist()
            frame = pad_crop_flip(frame, dx, dy, bool(flip))
        return frame


def pad_crop_flip(frame: np.ndarray, dx: int, dy: int, flip: bool, pad: int = RELEASE_PAD) -> np.ndarray:
    """torchvision's Pad(pad) (black), RandomCrop back to the frame's size at offset (dx, dy) of the
    padded frame (each in [0, 2 * pad]), then a horizontal flip: (H, W, 3) uint8 -> (H, W, 3) uint8."""
    height, width = frame.shape[:2]
    padded = np.zeros((height + 2 * pad, width + 2 * pad, frame.shape[2]), dtype=frame.dtype)
    padded[pad : pad + height, pad : pad + width] = frame
    out = padded[dy : dy + height, dx : dx + width]
    return out[:, ::-1] if flip else out


CROP_COUNTS = (1, 3, 5)


@dataclass(frozen=True)
class EvalView:
    """One test-time view of a clip (eval.views x eval.crops, as mmaction's num_clips x crops):
    temporal view ``temporal`` of ``temporal_views`` (see segment_indices) and crop ``crop`` of ``crops``.

    Crops, as fractions of the frame: 1, the whole frame (the single view); 3, a box of
    ``crop_fraction`` of the width and height at the left, the centre and the right, vertically
    centred (mmaction's ThreeCrop along the longer side: event sensors are wider than tall); 5, the
    four corners and the centre (FiveCrop).
    """

    temporal: int = 0
    temporal_views: int = 1
    crop: int = 0
    crops: int = 1
    crop_fraction: float = 1.0

    def __post_init__(self) -> None:
        if (
            self.crops not in CROP_COUNTS
            or not 0 <= self.crop < self.crops
            or not 0 <= self.temporal < self.temporal_views
        ):
            raise ValueError(
                f"invalid EvalView {self}: crops one of {CROP_COUNTS}, 0 <= crop < crops, 0 <= temporal < temporal_views"
            )
        if not 0 < self.crop_fraction <= 1:
            raise ValueError(f"EvalView crop_fraction must be in (0, 1], got {self.crop_fraction}")

    def box(self) -> tuple[float, float, float, float]:
        """The crop box (left, top, right, bottom) in fractions of the frame."""
        if self.crops == 1:
            return FULL_FRAME
        side, middle = self.crop_fraction, (1 - self.crop_fraction) / 2
        far = 1 - side
        corners = {
            3: [(0.0, middle), (middle, middle), (far, middle)],
            5: [(0.0, 0.0), (far, 0.0), (0.0, far), (far, far), (middle, middle)],
        }[self.crops]
        left, top = corners[self.crop]
        return (left, top, left + side, top + side)


def eval_views(temporal_views: int, crops: int, crop_fraction: float) -> list[EvalView]:
    """Every view of a clip, temporal views outer, crops inner."""
    return [EvalView(t, temporal_views, c, crops, crop_fraction) for t in range(temporal_views) for c in range(crops)]


@dataclass(frozen=True)
class ClipSampling:
    """How every clip dataset draws an item: which frames, which crop, whether flipped.

    num_frames: T, frames (or event windows) per clip, chosen by :func:`segment_indices`.
    image_size: S; frames are resized to S x S. None: keep the stored size (packed data).
    train: random frame offsets, random resized crop and flip; off: segment centres, the whole
        frame, no flip, so evaluation is deterministic.
    seed: with the epoch and the item index, seeds each item's randomness (``rng``), so an item is
        the same whatever the DataLoader's worker count.
    crop_scale: area-fraction range of the training random resized crop; (1, 1) disables it.
    crop_ratio: aspect-ratio range of the crop, relative to the frame's own aspect ratio.
    horizontal_flip: flip half the training clips left-right. Off by default: a flip turns a
        left-moving gesture into a right-moving one, and left vs right motion is a class in the
        demo data and in many action datasets.
    frame_sampling: "segments" (segment_indices, the same frames for every modality) or "release"
        (release_indices, drawn for each modality on its own, in evaluation too: seeded by
        (seed, epoch, index), so an evaluation is repeatable).
    augmentation: "clip" (one crop box and flip per item) or "release" (per frame and modality:
        pad_crop_flip with random offsets and a coin flip; crop_scale and horizontal_flip unused).
    view: the test-time view evaluation draws (EvalView; the default is the single view: segment
        centres, the whole frame). Training ignores it.

    Invalid values raise ValueError listing every problem.
    """

    num_frames: int = 8
    image_size: int | None = 224
    train: bool = False
    seed: int = 0
    crop_scale: tuple[float, float] = (0.8, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    horizontal_flip: bool = False
    frame_sampling: str = "segments"
    augmentation: str = "clip"
    view: EvalView = EvalView()

    def __post_init__(self) -> None:
        problems = []
        if self.frame_sampling not in FRAME_SAMPLING:
            problems.append(f"frame_sampling {self.frame_sampling!r} is not one of {FRAME_SAMPLING}")
        if self.augmentation not in AUGMENTATION:
            problems.append(f"augmentation {self.augmentation!r} is not one of {AUGMENTATION}")
        if self.num_frames < 1:
            problems.append(f"num_frames must be >= 1, got {self.num_frames}")
        if self.image_size is not None and self.image_size < 1:
            problems.append(f"image_size must be >= 1, got {self.image_size}")
        if self.seed < 0:
            problems.append(f"seed must be >= 0, got {self.seed}")
        if not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            problems.append(f"crop_scale {self.crop_scale} must satisfy 0 < low <= high <= 1")
        if not 0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            problems.append(f"crop_ratio {self.crop_ratio} must satisfy 0 < low <= high")
        if problems:
            raise ValueError("invalid ClipSampling: " + "; ".join(problems))

    def rng(self, epoch: int, index: int) -> np.random.Generator | None:
        """The generator of item ``index`` in ``epoch`` (training only; None in evaluation)."""
        return np.random.default_rng([self.seed, epoch, index]) if self.train else None

    def crop_and_flip(self, rng: np.random.Generator | None) -> tuple[tuple[float, float, float, float], bool]:
        """The crop box (fractions of the frame) and the flip, drawn from ``rng`` in that order; in
        evaluation (no ``rng``) the view's box, unflipped; with augmentation "release", the whole frame
        (its shifts are per frame, see draw)."""
        if rng is None:
            return self.view.box(), False
        if self.augmentation != "clip":
            return FULL_FRAME, False
        box = random_crop_box(rng, self.crop_scale, self.crop_ratio)
        return box, self.horizontal_flip and bool(rng.random() < 0.5)

    def draw(
        self,
        epoch: int,
        index: int,
        num_clip_frames: int | Mapping[str, int],
        modalities: Sequence[str] = ("rgb", "event"),
    ) -> ClipDraw:
        """What item ``index`` of a clip with ``num_clip_frames`` frames (one count, or a count per
        modality: equal ones with frame_sampling "segments") reads in ``epoch`` (a ClipDraw).

        In training one generator ``default_rng([seed, epoch, index])`` draws, in this order, the frame
        indices (once, or for each modality in ``modalities``' order with frame_sampling "release"),
        the crop box and the flip (augmentation "clip") or each modality's per-frame offsets and
        flips (augmentation "release"); so an item depends only on (seed, epoch, index) and every
        dataset gives the same draws. In evaluation: the view's frames and box (one view: segment
        centres, the whole frame), no flip; with frame_sampling "release", the frames are drawn from
        ``default_rng([seed, epoch, index, 1 + temporal view])``.
        """
        rng = self.rng(epoch, index)
        counts = num_clip_frames if isinstance(num_clip_frames, Mapping) else dict.fromkeys(modalities, num_clip_frames)
        view, views = (0, 1) if rng is not None else (self.view.temporal, self.view.temporal_views)
        if self.frame_sampling == "release":
            picker = rng if rng is not None else np.random.default_rng([self.seed, epoch, index, 1 + view])
            frames = {m: release_indices(counts[m], self.num_frames, picker) for m in modalities}
        else:
            assert len({counts[m] for m in modalities}) == 1, f"segment sampling of unpaired frames: {counts}"
            shared = segment_indices(
                counts[modalities[0]], self.num_frames, random_offset=rng is not None, rng=rng, view=view, views=views
            )
            frames = {m: shared for m in modalities}
        box, flip = self.crop_and_flip(rng)
        per_frame = None
        if rng is not None and self.augmentation == "release":
            per_frame = {
                m: np.column_stack(
                    [
                        rng.integers(0, 2 * RELEASE_PAD + 1, size=(self.num_frames, 2)),
                        rng.random(self.num_frames) < 0.5,
                    ]
                ).astype(np.int64)
                for m in modalities
            }
        return ClipDraw(frames, box, flip, per_frame)


class SampledClips(Dataset):
    """The state every clip dataset shares: its entries, its ClipSampling, the epoch.

    Subclasses fill ``self.entries`` and set ``self.sampling`` (and ``self.num_classes``, the
    label bound they checked, or None) in their constructor.
    """

    entries: list
    sampling: ClipSampling
    num_classes: int | None = None
    epoch: int = 0
    # Built with lenient=True (the dataset check): label lines that could not be used, and how
    # many lines were skipped for them (each counts as a bad clip).
    label_problems: Sequence[tuple[str, str, str]] = ()
    dropped_lines: int = 0

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def class_names(self) -> list[str]:
        """Class names in label order."""
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws (frame offsets, crops, flips, windows) the next items use."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch

    def problems(
        self,
        *,
        decode: bool = True,
        min_frames: int = 1,
        exclude: Collection[str] = (),
        workers: int = 1,
        progress: bool = False,
    ) -> dict[str, list[tuple[str, str, str]]]:
        """Every issue of every sample on disk, by sample (velora.data.check_report.Issue tuples)."""
        raise NotImplementedError

    def draw(
        self, index: int, num_clip_frames: int | Mapping[str, int], modalities: Sequence[str] = ("rgb", "event")
    ) -> ClipDraw:
        """This epoch's choices for item ``index`` (frame indices, crop, flip), see ClipSampling.draw."""
        return self.sampling.draw(self.epoch, index, num_clip_frames, modalities)


def modality_problems(modalities: tuple[str, ...], allowed: tuple[str, ...], allowed_name: str = "") -> list[str]:
    """Problems with a dataset's modalities: a non-empty subset of ``allowed``, without repeats."""
    problems = []
    if not modalities or any(m not in allowed for m in modalities):
        problems.append(f"modalities {modalities} must be a non-empty subset of {allowed_name or allowed}")
    if len(set(modalities)) != len(modalities):
        problems.append(f"modalities {modalities} repeats a name")
    return problems


class ProcessCache:
    """The last `size` decoded files of this process, by key (an LRU; size 0 keeps nothing).

    Not pickled: a DataLoader worker gets an empty cache and decodes, and caches, its own.
    """

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict = OrderedDict()

    def get(self, key, load):
        """The cached value of `key`, else `load()`, kept for next time."""
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = load()
        if self.size:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def __iter__(self):
        return iter(self._items)  # the cached keys, least recently used first

    def __getstate__(self) -> dict:
        return {"size": self.size}

    def __setstate__(self, state: dict) -> None:
        type(self).__init__(self, state["size"])
