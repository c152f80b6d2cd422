"""Prophesee recordings: RAW (.raw, EVT 2.0 / 2.1 / 3.0) and DAT (.dat, CD events).

Both start with a text header of lines beginning with '%' (it may end at an odd byte; a `% end` line
ends it explicitly), then binary data. What the header gives:

    % evt 3.0                               the EVT version of a .raw file (older recorders)
    % format EVT3;height=720;width=1280      version and sensor size (newer recorders; EVT 2.1 may add
                                            `endianness=legacy`, see velora.events.evt)
    % geometry 1280x720                     sensor size
    % Width 640 / % Height 480 / % Version 2   sensor size and layout version of a .dat file
    % plugin_name hal_plugin_gen3_fx3       the camera plugin (used only to guess a missing size)
    % t0 1001 (or % T0)                     an offset in us added to every timestamp (faery writes it
                                            when it shifts a recording to start at 0)

Sensor size: from the header (format, then geometry, then Width/Height); else the width/height
arguments; else from the sensor table below by plugin name or sensor generation (older Gen3 files
have no geometry line); else max coordinate + 1. Events outside a size from the header or the table
are corruption and raise DataError.

    plugin name contains / sensor_generation    size        sensor
    gen3, gen31 / 3.0, 3.1                      640 x 480   Prophesee Gen3 / Gen3.1 VGA
    gen4, gen41, imx636, imx646 / 4.0-4.2       1280 x 720  Prophesee Gen4 / Sony IMX636 HD
    genx320 / 320                               320 x 320   Prophesee GenX320

RAW (decoding in velora.events.evt): EXT_TRIGGER and OTHERS words (and the CONTINUED words that carry
their payload) are skipped and counted in the returned `RawRecording`, as are the CD events dropped for
lack of state (before the first TIME_HIGH). Recorders cut streams at any byte, so two tails are not
errors: bytes after the last whole word are dropped, and a file that ends inside an EVT 3.0 vector
group (fewer than its 32 columns sent) keeps the events of the vector words that arrived (as faery
does; OpenEB waits for the whole group); both give a DataWarning naming the file.

DAT (https://docs.prophesee.ai/stable/data/file_formats/dat.html): after the header, one byte event
type (0x0C CD, or 0x00 2D, the same layout) and one byte event size (8), then events of two uint32:
t (us, wraps at 2**32: a drop of at least 2**31 counts as a wrap-around) and data: version 2
x = bits 0-13, y = 14-27, polarity = 28-31; version 1 x = 0-8, y = 9-16, polarity = 17-20. The
polarity field must be 0 or 1. A missing `% Version` line means version 2 (as faery). A truncated
last event or a bad field raises DataError with its byte offset. The records are decoded by one loop
compiled by numba (velora.events.jit): with the wrap-around it replaced six NumPy passes and ran at
1.8x faery's speed where the target was 2x.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from velora.errors import DataError
from velora.events.columns import decoded_stream, read_file_bytes, sensor_size, warn_dropped
from velora.events.evt import CorruptWord, Decoded, decode_evt2, decode_evt3, decode_evt21, evt3_cut_vector_group
from velora.events.jit import compiled
from velora.events.render import EventStream

__all__ = ["PropheseeHeader", "RawRecording", "read_dat", "read_prophesee_header", "read_raw", "read_raw_events"]

SENSOR_TABLE = (  # (substring of the plugin name or generation, (width, height)); first match wins
    (("genx320", "320"), (320, 320)),
    (("gen41", "gen4", "imx636", "imx646", "4.0", "4.1", "4.2"), (1280, 720)),
    (("gen31", "gen3", "3.0", "3.1"), (640, 480)),
)
DAT_TYPES = {0x0C: "CD", 0x00: "2D"}
DAT_EVENT_BYTES = 8
DAT_LAYOUTS = {1: (9, 8, 17), 2: (14, 14, 28)}  # version -> x bits, y bits, polarity shift
DAT_BAD_POLARITY, DAT_OUTSIDE_SENSOR = 1, 2  # error codes of _decode_dat
RAW_WORD_BYTES = {"EVT 2.0": 4, "EVT 2.1": 8, "EVT 3.0": 2}
EVT_NAMES = {"2": "EVT 2.0", "2.0": "EVT 2.0", "21": "EVT 2.1", "2.1": "EVT 2.1", "3": "EVT 3.0", "3.0": "EVT 3.0"}


@dataclass(frozen=True)
class PropheseeHeader:
    """The '%' lines of a .raw or .dat file: keyword -> the rest of its line, and where data starts."""

    fields: dict[str, str]
    data_offset: int

    def get(self, key: str) -> str | None:
        """The value of a keyword, case-insensitively (`% Width` and `% width` alike)."""
        for name, value in self.fields.items():
            if name.lower() == key.lower():
                return value
        return None

    def format_options(self) -> dict[str, str]:
        """`% format EVT3;height=720;width=1280` -> {"name": "EVT3", "height": "720", "width": "1280"}."""
        parts = [part.strip() for part in (self.get("format") or "").split(";")]
        options = {"name": parts[0]} if parts[0] else {}
        for part in parts[1:]:
            key, equals, value = part.partition("=")
            if equals:
                options[key] = value
        return {key.strip().lower(): value.strip() for key, value in options.items()}


@dataclass(frozen=True)
class RawRecording:
    """The CD events of a .raw file and what else its words held.

    events: the EventStream. format: "EVT 2.0", "EVT 2.1" or "EVT 3.0".
    triggers: EXT_TRIGGER words, skipped. others: OTHERS words (system / monitoring data), skipped.
    continued: CONTINUED words (the payload of OTHERS words), skipped.
    dropped_events: CD events before the state they need (the first TIME_HIGH; in EVT 3.0 also the
        first EVT_ADDR_Y or VECT_BASE_X), dropped for lack of a time or address.
    truncated_bytes: bytes after the last whole word, dropped with a DataWarning.
    """

    events: EventStream
    format: str
    triggers: int
    others: int
    continued: int
    dropped_events: int
    truncated_bytes: int


def read_prophesee_header(data: bytes) -> PropheseeHeader:
    """Parse the leading '%' lines of a file's bytes, line by line."""
    fields: dict[str, str] = {}
    position = 0
    while position < len(data) and data[position] == ord("%"):
        end = data.find(b"\n", position)
        end = len(data) if end < 0 else end + 1
        line = data[position + 1 : end].decode("utf-8", "replace").strip()
        position = end
        if line.lower() == "end":
            break
        keyword, _, value = line.partition(" ")
        if keyword:
            fields.setdefault(keyword, value.strip())
    return PropheseeHeader(fields, position)


def read_raw(path: str | Path, width: int | None = None, height: int | None = None) -> RawRecording:
    """Read a Prophesee RAW file (EVT 2.0, 2.1 or 3.0; see the module docstring for every rule).

    width, height: the sensor size when the header has none (then the sensor table, then max + 1).
    """
    path = Path(path)
    data = read_file_bytes(path)
    header = read_prophesee_header(data)
    name, legacy = _raw_format(path, header)
    stored = _header_size(path, header)
    given = (width, height) if width is not None and height is not None else None
    word_bytes = RAW_WORD_BYTES[name]
    body_bytes = (len(data) - header.data_offset) // word_bytes * word_bytes
    truncated = len(data) - header.data_offset - body_bytes
    decoded = _decode_raw(
        path, data, header.data_offset, body_bytes, name, legacy, stored or given, bool(stored), _t0(path, header)
    )
    _warn_about_a_cut_tail(path, name, data[header.data_offset + body_bytes - min(body_bytes, 8) :], truncated)
    t, x, y, p = decoded.t, decoded.x, decoded.y, decoded.p
    size = stored or given or _table_size(header)
    if size is None:
        size = sensor_size(path, x, y, width, height)
    elif not (stored or given) and len(x) and (x.max() >= size[0] or y.max() >= size[1]):
        raise DataError(
            f"{path}: events reach x={x.max()}, y={y.max()}, outside the {size[0]} x {size[1]} sensor assumed "
            "for this camera (the header has no geometry); pass the sensor's width= and height=."
        )
    events = decoded_stream(path, t, x, y, p, *size, in_order=decoded.in_order)
    return RawRecording(events, name, decoded.triggers, decoded.others, decoded.continued, decoded.dropped, truncated)


def _warn_about_a_cut_tail(path: Path, name: str, tail: bytes, truncated: int) -> None:
    """DataWarning when the stream ends inside a word (`truncated` bytes of it, not decoded), or, in
    EVT 3.0, inside a vector group (`tail`: the last whole words and the partial one)."""
    if truncated:
        cut = "1 byte" if truncated == 1 else f"{truncated} bytes"
        warn_dropped(
            path,
            f"the recording ends with {cut} of an incomplete {name} word, dropped; the events before it were kept.",
        )
    whole = tail[: len(tail) - truncated]
    if name == "EVT 3.0" and (covered := evt3_cut_vector_group(np.frombuffer(whole, dtype="<u2"))):
        warn_dropped(
            path,
            f"the recording ends inside a vector group ({covered} of its 32 columns sent); "
            "the events of the columns sent were kept.",
        )


def read_raw_events(path: str | Path, width: int | None = None, height: int | None = None) -> EventStream:
    """The EventStream of a RAW file (`read_raw(...).events`), for `read_events`."""
    return read_raw(path, width, height).events


def read_dat(path: str | Path, width: int | None = None, height: int | None = None) -> EventStream:
    """Read a Prophesee DAT file of CD events (see the module docstring).

    width, height: the sensor size when the header has no `% Width` / `% Height` (else max + 1).
    """
    path = Path(path)
    data = read_file_bytes(path)
    header = read_prophesee_header(data)
    version = _integer_field(path, header, "Version", default=2)
    if version not in DAT_LAYOUTS:
        raise DataError(f"{path}: DAT version {version} is unknown (versions 1 and 2 exist); the header is corrupt.")
    start = header.data_offset
    if len(data) < start + 2:
        raise DataError(
            f"{path}: truncated at byte {len(data)}: the event type and size bytes after the header are missing."
        )
    event_type, event_bytes = data[start], data[start + 1]
    if event_type not in DAT_TYPES:
        kind = "external triggers" if event_type == 0x0E else f"events of type {event_type:#04x}"
        raise DataError(
            f"{path}: holds {kind} (type byte at byte {start}), not CD events; only CD (0x0C) and 2D (0x00) "
            "DAT files hold polarity events."
        )
    if event_bytes != DAT_EVENT_BYTES:
        raise DataError(
            f"{path}: the event size at byte {start + 1} is {event_bytes}, not {DAT_EVENT_BYTES}; the file is corrupt."
        )
    start += 2
    if (len(data) - start) % DAT_EVENT_BYTES:
        last = start + (len(data) - start) // DAT_EVENT_BYTES * DAT_EVENT_BYTES
        raise DataError(
            f"{path}: truncated: the event at byte {last} has {len(data) - last} of its {DAT_EVENT_BYTES} bytes; "
            "re-copy the file."
        )
    records = np.frombuffer(data, dtype="<u4", offset=start).reshape(-1, 2)
    stored = _header_size(path, header)
    limits = stored or ((width, height) if width is not None and height is not None else (1 << 15, 1 << 15))
    t, x, y, p = (np.empty(len(records), dtype) for dtype in (np.int64, np.int16, np.int16, np.int8))
    n, error, in_order = compiled(_decode_dat)(records, *DAT_LAYOUTS[version], *limits, _t0(path, header), t, x, y, p)
    if error == DAT_BAD_POLARITY:
        raise DataError(
            f"{path}: the event at byte {start + DAT_EVENT_BYTES * n} has polarity field {p[n]}, not 0 or 1; "
            "the file is corrupt."
        )
    if error == DAT_OUTSIDE_SENSOR:
        raise DataError(
            f"{path}: the event at byte {start + DAT_EVENT_BYTES * n} has x={x[n]}, y={y[n]}, outside the "
            f"{limits[0]} x {limits[1]} sensor{' of the header' if stored else ''}; the file is corrupt"
            f"{'' if stored else ' or width/height are wrong'}."
        )
    width, height = stored or sensor_size(path, x, y, width, height)
    return decoded_stream(path, t, x, y, p, width, height, in_order=bool(in_order))


def _decode_dat(records, x_bits, y_bits, polarity_shift, width, height, t0, t, x, y, p):
    """Decode (N, 2) uint32 DAT records into t (+ t0), x, y, p, unwrapping the 32-bit timestamps (a
    drop of at least 2**31 is a wrap-around). Compiled by numba: one pass instead of NumPy's six. Returns
    (events or the bad record's index, error, in time order); the bad record's fields are at [index]."""
    offset, previous, in_order = 0, -1, True
    for i in range(records.shape[0]):
        stamp, field = int(records[i, 0]), int(records[i, 1])
        if previous - stamp >= 1 << 31:
            offset += 1 << 32
        elif stamp < previous:
            in_order = False
        previous = stamp
        column, row = field & ((1 << x_bits) - 1), (field >> x_bits) & ((1 << y_bits) - 1)
        polarity = (field >> polarity_shift) & 0xF
        x[i], y[i], p[i] = column, row, polarity
        if polarity > 1:
            return i, DAT_BAD_POLARITY, in_order
        if column >= width or row >= height:
            return i, DAT_OUTSIDE_SENSOR, in_order
        t[i], p[i] = stamp + offset + t0, 1 if polarity else -1
    return records.shape[0], 0, in_order


def _raw_format(path: Path, header: PropheseeHeader) -> tuple[str, bool]:
    """("EVT 2.0" | "EVT 2.1" | "EVT 3.0", EVT 2.1 legacy word order) from the format or evt line."""
    options = header.format_options()
    if "name" in options:
        declared = options["name"].upper().removeprefix("EVT")
        legacy = options.get("endianness", "").lower() == "legacy"
    else:
        declared, legacy = header.get("evt") or "", True  # `% evt 2.1` predates the little-endian order
    if declared not in EVT_NAMES:
        shown = header.get("format") or header.get("evt")
        raise DataError(
            f"{path}: the header names {'format ' + repr(shown) if shown else 'no event format'}; this reader "
            "knows EVT 2.0, 2.1 and 3.0 (a '% format EVT3' or '% evt 3.0' line). Re-export the recording in one of them."
        )
    return EVT_NAMES[declared], legacy


def _header_size(path: Path, header: PropheseeHeader) -> tuple[int, int] | None:
    options = header.format_options()
    if "width" in options and "height" in options:
        return _positive(path, options["width"], "width"), _positive(path, options["height"], "height")
    geometry = header.get("geometry")
    if geometry:
        match = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", geometry)
        if not match:
            raise DataError(f"{path}: the header's geometry {geometry!r} is not WIDTHxHEIGHT; the header is corrupt.")
        return _positive(path, match[1], "width"), _positive(path, match[2], "height")
    width, height = header.get("Width"), header.get("Height")
    if width is not None and height is not None:
        return _positive(path, width, "width"), _positive(path, height, "height")
    return None


def _table_size(header: PropheseeHeader) -> tuple[int, int] | None:
    plugin = (header.get("plugin_name") or "").lower()
    generation = (header.get("sensor_generation") or "").strip()
    for keys, size in SENSOR_TABLE:
        if any(key in plugin for key in keys if not key[0].isdigit()) or generation in keys:
            return size
    return None


def _positive(path: Path, text: str, name: str) -> int:
    value = int(text) if text.strip().isdecimal() else 0  # not isdigit: int("²") fails
    if not 0 < value <= np.iinfo(np.int16).max:
        raise DataError(
            f"{path}: the header's sensor {name} {text!r} is not a positive integer below 32768; the header is corrupt."
        )
    return value


def _integer_field(path: Path, header: PropheseeHeader, key: str, default: int) -> int:
    text = header.get(key)
    if text is None:
        return default
    if not re.fullmatch(r"\s*\d{1,18}\s*", text):
        raise DataError(f"{path}: the header's {key} {text!r} is not a non-negative integer; the header is corrupt.")
    return int(text)


def _t0(path: Path, header: PropheseeHeader) -> int:
    return _integer_field(path, header, "t0", default=0)


def _decode_raw(
    path: Path, data: bytes, start: int, body_bytes: int, name: str, legacy: bool, size, from_header: bool, t0: int
) -> Decoded:
    """Decode the words of the data part, checking events against `size` (from the header, or the
    caller's width/height); a CorruptWord becomes a DataError with its byte offset."""
    width, height = size or (None, None)
    dtype = np.dtype("<u2" if name == "EVT 3.0" else "<u4")  # an EVT 2.1 word is two uint32 halves
    words = np.frombuffer(data, dtype=dtype, count=body_bytes // dtype.itemsize, offset=start)
    try:
        if name == "EVT 2.0":
            return decode_evt2(words, width, height, t0)
        if name == "EVT 2.1":
            return decode_evt21(words.reshape(-1, 2), legacy, width, height, t0)
        return decode_evt3(words, width, height, t0)
    except CorruptWord as error:
        offset = start + RAW_WORD_BYTES[name] * error.index
        advice = (
            "re-copy or re-record the file"
            if from_header or size is None
            else "the file is corrupt or width/height are wrong"
        )
        raise DataError(f"{path}: corrupt {name} data at byte {offset}: {error.problem}; {advice}.") from None
