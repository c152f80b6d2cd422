"""The event-only benchmarks' own layouts (DVS128 Gesture, N-Caltech101) and every event
representation, trained through `velora train` on small files written in those layouts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import TINY, make_tiny_config
from spec_writers import aedat31_file
from velora.cli import main
from velora.config import ConfigError, load_config
from velora.data.factory import make_dataset
from velora.data.gesture import GestureDataset
from velora.data.split import split_folders
from velora.errors import DataError
from velora.events.representations import RGB_REPRESENTATIONS, as_rgb

GESTURES = ("hand_clapping", "right_hand_wave", "left_hand_wave")


def gesture_events(rng, gesture: int, start: int, end: int, n: int = 400):
    """Events of one synthetic gesture on a 128 x 128 sensor: a blob in a class-dependent corner."""
    t = np.sort(rng.integers(start, end, n))
    cx, cy = (30 + 35 * gesture, 40 + 20 * gesture)
    x = np.clip(rng.normal(cx, 6, n).round(), 0, 127).astype(int)
    y = np.clip(rng.normal(cy, 6, n).round(), 0, 127).astype(int)
    return t, x, y, rng.integers(0, 2, n) * 2 - 1


def write_gesture_dataset(root, users=(1, 2, 3, 4, 5, 6)):
    """DVS128 Gesture's layout: one AEDAT 3.1 trial per user, its labels csv, the trial lists."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for user in users:
        name = f"user{user:02d}_fluorescent"
        columns, rows, clock = [[], [], [], []], ["class,startTime_usec,endTime_usec"], 1_000_000
        for _repeat in range(2):
            for gesture in range(len(GESTURES)):
                start, end = clock, clock + 200_000
                for column, values in zip(columns, gesture_events(rng, gesture, start, end)):
                    column.append(values)
                rows.append(f"{gesture + 1},{start},{end}")
                clock = end + 50_000
        t, x, y, p = (np.concatenate(c) for c in columns)
        order = np.argsort(t, kind="stable")
        (root / f"{name}.aedat").write_bytes(aedat31_file(t[order], x[order], y[order], p[order], "DVS128"))
        (root / f"{name}_labels.csv").write_text("\n".join(rows) + "\n")
    (root / "trials_to_train.txt").write_text("".join(f"user{u:02d}_fluorescent.aedat\n" for u in users[:4]))
    (root / "trials_to_test.txt").write_text("".join(f"user{u:02d}_fluorescent.aedat\n" for u in users[4:]))
    (root / "gesture_mapping.csv").write_text(
        "action,label\n" + "".join(f"{g},{i + 1}\n" for i, g in enumerate(GESTURES))
    )
    return root


def tiny_yaml(path, **data) -> str:
    raw = json.loads(json.dumps(TINY))
    raw["model"]["num_classes"] = data.pop("num_classes")
    raw["model"]["modalities"] = ["event"]
    raw["data"].update(data, modalities=["event"])
    raw["train"]["epochs"] = 2
    path.write_text(json.dumps(raw))  # JSON is YAML
    return str(path)


def test_gesture_samples_are_the_labelled_intervals_with_the_mapping_names(tmp_path):
    root = write_gesture_dataset(tmp_path / "DvsGesture")
    train = GestureDataset(root, "trials_to_train.txt")
    assert train.class_names == list(GESTURES)
    assert len(train) == 4 * 6 and [e.label for e in train.entries[:3]] == [0, 1, 2]
    item = train[4]
    assert item["events"].shape == (8, 3, 224, 224) and int(item["label"]) == 1
    (root / "user01_fluorescent_labels.csv").write_text("class,startTime_usec,endTime_usec\n1,5,3\n")
    with pytest.raises(DataError, match=r"user01_fluorescent_labels.csv, line 2: cannot parse"):
        GestureDataset(root, "trials_to_train.txt")


@pytest.mark.slow
def test_dvs128_gesture_trains_with_the_standard_split_and_a_split_validation(tmp_path, capsys):
    root = write_gesture_dataset(tmp_path / "DvsGesture")
    assert (
        main(
            [
                "split",
                str(root),
                "--train-labels",
                "trials_to_train.txt",
                "--test-labels",
                "trials_to_test.txt",
                "--val-fraction",
                "0.25",
            ]
        )
        == 0
    )
    assert (root / "val_label.txt").read_text().count(".aedat") == 1  # a whole trial of the four
    config = tiny_yaml(
        tmp_path / "gesture.yaml",
        root=str(root),
        layout="gesture",
        num_classes=3,
        train_labels="train_split_label.txt",
        test_labels="trials_to_test.txt",
        event_window="uniform",
    )
    assert main(["train", "--config", config, f"train.output_dir={tmp_path / 'run'}"]) == 0
    assert main(["eval", str(tmp_path / "run" / "best.safetensors")]) == 0
    report = json.loads((tmp_path / "run" / "eval_test.json").read_text())
    assert report["num_clips"] == 2 * 6 and report["modalities"] == ["event"]
    assert main(["check-data", "--config", config]) == 0
    shipped = load_config("dvs128_gesture")
    assert shipped.data.layout == "gesture" and shipped.model.num_classes == 11


def write_class_folders(root, classes=("airplanes", "anchor", "brain"), per_class=10):
    from test_readers import nmnist_bytes

    rng = np.random.default_rng(1)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            n = 300
            xs = np.clip(rng.normal(10 + 30 * k, 4, n).round(), 0, 99).astype(int)
            ys = np.clip(rng.normal(20 + 10 * k, 4, n).round(), 0, 79).astype(int)
            ts = np.sort(rng.integers(0, 300_000, n))
            events = [(int(x), int(y), int(rng.integers(0, 2)), int(t)) for x, y, t in zip(xs, ys, ts)]
            (root / name / f"image_{i + 1:04d}.bin").write_bytes(nmnist_bytes(*events))
    return root


def test_class_folders_get_a_deterministic_stratified_three_way_split(tmp_path):
    root = write_class_folders(tmp_path / "a")
    split_folders(root, val_fraction=0.1, test_fraction=0.2)
    lists = {s: (root / f"{s}_label.txt").read_text().splitlines()[1:] for s in ("train", "val", "test")}
    assert [len(lists[s]) for s in ("train", "val", "test")] == [21, 3, 6]
    for s, lines in lists.items():
        assert sorted({line.split("\t")[1] for line in lines}) == ["airplanes", "anchor", "brain"], s
    samples = [set(lines) for lines in lists.values()]
    assert not (samples[0] & samples[1] or samples[0] & samples[2] or samples[1] & samples[2])
    assert (root / "classes.txt").read_text().split() == ["airplanes", "anchor", "brain"]
    again = write_class_folders(tmp_path / "b")
    split_folders(again, val_fraction=0.1, test_fraction=0.2)
    assert all(
        (again / f"{s}_label.txt").read_text().replace(str(again), "")
        == (root / f"{s}_label.txt").read_text().replace(str(root), "")
        for s in ("train", "val", "test")
    )
    with pytest.raises(DataError, match="pass --force"):
        split_folders(root)


@pytest.mark.slow
@pytest.mark.parametrize("representation", RGB_REPRESENTATIONS)
def test_ncaltech_layout_trains_with_every_representation(tmp_path, representation):
    root = write_class_folders(tmp_path / "N-Caltech101")
    assert main(["split", str(root), "--from-folders"]) == 0
    config = tiny_yaml(
        tmp_path / "caltech.yaml",
        root=str(root),
        layout="events",
        num_classes=3,
        sensor_size=[100, 80],
        representation=representation,
    )
    assert main(["train", "--config", config, f"train.output_dir={tmp_path / 'run'}"]) == 0
    cfg = load_config(config)
    item = make_dataset(cfg, "val")[0]["events"]
    assert item.shape == (3, 3, 32, 32) and item.dtype == torch.uint8
    saved = json.loads(json.dumps(__import__("velora").load(tmp_path / "run").config.data.representation))
    assert saved == representation, "the representation travels with the checkpoint"


def test_representations_are_three_channel_images_that_see_the_events():
    rng = np.random.default_rng(0)
    t = np.sort(rng.integers(0, 10_000, 300))
    x, y = rng.integers(10, 20, 300), rng.integers(5, 10, 300)
    p = rng.integers(0, 2, 300) * 2 - 1
    for representation in RGB_REPRESENTATIONS:
        image = as_rgb(representation, t, x, y, p, 16, 32)
        quiet = as_rgb(representation, t[:0], x[:0], y[:0], p[:0], 16, 32)
        assert image.shape == (16, 32, 3) and image.dtype == np.uint8, representation
        inside, outside = image[5:10, 10:20], image[:5]
        assert not np.array_equal(inside, quiet[5:10, 10:20]), representation
        assert np.array_equal(outside, quiet[:5]), f"{representation}: pixels without events look like no events"


def test_a_representation_needs_a_layout_that_reads_events():
    with pytest.raises(ConfigError, match="reads event images already drawn"):
        make_tiny_config(data={"representation": "voxel_grid"})
    make_tiny_config(data={"representation": "voxel_grid", "layout": "recordings"})


def test_convert_and_predict_take_a_prophesee_recording(tmp_path, real_data_dir, tiny_run):
    """A .raw file has no APS frames: convert writes its event images only; an RGB + event model
    predicts on it through its missing-modality path, and says so."""
    import shutil

    import velora

    src = tmp_path / "src" / "street"
    src.mkdir(parents=True)
    shutil.copy(real_data_dir / "prophesee" / "gen3_evt2.raw", src / "gen3.raw")
    shutil.copy(real_data_dir / "davis346" / "street_davis346.aedat4", src / "davis.aedat4")
    out = tmp_path / "frames"
    assert (
        main(
            ["convert", "recordings", str(tmp_path / "src"), str(out), "--image-size", "32", "--event-window-ms", "25"]
        )
        == 0
    )
    assert sorted(p.name for p in (out / "street" / "gen3").iterdir() if not p.name.startswith(".")) == ["gen3_dvs"]
    assert len(list((out / "street" / "gen3" / "gen3_dvs").glob("*.png"))) == 4  # 0.1 s in 25 ms windows
    assert sorted(p.name for p in (out / "street" / "davis").iterdir() if not p.name.startswith(".")) == [
        "davis_aps",
        "davis_dvs",
    ]
    assert "street/gen3 4 0" in (out / "all_label.txt").read_text()

    recognizer = velora.load(tiny_run)
    with pytest.warns(UserWarning, match="input without RGB"):
        prediction = recognizer.predict(real_data_dir / "prophesee" / "gen3_evt2.raw")
    assert len(prediction.topk) == 5 and prediction.label in recognizer.class_names
