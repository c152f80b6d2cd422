"""The released code's input pipeline, selectable: frame sampling, per-frame augmentation,
normalisation and weight decay (configs/*_release.yaml set them all)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import assert_items_equal, make_tiny_config
from velora.config import ConfigError, load_config
from velora.data.clips import ClipDataset
from velora.data.labels import ClipEntry
from velora.data.sampling import RELEASE_PAD, ClipSampling, pad_crop_flip, release_indices

FRAMES = 12
SIZE = 32


@pytest.fixture(scope="module")
def numbered_clip(tmp_path_factory):
    """One clip whose frame k is a flat grey of value 10 * (k + 1), RGB and events alike, so an
    item's frames say which frame numbers were read."""
    root = tmp_path_factory.mktemp("numbered")
    clip = root / "c0" / "s0"
    for suffix in ("_aps", "_dvs"):
        (clip / f"s0{suffix}").mkdir(parents=True)
        for k in range(FRAMES):
            Image.fromarray(np.full((SIZE, SIZE, 3), 10 * (k + 1), np.uint8)).save(
                clip / f"s0{suffix}" / f"{k:04d}.png"
            )
    return root, [ClipEntry("c0/s0", FRAMES, 0)]


def frame_numbers(frames: torch.Tensor) -> list[int]:
    """The frame numbers of (T, 3, S, S) frames of the numbered clip, read at the frame's centre."""
    return [int(v) // 10 - 1 for v in frames[:, 0, SIZE // 2, SIZE // 2]]


def test_release_indices_are_an_unordered_subset_without_repeats_unless_the_clip_is_short():
    rng = np.random.default_rng(0)
    draws = [release_indices(20, 8, rng) for _ in range(50)]
    assert all(len(set(d.tolist())) == 8 and d.min() >= 0 and d.max() < 20 for d in draws)
    assert any(not np.all(np.diff(d) > 0) for d in draws)  # not sorted: the release's order is the draw's
    short = release_indices(3, 8, rng)
    assert short.shape == (8,) and set(short.tolist()) <= {0, 1, 2}


def test_release_sampling_draws_rgb_and_events_on_their_own_in_training_and_evaluation(numbered_clip):
    root, entries = numbered_clip
    for train in (True, False):
        sampling = ClipSampling(num_frames=4, image_size=SIZE, train=train, frame_sampling="release", seed=1)
        dataset = ClipDataset(root, entries, sampling)
        items = []
        for epoch in range(3):
            dataset.set_epoch(epoch)
            item = dataset[0]
            draw = sampling.draw(epoch, 0, FRAMES, ("rgb", "event"))
            assert frame_numbers(item["rgb"]) == draw.frames["rgb"].tolist()
            assert frame_numbers(item["events"]) == draw.frames["event"].tolist()
            items.append(item)
        assert any(frame_numbers(i["rgb"]) != frame_numbers(i["events"]) for i in items)  # independent draws
        assert frame_numbers(items[0]["rgb"]) != frame_numbers(items[1]["rgb"])  # a new draw each epoch
    # Evaluation draws are seeded: the same epoch gives the same frames in a new dataset.
    again = ClipDataset(root, entries, ClipSampling(num_frames=4, image_size=SIZE, frame_sampling="release", seed=1))
    assert_items_equal(again[0], ClipDataset(root, entries, again.sampling)[0])


def test_segment_sampling_reads_ordered_frames_shared_by_both_modalities(numbered_clip):
    root, entries = numbered_clip
    item = ClipDataset(root, entries, ClipSampling(num_frames=4, image_size=SIZE))[0]
    assert frame_numbers(item["rgb"]) == frame_numbers(item["events"]) == [1, 4, 7, 10]  # segment centres


def test_pad_crop_flip_is_torchvisions_pad_randomcrop_hflip():
    frame = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    assert np.array_equal(pad_crop_flip(frame, 2, 2, False, pad=2), frame)  # the centre crop
    shifted = pad_crop_flip(frame, 0, 2, False, pad=2)  # the crop starts 2 columns left of the frame
    assert (shifted[:, :2] == 0).all() and np.array_equal(shifted[:, 2:], frame[:, :6])
    down = pad_crop_flip(frame, 2, 4, True, pad=2)
    assert (down[-2:] == 0).all() and np.array_equal(down[:-2], frame[2:, ::-1])


def test_release_augmentation_shifts_and_flips_every_frame_of_each_modality_on_its_own(numbered_clip):
    root, entries = numbered_clip
    sampling = ClipSampling(num_frames=6, image_size=SIZE, train=True, augmentation="release", seed=3)
    dataset = ClipDataset(root, entries, sampling)
    item, draw = dataset[0], sampling.draw(0, 0, FRAMES, ("rgb", "event"))
    assert draw.box == (0.0, 0.0, 1.0, 1.0) and draw.flip is False
    for modality, key in (("rgb", "rgb"), ("event", "events")):
        offsets = draw.per_frame[modality]
        assert offsets.shape == (6, 3) and offsets[:, :2].min() >= 0 and offsets[:, :2].max() <= 2 * RELEASE_PAD
        for k in range(6):
            frame = item[key][k].permute(1, 2, 0).numpy()
            dx, dy = offsets[k, :2]
            black_rows = (frame == 0).all(axis=(1, 2))
            assert black_rows.sum() == abs(int(dy) - RELEASE_PAD)
    assert not np.array_equal(draw.per_frame["rgb"], draw.per_frame["event"])
    evaluation = ClipDataset(root, entries, ClipSampling(num_frames=6, image_size=SIZE, augmentation="release"))[0]
    assert int((evaluation["rgb"] == 0).sum()) == 0  # evaluation never augments


def test_packed_data_gives_clip_datasets_release_items(tiny_dataset, tmp_path):
    from velora.data.packed import PackedClipDataset, pack_dataset

    pack_dataset(tiny_dataset, tmp_path, splits={"train": "train_label.txt"}, image_size=32, progress=False)
    for train in (True, False):
        sampling = ClipSampling(
            num_frames=6,
            image_size=32,
            train=train,
            frame_sampling="release",
            augmentation="release",
            crop_scale=(1.0, 1.0),
            seed=2,
        )
        reference = ClipDataset(tiny_dataset, "train_label.txt", sampling)
        packed = PackedClipDataset(tmp_path, "train", sampling, device_crop=True)
        for index in range(4):
            assert_items_equal(packed[index], reference[index])


def test_half_normalisation_maps_0_and_255_to_minus_one_and_one():
    from velora.model.velora import VELoRA

    frames = torch.tensor([0, 255], dtype=torch.uint8).view(1, 2, 1, 1, 1).expand(1, 2, 3, 1, 1)
    half = VELoRA.from_config(make_tiny_config("model.normalization=half")).normalize(frames)
    assert torch.allclose(half[0, :, :, 0, 0], torch.tensor([[-1.0] * 3, [1.0] * 3]))
    clip = VELoRA.from_config(make_tiny_config()).normalize(frames)
    assert not torch.allclose(clip, half)  # the weights' own (CLIP's) statistics otherwise


def test_weight_decay_on_all_parameters_or_matrices_only():
    from velora.model.velora import VELoRA
    from velora.training.schedule import decay_groups

    model = VELoRA.from_config(make_tiny_config())
    trainable = [p for p in model.parameters() if p.requires_grad]
    default = decay_groups(model, 1e-4)
    assert all(p.ndim >= 2 for p in default[0]["params"]) and default[1]["params"] and default[1]["weight_decay"] == 0
    everything = decay_groups(model, 1e-4, decay_all=True)
    assert len(everything[0]["params"]) == len(trainable) and everything[0]["weight_decay"] == 1e-4


def test_release_configs_set_the_releases_inputs_and_info_prints_them(capsys):
    from velora.cli import main

    cfg = load_config("pokerevent_vitb16_release")
    assert (cfg.model.normalization, cfg.data.frame_sampling, cfg.data.augmentation, cfg.data.event_resize) == (
        "half",
        "release",
        "release",
        "bilinear",
    )
    assert cfg.train.weight_decay_all
    default = load_config("pokerevent_vitb16")
    assert (default.model.normalization, default.data.frame_sampling, default.data.augmentation) == (
        "weights",
        "segments",
        "clip",
    )
    assert main(["info", "--config", "hardvs_vitb16_release"]) == 0
    out = capsys.readouterr().out
    for line in (
        "normalisation   mean = std = 0.5",
        "frame sampling  release",
        "augmentation    release",
        "event resize    bilinear",
        "on every trainable parameter",
    ):
        assert line in out


def test_release_sampling_needs_a_layout_of_frames():
    with pytest.raises(ConfigError, match="data.frame_sampling' release reads frames"):
        make_tiny_config("data.frame_sampling=release", "data.layout=events", "data.modalities=[event]")


def test_release_sampling_draws_from_each_folder_unpaired_as_the_release_does(tmp_path):
    # HARDVS-style: RGB frames 0, 5, 10; event frames 0 .. 14. Segment sampling must pair them first
    # (and refuses under frame_count_policy error); the release draws from each folder on its own.
    clip = tmp_path / "c0" / "s0"
    for suffix, numbers in (("_aps", range(0, 15, 5)), ("_dvs", range(15))):
        (clip / f"s0{suffix}").mkdir(parents=True)
        for k in numbers:
            Image.fromarray(np.full((SIZE, SIZE, 3), 10 * (k + 1), np.uint8)).save(
                clip / f"s0{suffix}" / f"{k:08d}.png"
            )
    entries = [ClipEntry("c0/s0", 15, 0)]
    from velora.errors import DataError

    with pytest.raises(DataError, match="RGB every 5th frame"):
        ClipDataset(tmp_path, entries, ClipSampling(num_frames=4, image_size=SIZE))[0]
    item = ClipDataset(tmp_path, entries, ClipSampling(num_frames=4, image_size=SIZE, frame_sampling="release"))[0]
    assert set(frame_numbers(item["rgb"])) <= {0, 5, 10}
    assert len(set(frame_numbers(item["events"]))) == 4 and max(frame_numbers(item["events"])) < 15
