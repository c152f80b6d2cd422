"""The AEDAT 2.0 / 3.1 reader's rules one at a time, on files written here from jAER's and libcaer's
layouts: headers without a last newline or with bytes that are not ASCII, the address bits the DAVIS
layout does not use, sizes given in part, events on the sensor's edge, each packet-header check
alone, empty and all-invalid packets, timestamps negative as int32, and each error's whole message
with its byte offset.

tests/test_aedat_legacy.py reads whole files back; this file pins what that leaves open (each test
here was written for a mutant of velora.events.aedat_legacy that survived it, see
benchmarks/results/mutation.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import columns
from spec_writers import AEDAT2_CHIPS, AEDAT2_HEADER, AEDAT31_HEADER, aedat31_packet
from velora.errors import DataError
from velora.events.aedat_legacy import read_aedat

DAVIS346_LINE = AEDAT2_CHIPS["DAVIS346"][0]
END = b"#!END-HEADER\r\n"


def davis_address(raw_x: int, raw_y: int, on: bool) -> int:
    """jAER's DAVIS address: y in bits 22-30, x in bits 12-21, bit 11 = ON (jAER's axes: flipped)."""
    return raw_y << 22 | raw_x << 12 | int(on) << 11


def aedat2(path: Path, header: bytes, *records: tuple[int, int]) -> Path:
    """An AEDAT 2.0 file: the header lines, then (address, timestamp) as big-endian uint32 pairs."""
    path.write_bytes(header + np.array(records, dtype=">u4").reshape(-1, 2).tobytes())
    return path


def polarity(t: int, x: int, y: int, on: bool = True, valid: bool = True) -> tuple[int, int]:
    """One libcaer polarity event: data = valid | on << 1 | y << 2 | x << 17, then the timestamp."""
    return int(valid) | int(on) << 1 | y << 2 | x << 17, t


def packet(*events: tuple[int, int], overflow: int = 0, valid: int | None = None) -> bytes:
    payload = np.array(events, dtype="<u4").reshape(-1, 2)
    count = int(np.count_nonzero(payload[:, 0] & 1)) if valid is None else valid
    return aedat31_packet(1, payload, overflow, 8, count)


def raw_header(event_type: int, size: int, overflow: int, number: int, valid: int) -> bytes:
    """A packet header with any fields (aedat31_packet derives the count from a payload)."""
    return np.array([event_type | 1 << 16, size, 4, overflow, number, number, valid], dtype="<i4").tobytes()


def aedat31(path: Path, source: str, *packets: bytes) -> Path:
    path.write_bytes(AEDAT31_HEADER % source.encode() + b"".join(packets))
    return path


def error_of(path: Path, *args) -> str:
    with pytest.raises(DataError) as caught:
        read_aedat(path, *args)
    return str(caught.value)


# --- the first line ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, shown",
    [(b"#!AER-DAT9.9 from the future\r\n" + bytes(16), b"#!AER-DAT9.9 from th"), (b"\x00\x01 garbage, not AER", None)],
    ids=["another version", "not AEDAT"],
)
def test_a_file_of_another_version_or_format_shows_how_it_starts(tmp_path, data, shown):
    path = tmp_path / "other.aedat"
    path.write_bytes(data)
    assert error_of(path) == (
        f"{path}: not an AEDAT 2.0 or 3.1 file (it starts with {shown or data[:12]!r}); this reader knows "
        "#!AER-DAT2.0, #!AER-DAT3.1 and #!AER-DAT4.0. Convert older files with jAER or DV."
    )


# --- AEDAT 2.0 -----------------------------------------------------------------------------------------


def test_aedat2_header_lines_without_a_last_newline_or_with_bytes_that_are_not_ascii(tmp_path):
    chip = AEDAT2_CHIPS["DVS128"][0]
    events = read_aedat(aedat2(tmp_path / "header.aedat", AEDAT2_HEADER + chip.rstrip(b"\r\n")))
    assert len(events) == 0 and (events.width, events.height) == (128, 128)
    path = aedat2(tmp_path / "accents.aedat", AEDAT2_HEADER + b"# Lieu: \xe9t\xe9\r\n" + chip, (5 << 8 | 3 << 1, 7))
    assert columns(read_aedat(path)) == [(7, 124, 122, 1)]


def test_aedat2_davis_address_bits_outside_its_fields_are_ignored(tmp_path):
    address = davis_address(300, 10, on=False) | 0x3FF  # bits 0-9 unused by polarity events
    events = read_aedat(aedat2(tmp_path / "bits.aedat", AEDAT2_HEADER + DAVIS346_LINE, (address, 9)))
    assert columns(events) == [(9, 45, 249, -1)]


def test_aedat2_without_a_camera_takes_each_size_given_and_the_events_for_the_other(tmp_path):
    path = aedat2(tmp_path / "v2e.aedat", AEDAT2_HEADER, (davis_address(20, 30, True), 1))
    events = read_aedat(path, 346)
    assert (events.width, events.height) == (346, 31) and columns(events) == [(1, 325, 0, 1)]
    events = read_aedat(path, None, 260)
    assert (events.width, events.height) == (21, 260) and columns(events) == [(1, 0, 229, 1)]
    empty = aedat2(tmp_path / "empty.aedat", AEDAT2_HEADER)
    assert error_of(empty) == f"{empty}: the file holds no events and no sensor size; pass width= and height=."


@pytest.mark.parametrize(
    "records, index, shown",
    [
        ([davis_address(300, 10, True), davis_address(3, 4, True), davis_address(5, 260, True)], 2, "x=5, y=260"),
        ([davis_address(1, 1, True), davis_address(346, 3, False)], 1, "x=346, y=3"),
    ],
    ids=["y on the edge after an x above the height", "x on the edge"],
)
def test_aedat2_an_event_on_the_cameras_edge_is_refused_with_its_offset(tmp_path, records, index, shown):
    header = AEDAT2_HEADER + DAVIS346_LINE
    path = aedat2(tmp_path / "edge.aedat", header, *[(address, k) for k, address in enumerate(records)])
    assert error_of(path) == (
        f"{path}: the event at byte {len(header) + 8 * index} has {shown} (jAER's axes), outside the 346 x 260 "
        "sensor of the DAVIS346; the file is corrupt."
    )


def test_aedat2_an_event_outside_the_size_given_asks_for_the_size(tmp_path):
    path = aedat2(
        tmp_path / "given.aedat", AEDAT2_HEADER, (davis_address(2, 2, True), 1), (davis_address(10, 3, True), 2)
    )
    assert error_of(path, 10, 10) == (
        f"{path}: the event at byte {len(AEDAT2_HEADER) + 8} has x=10, y=3 (jAER's axes), outside the 10 x 10 "
        "sensor; pass the sensor width= and height=."
    )


def test_aedat2_a_cut_event_after_many_is_named_by_its_offset(tmp_path):
    header = AEDAT2_HEADER + DAVIS346_LINE
    path = aedat2(tmp_path / "cut.aedat", header, *[(davis_address(k, k, True), k) for k in range(20)])
    path.write_bytes(path.read_bytes()[:-3])
    assert error_of(path) == (
        f"{path}: truncated: the event at byte {len(header) + 8 * 19} has 5 of its 8 bytes; re-copy the file."
    )


# --- AEDAT 3.1 -----------------------------------------------------------------------------------------


def test_aedat31_files_without_polarity_events_are_empty(tmp_path):
    path = tmp_path / "header.aedat"
    path.write_bytes((AEDAT31_HEADER % b"DVS128").rstrip(b"\r\n"))  # ends at #!END-HEADER, no newline
    events = read_aedat(path)
    assert len(events) == 0 and (events.width, events.height) == (128, 128)
    special = aedat31_packet(0, np.array([[3, 0]], dtype="<u4"), 0, 8)
    events = read_aedat(aedat31(tmp_path / "special.aedat", "DVS128", special))
    assert len(events) == 0 and (events.width, events.height) == (128, 128)
    unknown = aedat31(tmp_path / "unknown.aedat", "eDVS4337", special)
    assert error_of(unknown) == f"{unknown}: the file holds no events and no sensor size; pass width= and height=."


def test_aedat31_empty_packets_all_invalid_packets_and_one_byte_events_of_other_types_are_read(tmp_path):
    path = aedat31(
        tmp_path / "odd.aedat",
        "DVS128",
        packet(polarity(5, 1, 2)),
        packet(polarity(6, 3, 4, valid=False)),  # valid 0
        raw_header(7, 1, 0, 3, 3) + b"abc",  # three 1-byte events of another type
        raw_header(1, 8, 0, 0, 0),  # an empty polarity packet, ending the file
    )
    assert columns(read_aedat(path)) == [(5, 1, 2, 1)]


def test_aedat31_the_end_of_header_text_inside_a_packet_is_data(tmp_path):
    text = np.frombuffer(END + b"\0\0", dtype="<u4").reshape(-1, 2)  # 16 bytes: two 8-byte special events
    path = aedat31(tmp_path / "text.aedat", "DVS128", aedat31_packet(0, text, 0, 8), packet(polarity(9, 1, 1)))
    assert columns(read_aedat(path)) == [(9, 1, 1, 1)]


@pytest.mark.parametrize(
    "fields",
    [(0, 0, 1, 1), (0, 0, 0, 0), (8, 0, -1, 0), (8, 0, 1, -1), (8, 0, 1, 2), (8, -1, 1, 1)],
    ids=["size 0", "size 0 and no events", "-1 events", "-1 valid", "more valid than events", "overflow -1"],
)
def test_aedat31_each_impossible_packet_header_field_is_refused_alone(tmp_path, fields):
    size, overflow, number, valid = fields
    path = aedat31(tmp_path / "bad.aedat", "DVS128", raw_header(1, size, overflow, number, valid) + bytes(16))
    start = len(AEDAT31_HEADER % b"DVS128")
    assert error_of(path) == (
        f"{path}: corrupt packet header at byte {start} (event size {size}, {number} events, {valid} valid, "
        f"timestamp overflow {overflow}); re-copy the file."
    )


def test_aedat31_a_timestamp_negative_as_int32_is_refused_with_its_offset(tmp_path):
    first = packet(polarity(1, 1, 1), polarity(2, 1, 1), polarity(3, 1, 1))
    second = packet(polarity(1 << 31, 1, 1), polarity(5, 1, 1))  # the first event of the second packet
    path = aedat31(tmp_path / "negative.aedat", "DVS128", first, second)
    offset = len(AEDAT31_HEADER % b"DVS128") + len(first) + 28
    assert error_of(path) == (f"{path}: the timestamp at byte {offset + 4} is negative as int32; the file is corrupt.")


@pytest.mark.parametrize("x, y", [(128, 5), (5, 128)])
def test_aedat31_an_event_on_the_cameras_edge_is_refused(tmp_path, x, y):
    path = aedat31(tmp_path / "edge.aedat", "DVS128", packet(polarity(1, 1, 1), polarity(2, x, y)))
    offset = len(AEDAT31_HEADER % b"DVS128") + 28 + 8
    assert error_of(path) == (
        f"{path}: the event at byte {offset} has x={x}, y={y}, outside the 128 x 128 sensor of the DVS128; "
        "the file is corrupt."
    )


def test_aedat31_an_event_outside_the_size_given_may_mean_the_size_is_wrong(tmp_path):
    path = aedat31(tmp_path / "given.aedat", "eDVS4337", packet(polarity(1, 100, 1)))
    assert error_of(path, 100, 100) == (
        f"{path}: the event at byte {len(AEDAT31_HEADER % b'eDVS4337') + 28} has x=100, y=1, outside the 100 x 100 "
        "sensor; the file is corrupt or width/height are wrong."
    )
