"""Contracts of frame pairing (data.frame_pairing): RGB and event frames meet by their numbers.

HARDVS-style clips store RGB frames every 5th frame (0, 5, 10) and event images every frame
(0 .. 14). Test frames carry their number: an RGB frame is one grey level, 10 + 10 n in channel 0;
event image n is white with one red (even n) or blue (odd n) pixel at row 0, column n, and the
same colour at the shared corner pixel (S-1, S-1), so a loaded event frame tells which event
images made it and which of them painted an overlapping pixel last.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import assert_items_equal, make_tiny_config
from velora.config import DataConfig
from velora.data.check import check_dataset
from velora.data.clips import ClipDataset
from velora.data.factory import clip_dataset, make_dataset
from velora.data.names import FRAME_PAIRINGS
from velora.data.packed import PackedClipDataset, pack_dataset
from velora.data.pairing import (
    FramePairs,
    accumulate_event_images,
    describe_numbers,
    every,
    number_relation,
    pair_frames,
)
from velora.data.sampling import ClipSampling
from velora.errors import DataError, DataWarning

S = 16  # frame size and image_size: resizing is the identity, pixels read back exactly
RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)
HARDVS_RGB, HARDVS_EVENTS = (0, 5, 10), tuple(range(15))


def rgb_frame(number: int) -> np.ndarray:
    pixels = np.zeros((S, S, 3), np.uint8)
    pixels[..., 0] = 10 + 10 * number
    return pixels


def event_frame(number: int) -> np.ndarray:
    pixels = np.full((S, S, 3), 255, np.uint8)
    colour = RED if number % 2 == 0 else BLUE
    pixels[0, number] = colour
    pixels[S - 1, S - 1] = colour
    return pixels


def write_clip(root: Path, sample: str, rgb: tuple[int, ...], events: tuple[int, ...]) -> None:
    clip_dir = root / sample
    for numbers, suffix, draw in ((rgb, "_aps", rgb_frame), (events, "_dvs", event_frame)):
        folder = clip_dir / f"{clip_dir.name}{suffix}"
        folder.mkdir(parents=True)
        for number in numbers:
            Image.fromarray(draw(number)).save(folder / f"{number:08d}.png")


def hardvs_dataset(root: Path, equal_clips: int = 0) -> Path:
    """Two HARDVS-style clips (RGB 0, 5, 10; events 0 .. 14), then ``equal_clips`` with equal numbers."""
    lines = []
    for k in range(2):
        write_clip(root, f"action_001/clip{k}", HARDVS_RGB, HARDVS_EVENTS)
        lines.append(f"action_001/clip{k} 15 0")
    for k in range(equal_clips):
        write_clip(root, f"action_002/same{k}", (0, 1, 2, 3), (0, 1, 2, 3))
        lines.append(f"action_002/same{k} 4 1")
    (root / "train_label.txt").write_text("\n".join(lines) + "\n")
    return root


def dataset(root: Path, pairing: str, policy: str = "error", num_frames: int = 3, **sampling) -> ClipDataset:
    return ClipDataset(
        root,
        "train_label.txt",
        ClipSampling(num_frames=num_frames, image_size=S, **sampling),
        frame_pairing=pairing,
        frame_count_policy=policy,
    )


def rgb_numbers(item: dict) -> list[int]:
    codes = item["rgb"][:, 0].flatten(1)  # (T, S*S)
    assert torch.equal(codes.min(1).values, codes.max(1).values), "an RGB frame is one grey level"
    return [(int(code) - 10) // 10 for code in codes[:, 0]]


def event_numbers(item: dict) -> list[list[int]]:
    """The numbers of the event images visible in each event frame (their row-0 pixels)."""
    row = item["events"][:, :, 0, : S - 1]  # (T, 3, S-1): column n is event image n's pixel
    return [torch.nonzero((frame != 255).any(0)).flatten().tolist() for frame in row]


def corner(item: dict) -> list[tuple[int, ...]]:
    return [tuple(frame[:, S - 1, S - 1].tolist()) for frame in item["events"]]


# The pairing rules, on frame numbers.


def test_pair_frames_of_rgb_every_5th_frame_and_events_every_frame():
    by_number = pair_frames(HARDVS_RGB, HARDVS_EVENTS, "number")
    assert by_number.rgb == (0, 1, 2) and by_number.event == ((0,), (5,), (10,))
    assert by_number.lone_event == (1, 2, 3, 4, 6, 7, 8, 9, 11, 12, 13, 14) and not by_number.complete

    accumulated = pair_frames(HARDVS_RGB, HARDVS_EVENTS, "accumulate")
    assert accumulated == FramePairs((0, 1, 2), ((0,), (1, 2, 3, 4, 5), (6, 7, 8, 9, 10)), after_last=(11, 12, 13, 14))
    assert accumulated.complete

    by_position = pair_frames(HARDVS_RGB, HARDVS_EVENTS, "position")
    assert by_position.event == ((0,), (1,), (2,)) and by_position.lone_event == tuple(range(3, 15))


def test_accumulate_reports_what_no_interval_covers():
    # Events up to 15 reach the next RGB frame (15), which is missing: they are not the recording's end.
    assert pair_frames(HARDVS_RGB, tuple(range(16)), "accumulate").lone_event == (11, 12, 13, 14, 15)
    # No event frame in (5, 10]: RGB frame 10 has no partner.
    pairs = pair_frames(HARDVS_RGB, (0, 1, 2, 3, 4, 5, 11), "accumulate")
    assert pairs.lone_rgb == (10,) and pairs.rgb == (0, 1) and pairs.after_last == (11,)
    # One RGB frame: no step to tell the end of the recording by, so later events have no partner.
    assert pair_frames((0,), (0, 1), "accumulate").lone_event == (1,)


def test_equal_numbers_pair_one_to_one_in_every_pairing():
    for pairing in FRAME_PAIRINGS:
        assert pair_frames((3, 4, 5), (3, 4, 5), pairing) == FramePairs((0, 1, 2), ((0,), (1,), (2,)))


def test_accumulated_event_image_shows_every_event_pixel_and_the_latest_colour_where_they_overlap():
    images = [event_frame(n) for n in (1, 2, 3)]
    images[1][5, 5] = (40, 40, 40)  # any colour other than white is an event pixel
    combined = accumulate_event_images(images)
    assert [tuple(combined[0, n]) for n in (1, 2, 3)] == [BLUE, RED, BLUE]
    assert tuple(combined[S - 1, S - 1]) == BLUE, "the overlapping pixel takes the latest image's colour"
    assert tuple(combined[5, 5]) == (40, 40, 40)
    touched = np.zeros((S, S), bool)
    for image in images:
        touched |= (image != 255).any(-1)
    assert np.all(combined[~touched] == 255) and touched.sum() == 5
    assert combined.dtype == np.uint8 and not np.shares_memory(combined, images[0])


def test_number_relations_and_descriptions():
    assert number_relation(HARDVS_RGB, HARDVS_EVENTS) == "RGB every 5th frame, events every frame"
    assert number_relation((0, 1, 2), (0, 1, 2)) == "same numbers"
    assert number_relation((1, 2, 3), (0, 1, 2)) == "both every frame, other numbers"
    assert number_relation((0, 1, 3), (0, 1, 2)) == "irregular numbers"
    assert describe_numbers(tuple(range(0, 100, 5))) == "every 5th frame (0, 5, 10, ..., 95; 20 frames)"
    assert describe_numbers(HARDVS_EVENTS) == "every frame (0 to 14; 15 frames)"
    assert describe_numbers((7,)) == "one frame (7; 1 frame)"
    assert [every(k) for k in (2, 3, 4, 11, 12, 21, 22, 33)] == [
        "every 2nd frame",
        "every 3rd frame",
        "every 4th frame",
        "every 11th frame",
        "every 12th frame",
        "every 21st frame",
        "every 22nd frame",
        "every 33rd frame",
    ]


# ClipDataset.


def test_number_pairing_refuses_rgb_every_5th_frame_and_names_the_setting_that_fits(tmp_path):
    hardvs_dataset(tmp_path)
    with pytest.raises(DataError) as error:
        dataset(tmp_path, "number")[0]
    message = str(error.value)
    assert "clip0: RGB every 5th frame (0, 5, 10; 3 frames), events every frame (0 to 14; 15 frames)" in message
    assert "12 event frames have no partner (1, 2, 3, 4, 6, ...)" in message
    assert "set data.frame_pairing=accumulate" in message


def test_number_pairing_with_min_pairs_equal_numbers_and_warns_once(tmp_path):
    hardvs_dataset(tmp_path)
    clips = dataset(tmp_path, "number", "min")
    with pytest.warns(DataWarning, match="clip0: RGB every 5th frame.*12 event frames have no partner") as caught:
        items = [clips[0], clips[1]]
    assert len([w for w in caught if issubclass(w.category, DataWarning)]) == 1
    for item in items:
        assert rgb_numbers(item) == [0, 5, 10]
        assert event_numbers(item) == [[0], [5], [10]]


def test_accumulate_gives_each_rgb_frame_the_events_of_its_interval(tmp_path):
    hardvs_dataset(tmp_path)
    clips = dataset(tmp_path, "accumulate")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the end of the recording after RGB frame 10 is not warned about
        item = clips[0]
    assert rgb_numbers(item) == [0, 5, 10]
    assert event_numbers(item) == [[0], [1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]
    assert corner(item) == [RED, BLUE, RED], "the overlapping pixel shows the latest event image (0, 5, 10)"
    assert item["events"].shape == item["rgb"].shape == (3, 3, S, S)
    folders = clips.frame_folders(0)
    assert folders["event"].names == ("00000000.png", "00000005.png", "00000010.png")
    assert folders["event"].groups[1] == tuple(f"{n:08d}.png" for n in range(1, 6))


def test_accumulate_in_training_draws_and_flips_keeps_each_rgb_frame_with_its_interval(tmp_path):
    hardvs_dataset(tmp_path)
    clips = dataset(tmp_path, "accumulate", num_frames=5, train=True, seed=3, horizontal_flip=True, crop_scale=(1, 1))
    flips = []
    for epoch in range(4):
        clips.set_epoch(epoch)
        for index in range(len(clips)):
            item = clips[index]
            flips.append(bool((item["events"][0, :, S - 1, 0] != 255).any()))  # the corner pixel moved
            if flips[-1]:
                item["events"] = item["events"].flip(-1)
            for number, visible in zip(rgb_numbers(item), event_numbers(item), strict=True):
                assert visible == {0: [0], 5: [1, 2, 3, 4, 5], 10: [6, 7, 8, 9, 10]}[number]
    assert set(flips) == {False, True}


def test_position_pairing_warns_or_refuses_misaligned_frames(tmp_path):
    hardvs_dataset(tmp_path)
    with pytest.raises(DataError, match="paired by position.*RGB 5 with event 1.*data.frame_pairing=accumulate"):
        dataset(tmp_path, "position")[0]
    with pytest.warns(DataWarning, match=r"12 event frames have no partner .* numbers differ \(RGB 5 with event 1\)"):
        item = dataset(tmp_path, "position", "min")[0]
    assert event_numbers(item) == [[0], [1], [2]], "position pairs k-th with k-th, as before"


def test_folders_with_equal_numbers_load_the_same_tensors_in_every_pairing(tiny_dataset):
    """The pairing of datasets whose folders hold the same numbers is the old, positional one."""
    sampling = ClipSampling(num_frames=6, image_size=24, train=True, seed=4, horizontal_flip=True)
    by_position, *others = [
        ClipDataset(tiny_dataset, "train_label.txt", sampling, frame_pairing=pairing)
        for pairing in ("position", "number", "accumulate")
    ]
    for index in range(len(by_position)):
        assert by_position.frame_folders(index)["event"].groups is None
        for other in others:
            assert other.frame_folders(index) == by_position.frame_folders(index)
            assert_items_equal(other[index], by_position[index])


def test_config_reaches_every_dataset_and_names_the_pairings(tmp_path):
    hardvs_dataset(tmp_path)
    field = DataConfig.__dataclass_fields__["frame_pairing"]
    assert field.metadata["choices"] == FRAME_PAIRINGS and field.default == "number"
    cfg = make_tiny_config(data={"root": str(tmp_path), "frame_pairing": "accumulate"}, model={"image_size": S})
    assert make_dataset(cfg, "train", check_labels=False).frame_pairing == "accumulate"
    one = clip_dataset(tmp_path / "action_001" / "clip0", cfg)
    assert event_numbers(one[0]) == [[0], [1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]
    with pytest.raises(ValueError, match="data.frame_pairing"):
        make_tiny_config(data={"frame_pairing": "nearest"})


# The dataset check and packing.


def test_check_data_reports_the_step_and_what_each_pairing_leaves_out(tmp_path, capsys):
    from velora.cli import main

    hardvs_dataset(tmp_path, equal_clips=1)
    report = check_dataset(tmp_path, progress=False)
    assert report.notes["train"]["frame_numbers"] == {"RGB every 5th frame, events every frame": 2, "same numbers": 1}
    assert [file for file, _ in report.problems["count_mismatches"]] == [
        str(tmp_path / "action_001" / f"clip{k}") for k in range(2)
    ]
    assert all("data.frame_pairing=accumulate" in message for _, message in report.problems["count_mismatches"])
    assert report.bad_clips == {"train": 2}

    accumulated = check_dataset(tmp_path, progress=False, frame_pairing="accumulate")
    assert accumulated.ok and not accumulated.warnings, accumulated.format()
    assert accumulated.notes["train"]["left_out"] == {"event frames after the last RGB frame (accumulate)": 2}
    text = accumulated.format()
    assert "    RGB / event frame numbers: 2 clips RGB every 5th frame, events every frame; 1 clip same numbers" in text
    assert "    left out by the pairing: 2 clips event frames after the last RGB frame (accumulate)" in text

    assert main(["check-data", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "2 clips RGB every 5th frame, events every frame" in out and "data.frame_pairing=accumulate" in out
    assert main(["check-data", f"data.root={tmp_path}", "data.frame_pairing=accumulate", "--splits", "train"]) == 0


def test_packing_keeps_the_pairing_and_records_it(tmp_path):
    root = hardvs_dataset(tmp_path / "data", equal_clips=1)
    out_dir = tmp_path / "packed"
    splits = {"train": "train_label.txt"}
    pack_dataset(root, out_dir, splits=splits, image_size=S, frame_pairing="accumulate", progress=False)
    assert json.loads((out_dir / "index.json").read_text())["header"]["frame_pairing"] == "accumulate"
    reference = dataset(root, "accumulate")
    packed = PackedClipDataset(out_dir, "train", ClipSampling(num_frames=3, image_size=S))
    assert packed.header["frame_pairing"] == "accumulate"
    for index in range(len(reference)):
        assert_items_equal(packed[index], reference[index])
    assert event_numbers(packed[0]) == [[0], [1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]
    with pytest.raises(DataError, match="differences: frame_pairing"):
        pack_dataset(root, out_dir, splits=splits, image_size=S, progress=False)
