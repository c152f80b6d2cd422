"""AEDAT 2.0 and 3.1 files (.aedat): jAER and cAER recordings, v2e output, the DVS128 Gesture dataset.

The first line names the version: `#!AER-DAT2.0` or `#!AER-DAT3.1` (a `#!AER-DAT4.0` file named .aedat
is read by velora.events.aedat4). Formats: https://docs.inivation.com/software/software-advanced-usage/
file-formats/ (aedat-2.0.html, aedat-3.1.html).

AEDAT 2.0 (jAER, v2e): '#' header lines, then events of a big-endian int32 address and int32
timestamp (us). The address layout depends on the camera, which jAER names in the header
(`# AEChip: ...DVS128`, `...DAVIS240C`, `...Davis346B`):

    DVS128   x bits 1-7, y bits 8-14, bit 0: 1 = OFF; bit 15 set: a sync/special event (skipped)
    DAVIS    x bits 12-21, y bits 22-30, bit 11: 1 = ON; bit 31 set: an APS or IMU sample, bit 10
             set: an external input event (both skipped)

jAER counts y from the bottom and its extractors mirror x (x = width - 1 - raw x), so both are flipped
to the package's top-left origin: x = width - 1 - raw x, y = height - 1 - raw y (as v2e writes them).
The flips need the sensor size: from the header's camera name (table below), else the width/height
arguments, else max raw coordinate + 1, in which case coordinates are exact only if the recording
reached the sensor's last row and column: pass width/height for v2e files, whose header names no
camera. A header without a camera name is read with the DAVIS layout (v2e's).

AEDAT 3.1 (cAER, libcaer; DVS128 Gesture): text lines up to `#!END-HEADER`, then packets: a 28-byte
little-endian header (int16 eventType, int16 eventSource, int32 eventSize, eventTSOffset,
eventTSOverflow, eventCapacity, eventNumber, eventValid) and eventNumber events of eventSize bytes.
Polarity packets (type 1) hold 8-byte events: uint32 data (bit 0 valid, bit 1 polarity 1 = ON,
y bits 2-16, x bits 17-31, origin top-left) and int32 timestamp; the time is eventTSOverflow << 31 |
timestamp. Events whose valid bit is 0 and packets of other types (special, frame, IMU, ...) are
skipped. The size comes from the camera of `#Source 1: DVS128` (table), else the arguments, else
max coordinate + 1.

    camera name in the header    size
    DVS128                       128 x 128
    DAVIS240 (A, B, C)           240 x 180
    DAVIS346 (B, Red, Color...)  346 x 260

Timestamps wrap around in AEDAT 2.0 (uint32 us, 71 minutes): a drop of at least 2**31 counts as one.
A truncated event or packet, or a field no valid file holds, raises DataError with its byte offset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from velora.errors import DataError
from velora.events.aedat4 import read_aedat4_events
from velora.events.columns import decoded_stream, read_file_bytes, sensor_size, unwrap_uint32
from velora.events.render import EventStream

__all__ = ["read_aedat"]

CAMERAS = (("DVS128", (128, 128)), ("DAVIS240", (240, 180)), ("DAVIS346", (346, 260)))
PACKET_HEADER = np.dtype(
    [("type", "<i2"), ("source", "<i2"), ("size", "<i4"), ("ts_offset", "<i4"), ("ts_overflow", "<i4"),
     ("capacity", "<i4"), ("number", "<i4"), ("valid", "<i4")]
)  # fmt: skip
POLARITY_EVENT = 1
POLARITY_BYTES = 8
END_OF_HEADER = b"#!END-HEADER"


def read_aedat(path: str | Path, width: int | None = None, height: int | None = None) -> EventStream:
    """Read the polarity events of an AEDAT 2.0 or 3.1 file (see the module docstring).

    width, height: the sensor size when the header names no known camera.
    """
    path = Path(path)
    data = read_file_bytes(path)
    first_line = data.split(b"\n", 1)[0].strip()
    if first_line == b"#!AER-DAT4.0":
        return read_aedat4_events(path)
    if first_line not in (b"#!AER-DAT2.0", b"#!AER-DAT3.1"):
        shown = first_line[:20] if first_line.startswith(b"#!AER-DAT") else data[:12]
        raise DataError(
            f"{path}: not an AEDAT 2.0 or 3.1 file (it starts with {shown!r}); this reader knows #!AER-DAT2.0, "
            "#!AER-DAT3.1 and #!AER-DAT4.0. Convert older files with jAER or DV."
        )
    if first_line == b"#!AER-DAT2.0":
        return _read_aedat2(path, data, width, height)
    return _read_aedat31(path, data, width, height)


def _camera_size(header: bytes) -> tuple[str, tuple[int, int]] | None:
    text = header.decode("ascii", "replace").upper()
    for name, size in CAMERAS:
        if name in text:
            return name, size
    return None


def _read_aedat2(path: Path, data: bytes, width: int | None, height: int | None) -> EventStream:
    start = 0
    while data[start : start + 1] == b"#":  # header lines; the next line not starting with '#' is data
        end = data.find(b"\n", start)
        start = len(data) if end < 0 else end + 1
    camera = _camera_size(data[:start])
    if (len(data) - start) % 8:
        last = start + (len(data) - start) // 8 * 8
        raise DataError(
            f"{path}: truncated: the event at byte {last} has {len(data) - last} of its 8 bytes; re-copy the file."
        )
    records = np.frombuffer(data, dtype=">u4", offset=start).reshape(-1, 2).astype(np.uint32)  # to native order once
    address = records[:, 0]
    if camera and camera[0] == "DVS128":
        pixel = (address & 0x8000) == 0
        raw_x, raw_y, on = (address >> 1) & 0x7F, (address >> 8) & 0x7F, (address & 1) == 0
    else:
        pixel = (address & 0x80000400) == 0  # not an APS/IMU sample (bit 31), not an external input (bit 10)
        raw_x, raw_y, on = (address >> 12) & 0x3FF, (address >> 22) & 0x1FF, (address & 0x800) != 0
    kept = np.flatnonzero(pixel)
    raw_x, raw_y, on = raw_x[kept].astype(np.int16), raw_y[kept].astype(np.int16), on[kept]
    t = unwrap_uint32(records[kept, 1].astype(np.int64))
    size = camera[1] if camera else ((width, height) if width is not None and height is not None else None)
    if size is None:
        size = sensor_size(path, raw_x, raw_y, width, height)
    if len(kept) and (raw_x.max() >= size[0] or raw_y.max() >= size[1]):
        first = int(np.argmax((raw_x >= size[0]) | (raw_y >= size[1])))
        raise DataError(
            f"{path}: the event at byte {start + 8 * int(kept[first])} has x={raw_x[first]}, y={raw_y[first]} (jAER's "
            f"axes), outside the {size[0]} x {size[1]} sensor{' of the ' + camera[0] if camera else ''}; "
            f"{'the file is corrupt' if camera else 'pass the sensor width= and height='}."
        )
    x, y = size[0] - 1 - raw_x, size[1] - 1 - raw_y
    p = np.where(on, 1, -1).astype(np.int8)
    return decoded_stream(path, t, x, y, p, *size)


def _read_aedat31(path: Path, data: bytes, width: int | None, height: int | None) -> EventStream:
    end = data.find(END_OF_HEADER)
    if end < 0:
        raise DataError(
            f"{path}: the AEDAT 3.1 header never ends (no {END_OF_HEADER.decode()} line); the file is truncated or corrupt."
        )
    start = data.find(b"\n", end)
    start = len(data) if start < 0 else start + 1
    camera = _camera_size(data[:end])
    payloads, overflows, position = [], [], start
    while position < len(data):
        if position + PACKET_HEADER.itemsize > len(data):
            raise DataError(f"{path}: truncated inside the packet header at byte {position}; re-copy the file.")
        header = np.frombuffer(data, dtype=PACKET_HEADER, count=1, offset=position)[0]
        size, number = int(header["size"]), int(header["number"])
        if size <= 0 or number < 0 or not 0 <= int(header["valid"]) <= number or int(header["ts_overflow"]) < 0:
            raise DataError(
                f"{path}: corrupt packet header at byte {position} (event size {size}, {number} events, "
                f"{int(header['valid'])} valid, timestamp overflow {int(header['ts_overflow'])}); re-copy the file."
            )
        body = position + PACKET_HEADER.itemsize
        if body + size * number > len(data):
            raise DataError(
                f"{path}: truncated: the packet at byte {position} holds {number} events of {size} bytes, which run past "
                f"the end of the file at byte {len(data)}; re-copy the file."
            )
        if header["type"] == POLARITY_EVENT:
            if size != POLARITY_BYTES or int(header["ts_offset"]) != 4:
                raise DataError(
                    f"{path}: the polarity packet at byte {position} has {size}-byte events (timestamp at byte "
                    f"{int(header['ts_offset'])}), not libcaer's 8 (4); the file is corrupt."
                )
            payloads.append(np.frombuffer(data, dtype="<u4", count=2 * number, offset=body).reshape(-1, 2))
            overflows.append((int(header["ts_overflow"]), number, body))
        position = body + size * number
    return _polarity_events(path, payloads, overflows, camera, width, height)


def _polarity_events(path: Path, payloads: list, overflows: list, camera, width, height) -> EventStream:
    """EventStream of AEDAT 3.1 polarity packets: (N, 2) uint32 events and (overflow, count, offset) each."""
    events = np.concatenate(payloads) if payloads else np.zeros((0, 2), dtype="<u4")
    counts = np.array([count for _, count, _ in overflows], dtype=np.int64)

    def offset(event: int) -> int:  # the byte where the event-th polarity event of the file starts
        packet = int(np.searchsorted(np.cumsum(counts), event, side="right"))
        return overflows[packet][2] + POLARITY_BYTES * (event - int(counts[:packet].sum()))

    stamps = events[:, 1].astype(np.int64)
    if np.any(stamps >= 1 << 31):
        first = int(np.argmax(stamps >= 1 << 31))
        raise DataError(f"{path}: the timestamp at byte {offset(first) + 4} is negative as int32; the file is corrupt.")
    t = np.repeat(np.array([overflow for overflow, _, _ in overflows], dtype=np.int64) << 31, counts) | stamps
    fields = events[:, 0]
    valid = np.flatnonzero(fields & 1)
    fields, t = fields[valid], t[valid]
    x, y = ((fields >> 17) & 0x7FFF).astype(np.int16), ((fields >> 2) & 0x7FFF).astype(np.int16)
    p = np.where(fields & 2, 1, -1).astype(np.int8)
    width, height = camera[1] if camera else sensor_size(path, x, y, width, height)
    if len(x) and (x.max() >= width or y.max() >= height):
        first = int(np.argmax((x >= width) | (y >= height)))
        raise DataError(
            f"{path}: the event at byte {offset(int(valid[first]))} has x={x[first]}, y={y[first]}, outside the "
            f"{width} x {height} sensor{' of the ' + camera[0] if camera else ''}; "
            f"{'the file is corrupt' if camera else 'the file is corrupt or width/height are wrong'}."
        )
    return decoded_stream(path, t, x, y, p, width, height)
