"""The data paths through `velora train`: event-only files, the pre-training check, the skip policy."""

from __future__ import annotations

import shutil

import pytest

from conftest import REAL_DATA, make_tiny_config
from velora.cli import main
from velora.data.skipping import read_skip_report
from velora.errors import DataError
from velora.training.run import train


@pytest.mark.slow
def test_event_only_training_on_real_nmnist_recordings(tmp_path):
    """N-MNIST .bs2 files with a labels file train through the same pipeline, events only."""
    nmnist = REAL_DATA / "nmnist"
    assert nmnist.is_dir(), f"{nmnist} missing: restore tests/data/real with git"
    cfg = make_tiny_config(
        model={"num_classes": 10},
        data={
            "root": str(nmnist),
            "layout": "events",
            "modalities": ["event"],
            "train_labels": "labels.txt",
            "val_labels": "labels.txt",
            "test_labels": "labels.txt",
        },
        train={"output_dir": str(tmp_path / "run")},
    )
    result = train(cfg)
    assert (tmp_path / "run" / "best.safetensors").is_file()
    assert 0.0 <= result.best_val_top1 <= 1.0


def test_event_layout_requires_event_modality():
    with pytest.raises(ValueError, match="data.modalities=\\[event\\]"):
        make_tiny_config(data={"layout": "events", "modalities": ["rgb", "event"]})


def _copy(tiny_dataset, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    return root


def test_a_missing_folder_stops_training_before_the_first_step(tiny_dataset, tmp_path):
    root = _copy(tiny_dataset, tmp_path)
    first = (root / "train_label.txt").read_text().split()[0]
    shutil.rmtree(root / first / f"{first.split('/')[1]}_dvs")
    cfg = make_tiny_config(data={"root": str(root)}, train={"output_dir": str(tmp_path / "run")})
    with pytest.raises(DataError, match="_dvs"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()  # stopped before any step


@pytest.mark.slow
def test_skip_policy_trains_on_and_reports_the_bad_clip(tiny_dataset, tmp_path, capsys):
    root = _copy(tiny_dataset, tmp_path)
    first = (root / "train_label.txt").read_text().split()[0]
    bad = root / first / f"{first.split('/')[1]}_aps" / "0000.png"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated: only a full decode finds it
    cfg = make_tiny_config(
        data={"root": str(root), "bad_clips": "skip", "crop_scale": [1.0, 1.0]},
        train={"output_dir": str(tmp_path / "run")},
    )
    train(cfg)
    assert (tmp_path / "run" / "best.safetensors").is_file()
    report = read_skip_report(tmp_path / "run" / "skipped")
    assert report.count == 1 and first in report.format()
    assert "skipped" in capsys.readouterr().out


def test_check_data_command_exit_codes(tiny_dataset, tmp_path, capsys):
    assert main(["check-data", str(tiny_dataset)]) == 0
    root = _copy(tiny_dataset, tmp_path)
    first = (root / "train_label.txt").read_text().split()[0]
    (root / first / f"{first.split('/')[1]}_aps" / "0001.png").write_text("not a png")
    assert main(["check-data", str(root)]) == 1
    assert "0001.png" in capsys.readouterr().out


@pytest.mark.slow
def test_convert_recordings_then_pack_then_train_from_packed(tiny_dataset, tmp_path, capsys):
    """The whole real-data path through the CLI: raw .aedat4 -> frame folders; dataset -> packed -> training."""
    recording = REAL_DATA / "davis346" / "street_davis346.aedat4"
    assert recording.is_file(), f"{recording} missing: restore tests/data/real with git"
    (tmp_path / "raw" / "street").mkdir(parents=True)
    shutil.copy(recording, tmp_path / "raw" / "street" / "clip.aedat4")
    assert main(["convert", "recordings", str(tmp_path / "raw"), str(tmp_path / "frames"), "--image-size", "32"]) == 0
    assert len(list((tmp_path / "frames" / "street" / "clip" / "clip_dvs").glob("*.png"))) == 3  # 4 APS frames

    packed = tmp_path / "packed"
    overrides = [f"data.root={tiny_dataset}", "model.image_size=32"]
    assert main(["convert", "packed", str(packed), "--config", "demo", "--set", *overrides, "--verify"]) == 0
    assert "verified" in capsys.readouterr().out
    cfg = make_tiny_config(
        data={"root": str(tiny_dataset), "format": "packed", "packed_root": str(packed)},
        train={"output_dir": str(tmp_path / "run")},
    )
    train(cfg)
    assert (tmp_path / "run" / "best.safetensors").is_file()


def test_packed_format_needs_its_folder():
    with pytest.raises(ValueError, match="data.packed_root"):
        make_tiny_config(data={"format": "packed"})


def test_training_directly_on_raw_recordings(tmp_path):
    """data.layout=recordings: <root>/<split>/<class>/<recording>.aedat4, APS frames + event images."""
    recording = REAL_DATA / "davis346" / "street_davis346.aedat4"
    assert recording.is_file(), f"{recording} missing: restore tests/data/real with git"
    for split in ("train", "val"):
        for label in ("cars", "street"):
            (tmp_path / "raw" / split / label).mkdir(parents=True)
            shutil.copy(recording, tmp_path / "raw" / split / label / "a.aedat4")
    cfg = make_tiny_config(
        model={"num_classes": 2},
        data={"root": str(tmp_path / "raw"), "layout": "recordings"},
        train={"output_dir": str(tmp_path / "run"), "batch_size": 2},
    )
    result = train(cfg)
    assert (tmp_path / "run" / "best.safetensors").is_file() and result.best_epoch == 0
