"""Event-file readers: every format becomes the package's one event type, `EventStream`.

`EventStream` (velora.events.render) is: t int64 microseconds, x and y int16 pixels from the
top-left corner, p int8 +1 (ON) / -1 (OFF), sorted by t, plus the sensor width and height.

    format                     reader        sensor size
    .aedat4 (iniVation DV)     read_aedat4   from the file (its event stream)
    .bin / .bs2 (N-MNIST,      read_nmnist   width/height arguments, 34 x 34 by default;
      N-Caltech101 40-bit)                   None infers max coordinate + 1
    .npy / .npz                read_npy      arguments, else `width`/`height` arrays in a .npz,
                                             else max coordinate + 1
    .h5 / .hdf5                read_hdf5     arguments, else `width`/`height` attributes of the
                                             events group or the root, else max coordinate + 1
    .raw (Prophesee EVT 2.0,   read_raw      the header (format or geometry line), else arguments,
      2.1, 3.0)                              else a table by camera plugin (Gen3 files have no
                                             geometry), else max coordinate + 1
    .dat (Prophesee CD)        read_dat      the header (% Width / % Height), else arguments,
                                             else max coordinate + 1
    .es (Event Stream 2.x,     read_es       the header
      DVS and ATIS)
    .aedat (AEDAT 2.0 jAER /   read_aedat    a table by the camera the header names (DVS128,
      v2e, 3.1 cAER / DVS128                 DAVIS240, DAVIS346), else arguments, else max
      Gesture; 4.0 as .aedat4)               coordinate + 1
    .csv (t,x,y,p lines with   read_csv      `x@W` / `y@H` in the header (faery's), else
      a header naming them)                  arguments, else max coordinate + 1

`read_events(path)` picks the reader from the suffix; SUFFIXES maps each suffix to a function
returning an EventStream. Where a file stores its sensor size, that size wins over the arguments.
Three readers return more than events: `read_aedat4` a `Recording` (plus APS frames, see
velora.events.aedat4; `read_events` leaves the frames undecoded), `read_raw` a `RawRecording`
(plus counts of the trigger and system words skipped, see velora.events.prophesee) and `read_es`
an `EsRecording` (plus the ATIS exposure measurements dropped, see velora.events.eventstream).

Conventions shared by all readers:
- Events are sorted by t when the file is not (a stable sort, so events with equal timestamps
  keep their file order).
- Polarity may be stored as bool, 0/1 or -1/+1; a value > 0 is ON (+1), else OFF (-1).
- Timestamps are taken as microseconds; they must be integers (integral floats are accepted).
- A file that decodes to zero events gives an empty `EventStream`: that is valid data (a quiet
  scene). Code that needs events calls `require_events(stream, path)`. A zero-byte file is
  never valid data and raises.
- A recording cut in the middle of a record raises, with the byte offset, except a Prophesee
  .raw stream cut inside a word, which keeps its complete events and warns (DataWarning).
- Every problem with a file raises `DataError` (velora.errors) with a sentence naming the
  file, what is wrong and what to do.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from velora.errors import DataError
from velora.events.aedat4 import Recording, read_aedat4, read_aedat4_events
from velora.events.aedat_legacy import read_aedat
from velora.events.columns import COLUMN_NAMES, check_file, event_stream, read_file_bytes
from velora.events.csv_events import read_csv
from velora.events.eventstream import EsRecording, read_es, read_es_events
from velora.events.prophesee import RawRecording, read_dat, read_raw, read_raw_events
from velora.events.render import EventStream

__all__ = [
    "SUFFIXES",
    "EsRecording",
    "RawRecording",
    "Recording",
    "read_aedat",
    "read_aedat4",
    "read_csv",
    "read_dat",
    "read_es",
    "read_events",
    "read_hdf5",
    "read_nmnist",
    "read_npy",
    "read_raw",
    "require_events",
]

# accepted names of each column in .npy fields, .npz arrays and HDF5 datasets, preferred first
NMNIST_BYTES_PER_EVENT = 5
NMNIST_OVERFLOW_Y = 240  # an event with y == 240 marks a timestamp overflow, not a pixel
NMNIST_OVERFLOW_US = 1 << 13
# gzip's largest compression ratio: HDF5 columns declaring more bytes than this times the file's
# size cannot be stored in it (they are corrupt or never written), so they are not allocated.
HDF5_MAX_EXPANSION = 1032


def read_events(path: str | Path, width: int | None = None, height: int | None = None) -> EventStream:
    """The events of any supported file, chosen by suffix (see SUFFIXES).

    width/height: the sensor size for formats that do not store it (passed on to the reader when
    given); files that store their size (.aedat4, and .raw, .dat ... whose header has it) use that.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(
            f"{path}: unsupported event file suffix '{path.suffix}'; supported suffixes: {', '.join(sorted(SUFFIXES))}."
        )
    sizes = {name: value for name, value in (("width", width), ("height", height)) if value is not None}
    return SUFFIXES[suffix](path, **sizes)


def require_events(stream: EventStream, path: str | Path) -> EventStream:
    """Return `stream` unchanged, or raise DataError naming `path` when it holds no events."""
    if len(stream) == 0:
        raise DataError(
            f"{path}: the file holds no events, and this step needs at least one; "
            "check the recording or leave the file out of the dataset."
        )
    return stream


def read_nmnist(path: str | Path, width: int | None = 34, height: int | None = 34) -> EventStream:
    """Read an N-MNIST / N-Caltech101 40-bit binary file (.bin, .bs2).

    Each event is 5 bytes: x = b0, y = b1, p = b2 >> 7 (1 = ON),
    t_us = ((b2 & 0x7F) << 16) | (b3 << 8) | b4. As in the datasets' own reader (Orchard's
    Read_Ndataset.m and eventvision.py), an event with y == 240 is a timestamp-overflow marker:
    it adds 2**13 us to itself and every later event and is dropped.

    width, height: sensor size in pixels; 34 x 34 (N-MNIST) by default. N-Caltech101 samples
    vary in size (up to about 240 x 180): pass its size, or None to use max coordinate + 1.
    """
    path = Path(path)
    raw = read_file_bytes(path)
    if len(raw) % NMNIST_BYTES_PER_EVENT:
        raise DataError(
            f"{path}: {len(raw)} bytes is not a multiple of {NMNIST_BYTES_PER_EVENT}, the size of one "
            "N-MNIST event; the file is truncated or not in the 40-bit format. Re-copy it."
        )
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(-1, NMNIST_BYTES_PER_EVENT).astype(np.int64)  # (N, 5)
    x, y = rows[:, 0], rows[:, 1]
    on = rows[:, 2] >> 7
    t = ((rows[:, 2] & 0x7F) << 16) | (rows[:, 3] << 8) | rows[:, 4]
    overflow = y == NMNIST_OVERFLOW_Y
    if overflow.any():
        t = t + NMNIST_OVERFLOW_US * np.cumsum(overflow)
        keep = ~overflow
        t, x, y, on = t[keep], x[keep], y[keep], on[keep]
    return event_stream(path, t, x, y, on, width, height)


def read_npy(path: str | Path, width: int | None = None, height: int | None = None) -> EventStream:
    """Read a NumPy structured array (.npy) with fields t, x, y, p, or a .npz with arrays t, x, y, p.

    Names from COLUMN_NAMES are accepted as aliases (for example 'ts', 'timestamp', 'polarity').
    A .npz may also hold scalar arrays `width` and `height`; the arguments take precedence.
    """
    path = Path(path)
    check_file(path)
    try:
        loaded = np.load(path, allow_pickle=False)
        is_archive = isinstance(loaded, np.lib.npyio.NpzFile)
        if is_archive:
            with loaded:
                columns = {name: np.asarray(loaded[name]) for name in loaded.files}
    except Exception as error:
        # NumPy's parser answers a malformed header or archive with many types (ValueError, EOFError,
        # zipfile.BadZipFile, tokenize.TokenError, SyntaxError, MemoryError for an absurd shape, ...)
        # and reading a local file has no other way to fail.
        raise DataError(
            f"{path}: cannot be read as a NumPy file ({type(error).__name__}: {error}); the file is truncated or corrupt."
        ) from None
    if not is_archive:
        columns = _structured_fields(path, loaded)
    width = width if width is not None else _scalar(path, columns.get("width"), "width")
    height = height if height is not None else _scalar(path, columns.get("height"), "height")
    t, x, y, p = (_column(path, columns, name, "array" if is_archive else "field") for name in "txyp")
    return event_stream(path, t, x, y, p, width, height)


def read_hdf5(path: str | Path, width: int | None = None, height: int | None = None) -> EventStream:
    """Read an HDF5 file with datasets t, x, y, p at the root or in the group 'events/'.

    Names from COLUMN_NAMES are accepted as aliases. The sensor size comes from the arguments,
    else from `width`/`height` attributes of the group holding the datasets or of the root.
    """
    path = Path(path)
    check_file(path)
    try:
        with h5py.File(path, "r") as file:
            group = file["events"] if isinstance(file.get("events"), h5py.Group) else file
            # h5py gives a link name that is not UTF-8 as bytes; shown escaped, it sorts with the others
            columns = {
                name if isinstance(name, str) else name.decode("utf-8", "backslashreplace"): item
                for name, item in group.items()
                if isinstance(item, h5py.Dataset)
            }
            datasets = [_column(path, columns, name, f"dataset (in {group.name})") for name in "txyp"]
            declared = sum(dataset.size * dataset.dtype.itemsize for dataset in datasets)
            if declared > HDF5_MAX_EXPANSION * path.stat().st_size:
                raise DataError(
                    f"{path}: the datasets t, x, y, p declare {declared} bytes, more than a file of "
                    f"{path.stat().st_size} bytes can hold even compressed; the file is corrupt."
                )
            t, x, y, p = (dataset[()] for dataset in datasets)
            attributes = {**file.attrs, **group.attrs}
    except DataError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as error:  # h5py's answers to a corrupt file
        raise DataError(
            f"{path}: cannot be read as HDF5 ({error}); the file is truncated, corrupt or not HDF5."
        ) from None
    width = width if width is not None else _scalar(path, attributes.get("width"), "width")
    height = height if height is not None else _scalar(path, attributes.get("height"), "height")
    return event_stream(path, np.asarray(t), np.asarray(x), np.asarray(y), np.asarray(p), width, height)


SUFFIXES = {
    ".aedat4": read_aedat4_events,
    ".bin": read_nmnist,
    ".bs2": read_nmnist,
    ".npy": read_npy,
    ".npz": read_npy,
    ".h5": read_hdf5,
    ".hdf5": read_hdf5,
    ".raw": read_raw_events,
    ".dat": read_dat,
    ".es": read_es_events,
    ".aedat": read_aedat,
    ".csv": read_csv,
}


def _structured_fields(path: Path, array: np.ndarray) -> dict[str, np.ndarray]:
    if array.dtype.names is None:
        raise DataError(
            f"{path}: holds a plain {array.dtype} array of shape {array.shape}; save a structured array "
            "with fields t, x, y, p (or a .npz with arrays t, x, y, p) so the columns are named."
        )
    return {name: array[name].reshape(-1) for name in array.dtype.names}


def _column(path: Path, columns: dict, name: str, kind: str):
    for alias in COLUMN_NAMES[name]:
        if alias in columns:
            return columns[alias]
    raise DataError(
        f"{path}: no {kind} named {' / '.join(repr(a) for a in COLUMN_NAMES[name])}; "
        f"the file has {sorted(columns) or 'none'}. Store the events as columns t, x, y, p."
    )


def _scalar(path: Path, value, name: str) -> int | None:
    if value is None:
        return None
    value = np.asarray(value)
    if value.size != 1 or value.dtype.kind not in "iu" or int(value.reshape(())) <= 0:
        raise DataError(
            f"{path}: the stored sensor {name} {value!r} is not a positive integer; fix it or pass {name}=."
        )
    return int(value.reshape(()))
