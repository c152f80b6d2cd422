"""Contracts of the AEDAT 2.0 / 3.1 reader (.aedat).

faery cannot write (or read) these formats, so the files come from the spec-following writers of
tests/spec_writers.py (jAER's address layouts and orientation, libcaer's packets), which share no
code with the reader. Each file reads back exactly the events written, in the package's top-left
convention; non-polarity words and packets and invalid events are skipped; truncated or corrupt
files raise DataError naming the file and the byte offset.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import REAL_DATA
from spec_writers import aedat2_file, aedat31_file, aedat31_packet
from velora.errors import DataError
from velora.events.aedat4 import read_aedat4
from velora.events.aedat_legacy import read_aedat
from velora.events.readers import read_events


def random_columns(n: int, width: int, height: int, duration_us: int, seed: int = 0, t0: int = 0):
    rng = np.random.default_rng(seed)
    t = t0 + np.sort(rng.integers(0, duration_us, n))
    return t, rng.integers(0, width, n), rng.integers(0, height, n), np.where(rng.random(n) < 0.5, 1, -1)


def assert_events(events, t, x, y, p, size):
    assert (events.width, events.height) == size
    assert len(events) == len(t)
    for name, column in zip("txyp", (t, x, y, p)):
        assert np.array_equal(getattr(events, name), column), f"{name} differs"


def raises_naming(path: Path, match: str):
    return pytest.raises(DataError, match=re.escape(str(path)) + ".*" + match)


# --- AEDAT 3.1 ---------------------------------------------------------------------------------------


def test_dvs128_gesture_style_aedat31_reads_back_its_valid_polarity_events(tmp_path):
    t, x, y, p = random_columns(20_000, 128, 128, duration_us=6_000_000)
    path = tmp_path / "user01_fluorescent.aedat"
    path.write_bytes(aedat31_file(t, x, y, p, "DVS128", packet_events=1000, invalid_every=7))
    keep = np.arange(len(t)) % 7 != 0  # every 7th event was written invalid
    assert_events(read_aedat(path), t[keep], x[keep], y[keep], p[keep], (128, 128))
    assert_events(read_events(path), t[keep], x[keep], y[keep], p[keep], (128, 128))


def test_aedat31_time_adds_the_packets_timestamp_overflow(tmp_path):
    t = np.array([5, (1 << 31) - 1, (1 << 31) + 3, (3 << 31) + 9])
    path = tmp_path / "long.aedat"
    path.write_bytes(aedat31_file(t, [1, 2, 3, 4], [0, 0, 0, 0], [1, -1, 1, -1], "DAVIS346B", packet_events=1))
    assert_events(read_aedat(path), t, [1, 2, 3, 4], [0, 0, 0, 0], [1, -1, 1, -1], (346, 260))


def test_aedat31_unknown_camera_takes_the_arguments_or_max_plus_one(tmp_path):
    t, x, y, p = random_columns(500, 200, 100, duration_us=10_000)
    path = tmp_path / "other.aedat"
    path.write_bytes(aedat31_file(t, x, y, p, "eDVS4337"))
    assert_events(read_aedat(path, 300, 200), t, x, y, p, (300, 200))
    assert_events(read_aedat(path), t, x, y, p, (x.max() + 1, y.max() + 1))


def test_aedat31_truncated_or_corrupt_packets_raise_with_their_byte_offset(tmp_path):
    t, x, y, p = random_columns(100, 128, 128, duration_us=10_000)
    data = aedat31_file(t, x, y, p, packet_events=50, special_packets=False)
    start = data.index(b"#!END-HEADER\r\n") + len(b"#!END-HEADER\r\n")
    path = tmp_path / "cut.aedat"
    path.write_bytes(data[:-3])
    with raises_naming(path, rf"truncated: the packet at byte {start + 28 + 400} holds 50 events of 8 bytes"):
        read_aedat(path)
    path.write_bytes(data[: start + 28 + 400 + 10])
    with raises_naming(path, rf"truncated inside the packet header at byte {start + 28 + 400}"):
        read_aedat(path)
    corrupt = bytearray(data)
    corrupt[start + 4 : start + 8] = (12).to_bytes(4, "little")  # first packet: 12-byte polarity events
    path.write_bytes(bytes(corrupt))
    with raises_naming(path, rf"polarity packet at byte {start} has 12-byte events"):
        read_aedat(path)
    corrupt[start + 4 : start + 8] = (-8).to_bytes(4, "little", signed=True)
    path.write_bytes(bytes(corrupt))
    with raises_naming(path, rf"corrupt packet header at byte {start} \(event size -8"):
        read_aedat(path)
    path.write_bytes(data.replace(b"#!END-HEADER", b"#!END-HEADEX"))
    with raises_naming(path, "header never ends"):
        read_aedat(path)


def test_aedat31_event_outside_the_camera_raises_with_its_byte_offset(tmp_path):
    path = tmp_path / "outside.aedat"
    data = aedat31_file([1, 2], [5, 130], [1, 2], [1, 1], "DVS128", special_packets=False)
    path.write_bytes(data)
    offset = data.index(b"#!END-HEADER\r\n") + len(b"#!END-HEADER\r\n") + 28 + 8
    with raises_naming(path, rf"event at byte {offset} has x=130, y=2, outside the 128 x 128 sensor of the DVS128"):
        read_aedat(path)


def test_aedat31_skips_packets_of_other_types(tmp_path):
    path = tmp_path / "imu.aedat"
    imu = np.zeros((3, 9), dtype="<u4")  # three 36-byte IMU6 events (type 3)
    data = aedat31_file([10, 20], [1, 2], [3, 4], [1, -1], "DAVIS240C", special_packets=False)
    path.write_bytes(data + aedat31_packet(3, imu, 0, 36))
    assert_events(read_aedat(path), [10, 20], [1, 2], [3, 4], [1, -1], (240, 180))


# --- AEDAT 2.0 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("chip, size", [("DVS128", (128, 128)), ("DAVIS240", (240, 180)), ("DAVIS346", (346, 260))])
def test_jaer_aedat2_reads_back_in_the_top_left_convention(tmp_path, chip, size):
    t, x, y, p = random_columns(20_000, *size, duration_us=4_000_000, t0=1_000)
    path = tmp_path / "jaer.aedat"
    path.write_bytes(aedat2_file(t, x, y, p, chip, aps_samples=0 if chip == "DVS128" else 50))
    assert_events(read_aedat(path), t, x, y, p, size)


def test_v2e_aedat2_without_a_camera_name_needs_the_size(tmp_path):
    t, x, y, p = random_columns(5_000, 346, 260, duration_us=1_000_000)
    x[0], y[0] = 0, 0  # v2e writes x and y flipped, so max raw + 1 is the size only if (0, 0) fired
    path = tmp_path / "v2e.aedat"
    path.write_bytes(aedat2_file(t, x, y, p, chip=None, davis_size=(346, 260)))
    assert_events(read_aedat(path, 346, 260), t, x, y, p, (346, 260))
    assert_events(read_aedat(path), t, x, y, p, (346, 260))


def test_aedat2_timestamps_unwrap(tmp_path):
    """jAER's timestamps are 32 bits (the writer keeps the low 32 bits of t): they wrap after 71 minutes."""
    t = np.array([100, (1 << 32) - 10, (1 << 32) + 20])
    path = tmp_path / "wrap.aedat"
    path.write_bytes(aedat2_file(t, [1, 2, 3], [4, 5, 6], [1, 1, -1], "DVS128"))
    assert_events(read_aedat(path), t, [1, 2, 3], [4, 5, 6], [1, 1, -1], (128, 128))


def test_aedat2_truncated_or_outside_raises_with_the_byte_offset(tmp_path):
    data = aedat2_file([1, 2, 3], [1, 2, 3], [1, 2, 3], [1, 1, 1], "DVS128")
    start = len(data) - 24
    path = tmp_path / "cut.aedat"
    path.write_bytes(data[:-5])
    with raises_naming(path, rf"truncated: the event at byte {start + 16} has 3 of its 8 bytes"):
        read_aedat(path)
    data = aedat2_file([1, 2], [1, 2], [1, 2], [1, 1], None, davis_size=(346, 260))
    path.write_bytes(data)
    with raises_naming(
        path, rf"event at byte {len(data) - 16} has x=344, y=258 .jAER's axes., outside the 10 x 10 sensor; pass"
    ):
        read_aedat(path, 10, 10)


@pytest.mark.parametrize(
    "first_line, problem", [(b"#!AER-DAT1.0", "AER-DAT1.0"), (b"\x00\x01garbage", "not an AEDAT 2.0 or 3.1 file")]
)
def test_other_versions_raise(tmp_path, first_line, problem):
    path = tmp_path / "old.aedat"
    path.write_bytes(first_line + b"\r\n" + bytes(16))
    with raises_naming(path, problem):
        read_aedat(path)


def test_aedat4_file_named_aedat_is_read_as_aedat4(tmp_path):
    path = Path(shutil.copy(REAL_DATA / "davis346" / "street_davis346.aedat4", tmp_path / "street.aedat"))
    events, reference = read_aedat(path), read_aedat4(path).events
    assert len(events) == len(reference) == 6676 and np.array_equal(events.t, reference.t)
