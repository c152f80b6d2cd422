"""Frame sampling by hand: the exact frames segment_indices picks, and what ClipSampling.draw
hands a dataset, each against values worked out from the documented rule, not from the code."""

from __future__ import annotations

import numpy as np
import pytest

from velora.data.sampling import ClipSampling, pad_crop_flip, release_indices, segment_indices
from velora.errors import DataError


@pytest.mark.parametrize(
    "num_frames, num_segments, centres",
    [
        # segment k is [k n // T, (k + 1) n // T); its centre frame is (start + end - 1) // 2
        (1, 1, [0]),
        (5, 5, [0, 1, 2, 3, 4]),  # one frame per segment
        (7, 2, [1, 4]),  # [0, 3) -> 1, [3, 7) -> (3 + 6) // 2 = 4
        (8, 4, [0, 2, 4, 6]),  # two frames per segment: the first of the two middle ones
        (9, 3, [1, 4, 7]),
        (10, 4, [0, 3, 5, 8]),  # bounds 0 2 5 7 10
        (12, 8, [0, 1, 3, 4, 6, 7, 9, 10]),  # bounds 0 1 3 4 6 7 9 10 12
        (100, 8, [5, 18, 30, 43, 55, 68, 80, 93]),  # bounds 0 12 25 37 50 62 75 87 100
        # shorter than T: frame k n // T, every frame in order, repeated
        (3, 8, [0, 0, 0, 1, 1, 1, 2, 2]),
        (1, 4, [0, 0, 0, 0]),
    ],
)
def test_evaluation_takes_each_segments_centre_frame(num_frames, num_segments, centres):
    got = segment_indices(num_frames, num_segments, random_offset=False)
    assert got.dtype == np.int64
    assert got.tolist() == centres


@pytest.mark.parametrize("num_frames, num_segments", [(10, 4), (100, 8), (8, 8), (9, 2)])
def test_training_draws_every_frame_of_each_segment_and_only_those(num_frames, num_segments):
    bounds = [k * num_frames // num_segments for k in range(num_segments + 1)]
    rng = np.random.default_rng(0)
    seen = [set() for _ in range(num_segments)]
    for _ in range(400):
        for k, index in enumerate(segment_indices(num_frames, num_segments, random_offset=True, rng=rng).tolist()):
            seen[k].add(index)
    assert seen == [set(range(bounds[k], bounds[k + 1])) for k in range(num_segments)]


def test_a_short_clip_repeats_frames_in_training_too():
    rng = np.random.default_rng(0)
    assert segment_indices(3, 8, random_offset=True, rng=rng).tolist() == [0, 0, 0, 1, 1, 1, 2, 2]


@pytest.mark.parametrize("num_frames, num_segments", [(0, 8), (-1, 8)])
def test_a_clip_without_frames_is_a_data_error(num_frames, num_segments):
    with pytest.raises(DataError, match=f"{num_frames} frames"):
        segment_indices(num_frames, num_segments, random_offset=False)


def test_invalid_segment_counts_and_a_missing_rng_raise():
    with pytest.raises(ValueError, match="num_segments must be >= 1, got 0"):
        segment_indices(5, 0, random_offset=False)
    with pytest.raises(ValueError, match="needs an rng"):
        segment_indices(5, 2, random_offset=True)


def test_evaluation_draw_gives_every_modality_the_centre_frames_and_the_whole_frame():
    draw = ClipSampling(num_frames=4, image_size=16).draw(epoch=3, index=7, num_clip_frames=10)
    assert set(draw.frames) == {"rgb", "event"}
    for frames in draw.frames.values():
        assert frames.tolist() == [0, 3, 5, 8]
    assert draw.box == (0.0, 0.0, 1.0, 1.0) and draw.flip is False and draw.per_frame is None


def test_release_indices_are_distinct_unless_the_clip_is_too_short():
    rng = np.random.default_rng(1)
    for _ in range(50):
        picked = release_indices(10, 8, rng)
        assert picked.dtype == np.int64 and len(picked) == 8
        assert len(set(picked.tolist())) == 8 and set(picked.tolist()) <= set(range(10))
    short = [release_indices(3, 8, rng) for _ in range(20)]
    assert all(len(p) == 8 and set(p.tolist()) <= {0, 1, 2} for p in short)
    assert {i for p in short for i in p.tolist()} == {0, 1, 2}
    with pytest.raises(DataError, match="0 frames"):
        release_indices(0, 8, rng)


def test_pad_crop_flip_by_hand():
    frame = np.arange(2 * 3 * 1, dtype=np.uint8).reshape(2, 3, 1) + 1  # rows [1 2 3], [4 5 6]
    # Pad 1 (black), then the 2 x 3 crop at offset (dx, dy) of the 4 x 5 padded frame.
    assert pad_crop_flip(frame, 1, 1, False, pad=1)[..., 0].tolist() == [[1, 2, 3], [4, 5, 6]]
    assert pad_crop_flip(frame, 0, 0, False, pad=1)[..., 0].tolist() == [[0, 0, 0], [0, 1, 2]]
    assert pad_crop_flip(frame, 2, 2, False, pad=1)[..., 0].tolist() == [[5, 6, 0], [0, 0, 0]]
    assert pad_crop_flip(frame, 1, 1, True, pad=1)[..., 0].tolist() == [[3, 2, 1], [6, 5, 4]]
