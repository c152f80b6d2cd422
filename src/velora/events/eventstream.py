"""Event Stream files (.es, version 2.x), the format of sepia, tarsier and faery.

Specification: https://github.com/neuromorphic-paris/event_stream (version 2.0). The file starts with
"Event Stream" (12 bytes), the version (major, minor, patch bytes) and the stream type (byte 15); DVS
and ATIS streams then store the sensor width and height (uint16 little-endian, bytes 16-19), and
events follow from byte 20. Each event starts with a byte holding the time since the previous event
and its flags, then x and y (uint16 little-endian each), so an event is 5 bytes:

    DVS   byte 0 = t[6:0] << 1 | is_increase         0xFF: overflow, t += 127    0xFE: reset (no-op)
    ATIS  byte 0 = t[5:0] << 2 | polarity << 1 | is_tc   0b111111nn: overflow, t += 63 * nn (nn = 0: reset)

Timestamps start at 0 (the file keeps no absolute time). The y axis of Event Stream points up (the
origin is the bottom-left corner, as sepia and faery read it), so y is flipped to the package's
top-left origin: y = height - 1 - y in the file.

ATIS streams mix change detections (is_tc = 0) and exposure measurements (is_tc = 1: a pair of
threshold crossings whose time difference encodes the pixel's brightness). The change detections
become polarity events (polarity = is_increase); the exposure measurements are not polarity events
and are dropped, and counted in `EsRecording.exposures` (faery drops them too).

Generic streams (type 0) hold user-defined bytes without pixel addresses; colour and display
streams (types 4, 3) hold no polarity: these raise DataError. So do other major versions, a file
cut inside an event, and an event outside the header's sensor (with its byte offset).

The decoding is a byte-by-byte state machine (an event's length depends on the bytes before it), so
it is a loop compiled by numba (velora.events.jit).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from velora.errors import DataError
from velora.events.columns import decoded_stream, read_file_bytes
from velora.events.jit import compiled
from velora.events.render import EventStream

__all__ = ["EsRecording", "read_es", "read_es_events"]

MAGIC = b"Event Stream"
HEADER_BYTES = 20  # magic, version (3), type (1), width and height (2 + 2)
EVENT_BYTES = 5
DVS, ATIS = 1, 2
STREAM_TYPES = {0: "generic", 1: "DVS", 2: "ATIS", 3: "asynchronous display", 4: "colour"}
TRUNCATED, OUTSIDE_SENSOR = 1, 2  # error codes of the decoding loops


@dataclass(frozen=True)
class EsRecording:
    """The polarity events of an .es file: `events`, the stream type ("DVS" or "ATIS"), the file's
    version (major, minor, patch) and the ATIS exposure measurements dropped (0 for DVS)."""

    events: EventStream
    stream_type: str
    version: tuple[int, int, int]
    exposures: int


def read_es(path: str | Path) -> EsRecording:
    """Read a DVS or ATIS Event Stream 2.x file (see the module docstring); the size is the header's."""
    path = Path(path)
    data = read_file_bytes(path)
    if not data.startswith(MAGIC) and not MAGIC.startswith(data):
        raise DataError(
            f"{path}: not an Event Stream file (it starts with {data[:12]!r}, expected {MAGIC!r}); "
            "check the file or its suffix."
        )
    if len(data) < 16:
        raise DataError(f"{path}: truncated inside the Event Stream header ({len(data)} bytes); re-copy the file.")
    version, stream_type = (data[12], data[13], data[14]), data[15]
    if version[0] != 2:
        raise DataError(
            f"{path}: Event Stream version {'.'.join(map(str, version))}; this reader knows version 2.x. "
            "Convert the file with faery or sepia."
        )
    if stream_type not in (DVS, ATIS):
        kind = STREAM_TYPES.get(stream_type, f"unknown type {stream_type}")
        raise DataError(
            f"{path}: an Event Stream of {kind} events (type byte {stream_type}), which are not polarity events "
            "with pixel addresses; only DVS and ATIS streams can be read."
        )
    if len(data) < HEADER_BYTES:
        raise DataError(f"{path}: truncated inside the Event Stream header ({len(data)} bytes); re-copy the file.")
    width, height = int.from_bytes(data[16:18], "little"), int.from_bytes(data[18:20], "little")
    if not (0 < width < 1 << 15 and 0 < height < 1 << 15):
        raise DataError(
            f"{path}: the header's sensor size {width} x {height} is not possible (1 to 32767 pixels a side); "
            "the header is corrupt."
        )
    body = np.frombuffer(data, dtype=np.uint8)
    capacity = (len(data) - HEADER_BYTES) // EVENT_BYTES
    t = np.empty(capacity, dtype=np.int64)
    x = np.empty(capacity, dtype=np.int16)
    y = np.empty(capacity, dtype=np.int16)
    p = np.empty(capacity, dtype=np.int8)
    loop = compiled(_decode_dvs if stream_type == DVS else _decode_atis)
    n, error, offset, exposures = loop(body, HEADER_BYTES, width, height, t, x, y, p)
    if error == TRUNCATED:
        raise DataError(
            f"{path}: truncated: the event at byte {offset} has {len(data) - offset} of its {EVENT_BYTES} bytes; "
            "re-copy the file."
        )
    if error == OUTSIDE_SENSOR:
        column, row = (int.from_bytes(data[offset + start : offset + start + 2], "little") for start in (1, 3))
        raise DataError(
            f"{path}: the event at byte {offset} has x={column}, y={row}, outside the {width} x {height} sensor; "
            "the file is corrupt."
        )
    events = decoded_stream(path, t[:n], x[:n], y[:n], p[:n], width, height, in_order=True)  # times only grow
    return EsRecording(events, STREAM_TYPES[stream_type], version, exposures)


def read_es_events(path: str | Path, width: int | None = None, height: int | None = None) -> EventStream:
    """The EventStream of an .es file, for `read_events` (the size is always the header's)."""
    return read_es(path).events


# --- the loops, compiled by numba -------------------------------------------------------------------
# Each returns (events, error, byte offset, exposure measurements) and writes events at [0, events).


def _decode_dvs(data, start, width, height, t, x, y, p):
    time, n, i, end = 0, 0, start, data.shape[0]
    while i < end:
        first = int(data[i])
        if first == 0xFF:  # overflow
            time += 127
            i += 1
        elif first == 0xFE:  # reset
            i += 1
        else:
            if i + 5 > end:
                return n, TRUNCATED, i, 0
            time += first >> 1
            column, row = int(data[i + 1]) | int(data[i + 2]) << 8, int(data[i + 3]) | int(data[i + 4]) << 8
            if column >= width or row >= height:
                return n, OUTSIDE_SENSOR, i, 0
            t[n], x[n], y[n], p[n] = time, column, height - 1 - row, 1 if first & 1 else -1
            n += 1
            i += 5
    return n, 0, 0, 0


def _decode_atis(data, start, width, height, t, x, y, p):
    time, n, i, end, exposures = 0, 0, start, data.shape[0], 0
    while i < end:
        first = int(data[i])
        if (first & 0xFC) == 0xFC:  # overflow (0b111111nn: nn times 63 us; nn = 0 is a reset)
            time += 63 * (first & 0x3)
            i += 1
        else:
            if i + 5 > end:
                return n, TRUNCATED, i, exposures
            time += first >> 2
            column, row = int(data[i + 1]) | int(data[i + 2]) << 8, int(data[i + 3]) | int(data[i + 4]) << 8
            if column >= width or row >= height:
                return n, OUTSIDE_SENSOR, i, exposures
            if first & 0x1:  # a threshold crossing of an exposure measurement
                exposures += 1
            else:
                t[n], x[n], y[n], p[n] = time, column, height - 1 - row, 1 if first & 0x2 else -1
                n += 1
            i += 5
    return n, 0, 0, exposures
