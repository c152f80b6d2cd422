"""Contracts of the event-only dataset on the 24 real N-MNIST recordings: the ClipDataset item contract
without "rgb", labels from labels.txt, windows that keep every event, red/blue-on-white images drawn
exactly as velora.events.render.event_image draws them, and errors that name the file."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from conftest import REAL_DATA
from velora.data.check import check_dataset
from velora.data.event_labels import read_event_labels
from velora.data.event_only import EventFileDataset
from velora.data.sampling import ClipSampling
from velora.errors import DataError
from velora.events.readers import read_nmnist
from velora.events.render import event_image
from velora.events.representations import window_bounds

NMNIST = REAL_DATA / "nmnist"


@pytest.fixture(scope="module")
def nmnist() -> Path:
    assert NMNIST.is_dir(), f"real N-MNIST samples not found at {NMNIST}: restore tests/data/real with git"
    return NMNIST


def labels_txt(root: Path) -> dict[str, int]:
    """labels.txt parsed independently of the package: sample -> digit."""
    pairs = [line.split("\t") for line in (root / "labels.txt").read_text().splitlines() if not line.startswith("#")]
    return {sample: int(digit) for sample, digit in pairs}


def test_items_follow_the_clip_contract_with_labels_from_labels_txt(nmnist):
    dataset = EventFileDataset(nmnist, "labels.txt", ClipSampling(num_frames=4, image_size=24))
    expected = labels_txt(nmnist)
    assert len(dataset) == 24 and dataset.modalities == ("event",)
    assert dataset.class_names == [str(d) for d in range(10)]
    for index, entry in enumerate(dataset.entries):
        assert entry.label == expected[entry.sample]
        assert dataset.event_file(index) == nmnist / f"{entry.sample}.bs2"
    batch = next(iter(DataLoader(dataset, batch_size=6)))
    assert set(batch) == {"events", "label", "index"}
    assert batch["events"].shape == (6, 4, 3, 24, 24) and batch["events"].dtype == torch.uint8
    assert batch["label"].tolist() == [expected[e.sample] for e in dataset.entries[:6]]
    assert batch["index"].tolist() == list(range(6))
    pixels = batch["events"].permute(0, 1, 3, 4, 2).reshape(-1, 3)  # (B*T*S*S, 3)
    red = (pixels == torch.tensor([255, 0, 0], dtype=torch.uint8)).all(1)
    blue = (pixels == torch.tensor([0, 0, 255], dtype=torch.uint8)).all(1)
    white = (pixels == 255).all(1)
    assert red.any() and blue.any() and white.float().mean() > 0.3
    assert bool((red | blue | white).all()), "nearest resize keeps pure red / blue / white"


@pytest.mark.parametrize("window", ["fixed_count", "uniform"])
def test_frames_are_event_images_of_windows_that_keep_every_event(nmnist, window):
    events = read_nmnist(nmnist / "3.bs2")
    bounds = window_bounds(events.t, 5, window)
    assert bounds[0] == 0 and bounds[-1] == len(events) and (np.diff(bounds) >= 0).all()
    if window == "fixed_count":
        assert np.ptp(np.diff(bounds)) <= 1
    else:  # equal durations: each window's events lie inside its fifth of the recording
        edges = events.t[0] + np.arange(6) * (events.duration_us + 1) // 5
        for k in range(5):
            t = events.t[bounds[k] : bounds[k + 1]]
            assert t.size == 0 or (edges[k] <= t.min() and t.max() < edges[k + 1])
    # At the sensor's size (34 x 34) and without augmentation, frame k is event_image of window k.
    item = EventFileDataset(nmnist, "labels.txt", ClipSampling(num_frames=5, image_size=34), window=window)[2]
    for k in range(5):
        window_events = slice(bounds[k], bounds[k + 1])
        expected = event_image(events.x[window_events], events.y[window_events], events.p[window_events], 34, 34)
        assert np.array_equal(item["events"][k].permute(1, 2, 0).numpy(), expected)


def test_fixed_duration_windows_are_centred_in_eval_and_random_in_training(nmnist):
    events = read_nmnist(nmnist / "1.bs2")
    window_us = 20_000
    bounds = window_bounds(events.t, 4, "fixed_duration", window_us=window_us)
    slack = events.duration_us + 1 - 4 * window_us
    start = events.t[0] + slack // 2
    assert bounds[0] == np.searchsorted(events.t, start)
    assert bounds[-1] == np.searchsorted(events.t, start + 4 * window_us)
    draws = {
        tuple(window_bounds(events.t, 4, "fixed_duration", window_us=window_us, rng=np.random.default_rng(s)))
        for s in range(5)
    }
    assert len(draws) > 1
    with pytest.raises(ValueError, match="window_us"):
        EventFileDataset(nmnist, "labels.txt", window="fixed_duration")


def test_without_a_labels_file_the_files_to_read_are_needed(nmnist):
    with pytest.raises(ValueError, match="labels_file is needed, unless files names the event files"):
        EventFileDataset(nmnist, None)
    assert len(EventFileDataset(nmnist, None, files=[nmnist / "1.bs2"])) == 1


def test_training_items_depend_only_on_seed_epoch_and_index(nmnist):
    def item(epoch: int, seed: int = 0) -> torch.Tensor:
        dataset = EventFileDataset(
            nmnist,
            "labels.txt",
            ClipSampling(num_frames=3, image_size=16, train=True, seed=seed, crop_scale=(0.3, 0.6)),
        )
        dataset.set_epoch(epoch)
        return dataset[5]["events"]

    assert torch.equal(item(0), item(0))
    assert len({item(epoch).numpy().tobytes() for epoch in range(4)}) > 1
    assert len({item(0, seed).numpy().tobytes() for seed in range(4)}) > 1


def test_other_formats_give_the_same_items(nmnist, tmp_path):
    events = read_nmnist(nmnist / "7.bs2")
    table = np.zeros(len(events), dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "i1")])
    table["t"], table["x"], table["y"], table["p"] = events.t, events.x, events.y, events.p > 0
    np.save(tmp_path / "seven.npy", table)
    with h5py.File(tmp_path / "seven_h5.h5", "w") as file:
        group = file.create_group("events")
        for name in "txyp":
            group[name] = table[name]
    shutil.copy(nmnist / "7.bs2", tmp_path / "seven_bs2.bs2")
    (tmp_path / "labels.txt").write_text("seven.npy\t1\nseven_h5\t1\nseven_bs2 1\n")
    dataset = EventFileDataset(tmp_path, "labels.txt", ClipSampling(num_frames=3, image_size=20), sensor_size=(34, 34))
    items = [dataset[i]["events"] for i in range(3)]
    assert torch.equal(items[0], items[1]) and torch.equal(items[0], items[2])


def test_class_names_from_classes_txt_or_sorted_names(tmp_path, nmnist):
    for sample in ("1", "2", "3"):
        shutil.copy(nmnist / f"{sample}.bs2", tmp_path / f"{sample}.bs2")
    (tmp_path / "labels.txt").write_text("# sample class\n1\tseven\n2 \t three\n\n3\tfive\n")
    assert [line.sample for line in read_event_labels(tmp_path / "labels.txt")] == ["1", "2", "3"]
    dataset = EventFileDataset(tmp_path, "labels.txt", ClipSampling(num_frames=2, image_size=8))
    assert dataset.class_names == ["five", "seven", "three"]
    assert [e.label for e in dataset.entries] == [1, 2, 0]
    passed = EventFileDataset(
        tmp_path, "labels.txt", ClipSampling(num_frames=2, image_size=8), classes=["three", "five", "seven"]
    )
    assert [e.label for e in passed.entries] == [2, 0, 1]
    (tmp_path / "classes.txt").write_text("three\nfive\n")
    with pytest.raises(DataError, match=r"labels.txt, line 2: class 'seven' of sample '1' is not one of"):
        EventFileDataset(tmp_path, "labels.txt")


def test_errors_name_the_file(tmp_path, nmnist):
    shutil.copy(nmnist / "1.bs2", tmp_path / "1.bs2")
    (tmp_path / "cut.bs2").write_bytes((nmnist / "2.bs2").read_bytes()[:-2])
    (tmp_path / "empty.bs2").write_bytes(b"")
    (tmp_path / "labels.txt").write_text("1\t3\ncut\t1\nempty\t2\nghost\t0\n")
    dataset = EventFileDataset(tmp_path, "labels.txt", ClipSampling(num_frames=2, image_size=8))
    for index, pattern in [(1, "cut.bs2: .* not a multiple of 5"), (2, "empty.bs2: the file is empty"), (3, "ghost")]:
        with pytest.raises(DataError, match=pattern):
            dataset[index]
    with pytest.raises(DataError, match=r"labels.txt, line 1: sample '1' has label 3, outside \[0, 3\)"):
        EventFileDataset(tmp_path, "labels.txt", num_classes=3)
    (tmp_path / "bad_labels.txt").write_text("1\t3\nlonely\n")
    with pytest.raises(DataError, match=r"bad_labels.txt, line 2: cannot parse 'lonely'"):
        EventFileDataset(tmp_path, "bad_labels.txt")

    report = check_dataset(tmp_path, progress=False)
    unreadable = sorted(f for f, _ in report.problems["unreadable_files"])
    assert unreadable == [str(tmp_path / "cut.bs2"), str(tmp_path / "empty.bs2")]
    assert [f for f, _ in report.problems["missing_samples"]] == [f"{tmp_path / 'labels.txt'}:4"]
    assert report.class_counts == {"labels": {0: 1, 1: 1, 2: 1, 3: 1}} and report.bad_clips == {"labels": 3}


def test_check_accepts_the_real_recordings(nmnist):
    report = check_dataset(nmnist, progress=False)
    assert report.ok, report.format()
    assert report.layouts == {str(nmnist / "labels.txt"): "events"}
    expected = labels_txt(nmnist)
    digits = list(expected.values())
    assert report.class_counts["labels"] == {d: digits.count(d) for d in sorted(set(digits))}


def test_predict_on_one_event_file_reads_it_as_training_does(nmnist, tmp_path):
    # An event-only model (data.layout events): `velora predict` on one N-MNIST file cuts it into
    # the same windows as the training dataset, so its scores equal the model's on that item.
    from conftest import make_tiny_config
    from conftest import predict_topk as predict
    from velora.data.factory import make_dataset
    from velora.model.adapter_file import save_adapters
    from velora.model.velora import VELoRA

    cfg = make_tiny_config(
        "model.num_classes=10",
        "data.layout=events",
        "data.modalities=[event]",
        "data.train_labels=labels.txt",
        "data.event_window=uniform",
        data={"root": str(nmnist)},
    )
    torch.manual_seed(0)
    model = VELoRA.from_config(cfg).eval()
    checkpoint = save_adapters(tmp_path / "event.safetensors", model, cfg, [str(d) for d in range(10)])
    top = predict(checkpoint, nmnist / "3.bs2", top_k=10)

    dataset = make_dataset(cfg, "train")
    index = [entry.sample for entry in dataset.entries].index("3")
    with torch.no_grad():
        probs = model(None, dataset[index]["events"][None]).logits.softmax(-1)[0]
    assert [name for name, _ in top] == [str(i) for i in probs.argsort(descending=True).tolist()]
    assert [p for _, p in top] == pytest.approx(probs.sort(descending=True).values.tolist(), abs=1e-6)

    with pytest.raises(DataError, match="trained on event files"):
        predict(checkpoint, nmnist)
    with pytest.raises(DataError, match="does not exist"):
        predict(checkpoint, tmp_path / "missing.bs2")
