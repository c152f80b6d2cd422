"""Contracts of the Event Stream reader (.es 2.x, DVS and ATIS), against faery 0.7.1.

- DVS files faery writes read back exactly what was written (faery's writer starts time at 0 and
  flips y to the format's bottom-left origin; the reader flips it back) and agree with faery's decoder,
  also with long gaps written as overflow bytes.
- ATIS files: change detections become polarity events, exposure measurements are dropped and
  counted, as faery does.
- Truncated or corrupt files raise DataError naming the file (and the byte offset); other stream
  types and versions raise DataError saying what the file holds.
"""

from __future__ import annotations

import re
from pathlib import Path

import faery
import numpy as np
import pytest

from faery_reference import (
    assert_same_events,
    faery_decode,
    random_events,
    write_with_faery,
)
from velora.errors import DataError
from velora.events.eventstream import read_es
from velora.events.readers import read_events

ATIS_DTYPE = np.dtype([("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("exposure", "?"), ("polarity", "?")])


def raises_naming(path: Path, match: str):
    return pytest.raises(DataError, match=re.escape(str(path)) + ".*" + match)


@pytest.mark.parametrize("duration_us", [1_000_000, 600_000_000], ids=["dense", "sparse: overflow bytes"])
def test_written_dvs_stream_reads_back_exactly_and_equals_faery(tmp_path, duration_us):
    events = random_events(20_000, 346, 260, duration_us=duration_us, t0=777)
    path = write_with_faery(tmp_path / "dvs.es", events.copy(), (346, 260))
    recording = read_es(path)
    assert (recording.stream_type, recording.version, recording.exposures) == ("DVS", (2, 0, 0), 0)
    assert_same_events(recording.events, faery_decode(path))
    events["t"] -= events["t"][0]  # Event Stream keeps no absolute time: faery writes t - t[0]
    assert_same_events(recording.events, events)
    assert (recording.events.width, recording.events.height) == (346, 260)
    assert_same_events(read_events(path), events)


def write_atis(path: Path, events: np.ndarray, size: tuple[int, int]) -> Path:
    """faery's low-level ATIS encoder; like faery's own DVS writer, y is flipped to the format's axis."""
    flipped = events.copy()
    flipped["y"] = size[1] - 1 - flipped["y"]
    with faery.es.Encoder(path, "atis", False, size) as encoder:
        encoder.write(flipped)
    return path


def test_atis_keeps_change_detections_and_counts_exposure_measurements(tmp_path):
    rng = np.random.default_rng(4)
    n = 10_000
    events = np.zeros(n, dtype=ATIS_DTYPE)
    events["t"] = np.sort(rng.integers(0, 5_000_000, n))
    events["x"], events["y"] = rng.integers(0, 304, n), rng.integers(0, 240, n)
    events["exposure"], events["polarity"] = rng.random(n) < 0.3, rng.random(n) < 0.5
    path = write_atis(tmp_path / "atis.es", events, (304, 240))
    recording = read_es(path)
    assert recording.stream_type == "ATIS" and recording.exposures == np.count_nonzero(events["exposure"])
    changes = events[~events["exposure"]]
    ours = recording.events
    assert len(ours) == len(changes)
    assert np.array_equal(ours.t, changes["t"].astype(np.int64)) and np.array_equal(ours.x, changes["x"])
    assert np.array_equal(ours.y, changes["y"]) and np.array_equal(ours.p > 0, changes["polarity"])
    assert_same_events(ours, faery_decode(path))


def test_cut_stream_raises_with_the_offset_of_the_partial_event(tmp_path):
    path = write_with_faery(tmp_path / "cut.es", random_events(100, 64, 48, 10_000), (64, 48))
    data = path.read_bytes()
    path.write_bytes(data[:-2])
    with raises_naming(path, rf"truncated: the event at byte {len(data) - 5} has 3 of its 5 bytes"):
        read_es(path)
    path.write_bytes(data[:14])
    with raises_naming(path, "truncated inside the Event Stream header"):
        read_es(path)


def test_event_outside_the_sensor_raises_with_its_byte_offset(tmp_path):
    path = write_with_faery(tmp_path / "bad.es", random_events(100, 64, 48, 10_000, seed=5), (64, 48))
    data = bytearray(path.read_bytes())
    data[16:18] = (10).to_bytes(2, "little")  # the header now claims a sensor 10 pixels wide
    path.write_bytes(bytes(data))
    with raises_naming(path, r"event at byte \d+ has x=\d+, y=\d+, outside the 10 x 48 sensor"):
        read_es(path)


@pytest.mark.parametrize(
    "header, problem",
    [
        (b"Event Stream\x02\x00\x00\x00", "generic events .type byte 0., which are not polarity events"),
        (b"Event Stream\x02\x00\x00\x04\x08\x00\x08\x00", "colour events"),
        (b"Event Stream\x01\x00\x00\x01\x08\x00\x08\x00", "version 1.0.0; this reader knows version 2.x"),
        (b"Event Stream\x02\x00\x00\x01\x00\x00\x08\x00", "sensor size 0 x 8 is not possible"),
        (b"Event Strean\x02\x00\x00\x01", "not an Event Stream file"),
    ],
)
def test_other_streams_and_corrupt_headers_raise_saying_what_the_file_holds(tmp_path, header, problem):
    path = tmp_path / "other.es"
    path.write_bytes(header + b"\x02\x01\x00\x01\x00")
    with raises_naming(path, problem):
        read_es(path)


def test_empty_stream_is_valid(tmp_path):
    path = tmp_path / "quiet.es"
    path.write_bytes(b"Event Stream\x02\x00\x00\x01\x08\x00\x06\x00" + b"\xff\xfe" * 3)
    events = read_es(path).events
    assert len(events) == 0 and (events.width, events.height) == (8, 6)
