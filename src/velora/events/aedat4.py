"""AEDAT 4.0 recordings (iniVation DV, DAVIS cameras): events and APS frames on one clock.

The container, as written by DV and dv-processing
(https://docs.inivation.com/software/software-advanced-usage/file-formats/aedat-4.0.html):

    "#!AER-DAT4.0\\r\\n"                      14 bytes of magic
    int32 n, IOHeader flatbuffer (n bytes)   compression, dataTablePosition, infoNode (stream XML)
    packets, each: int32 stream id, uint32 size, `size` bytes of compressed flatbuffer
    file data table at dataTablePosition     an index of the packets, compressed, to the end of file

The `aedat` package (Rust) decodes the packets. It reads them one after another and never looks
at the data table, so a file cut exactly between two packets, or inside the table, decodes
without complaint into a shorter recording. `read_aedat4` therefore first walks the container:
the packet headers must tile the file from the IOHeader to the data table, and the table must be
one whole compressed frame reaching the end of the file. A recording that was never finalised
(dataTablePosition = -1) has no table; there the packets must end exactly at the end of the
file, and a cut exactly between two packets of such a file cannot be told from a short recording.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

import aedat
import numpy as np

from velora.errors import DataError
from velora.events.columns import decoded_stream
from velora.events.jit import compiled
from velora.events.render import EventStream

MAGIC = b"#!AER-DAT4.0\r\n"
LZ4_MAGIC = b"\x04\x22\x4d\x18"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
NO_COMPRESSION, LZ4, LZ4_HIGH, ZSTD, ZSTD_HIGH = range(5)  # IOHeader.compression


@dataclass(frozen=True, eq=False)
class Recording:
    """One AEDAT 4.0 recording: the polarity events and the APS frames of one sensor.

    Fields:
        events: the polarity events (t in microseconds, sorted); `events.width` x `events.height`
            is the sensor size stored in the file's event stream.
        aps_frames: uint8, (N, H, W) for grayscale or (N, H, W, 3) for colour (RGB order).
            16-bit frames keep their high byte; RGBA frames drop alpha. (0, H, W) when the file
            has no frames.
        frame_timestamps_us: int64 (N,), the START of each frame's exposure, microseconds, on the
            clock of `events.t`. dv-processing's `Frame.timestamp` uses the same convention. The
            packet-level frame time is not used: DV software writes the middle of the exposure
            there, dv-processing writes the start, so it depends on the writer.
        frame_exposure_us: int64 (N,), exposure duration (end - start), microseconds.
        path: the file read.
    """

    events: EventStream
    aps_frames: np.ndarray
    frame_timestamps_us: np.ndarray
    frame_exposure_us: np.ndarray
    path: Path

    @property
    def sensor_size(self) -> tuple[int, int]:
        """(width, height) of the event sensor in pixels, as stored in the file."""
        return self.events.width, self.events.height

    @property
    def frame_exposure_middle_us(self) -> np.ndarray:
        """int64 (N,), middle of each frame's exposure in microseconds (start + duration // 2)."""
        return self.frame_timestamps_us + self.frame_exposure_us // 2


def read_aedat4(path: str | Path) -> Recording:
    """Read the first event stream and the first frame stream of an AEDAT 4.0 file.

    Raises DataError, naming the file, when it is missing, empty, not AEDAT 4.0, truncated,
    corrupt, has no event stream, or holds frames of different sizes or channel counts.
    """
    return _read(Path(path), with_frames=True)


def read_aedat4_events(path: str | Path, width: int | None = None, height: int | None = None) -> EventStream:
    """The events of an AEDAT 4.0 file, with the file's sensor size (width/height are ignored),
    without turning its frames into images; for `read_events`. Checks and errors as read_aedat4."""
    return _read(Path(path), with_frames=False).events


def _read(path: Path, with_frames: bool) -> Recording:
    compression, data_table_position = _check_header(path)
    decoder = _open_decoder(path)
    streams = decoder.id_to_stream()
    _check_packets(path, set(streams), compression, data_table_position)

    event_ids = sorted(i for i, stream in streams.items() if stream["type"] == "events")
    frame_ids = sorted(i for i, stream in streams.items() if stream["type"] == "frame")
    if not event_ids:
        found = ", ".join(streams[i]["type"] for i in sorted(streams)) or "none"  # aedat's dict has no fixed order
        raise DataError(f"{path}: the recording has no event stream (streams: {found}); VELoRA needs polarity events.")
    width, height = streams[event_ids[0]]["width"], streams[event_ids[0]]["height"]

    event_chunks, frames = [], []
    try:
        for packet in decoder:
            if event_ids[0] == packet["stream_id"] and "events" in packet:
                event_chunks.append(packet["events"])
            elif with_frames and frame_ids and frame_ids[0] == packet["stream_id"] and "frame" in packet:
                frames.append(packet["frame"])
    except BaseException as error:
        if not decoder_failed(error):
            raise
        raise DataError(f"{path}: a packet could not be decoded ({error}); the file is corrupt, re-copy it.") from None
    del decoder  # the Rust decoder holds the file open until it is collected

    events = _event_stream(path, event_chunks, width, height)
    frame_size = (streams[frame_ids[0]]["height"], streams[frame_ids[0]]["width"]) if frame_ids else (height, width)
    aps_frames = _stack_frames(path, frames, frame_size)
    begin = np.array([frame["exposure_begin_t"] for frame in frames], dtype=np.int64)
    end = np.array([frame["exposure_end_t"] for frame in frames], dtype=np.int64)
    return Recording(events, aps_frames, begin, end - begin, path)


# aedat's event packets: t u8, x u2, y u2, on bool, packed (13 bytes a record)
PACKET_DTYPE = np.dtype([("t", "<u8"), ("x", "<u2"), ("y", "<u2"), (("p", "on"), "?")])


def _event_stream(path: Path, chunks: list[np.ndarray], width: int, height: int) -> EventStream:
    """One EventStream from aedat's packets (structured arrays t u8, x u2, y u2, on ?).

    The packets are joined as bytes into one structured array, then one compiled pass writes the
    four columns in their final dtypes and notes whether t ever decreases. The NumPy version (a
    concatenation per column, then a separate order check) took a third of the reader's time, more
    than the gap to faery (benchmarks/README.md, "Event-file readers")."""
    if not chunks:
        t, x, y, p = (np.zeros(0, dtype) for dtype in (np.int64, np.int16, np.int16, np.int8))
        return decoded_stream(path, t, x, y, p, width, height)
    dtype = chunks[0].dtype
    if dtype != PACKET_DTYPE or not all(chunk.dtype == dtype and chunk.flags.c_contiguous for chunk in chunks):
        chunks = [np.ascontiguousarray(chunk.astype(PACKET_DTYPE)) for chunk in chunks]  # never seen so far
    # joined as bytes: np.concatenate of structured arrays promotes their dtype once per packet
    packets = np.concatenate([chunk.view(np.uint8) for chunk in chunks]).view(PACKET_DTYPE)
    n = len(packets)
    t, x, y, p = np.empty(n, np.int64), np.empty(n, np.int16), np.empty(n, np.int16), np.empty(n, np.int8)
    in_order = compiled(_split_packets)(packets["t"], packets["x"], packets["y"], packets["on"], t, x, y, p)
    return decoded_stream(path, t, x, y, p, width, height, in_order=bool(in_order))


def _split_packets(t_in, x_in, y_in, on_in, t, x, y, p):
    """Columns t int64, x/y int16, p -1/+1 from the packets' fields; True if t never decreases.
    Coordinates are range-checked afterwards by EventStream; a t beyond int64 wraps negative and
    fails its order check."""
    in_order = True
    for i in range(t_in.shape[0]):
        t[i] = t_in[i]
        x[i] = x_in[i]
        y[i] = y_in[i]
        p[i] = 1 if on_in[i] else -1
        if i and t[i] < t[i - 1]:
            in_order = False
    return in_order


def _stack_frames(path: Path, frames: list[dict], frame_size: tuple[int, int]) -> np.ndarray:
    """(N, H, W) or (N, H, W, 3) uint8 from aedat's frame dicts."""
    if not frames:
        return np.zeros((0, *frame_size), dtype=np.uint8)
    images = [frame_uint8(frame["pixels"]) for frame in frames]
    shapes = sorted({image.shape for image in images})
    if len(shapes) > 1:
        raise DataError(
            f"{path}: the frame stream mixes frame shapes {shapes} (regions of interest or colour changes); "
            "only recordings whose frames share one shape can be read."
        )
    return np.stack(images)


def frame_uint8(pixels: np.ndarray, bgr: bool = False) -> np.ndarray:
    """An APS frame as velora reads it: uint8, RGB order without alpha (from RGB(A), or from BGR(A)
    with `bgr`, as OpenCV and DV's network stream give it), a 16-bit readout's high byte."""
    if pixels.ndim == 3:
        pixels = pixels[..., 2::-1] if bgr else pixels[..., :3]
    if pixels.dtype != np.uint8:
        pixels = pixels >> 8  # 16-bit APS readout -> its high byte
    return np.ascontiguousarray(pixels, dtype=np.uint8)


def _open_decoder(path: Path) -> aedat.Decoder:
    try:
        return aedat.Decoder(str(path))
    except BaseException as error:
        if not decoder_failed(error):
            raise
        raise DataError(
            f"{path}: aedat cannot decode the stream list ({error}); the file is corrupt or unsupported."
        ) from None


def decoder_failed(error: BaseException) -> bool:
    """Whether `error` is aedat's report of a malformed file.

    Besides its own errors, aedat's Rust code panics on some malformed flatbuffers (an index past
    the end of a buffer); pyo3 raises a panic as PanicException, which derives from BaseException
    (not Exception) and cannot be imported, so it is recognised by name.
    """
    return isinstance(error, (RuntimeError, ValueError, OSError)) or type(error).__name__ == "PanicException"


def _check_header(path: Path) -> tuple[int, int]:
    """Check the magic and the IOHeader; returns (compression, dataTablePosition or -1 if not finalised)."""
    try:
        with path.open("rb") as file:
            head = file.read(len(MAGIC) + 4)
            if len(head) == 0:
                raise DataError(f"{path}: the file is empty (0 bytes); re-copy or re-record it.")
            if not (head.startswith(MAGIC) or MAGIC.startswith(head)):
                raise DataError(
                    f"{path}: not an AEDAT 4.0 file (it starts with {head[:14]!r}, expected {MAGIC!r}); "
                    "check the file or its suffix."
                )
            if len(head) < len(MAGIC) + 4:
                raise DataError(f"{path}: truncated inside the AEDAT 4.0 header ({len(head)} bytes); re-copy the file.")
            (header_size,) = struct.unpack_from("<i", head, len(MAGIC))
            header = file.read(max(header_size, 0))
    except OSError as error:
        raise DataError(
            f"{path}: cannot be read ({error.strerror or error}); check the path and permissions."
        ) from None
    if header_size <= 0:
        raise DataError(f"{path}: the AEDAT 4.0 header is corrupt (size {header_size}); re-copy the file.")
    if len(header) < header_size:
        raise DataError(
            f"{path}: truncated inside the AEDAT 4.0 header ({len(header)} of {header_size} bytes); re-copy the file."
        )
    try:
        compression, data_table_position, description = _io_header_fields(header)
    except (struct.error, IndexError):
        raise DataError(
            f"{path}: the AEDAT 4.0 header is corrupt (its flatbuffer does not parse); re-copy the file."
        ) from None
    if compression not in (NO_COMPRESSION, LZ4, LZ4_HIGH, ZSTD, ZSTD_HIGH):
        raise DataError(f"{path}: the AEDAT 4.0 header names unknown compression {compression}; the file is corrupt.")
    try:
        description.decode("utf-8")
    except UnicodeDecodeError:
        # aedat reads this string without checking it; invalid UTF-8 there aborts the interpreter
        raise DataError(
            f"{path}: the AEDAT 4.0 header's stream description is not UTF-8 text; the file is corrupt."
        ) from None
    return compression, data_table_position


def _io_header_fields(header: bytes) -> tuple[int, int, bytes]:
    """(compression, dataTablePosition, description) of the IOHeader flatbuffer: fields 0, 1 and 2,
    defaults 0, -1 and empty. IndexError or struct.error when an offset points outside the header."""

    def read(fmt: str, offset: int) -> int:
        if offset < 0:  # struct counts negative offsets from the end; here it means corruption
            raise IndexError(offset)
        return struct.unpack_from(fmt, header, offset)[0]

    table = read("<I", 0)
    vtable = table - read("<i", table)
    vtable_size = read("<H", vtable)

    def field(index: int, fmt: str, default: int) -> int:
        slot = 4 + 2 * index
        offset = read("<H", vtable + slot) if slot + 2 <= vtable_size else 0
        return read(fmt, table + offset) if offset else default

    description = field(2, "<I", 0)  # an offset from the field to the string: uint32 length, bytes
    if description:
        start = table + read("<H", vtable + 8) + description
        end = start + 4 + read("<I", start)
        if end > len(header):
            raise IndexError(end)
    return field(0, "<i", NO_COMPRESSION), field(1, "<q", -1), header[start + 4 : end] if description else b""


def _check_packets(path: Path, stream_ids: set[int], compression: int, data_table_position: int) -> None:
    """Walk the packet headers: they must tile [IOHeader end, data table) and the table must be whole."""
    file_size = path.stat().st_size
    packets_end = data_table_position if data_table_position >= 0 else file_size
    if packets_end > file_size:
        raise DataError(
            f"{path}: truncated: the header places the packet index at byte {packets_end} "
            f"but the file has {file_size} bytes; re-copy the file."
        )
    with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as view:  # no read per packet
        (header_size,) = struct.unpack_from("<i", view, len(MAGIC))
        position = len(MAGIC) + 4 + header_size
        while position < packets_end:
            if position + 8 > packets_end:
                raise DataError(f"{path}: truncated inside the packet header at byte {position}; re-copy the file.")
            stream_id, size = struct.unpack_from("<iI", view, position)
            if stream_id not in stream_ids:
                raise DataError(
                    f"{path}: corrupt packet at byte {position} (stream id {stream_id}, the header declares "
                    f"{sorted(stream_ids)}); re-copy or re-export the file."
                )
            position += 8 + size
            if position > packets_end:
                raise DataError(
                    f"{path}: truncated: the packet at byte {position - 8 - size} needs {size} bytes and runs past "
                    f"{'the packet index at byte ' if data_table_position >= 0 else 'the end of the file at byte '}"
                    f"{packets_end}; re-copy the file."
                )
        table = view[packets_end:]
    if data_table_position >= 0 and _compressed_length(table, compression) != len(table):
        raise DataError(
            f"{path}: truncated or corrupt packet index at the end of the file (from byte {data_table_position}); re-copy the file."
        )


def _compressed_length(table: bytes, compression: int) -> int | None:
    """Byte length of the data table at the start of `table`: an LZ4 frame, a zstd frame or a
    size-prefixed flatbuffer (no compression). None when its structure is broken or runs past the end."""
    if compression in (LZ4, LZ4_HIGH):
        return _lz4_frame_length(table) if table.startswith(LZ4_MAGIC) else None
    if compression in (ZSTD, ZSTD_HIGH):
        return _zstd_frame_length(table) if table.startswith(ZSTD_MAGIC) else None
    return 4 + struct.unpack_from("<I", table)[0] if len(table) >= 4 else None


def _lz4_frame_length(frame: bytes) -> int | None:
    """LZ4 frame format 1.6: magic, FLG, BD, [content size 8], [dict id 4], HC, blocks, end mark, [checksum 4]."""
    if len(frame) < 7:
        return None
    flags = frame[4]
    position = 6 + (8 if flags & 0x08 else 0) + (4 if flags & 0x01 else 0) + 1
    block_checksum = 4 if flags & 0x10 else 0
    while True:
        if position + 4 > len(frame):
            return None
        (block_size,) = struct.unpack_from("<I", frame, position)
        position += 4
        if block_size == 0:  # end mark
            end = position + (4 if flags & 0x04 else 0)  # the content checksum
            return end if end <= len(frame) else None
        position += (block_size & 0x7FFFFFFF) + block_checksum


def _zstd_frame_length(frame: bytes) -> int | None:
    """Zstandard frame (RFC 8878): magic, header, blocks with 3-byte headers, [checksum 4]."""
    if len(frame) < 5:
        return None
    descriptor = frame[4]
    single_segment = descriptor >> 5 & 1
    content_size_bytes = (1 if single_segment else 0, 2, 4, 8)[descriptor >> 6]
    position = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[descriptor & 3] + content_size_bytes
    while True:
        if position + 3 > len(frame):
            return None
        block_header = int.from_bytes(frame[position : position + 3], "little")
        block_type, block_size = block_header >> 1 & 3, block_header >> 3
        if block_type == 3:  # reserved: not a zstd block
            return None
        position += 3 + (1 if block_type == 1 else block_size)  # an RLE block stores one byte
        if block_header & 1:  # last block
            end = position + (4 if descriptor & 0x04 else 0)  # the content checksum
            return end if end <= len(frame) else None
