"""Contracts of RecordingDataset (velora.data.recordings), on copies of the real DAVIS346 recording.

- Classes are the sorted class folders; entries list the recordings in class then file order.
- Items have the ClipDataset contract and equal, bit for bit, ClipDataset's items over the folders
  convert_recordings writes from the same recordings (same samples, same draws, same resizing),
  in evaluation and in training with crops and flips; sample j is APS frame j + 1 and the event
  image of [t_j, t_j+1).
- A corrupt recording raises DataError naming the file when its item is read.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest
import torch

from conftest import REAL_DATA, assert_items_equal
from velora.data.clips import ClipDataset
from velora.data.convert import LABEL_FILE, convert_recordings
from velora.data.recordings import RecordingDataset
from velora.data.sampling import ClipSampling
from velora.errors import DataError
from velora.events.aedat4 import read_aedat4

DAVIS346 = REAL_DATA / "davis346"
STREET = DAVIS346 / "street_davis346.aedat4"
SIZE = 40


@pytest.fixture
def raw_root(tmp_path) -> Path:
    """<tmp>/raw/street/{take1,take2}.aedat4 and <tmp>/raw/tunnel/take3.aedat4: copies of the real one."""
    assert STREET.is_file(), f"real recording not found at {STREET}: restore tests/data/real with git"
    root = tmp_path / "raw"
    for class_dir, name in (("street", "take1"), ("street", "take2"), ("tunnel", "take3")):
        (root / class_dir).mkdir(parents=True, exist_ok=True)
        shutil.copy2(STREET, root / class_dir / f"{name}.aedat4")
    return root


def test_items_have_the_clip_contract(raw_root):
    dataset = RecordingDataset(raw_root, ClipSampling(num_frames=3, image_size=SIZE))
    assert dataset.class_names == ["street", "tunnel"]
    assert [(e.sample, e.label) for e in dataset.entries] == [
        ("street/take1", 0),
        ("street/take2", 0),
        ("tunnel/take3", 1),
    ]
    item = dataset[2]
    assert item["rgb"].shape == item["events"].shape == (3, 3, SIZE, SIZE)
    assert item["rgb"].dtype == item["events"].dtype == torch.uint8
    assert item["label"].dtype == torch.int64 and item["label"].item() == 1 and item["index"] == 2

    assert len(read_aedat4(STREET).aps_frames) == 4  # 3 samples: T = 3 takes each once
    assert torch.equal(item["rgb"][:, 0], item["rgb"][:, 2])  # grayscale APS frames, 3 equal channels
    colours = set(map(tuple, item["events"].permute(0, 2, 3, 1).reshape(-1, 3).tolist()))
    assert colours <= {(255, 255, 255), (255, 0, 0), (0, 0, 255)} and len(colours) == 3  # nearest: pure


@pytest.mark.parametrize("train", [False, True])
def test_items_equal_clip_dataset_over_converted_folders(raw_root, tmp_path, train):
    out_root = tmp_path / "frames"
    convert_recordings(raw_root, out_root, progress=False)  # PNGs at sensor size, lossless
    sampling = ClipSampling(
        num_frames=4, image_size=SIZE, train=train, seed=3, crop_scale=(0.5, 0.9), horizontal_flip=True
    )
    reader = RecordingDataset(raw_root, sampling)
    reference = ClipDataset(out_root, LABEL_FILE, sampling)
    assert reader.class_names == reference.class_names
    assert [(e.sample, e.label) for e in reader.entries] == [(e.sample, e.label) for e in reference.entries]
    for epoch in (0, 5):
        reader.set_epoch(epoch), reference.set_epoch(epoch)
        for index in range(len(reader)):
            assert_items_equal(reader[index], reference[index])
    if train:
        reader.set_epoch(0)
        first = reader[0]["rgb"]
        reader.set_epoch(1)
        assert not torch.equal(first, reader[0]["rgb"])  # new epoch, new draws


def test_workers_decode_their_own_recordings(raw_root):
    dataset = RecordingDataset(raw_root, ClipSampling(num_frames=2, image_size=SIZE), cache_recordings=1)
    dataset[0], dataset[1]
    assert list(dataset._cache) == [1]  # an LRU of one
    assert list(pickle.loads(pickle.dumps(dataset))._cache) == [], "a worker's copy starts empty"


def test_corrupt_recording_raises_data_error_naming_it(raw_root):
    broken = raw_root / "tunnel" / "take3.aedat4"
    broken.write_bytes(STREET.read_bytes()[:50_000])
    dataset = RecordingDataset(raw_root, ClipSampling(num_frames=2, image_size=SIZE))
    dataset[0]  # the good ones still read
    with pytest.raises(DataError) as caught:
        dataset[2]
    assert str(broken) in str(caught.value)


def test_class_folder_outside_classes_is_a_data_error(raw_root):
    with pytest.raises(DataError, match="tunnel"):
        RecordingDataset(raw_root, classes=["street"])
    assert RecordingDataset(raw_root, classes=["tunnel", "street"]).entries[0].label == 1
