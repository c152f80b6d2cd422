"""Contracts of the dataset check: every planted problem is listed with its file, a clean dataset is
ok with the right class counts, and a HARDVS-layout dataset reads through ClipDataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from velora.data.check import check_dataset
from velora.data.check_report import PROBLEM_KINDS
from velora.data.clips import ClipDataset
from velora.data.sampling import ClipSampling
from velora.errors import DataError

SIZE = (12, 8)  # (width, height) of the test PNGs
CLASSES = ("cls_a", "cls_b", "cls_c")


def write_clip(root: Path, sample: str, n_rgb: int, n_event: int | None = None, name_width: int = 4) -> Path:
    clip_dir = root / sample
    for count, suffix in ((n_rgb, "_aps"), (n_rgb if n_event is None else n_event, "_dvs")):
        folder = clip_dir / f"{clip_dir.name}{suffix}"
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(count)
        for i in range(count):
            # Noise: the pixel data outweighs the PNG header, so a half-length file keeps its header.
            pixels = rng.integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:0{name_width}d}.png")
    return clip_dir


def write_split(root: Path, name: str, lines: list[str]) -> Path:
    path = root / name
    path.write_text("# sample num_frames label\n" + "\n".join(lines) + "\n")
    return path


def clean_dataset(root: Path) -> Path:
    """3 classes; train 2 clips per class, val 1, test 1 (classes b and c only)."""
    splits = {"train": [], "val": [], "test": []}
    for label, class_dir in enumerate(CLASSES):
        for split, count in (("train", 2), ("val", 1), ("test", 0 if label == 0 else 1)):
            for k in range(count):
                sample = f"{class_dir}/{split}{k}"
                write_clip(root, sample, 4)
                splits[split].append(f"{sample} 4 {label}")
    for split, lines in splits.items():
        write_split(root, f"{split}_label.txt", lines)
    return root


def test_clean_dataset_is_ok_with_class_counts(tmp_path):
    report = check_dataset(clean_dataset(tmp_path), num_classes=3, progress=False)
    assert report.ok, report.format()
    assert report.num_problems == 0
    assert report.class_names == list(CLASSES)
    assert report.clip_counts == {"train": 6, "val": 3, "test": 2}
    assert report.class_counts == {"train": {0: 2, 1: 2, 2: 2}, "val": {0: 1, 1: 1, 2: 1}, "test": {1: 1, 2: 1}}
    # A class without clips in a split is a warning, not a problem.
    assert any(file == "test" and "cls_a" in message for file, message in report.warnings)
    text = report.format()
    assert "OK" in text and "cls_b" in text and "test_label.txt: frames layout, 2 clips" in text


def plant_problems(root: Path) -> dict[str, list[str]]:
    """A dataset with one of each problem; returns kind -> the files (substrings) it must name."""
    lines = []
    for k in range(7):
        write_clip(root, f"cls_a/c{k}", 4)
        lines.append(f"cls_a/c{k} 4 0")
    write_clip(root, "cls_b/ok", 4)
    lines.append("cls_b/ok 4 1")

    truncated = root / "cls_a/c0/c0_aps/0002.png"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    text_png = root / "cls_a/c1/c1_dvs/0001.png"
    text_png.write_text("not a png")
    zero_png = root / "cls_a/c1/c1_aps/0003.png"
    zero_png.write_bytes(b"")
    empty_folder = root / "cls_a/c2/c2_dvs"
    for frame in empty_folder.iterdir():
        frame.unlink()
    missing_dvs = root / "cls_a/c3/c3_dvs"
    for frame in missing_dvs.iterdir():
        frame.unlink()
    missing_dvs.rmdir()
    odd_size = root / "cls_a/c4/c4_aps/0003.png"
    Image.new("RGB", (SIZE[0] + 4, SIZE[1])).save(odd_size)
    (root / "cls_a/c5/c5_dvs/0003.png").unlink()  # 4 RGB frames, 3 event frames
    bad_name = root / "cls_a/c6/c6_aps/frame.png"
    Image.new("RGB", SIZE).save(bad_name)
    write_clip(root, "cls_b/short", 2)
    lines += [
        "cls_b/short 2 1",
        "cls_b/ghost 4 1",  # line 11 (after the header): points nowhere
        "cls_b/ok four 1",  # line 12: malformed
        "cls_b/ok 4 7",  # line 13: label out of range
    ]
    label_file = write_split(root, "train_label.txt", lines)
    return {
        "unreadable_files": [str(truncated), str(text_png), str(zero_png)],
        "empty_folders": [str(empty_folder)],
        "missing_folders": [str(missing_dvs)],
        "size_mismatches": [str(odd_size)],
        "count_mismatches": [str(root / "cls_a/c5")],
        "bad_frame_names": [str(bad_name)],
        "short_clips": [str(root / "cls_b/short")],
        "missing_samples": [f"{label_file}:11"],
        "malformed_lines": [f"{label_file}:12"],
        "bad_labels": [f"{label_file}:13"],
    }


def test_every_planted_problem_is_listed_with_its_file(tmp_path):
    planted = plant_problems(tmp_path)
    report = check_dataset(tmp_path, num_classes=3, min_frames=3, progress=False)
    assert not report.ok
    for kind in PROBLEM_KINDS:
        files = sorted(file for file, _ in report.problems[kind])
        assert files == sorted(planted.get(kind, [])), (kind, report.problems[kind])
    messages = {file: message for found in report.problems.values() for file, message in found}
    assert "empty file" in messages[planted["unreadable_files"][2]]
    assert "12x8" in messages[planted["size_mismatches"][0]] and "16x8" in messages[planted["size_mismatches"][0]]
    found = "RGB every frame (0 to 3; 4 frames), events every frame (0 to 2; 3 frames)"
    assert found in messages[planted["count_mismatches"][0]]
    assert "label 7, outside [0, 3)" in messages[planted["bad_labels"][0]]
    assert "ghost" in messages[planted["missing_samples"][0]]
    text = report.format()
    assert "FAILED: 12 problem(s)" in text
    assert all(file in text for files in planted.values() for file in files)
    # c0..c6, short, ghost, malformed and out-of-range lines are bad; cls_b/ok's valid line is not.
    assert report.bad_clips == {"train": 11}
    with pytest.raises(DataError, match="the dataset check found problems"):
        report.raise_for_problems()


def test_fast_mode_reads_headers_only(tmp_path):
    planted = plant_problems(tmp_path)
    report = check_dataset(tmp_path, num_classes=3, min_frames=3, decode_images=False, progress=False, workers=2)
    unreadable = sorted(file for file, _ in report.problems["unreadable_files"])
    # The truncated PNG has an intact header: only a full decode finds it.
    assert unreadable == sorted(planted["unreadable_files"][1:])
    assert [file for file, _ in report.problems["size_mismatches"]] == planted["size_mismatches"]


def test_min_policy_makes_count_mismatch_a_warning(tmp_path):
    clean_dataset(tmp_path)
    (tmp_path / "cls_b/train0/train0_dvs/0003.png").unlink()
    strict = check_dataset(tmp_path, progress=False)
    assert [file for file, _ in strict.problems["count_mismatches"]] == [str(tmp_path / "cls_b/train0")]
    lenient = check_dataset(tmp_path, progress=False, frame_count_policy="min")
    assert lenient.ok and any("1 RGB frame has no partner (3); left out" in m for _, m in lenient.warnings)


def test_missing_label_files_and_root(tmp_path):
    report = check_dataset(tmp_path, progress=False)
    assert not report.ok and report.problems["label_files"][0][0] == str(tmp_path)
    report = check_dataset(tmp_path, ["nowhere_label.txt"], progress=False)
    assert report.problems["label_files"] == [("nowhere_label.txt", "label file does not exist")]
    assert not check_dataset(tmp_path / "absent", progress=False).ok


def test_hardvs_layout_reads_through_clip_dataset(tmp_path):
    """HARDVS: action_001/dvSave-... samples, {:08d}.png frames from 0, <sample>_dvs -> <sample>_aps."""
    splits = {"train_label.txt": [], "val_label.txt": [], "test_label.txt": []}
    for label in range(3):
        for k, name in enumerate(splits):
            sample = f"action_{label + 1:03d}/dvSave-2021_10_15_19_18_{10 * label + k:02d}"
            write_clip(tmp_path, sample, 5 + k, name_width=8)
            splits[name].append(f"{sample} {5 + k} {label}")
    for name, lines in splits.items():
        write_split(tmp_path, name, lines)
    assert (tmp_path / "action_002/dvSave-2021_10_15_19_18_10/dvSave-2021_10_15_19_18_10_aps/00000000.png").is_file()

    report = check_dataset(tmp_path, num_classes=3, progress=False)
    assert report.ok, report.format()
    assert report.class_names == ["action_001", "action_002", "action_003"]
    assert report.clip_counts == {"train": 3, "val": 3, "test": 3}

    for name in splits:
        dataset = ClipDataset(tmp_path, name, ClipSampling(num_frames=4, image_size=8), num_classes=3)
        assert dataset.class_names == ["action_001", "action_002", "action_003"]
        item = dataset[2]
        assert item["rgb"].shape == item["events"].shape == (4, 3, 8, 8)
        assert int(item["label"]) == 2
    # Frames sort by number: 00000000.png .. 00000006.png of the test clip, segment centres.
    frames = ClipDataset(tmp_path, "test_label.txt", ClipSampling(num_frames=7, image_size=8)).frame_folders(0)["rgb"]
    assert frames.names == tuple(f"{i:08d}.png" for i in range(7))


def test_check_data_with_a_config_reads_the_dataset_as_training_does(tmp_path, capsys):
    """`velora check-data --config`: the layout, label files, modalities and class count come from the
    config (and its overrides), the same datasets training builds; a folder and --config conflict."""
    from velora.cli import main

    planted = plant_problems(tmp_path)
    config = tmp_path / "cfg.yaml"
    config.write_text("model: {num_classes: 3}\ndata: {min_frames: 3}\n")
    assert main(["check-data", "--config", str(config), f"data.root={tmp_path}", "--splits", "train,val"]) == 1
    out = capsys.readouterr().out
    assert all(file in out for files in planted.values() for file in files)
    assert "FAILED: 12 problem(s)" in out
    # Only the RGB frames: the event-side problems are not this config's.
    assert main(["check-data", "--config", str(config), f"data.root={tmp_path}", "data.modalities=[rgb]"]) == 1
    out = capsys.readouterr().out
    assert planted["missing_folders"][0] not in out and planted["size_mismatches"][0] in out
    assert main(["check-data", str(tmp_path), "--config", str(config)]) == 2
    assert "not both" in capsys.readouterr().err


def test_training_stops_before_the_first_step_on_a_recording_that_is_not_aedat4(tmp_path, real_data_dir):
    """The pre-training check reads the same datasets as training, raw recordings included."""
    from conftest import make_tiny_config
    from velora.training.run import train

    for split in ("train", "val"):
        for name in ("a", "b"):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            (folder / "street.aedat4").write_bytes((real_data_dir / "davis346" / "street_davis346.aedat4").read_bytes())
    broken = tmp_path / "train" / "b" / "broken.aedat4"
    broken.write_bytes(b"this is not a recording")
    cfg = make_tiny_config(
        data={"layout": "recordings", "root": str(tmp_path)},
        model={"num_classes": 2},
        train={"output_dir": str(tmp_path / "run")},
    )
    with pytest.raises(DataError, match="the dataset check found problems") as error:
        train(cfg)
    assert str(broken) in str(error.value) and "not an AEDAT 4.0 recording" in str(error.value)
    assert not (tmp_path / "run" / "last.safetensors").exists()
