"""Which frames of a clip to load: TSN-style segment sampling (Wang et al., ECCV 2016)."""

from __future__ import annotations

import numpy as np

from velora.data.errors import DataError


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
