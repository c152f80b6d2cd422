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

from conftest import columns
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


# --- hand-made files: each field of the format at its limits --------------------------------------


def es_file(path: Path, body: bytes, stream_type: int = 1, size=(8, 6), version=(2, 0, 0)) -> Path:
    """An Event Stream file written byte by byte from the specification (not by faery)."""
    header = b"Event Stream" + bytes(version) + bytes([stream_type])
    path.write_bytes(header + size[0].to_bytes(2, "little") + size[1].to_bytes(2, "little") + body)
    return path


def dvs_event(dt: int, x: int, y_file: int, increase: bool) -> bytes:
    """One DVS event: byte 0 = dt << 1 | is_increase, then x and y (y counted from the bottom)."""
    return bytes([dt << 1 | increase]) + x.to_bytes(2, "little") + y_file.to_bytes(2, "little")


def atis_event(dt: int, x: int, y_file: int, polarity: bool, exposure: bool = False) -> bytes:
    """One ATIS event: byte 0 = dt << 2 | polarity << 1 | is_tc, then x and y (from the bottom)."""
    return bytes([dt << 2 | polarity << 1 | exposure]) + x.to_bytes(2, "little") + y_file.to_bytes(2, "little")


def test_dvs_reset_bytes_are_skipped_one_byte_each_and_overflow_adds_127_us(tmp_path):
    body = dvs_event(5, 1, 0, True) + b"\xfe" + dvs_event(3, 7, 5, False) + b"\xff\xfe\xff" + dvs_event(0, 0, 2, True)
    recording = read_es(es_file(tmp_path / "dvs.es", body))
    assert columns(recording.events) == [(5, 1, 5, 1), (8, 7, 0, -1), (8 + 254, 0, 3, 1)]


def test_atis_rows_and_columns_above_255_and_overflow_bytes(tmp_path):
    size = (1280, 720)
    body = (
        atis_event(2, 1279, 719, True)
        + atis_event(1, 300, 600, False, exposure=True)
        + bytes([0xFC | 2])  # overflow: 2 x 63 us
        + atis_event(4, 256, 256, False)
        + bytes([0xFC])  # nn = 0: a reset, no time
        + atis_event(0, 0, 0, True)
    )
    recording = read_es(es_file(tmp_path / "atis.es", body, stream_type=2, size=size))
    assert recording.exposures == 1 and recording.stream_type == "ATIS"
    assert columns(recording.events) == [(2, 1279, 0, 1), (3 + 126 + 4, 256, 463, -1), (133, 0, 719, 1)]
    assert (recording.events.width, recording.events.height) == size


def test_dvs_coordinates_above_255_read_whole(tmp_path):
    recording = read_es(es_file(tmp_path / "dvs.es", dvs_event(1, 1000, 700, True), size=(1280, 720)))
    assert columns(recording.events) == [(1, 1000, 19, 1)]


@pytest.mark.parametrize("stream_type, event", [(1, dvs_event), (2, atis_event)], ids=["DVS", "ATIS"])
@pytest.mark.parametrize("x, y", [(8, 0), (0, 6), (8, 6), (300, 2), (2, 300)])
def test_an_event_on_or_past_the_sensor_edge_is_refused_with_its_coordinates(tmp_path, stream_type, event, x, y):
    body = event(1, 7, 5, True) + event(1, x, y, True)
    path = es_file(tmp_path / "edge.es", body, stream_type=stream_type, size=(8, 6))
    message = f"{path}: the event at byte 25 has x={x}, y={y}, outside the 8 x 6 sensor; the file is corrupt."
    with pytest.raises(DataError) as caught:
        read_es(path)
    assert str(caught.value) == message


@pytest.mark.parametrize("stream_type, event", [(1, dvs_event), (2, atis_event)], ids=["DVS", "ATIS"])
def test_a_stream_cut_inside_its_last_event_is_refused_with_the_offset(tmp_path, stream_type, event):
    path = es_file(tmp_path / "cut.es", event(1, 7, 5, True) + event(1, 1, 1, True)[:4], stream_type=stream_type)
    with pytest.raises(DataError) as caught:
        read_es(path)
    assert str(caught.value) == f"{path}: truncated: the event at byte 25 has 4 of its 5 bytes; re-copy the file."


def test_the_version_bytes_are_reported_as_major_minor_patch(tmp_path):
    recording = read_es(es_file(tmp_path / "v.es", dvs_event(1, 0, 0, True), version=(2, 1, 3)))
    assert recording.version == (2, 1, 3)


def test_a_header_without_events_is_an_empty_recording(tmp_path):
    events = read_es(es_file(tmp_path / "empty.es", b"", size=(3, 2))).events
    assert len(events) == 0 and (events.width, events.height) == (3, 2)


@pytest.mark.parametrize("size", [(1, 1), (32767, 1), (1, 32767), (32767, 32767)])
def test_every_sensor_size_from_1_to_32767_a_side_is_accepted(tmp_path, size):
    events = read_es(es_file(tmp_path / "size.es", dvs_event(1, 0, 0, True), size=size)).events
    assert (events.width, events.height) == size and columns(events) == [(1, 0, size[1] - 1, 1)]


@pytest.mark.parametrize("size", [(0, 6), (8, 0), (32768, 6), (8, 32768), (65535, 65535)])
def test_a_sensor_size_out_of_range_is_refused_naming_it(tmp_path, size):
    path = es_file(tmp_path / "size.es", b"", size=size)
    with pytest.raises(DataError) as caught:
        read_es(path)
    assert str(caught.value) == (
        f"{path}: the header's sensor size {size[0]} x {size[1]} is not possible (1 to 32767 pixels a side); "
        "the header is corrupt."
    )


@pytest.mark.parametrize(
    "data, message",
    [
        (
            b"Event Strean\x02\x00\x00\x01",
            "not an Event Stream file (it starts with b'Event Strean', expected b'Event Stream'); "
            "check the file or its suffix.",
        ),
        (b"Event Str", "truncated inside the Event Stream header (9 bytes); re-copy the file."),
        (
            b"Event Stream\x02\x00\x00\x01\x08\x00",
            "truncated inside the Event Stream header (18 bytes); re-copy the file.",
        ),
        (
            b"Event Stream\x02\x00\x00\x00",
            "an Event Stream of generic events (type byte 0), which are not polarity events with pixel addresses; "
            "only DVS and ATIS streams can be read.",
        ),
        (
            b"Event Stream\x02\x00\x00\x09\x08\x00\x06\x00",
            "an Event Stream of unknown type 9 events (type byte 9), which are not polarity events with pixel "
            "addresses; only DVS and ATIS streams can be read.",
        ),
        (
            b"Event Stream\x03\x01\x00\x01\x08\x00\x06\x00",
            "Event Stream version 3.1.0; this reader knows version 2.x. Convert the file with faery or sepia.",
        ),
    ],
    ids=["not the magic", "cut in the magic", "cut in the size", "generic, header only", "unknown type", "version 3"],
)
def test_each_header_problem_has_its_whole_message(tmp_path, data, message):
    path = tmp_path / "header.es"
    path.write_bytes(data)
    with pytest.raises(DataError) as caught:
        read_es(path)
    assert str(caught.value) == f"{path}: {message}"
