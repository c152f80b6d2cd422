"""From a file on disk to a valid `EventStream`: the checks and conversions every reader shares.

- `read_file_bytes` / `check_file`: a missing, unreadable or zero-byte file raises DataError.
- `event_stream`: columns of any numeric type (from NumPy, HDF5, text) validated and converted.
- `decoded_stream`: columns a binary decoder has already produced with EventStream's types (t int64
  microseconds, x/y int16 in range, p int8 +1/-1); it only sorts and builds, so the fast decoders
  do not pay twice for checks EventStream makes anyway.

Both builders sort by t with a stable sort when the file is not in time order, so events with equal
timestamps keep their file order.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from velora.errors import DataError, DataWarning
from velora.events.render import EventStream

# The names a column of t, x, y or p goes by in the files of other tools (NumPy, HDF5, CSV headers),
# lower case: the one table every reader of named columns looks them up in.
COLUMN_NAMES = {
    "t": ("t", "ts", "timestamp", "timestamps", "time"),
    "x": ("x",),
    "y": ("y",),
    "p": ("p", "polarity", "polarities", "pol", "on"),
}

__all__ = [
    "COLUMN_NAMES",
    "check_file",
    "decoded_stream",
    "event_stream",
    "read_file_bytes",
    "sensor_size",
    "unwrap_uint32",
    "warn_dropped",
]


def check_file(path: Path) -> None:
    """DataError when the file is missing, not a file, or empty."""
    try:
        size = path.stat().st_size
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error.strerror or error}); check the path.") from None
    if not path.is_file():
        raise DataError(f"{path}: is not a file; pass the path of one event file.")
    if size == 0:
        raise DataError(f"{path}: the file is empty (0 bytes); re-copy or re-record it.")


def read_file_bytes(path: Path) -> bytes:
    """The whole file, after `check_file`."""
    check_file(path)
    try:
        return path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error.strerror or error}); check the file's permissions.") from None


def warn_dropped(path: Path, what: str) -> None:
    """Warn (DataWarning) that part of `path` was dropped while its complete events were kept."""
    warnings.warn(f"{path}: {what}", DataWarning, stacklevel=3)


def sensor_size(path: Path, x: np.ndarray, y: np.ndarray, width: int | None, height: int | None) -> tuple[int, int]:
    """(width, height): the given values, else max coordinate + 1; DataError when neither is possible."""
    if width is None or height is None:
        if len(x) == 0:
            raise DataError(f"{path}: the file holds no events and no sensor size; pass width= and height=.")
        width = width if width is not None else int(x.max()) + 1
        height = height if height is not None else int(y.max()) + 1
    if width <= 0 or height <= 0 or max(width, height) > np.iinfo(np.int16).max:
        raise DataError(f"{path}: a {width} x {height} sensor is not possible (int16 coordinates); check width/height.")
    return width, height


def unwrap_uint32(t: np.ndarray) -> np.ndarray:
    """int64 t (in place) from 32-bit microsecond timestamps, which wrap after 71 minutes: a drop of
    at least 2**31 counts as a wrap-around and adds 2**32 to what follows; a smaller drop is kept."""
    drops = np.zeros(len(t), dtype=np.int64)
    drops[1:] = t[:-1] - t[1:] >= 1 << 31
    if drops.any():
        t += np.cumsum(drops) << 32
    return t


def decoded_stream(
    path: Path,
    t: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    p: np.ndarray,
    width: int,
    height: int,
    in_order: bool = False,
) -> EventStream:
    """Build the stream from decoder output (t int64 us, x/y int16, p int8 +1/-1), sorting stably if
    needed; in_order=True: the decoder saw t never decrease, so the check is skipped (EventStream
    checks the order again anyway)."""
    if not in_order and np.any(t[1:] < t[:-1]):  # not np.diff, which can overflow
        order = np.argsort(t, kind="stable")
        t, x, y, p = t[order], x[order], y[order], p[order]
    try:
        return EventStream(t, x, y, p, width, height)
    except ValueError as error:
        raise DataError(f"{path}: the decoded events are invalid ({error}); the file is corrupt.") from None


def event_stream(path: Path, t, x, y, p, width: int | None, height: int | None) -> EventStream:
    """Validate raw columns read from `path` (any numeric dtype) and build a sorted EventStream.

    Polarity may be bool, 0/1 or -1/+1 (> 0 is ON); timestamps and coordinates must be integers
    (integral floats are accepted). width/height None: max coordinate + 1.
    """
    t, x, y, p = (np.asarray(column).reshape(-1) for column in (t, x, y, p))
    if not len(t) == len(x) == len(y) == len(p):
        lengths = ", ".join(str(len(column)) for column in (t, x, y, p))
        raise DataError(f"{path}: columns t, x, y, p have different lengths ({lengths}); the file is corrupt.")
    t = _integer_column(path, t, "timestamps t")
    x = _integer_column(path, x, "x")
    y = _integer_column(path, y, "y")
    if p.dtype != bool and not np.isin(p, (-1, 0, 1)).all():
        raise DataError(f"{path}: polarity holds values {np.unique(p)[:8].tolist()}; expected bool, 0/1 or -1/+1.")
    polarity = np.where(p > 0, 1, -1)
    if len(t) and min(x.min(), y.min()) < 0:  # before the size: max + 1 of such columns says nothing
        raise DataError(
            f"{path}: event coordinates are negative (x in [{x.min()}, {x.max()}], y in [{y.min()}, {y.max()}]); "
            "they count from 0 at the sensor's top-left corner, so the file is corrupt or uses another origin."
        )
    width, height = sensor_size(path, x, y, width, height)
    if len(t) and (x.max() >= width or y.max() >= height):
        raise DataError(
            f"{path}: event coordinates (x in [{x.min()}, {x.max()}], y in [{y.min()}, {y.max()}]) fall outside "
            f"the {width} x {height} sensor; pass the right width/height (or None to infer max + 1)."
        )
    order = np.argsort(t, kind="stable") if np.any(t[1:] < t[:-1]) else slice(None)  # np.diff could overflow
    try:
        return EventStream(t[order], x[order], y[order], polarity[order], width, height)
    except ValueError as error:
        raise DataError(f"{path}: {error}") from None


def _integer_column(path: Path, values: np.ndarray, name: str) -> np.ndarray:
    if values.dtype.kind not in "iuf":
        raise DataError(f"{path}: {name} has dtype {values.dtype}; expected integers.")
    if values.dtype.kind == "f" and not (np.all(np.abs(values) < 2**63) and np.array_equal(values, np.round(values))):
        raise DataError(
            f"{path}: {name} holds non-integer or non-finite floats; timestamps must be integer microseconds and "
            "coordinates integer pixels (convert seconds with np.round(t * 1e6).astype(np.int64))."
        )
    return values.astype(np.int64)
