"""Contracts of the data path: label files, frame sampling, clip loading, augmentation, errors.

Test frames carry their own identity in their pixels: channel 0 is a constant code for the frame
index and modality (RGB 20 + 10 i, events 25 + 10 i), channels 1 and 2 are horizontal and vertical
ramps, so a loaded item tells which frames were read and which crop / flip was applied.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from velora.data.clips import ClipDataset
from velora.data.labels import ClipEntry, read_class_names, read_label_file
from velora.data.sampling import ClipSampling, EvalView, eval_views, segment_indices
from velora.errors import DataError, DataWarning

FRAME_SIZE = (32, 24)  # (width, height) of the test PNGs
S = 16  # image_size of the test datasets
CODE = {"rgb": 20, "event": 25}

# (sample, frames, label): lengths cover shorter than, equal to and longer than T = 8.
CLIPS = [
    ("left/clip0", 3, 0),
    ("left/clip1", 12, 0),
    ("right/clip2", 8, 1),
    ("right/clip3", 5, 1),
    ("static/clip4", 10, 2),
    ("static/clip5", 7, 2),
]


def frame_pixels(code: int, size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    width, height = size
    pixels = np.empty((height, width, 3), np.uint8)  # (H, W, 3)
    pixels[..., 0] = code
    pixels[..., 1] = (np.arange(width) * 255 // (width - 1))[None, :]
    pixels[..., 2] = (np.arange(height) * 255 // (height - 1))[:, None]
    return pixels


def write_clip(
    root: Path,
    sample: str,
    n_rgb: int,
    n_event: int | None = None,
    *,
    name_width: int = 4,
    grayscale: bool = False,
) -> Path:
    clip_dir = root / sample
    for modality, count, suffix in [("rgb", n_rgb, "_aps"), ("event", n_event or n_rgb, "_dvs")]:
        folder = clip_dir / f"{clip_dir.name}{suffix}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image = Image.fromarray(frame_pixels(CODE[modality] + 10 * i))
            if grayscale and modality == "rgb":
                image = image.convert("L")
            image.save(folder / f"{i:0{name_width}d}.png")
    return clip_dir


def write_labels(root: Path, clips, name: str = "train_label.txt") -> Path:
    path = root / name
    lines = ["# sample num_frames label", ""]
    lines += [f"{sample} {n} {label}" for sample, n, label in clips]
    path.write_text("\n".join(lines) + "\n")
    return path


def frame_indices(frames: torch.Tensor, modality: str) -> list[int]:
    """Decode the frame indices from channel 0 of (T, 3, S, S) frames, checking the modality."""
    codes = frames[:, 0].flatten(1)  # (T, S*S)
    assert (codes == codes[:, :1]).all(), "channel 0 must stay constant under resize"
    codes = codes[:, 0].long() - CODE[modality]
    assert (codes % 10 == 0).all(), f"frames are not {modality} frames"
    return (codes // 10).tolist()


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("poker")
    for sample, n, _ in CLIPS:
        write_clip(root, sample, n)
    write_labels(root, CLIPS)
    return root


def make(root: Path, **options) -> ClipDataset:
    """The 8-frame, S-pixel dataset of root; options: ClipSampling fields and other ClipDataset arguments."""
    fields = {f.name for f in dataclasses.fields(ClipSampling)}
    sampling = ClipSampling(num_frames=8, image_size=S, **{k: v for k, v in options.items() if k in fields})
    return ClipDataset(root, "train_label.txt", sampling, **{k: v for k, v in options.items() if k not in fields})


# Label files and class names


def test_label_file_skips_comments_and_blank_lines(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text(
        "# header\n\naction_Poker001/dvSave-2023_03_02_18_58_21 28 0\n  \n"
        "   # indented comment\naction_Poker002/dv Save 5 1\n"
    )
    assert read_label_file(path) == [
        ClipEntry("action_Poker001/dvSave-2023_03_02_18_58_21", 28, 0),
        ClipEntry("action_Poker002/dv Save", 5, 1),
    ]


@pytest.mark.parametrize("bad", ["lonely_sample", "a/b x 0", "a/b 3", "a/b 3 -1", "../a 3 0", "/a/b 3 0"])
def test_malformed_label_line_names_file_line_and_format(tmp_path, bad):
    path = tmp_path / "val_label.txt"
    path.write_text(f"# comment\na/ok 3 0\n{bad}\n")
    with pytest.raises(DataError) as error:
        read_label_file(path)
    message = str(error.value)
    assert str(path) in message and "line 3" in message and bad in message
    assert "<num_frames> <label_index>" in message


def test_missing_label_file(tmp_path):
    with pytest.raises(DataError, match="test_label.txt does not exist"):
        read_label_file(tmp_path / "test_label.txt")


def test_class_names_derived_from_class_folders(tmp_path):
    entries = [ClipEntry("b/x", 3, 1), ClipEntry("a/y", 3, 0), ClipEntry("d/z", 3, 3)]
    assert read_class_names(tmp_path, entries) == ["a", "b", "class_2", "d"]
    with pytest.raises(DataError, match="label 0"):
        read_class_names(tmp_path, entries + [ClipEntry("c/w", 3, 0)])


def test_class_names_from_classes_txt(tmp_path):
    (tmp_path / "classes.txt").write_text("fold\ncheck\n\nraise\n")
    entries = [ClipEntry("x/a", 3, 2), ClipEntry("y/b", 3, 0)]
    assert read_class_names(tmp_path, entries) == ["fold", "check", "raise"]
    with pytest.raises(DataError, match="3 class names but the labels go up to 3"):
        read_class_names(tmp_path, entries + [ClipEntry("z/c", 3, 3)])


def test_dataset_exposes_entries_and_class_names(root):
    dataset = make(root)
    assert len(dataset) == len(CLIPS)
    assert dataset.entries[1] == ClipEntry("left/clip1", 12, 0)
    assert dataset.class_names == ["left", "right", "static"]


# Frame sampling


@pytest.mark.parametrize("num_frames", [1, 2, 3, 7, 8, 9, 28, 85])
@pytest.mark.parametrize("num_segments", [1, 3, 8])
def test_segment_indices_properties(num_frames, num_segments):
    bounds = np.arange(num_segments + 1) * num_frames // num_segments
    centre = segment_indices(num_frames, num_segments, random_offset=False)
    assert np.array_equal(centre, segment_indices(num_frames, num_segments, random_offset=False))
    for indices in [centre] + [
        segment_indices(num_frames, num_segments, random_offset=True, rng=np.random.default_rng(s)) for s in range(20)
    ]:
        assert indices.shape == (num_segments,) and indices.dtype == np.int64
        assert indices.min() >= 0 and indices.max() < num_frames
        assert (np.diff(indices) >= 0).all()
        if num_frames >= num_segments:  # one frame from inside each segment
            assert ((bounds[:-1] <= indices) & (indices < bounds[1:])).all()
        else:  # padded by repetition, every frame used
            assert np.array_equal(indices, bounds[:-1])
            assert set(indices.tolist()) == set(range(num_frames))


def test_segment_indices_random_mode_varies_and_short_clip_example():
    draws = {tuple(segment_indices(85, 8, random_offset=True, rng=np.random.default_rng(s))) for s in range(10)}
    assert len(draws) > 1
    assert segment_indices(3, 8, random_offset=False).tolist() == [0, 0, 0, 1, 1, 1, 2, 2]


def test_segment_indices_rejects_empty_clip_and_missing_rng():
    with pytest.raises(DataError):
        segment_indices(0, 8, random_offset=False)
    with pytest.raises(ValueError, match="rng"):
        segment_indices(10, 8, random_offset=True, rng=None)


@pytest.mark.parametrize("num_frames", [1, 3, 8, 9, 28, 85])
@pytest.mark.parametrize("views", [1, 2, 3, 5])
def test_test_time_views_spread_inside_each_segment_and_one_view_is_the_centre(num_frames, views):
    bounds = np.arange(8 + 1) * num_frames // 8
    centre = segment_indices(num_frames, 8, random_offset=False)
    spread = np.stack([segment_indices(num_frames, 8, random_offset=False, view=v, views=views) for v in range(views)])
    if views == 1:
        assert np.array_equal(spread[0], centre)
    if num_frames >= 8:
        assert ((bounds[:-1] <= spread) & (spread < bounds[1:])).all(), "each view stays inside its segments"
        assert (np.diff(spread, axis=0) >= 0).all(), "later views take later frames of each segment"
    else:
        assert (spread == bounds[:-1]).all(), "a short clip has one sampling"
    if num_frames >= 8 * views:  # segments long enough: every view its own frames
        assert len({tuple(row) for row in spread}) == views
    # Evenly spread: 85 frames, 8 segments of 10-11, 3 views at 1/6, 3/6, 5/6 of each segment.
    assert segment_indices(85, 8, random_offset=False, view=2, views=3)[0] == 8
    with pytest.raises(ValueError, match="view"):
        segment_indices(10, 8, random_offset=False, view=3, views=3)


def test_eval_view_crop_boxes():
    assert EvalView().box() == (0.0, 0.0, 1.0, 1.0)
    three = [view.box() for view in eval_views(1, 3, 0.5)]
    assert three == [(0.0, 0.25, 0.5, 0.75), (0.25, 0.25, 0.75, 0.75), (0.5, 0.25, 1.0, 0.75)]
    five = np.array([view.box() for view in eval_views(1, 5, 0.8)])
    corners_and_centre = [(0, 0, 0.8, 0.8), (0.2, 0, 1, 0.8), (0, 0.2, 0.8, 1), (0.2, 0.2, 1, 1), (0.1, 0.1, 0.9, 0.9)]
    assert np.allclose(five, corners_and_centre)
    assert [(v.temporal, v.crop) for v in eval_views(2, 3, 0.9)] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    with pytest.raises(ValueError, match="crops"):
        EvalView(crops=4)


def test_an_eval_view_picks_its_frames_and_crop_and_training_ignores_it(root):
    sampling = ClipSampling(num_frames=8, image_size=S)
    view = EvalView(temporal=1, temporal_views=2, crop=0, crops=3, crop_fraction=0.5)
    dataset = ClipDataset(root, "train_label.txt", dataclasses.replace(sampling, view=view))
    index, n = 1, 12  # left/clip1
    item = dataset[index]
    expected = segment_indices(n, 8, random_offset=False, view=1, views=2).tolist()
    assert frame_indices(item["rgb"], "rgb") == expected == frame_indices(item["events"], "event")
    assert expected != segment_indices(n, 8, random_offset=False).tolist()
    x = item["rgb"][:, 1].float()  # channel 1 holds the frame's x position, 0 at the left edge to 255 at the right
    assert x.min() < 20 and x.max() < 140, "the left crop holds the left half"
    right = ClipDataset(root, "train_label.txt", dataclasses.replace(sampling, view=dataclasses.replace(view, crop=2)))
    assert right[index]["rgb"][:, 1].float().min() > 115
    training = dataclasses.replace(sampling, train=True, seed=3)
    a, b = training.draw(2, index, n), dataclasses.replace(training, view=view).draw(2, index, n)
    assert all(np.array_equal(a.frames[m], b.frames[m]) for m in a.frames) and (a.box, a.flip) == (b.box, b.flip)


# Items


# The frames an evaluation item holds, T = 8, by hand: segment k of an n-frame clip is
# [k n // 8, (k + 1) n // 8) and gives its centre (start + end - 1) // 2; a clip shorter than 8
# gives frame k n // 8.
EVAL_FRAMES = {
    3: [0, 0, 0, 1, 1, 1, 2, 2],
    5: [0, 0, 1, 1, 2, 3, 3, 4],
    7: [0, 0, 1, 2, 3, 4, 5, 6],
    8: [0, 1, 2, 3, 4, 5, 6, 7],
    10: [0, 1, 2, 3, 5, 6, 7, 8],  # segments 0 1 2 3-4 5 6 7 8-9
    12: [0, 1, 3, 4, 6, 7, 9, 10],  # segments 0 1-2 3 4-5 6 7-8 9 10-11
}


def test_eval_item_contract(root):
    dataset = make(root)
    for index, (_, n, label) in enumerate(CLIPS):
        item = dataset[index]
        assert set(item) == {"rgb", "events", "label", "index"}
        for key in ("rgb", "events"):
            assert item[key].dtype == torch.uint8 and item[key].shape == (8, 3, S, S)
        assert item["label"].dtype == torch.int64 and item["label"].shape == ()
        assert item["label"] == label
        assert item["index"] == index
        expected = EVAL_FRAMES[n]
        assert frame_indices(item["rgb"], "rgb") == expected
        assert frame_indices(item["events"], "event") == expected


def test_train_items_take_the_same_frames_in_both_modalities(root):
    dataset = make(root, train=True, seed=3)
    for epoch in range(4):
        dataset.set_epoch(epoch)
        for index, (_, n, _) in enumerate(CLIPS):
            item = dataset[index]
            rgb_indices = frame_indices(item["rgb"], "rgb")
            assert rgb_indices == frame_indices(item["events"], "event")
            bounds = np.arange(9) * n // 8
            if n >= 8:
                assert all(bounds[k] <= i < bounds[k + 1] for k, i in enumerate(rgb_indices))


@pytest.mark.parametrize("modalities, key", [(("rgb",), "rgb"), (("event",), "events")])
def test_only_requested_modalities_are_read_and_returned(tmp_path, modalities, key):
    clip_dir = write_clip(tmp_path, "a/clip", 4)
    other = "_dvs" if modalities == ("rgb",) else "_aps"
    for path in (clip_dir / f"clip{other}").iterdir():
        path.unlink()
    (clip_dir / f"clip{other}").rmdir()
    write_labels(tmp_path, [("a/clip", 4, 0)])
    item = make(tmp_path, modalities=modalities)[0]
    assert set(item) == {key, "label", "index"}
    assert item[key].shape == (8, 3, S, S)


def test_grayscale_frames_become_three_equal_channels(tmp_path):
    write_clip(tmp_path, "a/clip", 4, grayscale=True)
    write_labels(tmp_path, [("a/clip", 4, 0)])
    rgb = make(tmp_path)[0]["rgb"]
    assert rgb.shape == (8, 3, S, S)
    assert torch.equal(rgb[:, 0], rgb[:, 1]) and torch.equal(rgb[:, 1], rgb[:, 2])


def test_frames_sort_numerically_without_padding(tmp_path):
    write_clip(tmp_path, "a/clip", 12, name_width=1)  # 0.png ... 11.png: "10" < "2" as text
    write_labels(tmp_path, [("a/clip", 12, 0)])
    item = ClipDataset(tmp_path, "train_label.txt", ClipSampling(num_frames=12, image_size=S))[0]
    assert frame_indices(item["rgb"], "rgb") == list(range(12))


def test_augmentation_is_shared_by_all_frames_and_modalities(root):
    dataset = make(root, train=True, seed=0, crop_scale=(0.3, 0.6), horizontal_flip=True)
    flips, crops = set(), set()
    for epoch in range(3):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            item = dataset[index]
            rgb, events = item["rgb"][:, 1:].float(), item["events"][:, 1:].float()  # ramps
            assert (rgb == rgb[:1]).all() and (events == events[:1]).all(), "one crop per clip"
            # Bilinear (RGB) and nearest (events) sample the same box: within 1.5 source pixels.
            x_step, y_step = 255 / (FRAME_SIZE[0] - 1), 255 / (FRAME_SIZE[1] - 1)
            assert (rgb[:, 0] - events[:, 0]).abs().max() <= 1.5 * x_step
            assert (rgb[:, 1] - events[:, 1]).abs().max() <= 1.5 * y_step
            flipped = bool(rgb[0, 0, 0, 0] > rgb[0, 0, 0, -1])
            assert flipped == bool(events[0, 0, 0, 0] > events[0, 0, 0, -1])
            flips.add(flipped)
            crops.add(float(rgb[0, 0, 0, :].max() - rgb[0, 0, 0, :].min()))
    assert flips == {False, True}
    assert max(crops) < 255 and len(crops) > 1


def test_no_flip_by_default_and_no_augmentation_in_eval(root):
    train = make(root, train=True, seed=1)
    for epoch in range(3):
        train.set_epoch(epoch)
        for index in range(len(train)):
            ramp = train[index]["rgb"][0, 1, 0].float()
            assert ramp[0] < ramp[-1]
    full_ramp = make(root)[0]["rgb"][0, 1, 0].float()
    assert full_ramp[0] < 10 and full_ramp[-1] > 245


def test_train_items_depend_only_on_seed_epoch_and_index(root):
    def items(dataset, order):
        return {index: dataset[index] for index in order}

    order = list(range(len(CLIPS)))
    a = items(make(root, train=True, seed=7), order)
    b = items(make(root, train=True, seed=7), order[::-1])
    for i in order:
        assert torch.equal(a[i]["rgb"], b[i]["rgb"]) and torch.equal(a[i]["events"], b[i]["events"])

    next_epoch = make(root, train=True, seed=7)
    next_epoch.set_epoch(1)
    other_seed = make(root, train=True, seed=8)
    for changed in (next_epoch, other_seed):
        assert any(not torch.equal(a[i]["rgb"], changed[i]["rgb"]) for i in order)

    evaluation = make(root)
    first = evaluation[1]["rgb"]
    evaluation.set_epoch(5)
    assert torch.equal(first, evaluation[1]["rgb"])


def test_directory_listing_is_cached(root, monkeypatch):
    dataset = make(root)
    calls = []
    real_scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path: calls.append(path) or real_scandir(path))
    dataset[2]
    dataset[2]
    assert len(calls) == 2  # one listing per modality, on the first read only


def test_dataloader_batches_do_not_depend_on_worker_count(root):
    def batches(num_workers):
        dataset = make(root, train=True, seed=11, crop_scale=(0.5, 1.0), horizontal_flip=True)
        result = []
        for epoch in range(2):
            dataset.set_epoch(epoch)
            loader = DataLoader(
                dataset,
                batch_size=4,
                shuffle=True,
                num_workers=num_workers,
                generator=torch.Generator().manual_seed(epoch),
            )
            result += list(loader)
        return result

    serial, parallel = batches(0), batches(2)
    assert len(serial) == len(parallel) == 4
    first = serial[0]
    assert set(first) == {"rgb", "events", "label", "index"}
    assert first["rgb"].shape == (4, 8, 3, S, S) and first["rgb"].dtype == torch.uint8
    assert first["label"].shape == (4,) and first["label"].dtype == torch.int64
    assert first["index"].shape == (4,)
    for one, two in zip(serial, parallel):
        assert all(torch.equal(one[key], two[key]) for key in one)


# Errors


def test_missing_root_and_label_file(tmp_path):
    with pytest.raises(DataError, match="dataset root .*nowhere.* does not exist"):
        ClipDataset(tmp_path / "nowhere", "train_label.txt")
    with pytest.raises(DataError, match="train_label.txt does not exist"):
        ClipDataset(tmp_path, "train_label.txt")


def test_label_out_of_range(tmp_path):
    write_labels(tmp_path, [("a/clip", 4, 0), ("b/clip", 4, 3)])
    ClipDataset(tmp_path, "train_label.txt", num_classes=4)
    with pytest.raises(DataError, match=r"b/clip .*train_label.txt.* label 3, outside \[0, 3\)"):
        ClipDataset(tmp_path, "train_label.txt", num_classes=3)


def _broken(tmp_path: Path, damage) -> ClipDataset:
    """A one-clip dataset (6 frames) whose files ``damage(clip_dir)`` spoils."""
    clip_dir = write_clip(tmp_path, "a/clip", 6)
    write_labels(tmp_path, [("a/clip", 6, 0)])
    damage(clip_dir)
    return ClipDataset(tmp_path, "train_label.txt", ClipSampling(num_frames=6, image_size=S))


def _remove_tree(path: Path) -> None:
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    "damage, pattern",
    [
        (
            lambda d: [_remove_tree(d / "clip_aps"), _remove_tree(d / "clip_dvs"), d.rmdir()],
            r"clip folder .*a/clip .*train_label.txt.* does not exist",
        ),
        (lambda d: _remove_tree(d / "clip_aps"), r"RGB frame folder .*clip_aps does not exist"),
        (lambda d: _remove_tree(d / "clip_dvs"), r"event frame folder .*clip_dvs does not exist"),
        (
            lambda d: [p.unlink() for p in (d / "clip_dvs").iterdir()],
            r"event frame folder .*clip_dvs holds no .png frames",
        ),
        (lambda d: _truncate(d / "clip_aps" / "0002.png"), r"cannot read frame .*clip_aps/0002.png"),
        (lambda d: (d / "clip_dvs" / "0003.png").write_text("not an image"), r"cannot read frame .*clip_dvs/0003.png"),
        (
            lambda d: Image.fromarray(frame_pixels(20, (30, 24))).save(d / "clip_aps" / "0004.png"),
            r"differ in size: .*0000.png is 32x24, .*0004.png is 30x24",
        ),
        (lambda d: (d / "clip_aps" / "frame_7.png").write_bytes(b""), r"frame_7.png is not named by its frame number"),
        (
            lambda d: (d / "clip_dvs" / "0005.png").unlink(),
            r"a/clip: RGB every frame \(0 to 5; 6 frames\), events every frame \(0 to 4; 5 frames\).*"
            r"1 RGB frame has no partner \(5\); set data.frame_count_policy=min",
        ),
    ],
    ids=["clip", "aps", "dvs", "empty", "truncated", "text", "size", "name", "count"],
)
def test_bad_clips_raise_data_error_naming_the_file(tmp_path, damage, pattern):
    dataset = _broken(tmp_path, damage)
    with pytest.raises(DataError, match=pattern):
        dataset[0]


def test_min_frame_count_policy_uses_the_common_frames(tmp_path):
    write_clip(tmp_path, "a/clip", 6, 4)
    write_labels(tmp_path, [("a/clip", 6, 0)])
    with pytest.warns(DataWarning, match=r"2 RGB frames have no partner \(4, 5\)"):
        item = make(tmp_path, frame_count_policy="min", train=True)[0]
    rgb_indices = frame_indices(item["rgb"], "rgb")
    assert rgb_indices == frame_indices(item["events"], "event")
    assert max(rgb_indices) == 3 and set(rgb_indices) == {0, 1, 2, 3}


def test_problems_lists_every_bad_clip(tmp_path):
    for sample in ("a/ok", "a/no_events", "b/mismatch"):
        write_clip(tmp_path, sample, 5)
    _remove_tree(tmp_path / "a/no_events/no_events_dvs")
    (tmp_path / "b/mismatch/mismatch_dvs/0004.png").unlink()
    clips = [("a/ok", 5, 0), ("a/no_events", 5, 0), ("b/mismatch", 5, 1), ("c/gone", 5, 2)]
    write_labels(tmp_path, clips)
    found = make(tmp_path).problems(decode=False)
    assert [kind for kind, _, _ in found["a/no_events"]] == ["missing_folders"]
    assert "no_events_dvs" in found["a/no_events"][0][1]
    assert [kind for kind, _, _ in found["c/gone"]] == ["missing_samples"]
    assert found["c/gone"][0][1].endswith("train_label.txt:6"), (
        "the label line that points nowhere (after a comment and a blank line)"
    )
    assert [kind for kind, _, _ in found["b/mismatch"]] == ["frame_numbers", "count_mismatches"]
    assert found["b/mismatch"][1][2].startswith(
        "RGB every frame (0 to 4; 5 frames), events every frame (0 to 3; 4 frames)"
    )
    assert found["a/ok"] == [("frame_numbers", str(tmp_path / "a/ok"), "same numbers")]
