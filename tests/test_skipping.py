"""Contracts of the skip-bad-clips policy: with DataLoader workers, every bad clip is recorded (in
files, since worker memory is lost) and reported once with its file; training batches keep their
size; evaluation drops bad clips instead of counting a replacement twice."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch.utils.data import DataLoader

from velora.data.clips import ClipDataset
from velora.data.sampling import ClipSampling
from velora.data.skipping import SkipBadClips, clear_skip_log, collate_skipping, read_skip_report
from velora.errors import DataError

NUM_CLIPS = 10


@pytest.fixture
def bad_dataset(tmp_path) -> tuple[Path, dict[int, str]]:
    """10 clips of 3 frames; clips 2, 3 and 7 are bad. Returns root and index -> the file to name."""
    lines = []
    for index in range(NUM_CLIPS):
        sample = f"cls{index % 2}/clip{index}"
        for suffix in ("_aps", "_dvs"):
            folder = tmp_path / sample / f"clip{index}{suffix}"
            folder.mkdir(parents=True)
            for frame in range(3):
                pixels = np.random.default_rng(frame).integers(0, 256, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{frame:04d}.png")
        lines.append(f"{sample} 3 {index % 2}")
    (tmp_path / "train_label.txt").write_text("\n".join(lines) + "\n")

    truncated = tmp_path / "cls0/clip2/clip2_aps/0001.png"
    truncated.write_bytes(truncated.read_bytes()[:60])
    odd_size = tmp_path / "cls1/clip3/clip3_dvs/0002.png"
    Image.new("RGB", (10, 8)).save(odd_size)
    not_png = tmp_path / "cls1/clip7/clip7_dvs/0000.png"
    not_png.write_text("text")
    return tmp_path, {2: str(truncated), 3: str(odd_size), 7: str(not_png)}


def make(root: Path) -> ClipDataset:
    return ClipDataset(root, "train_label.txt", ClipSampling(num_frames=3, image_size=8, train=True))


def test_training_replaces_bad_clips_and_reports_them_across_workers(bad_dataset, tmp_path_factory):
    root, bad = bad_dataset
    log_dir = tmp_path_factory.mktemp("skips")
    dataset = SkipBadClips(make(root), log_dir, name="train")
    loader = DataLoader(dataset, batch_size=2, num_workers=2)
    seen = []
    for batch in loader:
        assert batch["rgb"].shape == (2, 3, 3, 8, 8)  # replacements keep every batch full
        seen += batch["index"].tolist()
    assert not set(seen) & set(bad)
    # Deterministic replacement: the next good clip (2 -> 4, 3 -> 4, 7 -> 8).
    assert seen == [0, 1, 4, 4, 4, 5, 6, 8, 8, 9]
    assert len(list(log_dir.glob("skipped-train-*.tsv"))) >= 1

    report = read_skip_report(log_dir)
    assert report.count == len(bad) and sorted(c.index for c in report.clips) == sorted(bad)
    for clip in report.clips:
        assert bad[clip.index] in clip.message and clip.sample == f"cls{clip.index % 2}/clip{clip.index}"
    assert report.skips == 4  # clip 3 was read twice: as itself and as clip 2's replacement
    text = report.format()
    assert text.startswith("3 bad clip(s) skipped") and all(path in text for path in bad.values())

    for _ in DataLoader(dataset, batch_size=2, num_workers=2):  # a second epoch: same clips, counted once
        pass
    assert read_skip_report(log_dir, "train").count == 3 and read_skip_report(log_dir, "val").count == 0
    clear_skip_log(log_dir)
    assert read_skip_report(log_dir).format() == "no clips were skipped"


def test_evaluation_drops_bad_clips(bad_dataset, tmp_path_factory):
    root, bad = bad_dataset
    log_dir = tmp_path_factory.mktemp("skips")
    dataset = SkipBadClips(make(root), log_dir, name="val", replace=False)
    seen = []
    for batch in DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=collate_skipping):
        seen += batch["index"].tolist()
    assert seen == [i for i in range(NUM_CLIPS) if i not in bad]
    assert read_skip_report(log_dir, "val").count == 3
    assert collate_skipping([None, None]) is None


def test_wrapper_forwards_the_dataset_and_pickles(bad_dataset, tmp_path):
    root, _ = bad_dataset
    dataset = SkipBadClips(make(root), tmp_path / "skips")
    dataset.set_epoch(3)
    assert dataset.dataset.epoch == 3 and dataset.class_names == ["cls0", "cls1"] and len(dataset) == NUM_CLIPS
    copy = pickle.loads(pickle.dumps(dataset))
    assert copy.epoch == 3 and copy[0]["index"] == 0


def test_many_bad_clips_in_a_row_stop_the_run(bad_dataset, tmp_path):
    root, _ = bad_dataset
    dataset = SkipBadClips(make(root), tmp_path / "skips", max_consecutive=1)
    with pytest.raises(DataError, match="are all bad"):
        dataset[2]
    with pytest.raises(DataError, match=r"cannot read frame .*clip2_aps/0001.png"):
        make(root)[2]  # without the wrapper, the default: the error names the file
