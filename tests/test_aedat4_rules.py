"""The AEDAT 4.0 reader's checks one at a time: the IOHeader flatbuffer (built here with the
flatbuffers library, each field present or absent), the LZ4 and zstd frame lengths of the packet
index (frames built byte by byte from their specifications, every flag), the packet walk of
finalised and unfinalised files, each header error with its whole message, files without frames
or without events, and the frame conversion (RGB, BGR, alpha, 16 bits).

tests/test_readers.py checks whole recordings against dv-processing; this file pins what that leaves
open (each test here was written for a mutant of velora.events.aedat4 that survived it, see
benchmarks/results/mutation.md).
"""

from __future__ import annotations

import itertools
import shutil
import struct
from pathlib import Path

import dv_processing as dv
import flatbuffers
import numpy as np
import pytest

from conftest import REAL_DATA, error_of
from velora.errors import DataError
from velora.events.aedat4 import (
    LZ4,
    LZ4_MAGIC,
    MAGIC,
    NO_COMPRESSION,
    PACKET_DTYPE,
    ZSTD,
    ZSTD_MAGIC,
    _compressed_length,
    _event_stream,
    _io_header_fields,
    _lz4_frame_length,
    _split_packets,
    _zstd_frame_length,
    decoder_failed,
    frame_uint8,
    read_aedat4,
    read_aedat4_events,
)

STREET = REAL_DATA / "davis346" / "street_davis346.aedat4"


def io_header(compression: int | None = None, position: int | None = None, description: bytes | None = None) -> bytes:
    """An IOHeader flatbuffer as DV writes it (file identifier IOHE); a field given as None is left out."""
    builder = flatbuffers.Builder(0)
    text = builder.CreateString(description) if description is not None else None
    builder.StartObject(3)
    if compression is not None:
        builder.PrependInt32Slot(0, compression, -99)  # a default no value has: the field is always written
    if position is not None:
        builder.PrependInt64Slot(1, position, -99)
    if text is not None:
        builder.PrependUOffsetTRelativeSlot(2, text, 0)
    builder.Finish(builder.EndObject(), file_identifier=b"IOHE")
    return bytes(builder.Output())


def street_parts() -> tuple[int, int, bytes, bytes, bytes]:
    """(compression, table position, description, packets, table) of the real recording."""
    data = STREET.read_bytes()
    (size,) = struct.unpack_from("<i", data, len(MAGIC))
    compression, position, description = _io_header_fields(data[len(MAGIC) + 4 : len(MAGIC) + 4 + size])
    return compression, position, description, data[len(MAGIC) + 4 + size : position], data[position:]


def aedat4_file(path: Path, header: bytes, body: bytes = b"") -> Path:
    path.write_bytes(MAGIC + struct.pack("<i", len(header)) + header + body)
    return path


def unfinalised_street(path: Path) -> tuple[Path, int]:
    """The real recording rewritten as a recording never finalised: dataTablePosition -1, no index.
    Returns the path and where its packets start."""
    compression, _, description, packets, _ = street_parts()
    header = io_header(compression, -1, description)
    return aedat4_file(path, header, packets), len(MAGIC) + 4 + len(header)


# --- the IOHeader flatbuffer ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [(LZ4, 428_314, b"<dv></dv>"), (None, None, None), (ZSTD, None, None), (None, 99, None), (None, None, b"x" * 300)],
    ids=["all", "none", "compression", "table position", "description"],
)
def test_io_header_fields_present_or_absent(fields):
    compression, position, description = fields
    expected = (
        NO_COMPRESSION if compression is None else compression,
        -1 if position is None else position,
        b"" if description is None else description,
    )
    assert _io_header_fields(io_header(*fields)) == expected


def test_io_header_with_a_vtable_listing_fewer_fields_gives_the_rest_their_defaults():
    header = bytearray(io_header(LZ4, 1234, b"<dv/>"))
    (table,) = struct.unpack_from("<I", header, 0)
    vtable = table - struct.unpack_from("<i", header, table)[0]
    full = (LZ4, 1234, b"<dv/>")
    for size, expected in ((4 + 2 * 3, full), (4 + 2 * 2, (LZ4, 1234, b"")), (4 + 2, (LZ4, -1, b"")), (0x8000, full)):
        struct.pack_into("<H", header, vtable, size)
        assert _io_header_fields(bytes(header)) == expected, size


def test_io_header_whose_vtable_follows_its_table_is_read():
    """flatbuffers allows the vtable after the table (a negative offset to it); builders rarely do it."""
    header = io_header(LZ4, 77)
    (table,) = struct.unpack_from("<I", header, 0)
    vtable = table - struct.unpack_from("<i", header, table)[0]
    vtable_bytes = header[vtable : vtable + struct.unpack_from("<H", header, vtable)[0]]
    moved = bytearray(header) + vtable_bytes
    struct.pack_into("<i", moved, table, table - (len(header)))  # soffset: the vtable at the old end
    assert _io_header_fields(bytes(moved))[:2] == (LZ4, 77)


@pytest.mark.parametrize("slot", [0, 2])
def test_io_header_with_a_field_offset_past_its_end_does_not_parse(slot):
    """A field offset of 32768 or more (unsigned, as flatbuffers stores it) points past the header."""
    header = bytearray(io_header(LZ4, 1234, b"<dv/>"))
    (table,) = struct.unpack_from("<I", header, 0)
    vtable = table - struct.unpack_from("<i", header, table)[0]
    struct.pack_into("<H", header, vtable + 4 + 2 * slot, 0xFFF0)
    with pytest.raises((IndexError, struct.error)):
        _io_header_fields(bytes(header))


def test_io_header_whose_description_offset_is_2_to_the_31_or_more_is_refused():
    """Flatbuffers offsets are unsigned: 2**32 - d points d bytes past 4 GB, never d bytes back."""
    header = bytearray(io_header(LZ4, 5, b"<dv/>"))
    (table,) = struct.unpack_from("<I", header, 0)
    vtable = table - struct.unpack_from("<i", header, table)[0]
    field = table + struct.unpack_from("<H", header, vtable + 8)[0]  # where the description's offset is
    for back in range(1, field + 1):
        struct.pack_into("<I", header, field, 2**32 - back)
        with pytest.raises((IndexError, struct.error)):
            _io_header_fields(bytes(header))


@pytest.mark.parametrize("excess", [1, 4, 1000, 0xFFFFFFF0])
def test_io_header_whose_description_runs_past_its_end_is_refused(excess):
    header = bytearray(io_header(LZ4, 5, b"y" * 100))
    length = header.index(struct.pack("<I", 100) + b"y")
    room = len(header) - length - 4  # the string's bytes, its terminator and any padding
    assert _io_header_fields(bytes(header))[2] == b"y" * 100
    struct.pack_into("<I", header, length, room)  # the string now ends exactly at the buffer's end
    assert _io_header_fields(bytes(header))[2] == bytes(header[length + 4 :])
    struct.pack_into("<I", header, length, min(room + excess, 0xFFFFFFFF))
    with pytest.raises(IndexError):
        _io_header_fields(bytes(header))


# --- the header's errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size, problem",
    [
        (-5, "the AEDAT 4.0 header is corrupt (size -5); re-copy the file."),
        (0, "the AEDAT 4.0 header is corrupt (size 0); re-copy the file."),
        (1, "the AEDAT 4.0 header is corrupt (its flatbuffer does not parse); re-copy the file."),
    ],
)
def test_header_sizes_that_cannot_hold_a_header(tmp_path, size, problem):
    path = tmp_path / "size.aedat4"
    path.write_bytes(MAGIC + struct.pack("<i", size) + bytes(64))
    assert error_of(read_aedat4, path) == f"{path}: {problem}"


def test_a_header_size_shorter_than_its_flatbuffer_does_not_parse(tmp_path):
    compression, position, description, packets, table = street_parts()
    header = io_header(compression, position, description)
    path = tmp_path / "short.aedat4"
    path.write_bytes(MAGIC + struct.pack("<i", len(header) - 10) + header + packets + table)
    assert error_of(read_aedat4, path) == (
        f"{path}: the AEDAT 4.0 header is corrupt (its flatbuffer does not parse); re-copy the file."
    )


@pytest.mark.parametrize(
    "header, problem",
    [
        (io_header(7, -1, b"<dv/>"), "the AEDAT 4.0 header names unknown compression 7; the file is corrupt."),
        (io_header(-1, -1, b"<dv/>"), "the AEDAT 4.0 header names unknown compression -1; the file is corrupt."),
        (
            io_header(0, -1, b"\xff\xfe"),
            "the AEDAT 4.0 header's stream description is not UTF-8 text; the file is corrupt.",
        ),
    ],
    ids=["compression 7", "compression -1", "description not UTF-8"],
)
def test_header_fields_no_writer_gives(tmp_path, header, problem):
    path = aedat4_file(tmp_path / "fields.aedat4", header)
    assert error_of(read_aedat4, path) == f"{path}: {problem}"


def test_a_description_aedat_cannot_read_is_refused_naming_the_file(tmp_path):
    path = aedat4_file(tmp_path / "xml.aedat4", io_header(0, -1, b"not the XML of a stream list"))
    message = error_of(read_aedat4, path)
    assert message.startswith(f"{path}: aedat cannot decode the stream list (")
    assert message.endswith("); the file is corrupt or unsupported.")


def test_empty_garbage_and_unreadable_files_have_their_whole_messages(tmp_path):
    empty = tmp_path / "empty.aedat4"
    empty.write_bytes(b"")
    assert error_of(read_aedat4, empty) == f"{empty}: the file is empty (0 bytes); re-copy or re-record it."
    one = tmp_path / "one.aedat4"
    one.write_bytes(b"#")
    assert error_of(read_aedat4, one) == f"{one}: truncated inside the AEDAT 4.0 header (1 bytes); re-copy the file."
    garbage = tmp_path / "garbage.aedat4"
    garbage.write_bytes(b"#!AER-DAT2.0\r\n# old and more")
    assert error_of(read_aedat4, garbage) == (
        f"{garbage}: not an AEDAT 4.0 file (it starts with b'#!AER-DAT2.0\\r\\n', expected b'#!AER-DAT4.0\\r\\n'); "
        "check the file or its suffix."
    )
    folder = tmp_path / "folder.aedat4"
    folder.mkdir()
    assert (
        error_of(read_aedat4, folder) == f"{folder}: cannot be read (Is a directory); check the path and permissions."
    )


# --- the packet walk -----------------------------------------------------------------------------------


def test_a_recording_never_finalised_is_read_whole(tmp_path):
    path, _ = unfinalised_street(tmp_path / "open.aedat4")
    ours, reference = read_aedat4(path), read_aedat4(STREET)
    assert np.array_equal(ours.events.t, reference.events.t) and len(ours.aps_frames) == len(reference.aps_frames)


def test_a_cut_packet_names_where_it_runs_past(tmp_path):
    path, start = unfinalised_street(tmp_path / "open.aedat4")
    data = path.read_bytes()
    (size,) = struct.unpack_from("<I", data, start + 4)
    path.write_bytes(data[: start + 8 + size - 1])  # the first packet lacks its last byte
    assert error_of(read_aedat4, path) == (
        f"{path}: truncated: the packet at byte {start} needs {size} bytes and runs past the end of the file at "
        f"byte {start + 8 + size - 1}; re-copy the file."
    )
    path.write_bytes(data[: start + 8 + size + 5])  # the second packet's header cut
    assert error_of(read_aedat4, path) == (
        f"{path}: truncated inside the packet header at byte {start + 8 + size}; re-copy the file."
    )


def test_a_packet_running_into_the_index_and_packet_headers_no_writer_gives(tmp_path):
    compression, position, description, packets, table = street_parts()
    header = io_header(compression, position, description)
    start = len(MAGIC) + 4 + len(header)
    shifted = start + len(packets)  # the table's position with this header
    for stream_id, size, problem in (
        (0, 0xFFFFFFF0, f"truncated: the packet at byte {start} needs 4294967280 bytes and runs past the packet "
         f"index at byte {shifted}; re-copy the file."),
        (-1, 8, f"corrupt packet at byte {start} (stream id -1, the header declares [0, 1, 2, 3]); re-copy or "
         "re-export the file."),
    ):  # fmt: skip
        body = bytearray(packets)
        struct.pack_into("<iI", body, 0, stream_id, size)
        path = aedat4_file(
            tmp_path / "packet.aedat4", io_header(compression, shifted, description), bytes(body) + table
        )
        assert error_of(read_aedat4, path) == f"{path}: {problem}"


# --- files without frames or without events ------------------------------------------------------------


def write_dv(
    path: Path,
    events: bool,
    frames: bool,
    event_rows=((1000, 1, 2, True), (2000, 3, 4, False)),
    frame_shapes=((30, 40),),
    frame_stream=(40, 30),
    imu: bool = False,
) -> Path:
    """A recording dv-processing writes: a 40 x 30 event stream (with `event_rows`), a frame
    stream of `frame_stream` size (with one frame of each of `frame_shapes`), an IMU stream."""
    config = dv.io.MonoCameraWriter.Config("TestCamera")
    if events:
        config.addEventStream((40, 30))
    if frames:
        config.addFrameStream(frame_stream)
    if imu:
        config.addImuStream()
    writer = dv.io.MonoCameraWriter(str(path), config)
    if events:
        store = dv.EventStore()
        for row in event_rows:
            store.push_back(*row)
        writer.writeEvents(store)
    for k, shape in enumerate(frame_shapes if frames else ()):
        writer.writeFrame(dv.Frame(1000 + k, 100, 0, 0, np.zeros(shape, np.uint8), dv.FrameSource.SENSOR))
    del writer  # closing finalises the file
    return path


def test_a_recording_without_a_frame_stream_has_no_frames_in_the_usual_dtypes(tmp_path):
    path = write_dv(tmp_path / "events.aedat4", events=True, frames=False)
    recording = read_aedat4(path)
    assert recording.path == path and recording.sensor_size == (40, 30)
    assert recording.aps_frames.shape == (0, 30, 40) and recording.aps_frames.dtype == np.uint8
    assert recording.frame_timestamps_us.dtype == np.int64 and recording.frame_exposure_us.dtype == np.int64
    assert recording.events.t.tolist() == [1000, 2000] and recording.events.p.tolist() == [1, -1]


def test_a_recording_without_an_event_stream_says_what_it_holds(tmp_path):
    path = write_dv(tmp_path / "frames.aedat4", events=False, frames=True)
    assert error_of(read_aedat4, path) == (
        f"{path}: the recording has no event stream (streams: frame); VELoRA needs polarity events."
    )


def test_events_outside_the_declared_sensor_are_refused_naming_the_file(tmp_path):
    path = write_dv(tmp_path / "outside.aedat4", events=True, frames=False, event_rows=((5, 45, 2, True),))
    message = error_of(read_aedat4_events, path)
    assert message.startswith(f"{path}: the decoded events are invalid (")


@pytest.mark.parametrize("fill", [0, 2**40])
def test_the_order_flag_compares_each_timestamp_with_the_one_before_it(fill):
    """Whatever the output columns held before (they are allocated, not zeroed), the flag says
    whether a timestamp is smaller than its predecessor."""
    for stamps, in_order in (([1, 5, 3], False), ([1, 5, 7], True), ([4, 2], False), ([3, 3, 9], True)):
        n = len(stamps)
        t = np.full(n, fill, np.int64)
        x, y, p = np.zeros(n, np.int16), np.zeros(n, np.int16), np.zeros(n, np.int8)
        fields = np.array(stamps, np.uint64), np.zeros(n, np.uint16), np.zeros(n, np.uint16), np.ones(n, bool)
        assert _split_packets(*fields, t, x, y, p) is in_order, stamps
        assert t.tolist() == stamps and p.tolist() == [1] * n


def test_of_two_event_streams_only_the_first_is_read(tmp_path):
    config = dv.io.MonoCameraWriter.Config("TestCamera")
    config.addEventStream((40, 30))  # stream 0
    config.addEventStream((40, 30), "events2")  # a second event stream, e.g. a stereo rig's other sensor
    writer = dv.io.MonoCameraWriter(str(tmp_path / "two.aedat4"), config)
    for row, stream in (((1000, 1, 2, True), "events"), ((1500, 7, 8, False), "events2")):
        store = dv.EventStore()
        store.push_back(*row)
        writer.writeEvents(store, streamName=stream)
    del writer
    events = read_aedat4_events(tmp_path / "two.aedat4")
    assert (events.t.tolist(), events.x.tolist(), events.p.tolist()) == ([1000], [1], [1])


def test_a_decrease_two_events_back_is_still_sorted(tmp_path):
    rows = np.array([(1, 0, 0, True), (5, 1, 0, True), (3, 2, 0, True)], dtype=PACKET_DTYPE)
    events = _event_stream(tmp_path / "r.aedat4", [rows[:2], rows[2:]], 8, 8)
    assert events.t.tolist() == [1, 3, 5] and events.x.tolist() == [0, 2, 1]


# --- the packet index's frame lengths ------------------------------------------------------------------


def lz4_frame(flags: int, blocks: list[bytes], uncompressed: bool = False) -> bytes:
    """An LZ4 frame (format 1.6): magic, FLG (version 01 and `flags`), BD, [content size], [dict id],
    HC, blocks with [checksums], end mark, [content checksum]. Payloads are not checked, only sizes."""
    frame = LZ4_MAGIC + bytes([0x40 | flags, 0x40])
    frame += bytes(8) if flags & 0x08 else b""
    frame += b"DICT" if flags & 0x01 else b""
    frame += b"\xaa"  # header checksum
    for block in blocks:
        frame += struct.pack("<I", len(block) | (0x80000000 if uncompressed else 0)) + block
        frame += b"BSUM" if flags & 0x10 else b""
    frame += struct.pack("<I", 0) + (b"CSUM" if flags & 0x04 else b"")
    return frame


@pytest.mark.parametrize("flags", [sum(bits) for n in range(5) for bits in itertools.combinations((8, 1, 16, 4), n)])
@pytest.mark.parametrize("uncompressed", [False, True])
def test_lz4_frame_length_for_every_header_flag(flags, uncompressed):
    frame = lz4_frame(flags, [b"abc", b"hello world" * 3], uncompressed)
    assert _lz4_frame_length(frame + b"after the frame") == len(frame)
    assert _compressed_length(frame, LZ4) == len(frame)
    for cut in range(len(frame)):
        assert _lz4_frame_length(frame[:cut]) is None, cut


def zstd_frame(descriptor: int, blocks: list[tuple[int, int]], window: bool) -> bytes:
    """A zstd frame (RFC 8878): magic, descriptor, [window descriptor], [dictionary id], [content
    size], blocks (type 0 raw, 1 RLE, 2 compressed: (type, size); the last one marked last), [checksum]."""
    single = descriptor >> 5 & 1
    frame = ZSTD_MAGIC + bytes([descriptor]) + (b"" if single else b"W")
    frame += bytes((0, 1, 2, 4)[descriptor & 3])
    frame += bytes((1 if single else 0, 2, 4, 8)[descriptor >> 6])
    for k, (kind, size) in enumerate(blocks):
        last = k == len(blocks) - 1
        frame += (size << 3 | kind << 1 | last).to_bytes(3, "little") + bytes(1 if kind == 1 else size)
    return frame + (b"CSUM" if descriptor & 0x04 else b"")


DESCRIPTORS = [fcs << 6 | single << 5 | checksum << 2 | dictionary for fcs in range(4) for single in (0, 1)
               for checksum in (0, 1) for dictionary in range(4)]  # fmt: skip


@pytest.mark.parametrize("descriptor", DESCRIPTORS)
def test_zstd_frame_length_for_every_header_field(descriptor):
    frame = zstd_frame(descriptor, [(0, 5), (1, 7), (2, 9), (0, 0)], window=True)
    assert _zstd_frame_length(frame + b"after the frame") == len(frame)
    assert _compressed_length(frame, ZSTD) == len(frame)
    for cut in range(len(frame)):
        assert _zstd_frame_length(frame[:cut]) is None, cut


def test_zstd_frames_of_one_block_and_a_reserved_block():
    for kind, size in ((0, 0), (1, 300), (2, 4)):
        frame = zstd_frame(0x20, [(kind, size)], window=False)
        assert _zstd_frame_length(frame) == len(frame), kind
    assert _zstd_frame_length(zstd_frame(0x20, [(0, 3), (3, 2)], window=False)) is None


def test_compressed_length_needs_the_formats_magic_and_a_whole_size():
    assert _compressed_length(bytes(20), LZ4) is None  # zeros would parse as an LZ4 frame without its magic
    assert _zstd_frame_length(bytes(6) + b"\x01\x00\x00") == 9  # zeros and one last empty block parse
    assert _compressed_length(bytes(6) + b"\x01\x00\x00", ZSTD) is None  # but lack zstd's magic
    assert _compressed_length(b"\x00\x00\x00\x00", NO_COMPRESSION) == 4
    assert _compressed_length(b"\xff\xff\xff\xff", NO_COMPRESSION) == 4 + 0xFFFFFFFF
    assert _compressed_length(b"\x01\x00", NO_COMPRESSION) is None


# --- frames and decoder errors -------------------------------------------------------------------------


def test_frame_conversion_of_every_layout():
    rgba = np.arange(2 * 2 * 4, dtype=np.uint8).reshape(2, 2, 4)
    assert np.array_equal(frame_uint8(rgba), rgba[..., :3])
    assert np.array_equal(frame_uint8(rgba, bgr=True), rgba[..., [2, 1, 0]])
    assert np.array_equal(frame_uint8(rgba[..., :3], bgr=True), rgba[..., [2, 1, 0]])
    deep = np.array([[0x1234, 0xFFFF], [0x00FF, 0x8000]], dtype=np.uint16)
    gray = frame_uint8(deep)
    assert gray.dtype == np.uint8 and gray.tolist() == [[0x12, 0xFF], [0x00, 0x80]]
    colour = frame_uint8(np.stack([deep, deep // 2, deep // 4], axis=-1), bgr=True)
    assert colour.dtype == np.uint8 and colour[0, 0].tolist() == [0x04, 0x09, 0x12]
    assert frame_uint8(rgba[..., 0]).flags.c_contiguous


def test_decoder_failures_are_aedats_errors_and_its_panics_only():
    panic = type("PanicException", (BaseException,), {})
    assert decoder_failed(panic("range end index out of range")) and decoder_failed(RuntimeError("bad"))
    assert not decoder_failed(KeyboardInterrupt()) and not decoder_failed(type("Other", (BaseException,), {})())


def test_reading_events_alone_ignores_frames_it_could_not_stack(tmp_path):
    """read_aedat4_events does not decode the frames: a frame stream read_aedat4 refuses (shapes
    that change) does not stop the events."""
    path = write_dv(tmp_path / "mixed.aedat4", True, True, ((1000, 1, 1, True),), frame_shapes=((30, 40), (20, 40)))
    assert read_aedat4_events(path).t.tolist() == [1000]
    assert error_of(read_aedat4, path) == (
        f"{path}: the frame stream mixes frame shapes [(20, 40), (30, 40)] (regions of interest or colour changes); "
        "only recordings whose frames share one shape can be read."
    )


def test_a_copy_keeps_its_own_path(tmp_path):
    copy = Path(shutil.copy(STREET, tmp_path / "copy.aedat4"))
    assert read_aedat4(copy).path == copy


def test_an_empty_last_packet_ends_the_walk_exactly(tmp_path):
    from velora.events.aedat4 import _check_packets

    path = aedat4_file(tmp_path / "empty-packet.aedat4", io_header(0, -1, b"<dv/>"), struct.pack("<iI", 0, 0))
    _check_packets(path, {0}, NO_COMPRESSION, -1)  # 8 bytes: a packet header announcing no bytes
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(DataError, match="truncated inside the packet header"):
        _check_packets(path, {0}, NO_COMPRESSION, -1)


def test_packets_of_two_layouts_are_cast_to_one(tmp_path):
    aligned = np.dtype([("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("on", "?")], align=True)
    first = np.array([(1, 1, 1, True)], dtype=PACKET_DTYPE)
    second = np.array([(2, 2, 2, False)], dtype=aligned)
    events = _event_stream(tmp_path / "r.aedat4", [first, second], 8, 8)
    assert events.t.tolist() == [1, 2] and events.x.tolist() == [1, 2] and events.p.tolist() == [1, -1]


def test_a_declared_frame_stream_without_frames_gives_its_own_size(tmp_path):
    path = write_dv(tmp_path / "no-frames.aedat4", True, True, frame_shapes=(), frame_stream=(20, 10))
    assert read_aedat4(path).aps_frames.shape == (0, 10, 20)


def test_a_recording_of_two_streams_neither_of_events_names_both(tmp_path):
    path = write_dv(tmp_path / "frames-imu.aedat4", events=False, frames=True, imu=True)
    assert error_of(read_aedat4, path) == (
        f"{path}: the recording has no event stream (streams: frame, imus); VELoRA needs polarity events."
    )
