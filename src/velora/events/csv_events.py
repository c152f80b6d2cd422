"""Events in a CSV text file (.csv): one event per line, integer fields separated by commas.

    t,x,y,p          a header line naming the columns (any order; names below)
    1001,549,244,0   t in microseconds, x and y in pixels from the top-left, polarity
    1002,368,404,1

Columns are found by the header's names: t (also ts, timestamp, timestamps, time), x, y and p (also
polarity, pol, on); a name may carry the sensor size after '@', as faery writes it (`x@640,y@480`),
and other columns are ignored. `columns=` names the columns in file order instead (None for a
column to ignore), for files whose header uses other names or that have no header line: e.g.
`columns=("x", "y", "p", "t")`. A file without a header line and without `columns=` is read as
t, x, y, p. Polarity is 1 (ON) or 0 / -1 (OFF).

Every field must be an integer (digits with an optional sign; spaces around it and a '\\r' before
the line end are allowed); every line must have the header's number of fields; blank lines are
skipped. Anything else raises DataError naming the file, the line and the byte offset.

Sensor size: from the header's '@' sizes, else the width/height arguments, else max coordinate + 1.

The fields are parsed by a loop over the bytes compiled by numba (velora.events.jit): NumPy's own
text parsers (np.loadtxt, np.fromstring) ran slower than faery's Rust reader and give no byte offset.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from velora.errors import DataError
from velora.events.columns import COLUMN_NAMES, decoded_stream, read_file_bytes, sensor_size
from velora.events.jit import compiled
from velora.events.render import EventStream

__all__ = ["read_csv"]

MAX_DIGITS = 18  # every 18-digit number fits int64
# error codes of the parsing loop
BAD_CHARACTER, TOO_FEW_FIELDS, TOO_MANY_FIELDS, EMPTY_FIELD, TOO_LONG, OUT_OF_RANGE, BAD_POLARITY = range(1, 8)
ROLE_T, ROLE_X, ROLE_Y, ROLE_P = 0, 1, 2, 3  # what each field is
DIGIT_0, DIGIT_9, MINUS, PLUS, COMMA = ord("0"), ord("9"), ord("-"), ord("+"), ord(",")
SPACE, TAB, CARRIAGE_RETURN, NEWLINE = ord(" "), ord("\t"), ord("\r"), ord("\n")
PROBLEMS = {
    BAD_CHARACTER: "a character that is not part of an integer, ',' or a line end",
    TOO_FEW_FIELDS: "{detail} fields where {expected} are expected",
    TOO_MANY_FIELDS: "more than {expected} fields",
    EMPTY_FIELD: "an empty field",
    TOO_LONG: f"a number of more than {MAX_DIGITS} digits",
    OUT_OF_RANGE: "a coordinate {detail}, outside {sensor}",
    BAD_POLARITY: "polarity {detail}, where 1 (ON) or 0 / -1 (OFF) are expected",
}
NO_SIZE = 1 << 15  # coordinates must fit int16 when the size is not known


def read_csv(
    path: str | Path, width: int | None = None, height: int | None = None, columns: Sequence[str | None] | None = None
) -> EventStream:
    """Read a CSV file of events (see the module docstring).

    columns: the name of each column in file order, "t", "x", "y", "p" or None (ignored); None: the
    header line names them (or t, x, y, p without a header).
    """
    path = Path(path)
    data = read_file_bytes(path)
    first_end = data.find(b"\n")
    first_end = len(data) if first_end < 0 else first_end + 1
    has_header = re.search(rb"[A-Za-z_@]", data[:first_end]) is not None
    header = data[:first_end].decode("utf-8", "replace").strip() if has_header else None
    sizes: dict[str, int] = {}
    if columns is None:
        columns, sizes = _columns_from_header(path, header) if header is not None else (("t", "x", "y", "p"), {})
    else:
        columns = _check_columns(columns)
    start = first_end if has_header else 0
    known_width = width if sizes.get("x") is None else sizes["x"]
    known_height = height if sizes.get("y") is None else sizes["y"]
    limits = (known_width, known_height) if known_width is not None and known_height is not None else (NO_SIZE, NO_SIZE)
    body = np.frombuffer(data, dtype=np.uint8)
    # a line holds at least one digit and one separator per field; np.empty does not touch the pages
    capacity = (len(data) - start) // (2 * len(columns)) + 1
    t, x, y, p = (np.empty(capacity, dtype) for dtype in (np.int64, np.int16, np.int16, np.int8))
    roles = np.array([-1 if name is None else "txyp".index(name) for name in columns], dtype=np.int64)
    rows, error, offset, detail, in_order = compiled(_parse)(body, start, roles, *limits, t, x, y, p)
    if error:
        line = data.count(b"\n", 0, offset) + 1
        sensor = f"the {limits[0]} x {limits[1]} sensor" if limits[0] != NO_SIZE else f"0 to {NO_SIZE - 1}"
        problem = PROBLEMS[error].format(detail=detail, expected=len(columns), sensor=sensor)
        raise DataError(
            f"{path}: line {line} (byte {offset}) has {problem}; each line must hold {len(columns)} integers "
            f"({', '.join(name or 'ignored' for name in columns)})."
        )
    t, x, y, p = t[:rows], x[:rows], y[:rows], p[:rows]
    if limits[0] != NO_SIZE:  # the size was known: the limits are it
        assert known_width is not None and known_height is not None
        size = (known_width, known_height)
    else:
        size = sensor_size(path, x, y, known_width, known_height)
    return decoded_stream(path, t, x, y, p, *size, in_order=bool(in_order))


def _check_columns(columns: Sequence[str | None]) -> tuple[str | None, ...]:
    columns = tuple(columns)
    named = [name for name in columns if name is not None]
    if sorted(named) != ["p", "t", "x", "y"]:
        raise ValueError(
            f"columns={columns!r} must name each of 't', 'x', 'y', 'p' once (None for a column to ignore)."
        )
    return columns


def _columns_from_header(path: Path, header: str) -> tuple[tuple[str | None, ...], dict[str, int]]:
    """Column names and '@' sizes from a header line such as `t,x@640,y@480,on`."""
    columns, sizes = [], {}
    for field in header.split(","):
        name, _, size = field.strip().partition("@")
        canonical = next((key for key, aliases in COLUMN_NAMES.items() if name.strip().lower() in aliases), None)
        if canonical in columns:
            canonical = None  # a second column of the same meaning is ignored
        columns.append(canonical)
        if canonical in ("x", "y") and size:
            if not size.strip().isdecimal() or not 0 < int(size) < 1 << 15:  # not isdigit: int("²") fails
                raise DataError(
                    f"{path}: the header gives the sensor size {field.strip()!r}, which is not 1 to 32767 pixels."
                )
            sizes[canonical] = int(size)
    missing = [key for key in COLUMN_NAMES if key not in columns]
    if missing:
        raise DataError(
            f"{path}: the header line {header[:80]!r} names no column for {', '.join(missing)}; name the columns "
            f"t, x, y, p (or {', '.join('/'.join(aliases) for aliases in COLUMN_NAMES.values())}), or pass "
            "columns=(...) with each column's name in file order."
        )
    return tuple(columns), sizes


def _parse(data, start, roles, width, height, t, x, y, p):
    """Parse the lines from byte `start`: field k of a line is t, x, y or p as roles[k] says (-1:
    ignored), checked (0 <= x < width, 0 <= y < height, p in -1/0/1) and written at the line's row.
    Returns (rows, error, byte offset, detail, in time order); detail: the fields found on a short
    line, or the value out of range."""
    n_fields, end = roles.shape[0], data.shape[0]
    row, i = 0, start
    in_order, last_t = True, -(1 << 62)
    while i < end:
        line_start = i
        while i < end and (data[i] == SPACE or data[i] == TAB or data[i] == CARRIAGE_RETURN):
            i += 1
        if i == end:
            break
        if data[i] == NEWLINE:  # a blank line
            i += 1
            continue
        for field in range(n_fields):
            while i < end and (data[i] == SPACE or data[i] == TAB):
                i += 1
            field_start, negative = i, False
            if i < end and (data[i] == MINUS or data[i] == PLUS):
                negative = data[i] == MINUS
                i += 1
            value, digits_start = 0, i
            while i < end and DIGIT_0 <= data[i] <= DIGIT_9:
                if i - digits_start == MAX_DIGITS:
                    return row, TOO_LONG, i, 0, in_order
                value = value * 10 + int(data[i] - DIGIT_0)
                i += 1
            if i == digits_start:
                at_separator = i == end or data[i] == COMMA or data[i] == NEWLINE or data[i] == CARRIAGE_RETURN
                return row, EMPTY_FIELD if at_separator else BAD_CHARACTER, i, 0, in_order
            while i < end and (data[i] == SPACE or data[i] == TAB or data[i] == CARRIAGE_RETURN):
                i += 1
            if field < n_fields - 1:  # a comma must follow
                if i == end or data[i] == NEWLINE:
                    return row, TOO_FEW_FIELDS, line_start, field + 1, in_order
                if data[i] != COMMA:
                    return row, BAD_CHARACTER, i, 0, in_order
            elif i < end and data[i] != NEWLINE:  # the line must end
                return row, TOO_MANY_FIELDS if data[i] == COMMA else BAD_CHARACTER, i, 0, in_order
            i += 1  # past the comma or line end
            if negative:
                value = -value
            role = roles[field]
            if role == ROLE_T:
                t[row] = value
                in_order &= value >= last_t
                last_t = value
            elif role == ROLE_X or role == ROLE_Y:
                if value < 0 or value >= (width if role == ROLE_X else height):
                    return row, OUT_OF_RANGE, field_start, value, in_order
                if role == ROLE_X:
                    x[row] = value
                else:
                    y[row] = value
            elif role == ROLE_P:
                if value < -1 or value > 1:
                    return row, BAD_POLARITY, field_start, value, in_order
                p[row] = 1 if value > 0 else -1
        row += 1
    return row, 0, 0, 0, in_order
