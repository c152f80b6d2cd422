"""Contracts of the raw-recording converter (velora.data.convert), on copies of the real DAVIS346
recording.

- A recording with N APS frames becomes N - 1 samples, as many APS PNGs as event PNGs: sample j is
  APS frame j + 1, losslessly, and the event image of the events in [t_j, t_j+1).
- The output is the PokerEvent layout with classes.txt and all_label.txt, readable by ClipDataset.
- A rerun skips done recordings; a recording folder without its done marker is converted again.
- A corrupt recording stops the run with a DataError naming it; with skip_bad=True it is reported
  and left out while the good one is converted, and finished work is never lost.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from velora.data.clips import ClipDataset
from velora.data.convert import DONE_MARKER, LABEL_FILE, convert_recordings
from velora.data.labels import read_label_file
from velora.data.sampling import ClipSampling
from velora.errors import DataError
from velora.events.aedat4 import read_aedat4
from velora.events.render import event_image


@pytest.fixture
def raw_root(real_data_dir, tmp_path):
    """<tmp>/raw/street/<two copies of the real recording>."""
    street = real_data_dir / "davis346" / "street_davis346.aedat4"
    root = tmp_path / "raw"
    (root / "street").mkdir(parents=True)
    for name in ("take1", "take2"):
        shutil.copy2(street, root / "street" / f"{name}.aedat4")
    return root


def png(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def test_recording_becomes_n_minus_1_aps_and_event_frames(raw_root, tmp_path):
    out_root = tmp_path / "frames"
    stats = convert_recordings(raw_root, out_root, progress=False)
    recording = read_aedat4(raw_root / "street" / "take1.aedat4")
    n = len(recording.aps_frames) - 1  # 4 APS frames -> 3 samples
    assert (stats.recordings, stats.frames, stats.events) == (2, 2 * n, 2 * len(recording.events))
    assert stats.events_per_s == pytest.approx(stats.events / stats.seconds)
    assert stats.frames_per_s == pytest.approx(stats.frames / stats.seconds)

    sample = out_root / "street" / "take1"
    names = [f"{j:04d}.png" for j in range(n)]
    assert sorted(p.name for p in (sample / "take1_aps").iterdir()) == names
    assert sorted(p.name for p in (sample / "take1_dvs").iterdir()) == names
    events, t = recording.events, recording.frame_timestamps_us
    for j, name in enumerate(names):
        assert np.array_equal(png(sample / "take1_aps" / name), recording.aps_frames[j + 1])
        window = (events.t >= t[j]) & (events.t < t[j + 1])
        assert window.any()
        expected = event_image(events.x[window], events.y[window], events.p[window], events.height, events.width)
        assert np.array_equal(png(sample / "take1_dvs" / name), expected)

    assert (out_root / "classes.txt").read_text() == "street\n"
    entries = read_label_file(out_root / LABEL_FILE)
    assert [(e.sample, e.num_frames, e.label) for e in entries] == [("street/take1", n, 0), ("street/take2", n, 0)]
    item = ClipDataset(out_root, LABEL_FILE, ClipSampling(num_frames=4, image_size=32))[1]
    assert item["rgb"].shape == item["events"].shape == (4, 3, 32, 32)


def test_image_size_resizes_both_modalities(raw_root, tmp_path):
    convert_recordings(raw_root, tmp_path / "frames", image_size=32, progress=False)
    for folder in ("take2_aps", "take2_dvs"):
        assert png(tmp_path / "frames" / "street" / "take2" / folder / "0002.png").shape[:2] == (32, 32)


def test_rerun_skips_done_recordings_and_redoes_partial_ones(raw_root, tmp_path):
    out_root = tmp_path / "frames"
    convert_recordings(raw_root, out_root, progress=False)
    done_png = out_root / "street" / "take1" / "take1_aps" / "0000.png"
    done_mtime = done_png.stat().st_mtime_ns
    # take2 as a run killed while writing it leaves it: some PNGs, no marker.
    partial = out_root / "street" / "take2"
    (partial / DONE_MARKER).unlink()
    (partial / "take2_dvs" / "0002.png").unlink()
    (partial / "take2_dvs" / "0007.png").write_bytes(b"half a png")

    stats = convert_recordings(raw_root, out_root, progress=False)
    assert (stats.recordings, stats.skipped) == (1, 1)
    assert done_png.stat().st_mtime_ns == done_mtime
    assert sorted(p.name for p in (partial / "take2_dvs").iterdir()) == ["0000.png", "0001.png", "0002.png"]
    assert (partial / DONE_MARKER).is_file()
    assert len(read_label_file(out_root / LABEL_FILE)) == 2


def test_corrupt_recording_stops_or_is_skipped_and_reported(raw_root, tmp_path):
    broken = raw_root / "tunnel" / "broken.aedat4"
    broken.parent.mkdir()
    broken.write_bytes((raw_root / "street" / "take1.aedat4").read_bytes()[:50_000])
    out_root = tmp_path / "frames"

    with pytest.raises(DataError, match="skip_bad") as caught:
        convert_recordings(raw_root, out_root, progress=False)
    assert str(broken) in str(caught.value)
    assert (out_root / "street" / "take2" / DONE_MARKER).is_file()  # converted before the stop: kept

    stats = convert_recordings(raw_root, out_root, skip_bad=True, progress=False)
    assert (stats.recordings, stats.skipped) == (0, 2)
    assert [path for path, _ in stats.failures] == [broken]
    assert "truncated" in stats.failures[0][1]
    assert not (out_root / "tunnel" / "broken").exists()
    # Labels follow the class folders, so fixing the file later does not renumber classes.
    assert (out_root / "classes.txt").read_text() == "street\ntunnel\n"
    assert [e.sample for e in read_label_file(out_root / LABEL_FILE)] == ["street/take1", "street/take2"]
