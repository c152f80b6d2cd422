"""Contracts of the event-file readers.

- `read_aedat4` (decoder: `aedat`) agrees exactly with iniVation's dv-processing, the reference
  decoder, on every event and every frame pixel, timestamp and exposure: on the real DAVIS346
  recording and on recordings dv-processing writes with each of its compressions.
- N-MNIST 40-bit files decode to exact values, sorted by time, with overflow markers applied.
- .npy / .npz / HDF5 round-trip exactly.
- Every broken file the tests make (truncated, garbage, empty, missing columns) raises DataError
  naming the file.
"""

from __future__ import annotations

import re
import shutil
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import dv_processing as dv
import h5py
import numpy as np
import pytest

from conftest import REAL_DATA
from velora.errors import DataError
from velora.events.readers import (
    SUFFIXES,
    read_aedat4,
    read_events,
    read_hdf5,
    read_nmnist,
    read_npy,
    require_events,
)
from velora.events.render import EventStream

STREET = REAL_DATA / "davis346" / "street_davis346.aedat4"
NMNIST = REAL_DATA / "nmnist"


@contextmanager
def raises_data_error_naming(path: Path, match: str | None = None):
    with pytest.raises(DataError, match=match) as caught:
        yield
    assert str(path) in str(caught.value), f"the message does not name the file: {caught.value}"


def reference_decode(path: Path) -> dict:
    """Everything dv-processing reads from the first event and frame streams of `path`."""
    recording = dv.io.MonoCameraRecording(str(path))
    batches = []
    while (batch := recording.getNextEventBatch()) is not None:
        batches.append(batch.numpy())
    events = np.concatenate(batches)
    frames = []
    while recording.isFrameStreamAvailable() and (frame := recording.getNextFrame()) is not None:
        frames.append(frame)
    return {
        "t": events["timestamp"],
        "x": events["x"],
        "y": events["y"],
        "p": np.where(events["polarity"] > 0, 1, -1),
        "sensor_size": tuple(recording.getEventResolution()),
        "images": [frame.image for frame in frames],  # OpenCV order: colour images are BGR
        "timestamps": [frame.timestamp for frame in frames],  # start of exposure
        "exposures_us": [frame.exposure // timedelta(microseconds=1) for frame in frames],
    }


def assert_matches_reference(path: Path) -> None:
    ours, reference = read_aedat4(path), reference_decode(path)
    for name in "txyp":
        assert np.array_equal(getattr(ours.events, name), reference[name]), f"events differ in {name}"
    assert ours.sensor_size == reference["sensor_size"]
    assert len(ours.aps_frames) == len(reference["images"])
    for image, reference_image in zip(ours.aps_frames, reference["images"]):
        reference_image = reference_image.squeeze()
        assert np.array_equal(image, reference_image[..., ::-1] if image.ndim == 3 else reference_image)
    assert ours.frame_timestamps_us.tolist() == reference["timestamps"]
    assert ours.frame_exposure_us.tolist() == reference["exposures_us"]


@pytest.fixture
def street_copy(tmp_path) -> Path:
    """A writable copy of the real recording (the shared file is read-only)."""
    return Path(shutil.copy(STREET, tmp_path / STREET.name))


# --- AEDAT 4.0 ---------------------------------------------------------------------------------


def test_real_davis346_recording_agrees_with_dv_processing():
    assert_matches_reference(STREET)
    recording = read_aedat4(STREET)
    # the numbers in tests/data/real/SOURCES.md
    assert len(recording.events) == 6676
    assert recording.sensor_size == (346, 260)
    assert recording.aps_frames.shape == (4, 260, 346) and recording.aps_frames.dtype == np.uint8
    assert round(100 * np.mean(recording.events.p > 0)) == 53
    assert np.diff(recording.frame_timestamps_us).tolist() == [40_000] * 3
    events = read_events(STREET, width=10, height=10)  # the events alone, frames left undecoded; the file's size wins
    assert (events.width, events.height) == (346, 260)
    for name in "txyp":
        assert np.array_equal(getattr(events, name), getattr(recording.events, name))
    assert recording.frame_exposure_us.tolist() == [500] * 4
    assert recording.frame_timestamps_us.dtype == np.int64
    assert read_events(STREET).t.tolist() == recording.events.t.tolist()


def write_recording(path: Path, compression, colour: bool = False, events: bool = True) -> None:
    """A small DAVIS-like recording written by dv-processing: 300 events and 3 frames."""
    rng = np.random.default_rng(1)
    width, height = 40, 30
    config = dv.io.MonoCameraWriter.Config("TestCamera", compression)
    config.addEventStream((width, height))
    config.addFrameStream((width, height))
    writer = dv.io.MonoCameraWriter(str(path), config)
    if events:
        store = dv.EventStore()
        timestamps = np.sort(rng.integers(1_000, 90_000, 300))
        for t, x, y, on in zip(
            timestamps, rng.integers(0, width, 300), rng.integers(0, height, 300), rng.random(300) < 0.5
        ):
            store.push_back(int(t), int(x), int(y), bool(on))
        writer.writeEvents(store)
    for index in range(3):
        shape = (height, width, 3) if colour else (height, width)
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        writer.writeFrame(dv.Frame(10_000 + 30_000 * index, 250 + index, 0, 0, image, dv.FrameSource.SENSOR))
    del writer  # closing finalises the file (writes the packet index)


@pytest.mark.parametrize("compression", list(dv.CompressionType.__members__.values()), ids=lambda c: c.name)
def test_written_recordings_agree_with_dv_processing(tmp_path, compression):
    path = tmp_path / "written.aedat4"
    write_recording(path, compression)
    assert_matches_reference(path)
    recording = read_aedat4(path)
    assert recording.frame_timestamps_us.tolist() == [10_000, 40_000, 70_000]  # exposure start
    assert recording.frame_exposure_middle_us.tolist() == [10_125, 40_125, 70_126]
    with raises_data_error_naming(path, "truncated"):  # the last byte of the packet index
        path.write_bytes(path.read_bytes()[:-1])
        read_aedat4(path)


def test_colour_frames_are_rgb(tmp_path):
    path = tmp_path / "colour.aedat4"
    write_recording(path, dv.CompressionType.LZ4, colour=True)
    assert read_aedat4(path).aps_frames.shape == (3, 30, 40, 3)
    assert_matches_reference(path)  # compares against dv-processing's BGR reversed


def test_recording_without_events_is_empty_but_valid_and_require_events_rejects_it(tmp_path):
    path = tmp_path / "no_events.aedat4"
    write_recording(path, dv.CompressionType.LZ4, events=False)
    recording = read_aedat4(path)
    assert len(recording.events) == 0 and recording.sensor_size == (40, 30)
    assert len(recording.aps_frames) == 3
    with raises_data_error_naming(path, "no events"):
        require_events(recording.events, path)


# The header ends at byte 3122, where the packets start (6533 and 96656 are packet boundaries,
# 50000 and 200000 fall inside packets); the packet index runs from 428314 to the end. `aedat`
# alone decodes a file cut between packets or inside the index without complaint.
@pytest.mark.parametrize("cut", [10, 17, 100, 3122, 6533, 50_000, 96_656, 200_000, 428_314, 428_400, -1])
def test_truncated_aedat4_raises_naming_the_file(street_copy, cut):
    street_copy.write_bytes(street_copy.read_bytes()[:cut])
    with raises_data_error_naming(street_copy, "truncated"):
        read_aedat4(street_copy)
    if cut != -1:  # dv-processing accepts an index missing only the last byte of its LZ4 end mark
        with pytest.raises(RuntimeError):
            reference_decode(street_copy)


def test_corrupt_aedat4_raises_naming_the_file(street_copy):
    data = bytearray(street_copy.read_bytes())
    first_packet = 3122
    data[first_packet + 8 : first_packet + 12] = b"JUNK"  # the LZ4 magic of the first packet's payload
    street_copy.write_bytes(bytes(data))
    with raises_data_error_naming(street_copy, "could not be decoded"):
        read_aedat4(street_copy)

    data = bytearray(STREET.read_bytes())
    data[first_packet : first_packet + 4] = (77).to_bytes(4, "little")  # a stream id the header never declared
    street_copy.write_bytes(bytes(data))
    with raises_data_error_naming(street_copy, "corrupt packet"):
        read_aedat4(street_copy)


@pytest.mark.parametrize("content", [np.random.default_rng(0).bytes(2000), b"#!AER-DAT4.0\r\n" + bytes(range(256)) * 4])
def test_garbage_with_aedat4_suffix_raises_naming_the_file(tmp_path, content):
    path = tmp_path / "garbage.aedat4"
    path.write_bytes(content)
    with raises_data_error_naming(path):
        read_aedat4(path)


@pytest.mark.parametrize("suffix", sorted(SUFFIXES))
def test_empty_file_raises_naming_the_file(tmp_path, suffix):
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(b"")
    with raises_data_error_naming(path, "empty"):
        read_events(path)


def test_missing_file_and_unknown_suffix(tmp_path):
    with raises_data_error_naming(tmp_path / "absent.npy", "cannot be read"):
        read_events(tmp_path / "absent.npy")
    with raises_data_error_naming(tmp_path / "events.mp4", re.escape(", ".join(sorted(SUFFIXES)))):
        read_events(tmp_path / "events.mp4")


# --- N-MNIST / N-Caltech101 40-bit --------------------------------------------------------------


def nmnist_bytes(*events: tuple[int, int, int, int]) -> bytes:
    """Encode (x, y, on, t_us) events in the 40-bit format of tests/data/real/SOURCES.md."""
    return b"".join(bytes([x, y, on << 7 | t >> 16 & 0x7F, t >> 8 & 0xFF, t & 0xFF]) for x, y, on, t in events)


def test_real_nmnist_samples_decode():
    files = sorted(NMNIST.glob("*.bs2"))
    assert len(files) == 24
    for path in files:
        events = read_nmnist(path)
        assert len(events) == path.stat().st_size // 5  # these samples hold no overflow markers
        assert (events.width, events.height) == (34, 34)
        assert events.x.max() < 34 and events.y.max() < 34
        assert np.all(np.diff(events.t) >= 0) and 250_000 < events.t[-1] < 320_000
        assert 0.4 < np.mean(events.p > 0) < 0.6


def test_hand_built_events_decode_exactly_and_are_sorted_stably(tmp_path):
    path = tmp_path / "two.bs2"
    path.write_bytes(nmnist_bytes((33, 0, 0, 0x7FFFFF), (5, 7, 1, 0x012345)))  # out of time order
    events = read_events(path)
    assert events.t.tolist() == [0x012345, 0x7FFFFF]
    assert events.x.tolist() == [5, 33] and events.y.tolist() == [7, 0] and events.p.tolist() == [1, -1]

    path.write_bytes(nmnist_bytes((1, 1, 1, 50), (2, 2, 1, 10), (3, 3, 0, 10)))
    assert read_nmnist(path).x.tolist() == [2, 3, 1]  # equal timestamps keep their file order


def test_overflow_markers_add_8192_us_and_are_dropped(tmp_path):
    path = tmp_path / "overflow.bin"
    path.write_bytes(nmnist_bytes((1, 2, 1, 100), (0, 240, 0, 0), (3, 4, 0, 50)))
    events = read_nmnist(path)
    assert events.t.tolist() == [100, 50 + 8192] and events.x.tolist() == [1, 3]


def test_ncaltech_size_is_a_parameter_or_inferred(tmp_path):
    path = tmp_path / "image_0001.bin"
    path.write_bytes(nmnist_bytes((200, 150, 1, 5), (10, 20, 0, 9)))
    with raises_data_error_naming(path, "outside the 34 x 34 sensor"):
        read_nmnist(path)
    assert (read_nmnist(path, width=240, height=180).width, read_nmnist(path, width=None, height=None).height) == (
        240,
        151,
    )


def test_bs2_with_partial_event_raises_naming_the_file(tmp_path):
    path = tmp_path / "cut.bs2"
    path.write_bytes((NMNIST / "1.bs2").read_bytes()[:-2])
    with raises_data_error_naming(path, "not a multiple of 5"):
        read_events(path)


# --- NumPy and HDF5 ------------------------------------------------------------------------------


def random_stream(n: int = 500, width: int = 64, height: int = 48) -> EventStream:
    rng = np.random.default_rng(2)
    t = np.sort(rng.integers(0, 1_000_000, n))
    x, y = rng.integers(0, width, n), rng.integers(0, height, n)
    return EventStream(t, x, y, np.where(rng.random(n) < 0.5, 1, -1), width, height)


def write_npy(path: Path, events: EventStream) -> None:
    # aliases and a bool polarity, as other tools write them
    table = np.zeros(len(events), dtype=[("ts", "<u8"), ("x", "<u2"), ("y", "<u2"), ("polarity", "?")])
    table["ts"], table["x"], table["y"], table["polarity"] = events.t, events.x, events.y, events.p > 0
    np.save(path, table)


def write_npz(path: Path, events: EventStream) -> None:
    on = (events.p > 0).astype(np.uint8)  # 0/1 polarity
    np.savez(path, t=events.t, x=events.x, y=events.y, p=on, width=events.width, height=events.height)


def write_hdf5(path: Path, events: EventStream) -> None:
    with h5py.File(path, "w") as file:
        group = file.create_group("events")
        for name in "txyp":
            group[name] = getattr(events, name)
        file.attrs["width"], file.attrs["height"] = events.width, events.height


@pytest.mark.parametrize("suffix, write", [(".npy", write_npy), (".npz", write_npz), (".h5", write_hdf5)])
def test_round_trip(tmp_path, suffix, write):
    events = random_stream()
    path = tmp_path / f"events{suffix}"
    write(path, events)
    back = read_events(path, width=64, height=48) if suffix == ".npy" else read_events(path)
    for name in "txyp":
        assert np.array_equal(getattr(back, name), getattr(events, name))
    assert (back.width, back.height) == (64, 48)


def test_hdf5_at_root_with_size_inferred(tmp_path):
    path = tmp_path / "root.hdf5"
    with h5py.File(path, "w") as file:
        file["t"], file["x"], file["y"], file["p"] = [30, 10, 20], [4, 5, 6], [0, 1, 2], [1, 0, 1]
    events = read_hdf5(path)
    assert events.t.tolist() == [10, 20, 30] and events.x.tolist() == [5, 6, 4] and events.p.tolist() == [-1, 1, 1]
    assert (events.width, events.height) == (7, 3)


def test_empty_stream_is_valid_data_and_require_events_rejects_it(tmp_path):
    path = tmp_path / "quiet.npz"
    np.savez(path, t=np.zeros(0, np.int64), x=np.zeros(0), y=np.zeros(0), p=np.zeros(0), width=34, height=34)
    events = read_npy(path)
    assert len(events) == 0 and (events.width, events.height) == (34, 34)
    with raises_data_error_naming(path, "no events"):
        require_events(events, path)
    np.savez(path, t=np.zeros(0, np.int64), x=np.zeros(0), y=np.zeros(0), p=np.zeros(0))
    with raises_data_error_naming(path, "no sensor size"):
        read_npy(path)


def test_npy_without_fields_raises_naming_the_file(tmp_path):
    path = tmp_path / "nameless.npy"
    np.save(path, np.zeros(5, dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2")]))
    with raises_data_error_naming(path, "'p' / 'polarity'"):
        read_npy(path)
    np.save(path, np.zeros((5, 4)))
    with raises_data_error_naming(path, "structured array"):
        read_npy(path)


def test_hdf5_missing_x_raises_naming_the_file(tmp_path):
    path = tmp_path / "no_x.h5"
    with h5py.File(path, "w") as file:
        file["events/t"], file["events/y"], file["events/p"] = [1, 2], [0, 0], [1, 1]
    with raises_data_error_naming(path, "'x'"):
        read_hdf5(path)


@pytest.mark.parametrize(
    "columns, problem",
    [
        ({"t": [1.5, 2.0], "x": [0, 1], "y": [0, 0], "p": [1, 0]}, "non-integer"),
        ({"t": [1, 2], "x": [0, 1], "y": [0, 0], "p": [2, 0]}, "polarity"),
        ({"t": [1, 2], "x": [0, 4], "y": [0, 0], "p": [1, 0], "width": 4, "height": 4}, "outside"),
        ({"t": [1, 2], "x": [0, -1], "y": [0, 0], "p": [1, 0], "width": 4, "height": 4}, "negative"),
        ({"t": [1, 2, 3], "x": [0, 1], "y": [0, 0], "p": [1, 0]}, "different lengths"),
    ],
)
def test_invalid_columns_raise_naming_the_file(tmp_path, columns, problem):
    path = tmp_path / "bad.npz"
    np.savez(path, **columns)
    with raises_data_error_naming(path, problem):
        read_npy(path)


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".h5", ".bs2"])
def test_corrupt_bytes_raise_naming_the_file(tmp_path, suffix):
    path = tmp_path / f"corrupt{suffix}"
    write = {".npy": write_npy, ".npz": write_npz, ".h5": write_hdf5}.get(suffix)
    if write is None:
        path.write_bytes(b"\x00" * 13)
    else:
        write(path, random_stream())
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with raises_data_error_naming(path):
        read_events(path)


def test_aedat4_packets_become_columns_in_order_and_out_of_order_across_packets(tmp_path):
    """The AEDAT 4.0 reader's one pass over aedat's packets: exact columns, a decrease of t within or
    across packets sorted stably, packets of another layout cast, and coordinates still checked."""
    from velora.events.aedat4 import PACKET_DTYPE, _event_stream

    def packet(*rows, dtype=PACKET_DTYPE):
        return np.array([(t, x, y, on) for t, x, y, on in rows], dtype=dtype)

    path = tmp_path / "r.aedat4"
    events = _event_stream(path, [packet((5, 1, 2, True), (7, 3, 4, False)), packet((9, 5, 6, True))], 8, 8)
    assert (events.t.tolist(), events.x.tolist(), events.y.tolist(), events.p.tolist()) == (
        [5, 7, 9],
        [1, 3, 5],
        [2, 4, 6],
        [1, -1, 1],
    )
    events = _event_stream(path, [packet((9, 1, 1, True)), packet((4, 2, 2, False), (9, 3, 3, True))], 8, 8)
    assert events.t.tolist() == [4, 9, 9] and events.x.tolist() == [2, 1, 3]  # stable: equal t keep file order
    aligned = np.dtype([("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("on", "?")], align=True)
    events = _event_stream(path, [packet((3, 7, 7, False), dtype=aligned)], 8, 8)
    assert events.t.tolist() == [3] and events.x.tolist() == [7] and events.p.tolist() == [-1]
    with raises_data_error_naming(path, "invalid"):
        _event_stream(path, [packet((3, 9, 0, True))], 8, 8)
    assert len(_event_stream(path, [], 8, 8)) == 0
