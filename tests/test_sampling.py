"""Frame sampling by hand: the exact frames segment_indices picks, and what ClipSampling.draw
hands a dataset, each against values worked out from the documented rule, not from the code."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from velora.data.sampling import (
    FULL_FRAME,
    ClipDraw,
    ClipSampling,
    ProcessCache,
    SampledClips,
    modality_problems,
    pad_crop_flip,
    random_crop_box,
    release_indices,
    segment_indices,
)
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
    with pytest.raises(ValueError, match=r"^random_offset=True needs an rng \(a np.random.Generator\)$"):
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
    assert all(sorted(release_indices(8, 8, rng).tolist()) == list(range(8)) for _ in range(20))  # a permutation
    assert release_indices(1, 3, rng).tolist() == [0, 0, 0]
    with pytest.raises(DataError, match="^cannot sample a clip with 0 frames; it needs at least one$"):
        release_indices(0, 8, rng)


def test_pad_crop_flip_by_hand():
    frame = np.arange(2 * 3 * 1, dtype=np.uint8).reshape(2, 3, 1) + 1  # rows [1 2 3], [4 5 6]
    # Pad 1 (black), then the 2 x 3 crop at offset (dx, dy) of the 4 x 5 padded frame.
    assert pad_crop_flip(frame, 1, 1, False, pad=1)[..., 0].tolist() == [[1, 2, 3], [4, 5, 6]]
    assert pad_crop_flip(frame, 0, 0, False, pad=1)[..., 0].tolist() == [[0, 0, 0], [0, 1, 2]]
    assert pad_crop_flip(frame, 2, 2, False, pad=1)[..., 0].tolist() == [[5, 6, 0], [0, 0, 0]]
    assert pad_crop_flip(frame, 1, 1, True, pad=1)[..., 0].tolist() == [[3, 2, 1], [6, 5, 4]]


def test_every_invalid_field_is_listed_in_one_error():
    with pytest.raises(ValueError) as raised:
        ClipSampling(
            num_frames=0,
            image_size=0,
            seed=-1,
            crop_scale=(0.0, 1.0),
            crop_ratio=(2.0, 1.0),
            frame_sampling="tsn",
            augmentation="mixup",
        )
    assert str(raised.value) == (
        "invalid ClipSampling: frame_sampling 'tsn' is not one of ('segments', 'release'); "
        "augmentation 'mixup' is not one of ('clip', 'release'); num_frames must be >= 1, got 0; "
        "image_size must be >= 1, got 0; seed must be >= 0, got -1; "
        "crop_scale (0.0, 1.0) must satisfy 0 < low <= high <= 1; crop_ratio (2.0, 1.0) must satisfy 0 < low <= high"
    )


@pytest.mark.parametrize(
    "fields",
    [
        dict(num_frames=1, image_size=1, seed=0, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0)),
        dict(image_size=None),
        dict(crop_scale=(0.5, 0.5), crop_ratio=(0.1, 0.1)),
    ],
)
def test_the_smallest_valid_values_are_accepted(fields):
    ClipSampling(**fields)


@pytest.mark.parametrize(
    "fields, problem",
    [
        (dict(crop_scale=(0.9, 0.8)), "crop_scale"),
        (dict(crop_scale=(0.5, 1.01)), "crop_scale"),
        (dict(crop_ratio=(0.0, 1.0)), "crop_ratio"),
        (dict(num_frames=-2), "num_frames"),
    ],
)
def test_each_bound_of_each_range_is_checked(fields, problem):
    with pytest.raises(ValueError, match=problem):
        ClipSampling(**fields)


def test_random_crop_boxes_keep_area_and_aspect_in_range_and_inside_the_frame():
    rng = np.random.default_rng(0)
    areas, aspects = [], []
    for _ in range(300):
        left, top, right, bottom = random_crop_box(rng, (0.3, 0.6), (0.5, 2.0))
        assert 0 <= left < right <= 1 and 0 <= top < bottom <= 1
        width, height = right - left, bottom - top
        areas.append(width * height)
        aspects.append(width / height)
    assert 0.3 - 1e-9 <= min(areas) and max(areas) <= 0.6 + 1e-9
    assert min(areas) < 0.33 and max(areas) > 0.57  # the whole range, uniformly
    assert 0.5 - 1e-9 <= min(aspects) and max(aspects) <= 2.0 + 1e-9
    assert min(aspects) < 0.55 and max(aspects) > 1.8
    lefts = [random_crop_box(rng, (0.25, 0.25), (1.0, 1.0))[0] for _ in range(200)]  # a 0.5 x 0.5 box
    assert min(lefts) < 0.05 and max(lefts) > 0.45  # anywhere in [0, 0.5]


def draws_taken(call, uniforms_expected: int) -> bool:
    """Whether `call(rng)` advanced a fresh generator by exactly `uniforms_expected` uniform draws."""
    rng, reference = np.random.default_rng(0), np.random.default_rng(0)
    call(rng)
    for _ in range(uniforms_expected):
        reference.uniform(0, 1)
    return rng.random() == reference.random()


def test_a_crop_that_cannot_fit_falls_back_to_the_whole_frame_after_ten_tries():
    rng = np.random.default_rng(0)
    assert random_crop_box(rng, (1.0, 1.0), (2.0, 2.0)) == FULL_FRAME  # width sqrt(2) > 1, every try
    assert draws_taken(lambda r: random_crop_box(r, (1.0, 1.0), (2.0, 2.0)), 2 * 10)  # area and aspect, 10 times
    # A box of exactly the whole frame (width = height = 1) fits: one try, then its position.
    assert random_crop_box(rng, (1.0, 1.0), (1.0, 1.0)) == (0.0, 0.0, 1.0, 1.0)
    assert draws_taken(lambda r: random_crop_box(r, (1.0, 1.0), (1.0, 1.0)), 4)


def test_training_draws_follow_the_documented_order_from_one_generator():
    sampling = ClipSampling(num_frames=4, train=True, seed=5, horizontal_flip=True, crop_scale=(0.5, 0.9))
    for epoch, index in ((0, 0), (2, 7)):
        draw = sampling.draw(epoch, index, 10)
        rng = np.random.default_rng([5, epoch, index])
        frames = rng.integers([0, 2, 5, 7], [2, 5, 7, 10])  # one frame of each segment
        box = random_crop_box(rng, (0.5, 0.9), (3 / 4, 4 / 3))
        flip = bool(rng.random() < 0.5)
        assert draw.frames["rgb"].tolist() == draw.frames["event"].tolist() == frames.tolist()
        assert draw.box == box and draw.flip == flip and draw.per_frame is None
    # A clip of exactly T frames: one frame per segment, still drawn (the generator moves on the same).
    draw = sampling.draw(1, 1, 4)
    rng = np.random.default_rng([5, 1, 1])
    assert rng.integers([0, 1, 2, 3], [1, 2, 3, 4]).tolist() == draw.frames["rgb"].tolist() == [0, 1, 2, 3]
    assert draw.box == random_crop_box(rng, (0.5, 0.9), (3 / 4, 4 / 3))
    flips = {sampling.draw(0, i, 10).flip for i in range(40)}
    assert flips == {True, False}
    assert not any(ClipSampling(num_frames=4, train=True).draw(0, i, 10).flip for i in range(40))  # off by default


def test_release_draws_are_per_modality_and_seeded_in_evaluation_too():
    sampling = ClipSampling(num_frames=3, frame_sampling="release", seed=2)
    draw = sampling.draw(4, 9, {"rgb": 6, "event": 12}, ("rgb", "event"))
    rng = np.random.default_rng([2, 4, 9, 1])
    assert draw.frames["rgb"].tolist() == rng.choice(6, size=3, replace=False).tolist()
    assert draw.frames["event"].tolist() == rng.choice(12, size=3, replace=False).tolist()
    assert draw.box == FULL_FRAME and draw.flip is False and draw.per_frame is None


def test_release_frame_sampling_in_training_draws_from_the_training_generator():
    sampling = ClipSampling(num_frames=3, train=True, frame_sampling="release", seed=2)
    draw = sampling.draw(4, 9, {"rgb": 6, "event": 12}, ("rgb", "event"))
    rng = np.random.default_rng([2, 4, 9])
    assert draw.frames["rgb"].tolist() == rng.choice(6, size=3, replace=False).tolist()
    assert draw.frames["event"].tolist() == rng.choice(12, size=3, replace=False).tolist()
    assert draw.box == random_crop_box(rng, (0.8, 1.0), (3 / 4, 4 / 3))


def test_release_augmentation_draws_offsets_and_flips_per_frame_after_the_frames():
    sampling = ClipSampling(num_frames=5, train=True, augmentation="release", seed=1)
    draw = sampling.draw(0, 3, 8, ("event",))
    rng = np.random.default_rng([1, 0, 3])
    rng.integers([0, 1, 3, 4, 6], [1, 3, 4, 6, 8])  # the frames first
    offsets = rng.integers(0, 21, size=(5, 2))
    flips = rng.random(5) < 0.5
    assert draw.per_frame["event"].tolist() == np.column_stack([offsets, flips]).tolist()
    assert draw.box == FULL_FRAME and draw.flip is False
    many = np.concatenate([sampling.draw(0, i, 8).per_frame["rgb"] for i in range(60)])
    assert many[:, :2].min() == 0 and many[:, :2].max() == 20 and set(many[:, 2].tolist()) == {0, 1}
    assert ClipSampling(num_frames=5, augmentation="release").draw(0, 3, 8).per_frame is None  # not in evaluation


def test_a_draw_transforms_frames_with_its_flip_then_its_per_frame_shift():
    frame = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    plain = ClipDraw({}, FULL_FRAME, False)
    assert plain.transform("rgb", 0, frame) is frame
    assert np.array_equal(ClipDraw({}, FULL_FRAME, True).transform("rgb", 0, frame), frame[:, ::-1])
    per_frame = {"rgb": np.array([[10, 10, 0], [12, 9, 1]])}
    shifted = ClipDraw({}, FULL_FRAME, True, per_frame)
    assert np.array_equal(shifted.transform("rgb", 0, frame), frame[:, ::-1])  # offset (10, 10): the centre
    assert np.array_equal(shifted.transform("rgb", 1, frame), pad_crop_flip(frame[:, ::-1], 12, 9, True))


def test_segment_sampling_of_unequal_frame_counts_is_refused():
    with pytest.raises(AssertionError, match="unpaired"):
        ClipSampling(num_frames=2).draw(0, 0, {"rgb": 4, "event": 5})


def test_modality_problems_are_named():
    allowed = ("rgb", "event")
    assert modality_problems(("rgb",), allowed) == []
    assert modality_problems((), allowed) == ["modalities () must be a non-empty subset of ('rgb', 'event')"]
    assert modality_problems(("depth",), allowed, "data.modalities") == [
        "modalities ('depth',) must be a non-empty subset of data.modalities"
    ]
    assert modality_problems(("rgb", "rgb"), allowed) == ["modalities ('rgb', 'rgb') repeats a name"]


def test_set_epoch_refuses_a_negative_epoch_and_draws_use_the_epoch():
    clips = SampledClips()
    clips.sampling = ClipSampling(num_frames=2, train=True)
    with pytest.raises(ValueError, match="epoch must be >= 0, got -1"):
        clips.set_epoch(-1)
    clips.set_epoch(3)
    assert clips.draw(5, 10).frames["rgb"].tolist() == clips.sampling.draw(3, 5, 10).frames["rgb"].tolist()
    clips.set_epoch(0)
    assert clips.draw(5, 10).frames["rgb"].tolist() == clips.sampling.draw(0, 5, 10).frames["rgb"].tolist()


def test_process_cache_keeps_the_last_used_and_nothing_when_pickled():
    cache, loads = ProcessCache(2), []

    def loader(key):
        return lambda: loads.append(key) or key.upper()

    assert [cache.get(k, loader(k)) for k in ("a", "b", "a", "c", "a", "b")] == ["A", "B", "A", "C", "A", "B"]
    assert loads == ["a", "b", "c", "b"]  # "b" fell out when "c" came (least recently used)
    assert list(cache) == ["a", "b"]
    copy = pickle.loads(pickle.dumps(cache))
    assert copy.size == 2 and list(copy) == []
    none = ProcessCache(0)
    none.get("a", loader("a")), none.get("a", loader("a"))
    assert list(none) == [] and loads[-2:] == ["a", "a"]
