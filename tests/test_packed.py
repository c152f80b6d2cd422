"""Contracts of the packed clip format (velora.data.packed).

- Evaluation items, and training items whose crop is the whole frame, are bit-identical to
  ClipDataset's for the same (seed, epoch, index); a training crop covers the same region (the
  same generator draws) but resamples the stored S x S frame, so its pixels differ slightly.
- An interrupted pack, even one killed after writing bytes its index never committed, resumes to
  the same shard bytes and index as an uninterrupted one; a rerun of a complete pack writes nothing.
- A DataLoader with 2 worker processes gives the same items as indexing in this process.
- A damaged or incomplete packed folder and a resume with other settings raise DataError.
"""

from __future__ import annotations

import json
import pickle
import shutil

import pytest
import torch
from torch.utils.data import DataLoader

import velora.data.packed as packed
import velora.data.packed.writer as packed_writer
from conftest import assert_items_equal
from velora.data.clips import ClipDataset
from velora.data.packed import PackedClipDataset, pack_dataset
from velora.data.sampling import ClipSampling
from velora.errors import DataError

SIZE = 24  # smaller than the 32 px demo frames, so packing really resizes
SPLITS = {"train": "train_label.txt", "test": "test_label.txt"}
CLIP_BYTES = 2 * 5 * SIZE * SIZE * 3  # a 5-frame clip, both modalities


def pack(source, out_dir, **kwargs):
    return pack_dataset(source, out_dir, splits=SPLITS, image_size=SIZE, progress=False, **kwargs)


def folder_bytes(folder) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def packed_root(tiny_dataset, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("packed")
    # Small shards, so the 32 clips of the tiny dataset span several of them.
    pack(tiny_dataset, out_dir, shard_bytes=3 * CLIP_BYTES)
    return out_dir


@pytest.mark.parametrize("split", ["train", "test"])
def test_eval_items_are_bit_identical_to_clip_dataset(tiny_dataset, packed_root, split):
    reference = ClipDataset(tiny_dataset, SPLITS[split], ClipSampling(num_frames=6, image_size=SIZE))
    reader = PackedClipDataset(packed_root, split, ClipSampling(num_frames=6, image_size=SIZE))
    assert len(reader) == len(reference) > 0
    assert reader.class_names == reference.class_names
    assert [(e.sample, e.label) for e in reader.entries] == [(e.sample, e.label) for e in reference.entries]
    for index in range(len(reader)):
        assert_items_equal(reader[index], reference[index])
    assert reader[0]["rgb"].shape == (6, 3, SIZE, SIZE) and reader[0]["rgb"].dtype == torch.uint8
    assert len(list(packed_root.glob("shard_*.bin"))) > 2


def test_training_items_match_clip_dataset_draws(tiny_dataset, packed_root):
    options = dict(num_frames=6, train=True, seed=5, horizontal_flip=True)
    # crop_scale (1, 1): the crop is the whole frame, so only offsets and flips are drawn: identical.
    reference = ClipDataset(
        tiny_dataset, SPLITS["train"], ClipSampling(image_size=SIZE, crop_scale=(1.0, 1.0), **options)
    )
    reader = PackedClipDataset(packed_root, "train", ClipSampling(image_size=None, crop_scale=(1.0, 1.0), **options))
    for epoch in (0, 3):
        reference.set_epoch(epoch), reader.set_epoch(epoch)
        for index in range(len(reader)):
            assert_items_equal(reader[index], reference[index])
    # A real crop: the same box, resampled from the 24 px frame instead of the 32 px PNG.
    reference = ClipDataset(
        tiny_dataset, SPLITS["train"], ClipSampling(image_size=SIZE, crop_scale=(0.5, 0.9), **options)
    )
    reader = PackedClipDataset(packed_root, "train", ClipSampling(image_size=None, crop_scale=(0.5, 0.9), **options))
    differences = [
        (reader[i]["rgb"].float() - reference[i]["rgb"].float()).abs().mean().item() for i in range(len(reader))
    ]
    # Of 255, averaged over clips: the same region, slightly different pixels (about 4; sharp
    # shape edges make single clips differ up to ~10), where a different crop box gives about 20.
    assert sum(differences) / len(differences) < 8, differences
    assert not torch.equal(
        reader[0]["rgb"], PackedClipDataset(packed_root, "train", ClipSampling(num_frames=6, image_size=None))[0]["rgb"]
    )


def test_dataloader_with_two_workers_gives_the_same_items(packed_root):
    reader = PackedClipDataset(
        packed_root, "train", ClipSampling(num_frames=4, image_size=None, train=True, seed=1), modalities=("event",)
    )
    reader[0]  # maps a shard in this process: workers must not depend on it
    assert pickle.loads(pickle.dumps(reader))._shards == {}
    loader = DataLoader(reader, batch_size=5, num_workers=2, shuffle=False, collate_fn=packed.collate_packed)
    batches = list(loader)
    assert sum(len(batch["label"]) for batch in batches) == len(reader)
    events = torch.cat([batch["events"] for batch in batches])  # (L, T, 3, S, S)
    assert "rgb" not in batches[0] and events.shape == (len(reader), 4, 3, SIZE, SIZE)
    assert torch.equal(events, torch.stack([reader[i]["events"] for i in range(len(reader))]))


def test_interrupted_pack_resumes_to_the_same_bytes(tiny_dataset, packed_root, tmp_path, monkeypatch):
    snapshots = []
    write_index = packed_writer.write_index

    def recording_write_index(out_dir, index):
        write_index(out_dir, index)
        snapshots.append((out_dir / packed.INDEX_FILE).read_bytes())

    load_clip, calls = packed_writer._load_clip, []

    def failing_load_clip(task):
        calls.append(task)
        if len(calls) == 9:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C while clip 9 was decoded
        return load_clip(task)

    monkeypatch.setattr(packed_writer, "write_index", recording_write_index)
    monkeypatch.setattr(packed_writer, "_load_clip", failing_load_clip)
    monkeypatch.setattr(packed_writer, "COMMIT_INTERVAL_S", -1.0)  # commit often
    out_dir = tmp_path / "packed"
    with pytest.raises(KeyboardInterrupt):
        pack(tiny_dataset, out_dir, shard_bytes=3 * CLIP_BYTES)
    assert len(json.loads(snapshots[-1])["clips"]) == 8  # the cleanup commits all 8 written clips
    with pytest.raises(DataError, match="incompletely packed"):
        PackedClipDataset(out_dir, "train")
    # A kill (no cleanup) right after the first commit: the later clips are bytes no index lists.
    committed = len(json.loads(snapshots[0])["clips"])
    assert 1 <= committed < 8
    (out_dir / packed.INDEX_FILE).write_bytes(snapshots[0])
    (out_dir / "shard_00007.bin").write_bytes(b"stray")
    monkeypatch.setattr(packed_writer, "_load_clip", load_clip)

    stats = pack(tiny_dataset, out_dir, shard_bytes=3 * CLIP_BYTES)
    assert (stats.skipped, stats.written) == (committed, 32 - committed)
    assert folder_bytes(out_dir) == folder_bytes(packed_root)

    calls.clear()
    monkeypatch.setattr(packed_writer, "_load_clip", failing_load_clip)
    stats = pack(tiny_dataset, out_dir, shard_bytes=3 * CLIP_BYTES)  # complete: nothing decoded
    assert (stats.skipped, stats.written, len(calls)) == (32, 0, 0)


def test_worker_processes_write_the_same_bytes(tiny_dataset, packed_root, tmp_path):
    pack(tiny_dataset, tmp_path / "packed", shard_bytes=3 * CLIP_BYTES, workers=2)
    assert folder_bytes(tmp_path / "packed") == folder_bytes(packed_root)


def test_resume_with_other_settings_or_damage_raises_data_error(tiny_dataset, packed_root, tmp_path):
    out_dir = tmp_path / "packed"
    shutil.copytree(packed_root, out_dir)
    with pytest.raises(DataError, match="image_size"):
        pack_dataset(tiny_dataset, out_dir, splits=SPLITS, image_size=16, progress=False)
    with pytest.raises(DataError, match="packed at 24 px"):
        PackedClipDataset(out_dir, "train", ClipSampling(image_size=32))
    with pytest.raises(DataError, match="no split 'val'"):
        PackedClipDataset(out_dir, "val")

    shard = out_dir / "shard_00001.bin"
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match="CRC-32"):
        PackedClipDataset(out_dir, "train").verify()
    shard.write_bytes(bytes(data[:-1]))
    with pytest.raises(DataError, match=str(shard)):
        PackedClipDataset(out_dir, "train")


def test_data_packed_before_event_resize_existed_loads_as_it_was_packed(tiny_dataset, tmp_path):
    out_dir = tmp_path / "packed"
    pack(tiny_dataset, out_dir, event_resize="nearest")
    index = json.loads((out_dir / "index.json").read_text())
    index["header"]["event_resample"] = index["header"].pop("event_resize")  # the old header's key
    (out_dir / "index.json").write_text(json.dumps(index))
    reader = PackedClipDataset(out_dir, "test", ClipSampling(num_frames=6, image_size=SIZE))
    assert reader.event_resize == "nearest"
    reference = ClipDataset(
        tiny_dataset, SPLITS["test"], ClipSampling(num_frames=6, image_size=SIZE), event_resize="nearest"
    )
    assert_items_equal(reader[0], reference[0])


def test_a_config_asking_for_another_event_resize_than_packed_names_both_and_the_fixes(tiny_dataset, packed_root):
    from conftest import make_tiny_config
    from velora.data.factory import make_dataset

    assert PackedClipDataset(packed_root, "train").event_resize == "keep_events"
    cfg = make_tiny_config(
        "data.format=packed",
        f"data.packed_root={packed_root}",
        f"model.image_size={SIZE}",
        "data.event_resize=bilinear",
    )
    with pytest.raises(
        DataError, match=r"resized by 'keep_events'.*data.event_resize is 'bilinear'.*velora convert packed"
    ):
        make_dataset(cfg, "train")
    rgb_only = make_tiny_config(
        "data.format=packed",
        f"data.packed_root={packed_root}",
        f"model.image_size={SIZE}",
        "data.event_resize=bilinear",
        "data.modalities=[rgb]",
        "model.modalities=[rgb]",
    )
    assert len(make_dataset(rgb_only, "train")) > 0  # no event images read: nothing to refuse


def test_an_index_written_before_the_pairing_was_recorded_loads_as_it_was_written(tiny_dataset, packed_root, tmp_path):
    """Packs made before frame_pairing was recorded paired RGB and event frames by position."""
    out_dir = tmp_path / "packed"
    shutil.copytree(packed_root, out_dir)
    index = json.loads((out_dir / packed.INDEX_FILE).read_text())
    assert index["header"].pop("frame_pairing") == "number"
    (out_dir / packed.INDEX_FILE).write_text(json.dumps(index))
    sampling = ClipSampling(num_frames=4, image_size=SIZE)
    old, new = PackedClipDataset(out_dir, "test", sampling), PackedClipDataset(packed_root, "test", sampling)
    assert old.header["frame_pairing"] == "position"
    for i in range(len(new)):
        assert_items_equal(old[i], new[i])
    with pytest.raises(DataError, match="differences: frame_pairing"):
        pack(tiny_dataset, out_dir, shard_bytes=3 * CLIP_BYTES)
    stats = pack(tiny_dataset, out_dir, shard_bytes=3 * CLIP_BYTES, frame_pairing="position")
    assert (stats.skipped, stats.written) == (32, 0)
