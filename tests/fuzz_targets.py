"""Fuzz targets: every reader of files that come from outside, and the decoder of DV's network stream
(velora stream tcp://), with valid seeds and ways to break them.

Shared by tests/test_fuzz.py (a short, deterministic run in the test suite) and benchmarks/fuzz.py
(the long run). The property of every target: reading an input either returns valid data (the
target's `check` passes) or raises the reader's documented error type, whose message names the
file where the target says so. Any other exception, an invalid result or a hang is a bug.

Inputs come from two families of Hypothesis strategies:
- mutations of valid seed files (`corrupted`): truncation, bit flips, overwritten, inserted or
  deleted byte ranges, random garbage (with and without the format's magic), an empty file, huge
  values in length/offset fields of the header, huge or negative numbers in text, invalid UTF-8;
- structurally random inputs (`tree_variants`, `label_lines`, ...): valid syntax with wrong types,
  unknown keys, missing keys, odd paths and numbers.
"""

from __future__ import annotations

import dataclasses
import json
import re
import struct
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from hypothesis import strategies as st

from velora.config import (
    Config,
    ConfigError,
    load_config,
    shipped_config_path,
    validate,
)
from velora.data.event_labels import EventLabelLine, read_event_labels
from velora.data.labels import ClipEntry, read_class_names, read_label_file
from velora.data.packed import PackedClipDataset
from velora.data.sampling import ClipSampling
from velora.errors import CheckpointError, DataError
from velora.events.aedat4 import MAGIC, Recording, read_aedat4
from velora.events.readers import read_events
from velora.events.render import EventStream
from velora.model.adapter_file import FORMAT as ADAPTER_FORMAT
from velora.model.adapter_file import AdapterCheckpoint, read_adapters
from velora.model.weights import WeightsError, load_state_dict_any
from velora.training.checkpoint import read_resume_state

REAL_DATA = Path(__file__).resolve().parent / "data" / "real"  # see its SOURCES.md
HUGE_INTEGERS = (2**31 - 1, 2**32 - 1, 2**63 - 1, 2**64 - 1, 10**12, -1, -(2**31))


@dataclass(frozen=True)
class Seed:
    """A valid input. size_fields: byte offsets of the header's length / offset fields."""

    name: str
    data: bytes
    size_fields: tuple[int, ...] = ()


@dataclass(frozen=True)
class Input:
    """One fuzz input: how it was made (a mutation or a generator name) and its bytes."""

    kind: str
    data: bytes

    def _repr_pretty_(self, printer, cycle) -> None:
        """Hypothesis's report of a failing input: the kind and the first bytes, not 400 kB of them."""
        printer.text(f"Input({self.kind!r}, {len(self.data)} bytes: {self.data[:64]!r}...)")


@dataclass(frozen=True)
class Target:
    """One reader under fuzz.

    read: writes the input's bytes under a folder and reads them back -> (file, result).
    check: asserts the invariants of valid data on the result.
    errors: the documented error types; names_file: their message must name the file.
    inputs: a Hypothesis strategy of Input (built lazily: seeds may take a second to make).
    """

    name: str
    read: Callable[[Path, bytes], tuple[Path, Any]]
    check: Callable[[Any], None]
    errors: tuple[type[Exception], ...]
    inputs: Callable[[], st.SearchStrategy[Input]]
    names_file: bool = True


class Undocumented(AssertionError):
    """A reader raised an error type it does not document, or returned invalid data."""


def run_one(target: Target, folder: Path, data: bytes) -> BaseException | None:
    """Read one input: None when it gave valid data, the documented error when it raised one.

    Raises Undocumented (chained to the original exception) for anything else.
    """
    try:
        path, result = target.read(folder, data)
    except target.errors as error:
        if target.names_file and str(folder) not in str(error):
            raise Undocumented(f"{target.name}: the error does not name the file: {error}") from error
        return error
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # also what is not an Exception, e.g. pyo3's PanicException from Rust
        raise Undocumented(f"{target.name}: undocumented {type(error).__name__}: {error}") from error
    try:
        target.check(result)
    except AssertionError as error:
        raise Undocumented(f"{target.name}: returned invalid data: {error}") from error
    return None


# --- mutations of valid seeds ----------------------------------------------------------------------


def _offsets(seed: Seed) -> st.SearchStrategy[int]:
    """Byte offsets, biased to the header (where structure is) and the declared size fields."""
    last = len(seed.data) - 1
    options = [st.integers(0, min(last, 255)), st.integers(0, last)]
    if seed.size_fields:
        options.append(st.sampled_from(seed.size_fields))
    return st.one_of(options)


def _truncate(draw, seed: Seed) -> bytes:
    return seed.data[: draw(st.integers(0, len(seed.data) - 1))]


def _flip(draw, seed: Seed) -> bytes:
    data = bytearray(seed.data)
    for _ in range(draw(st.integers(1, 8))):
        data[draw(_offsets(seed))] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


def _overwrite(draw, seed: Seed) -> bytes:
    offset = draw(_offsets(seed))
    chunk = draw(st.binary(min_size=1, max_size=64))
    return seed.data[:offset] + chunk + seed.data[offset + len(chunk) :]


def _insert(draw, seed: Seed) -> bytes:
    offset = draw(_offsets(seed))
    return seed.data[:offset] + draw(st.binary(min_size=1, max_size=64)) + seed.data[offset:]


def _delete(draw, seed: Seed) -> bytes:
    offset = draw(_offsets(seed))
    return seed.data[:offset] + seed.data[offset + draw(st.integers(1, 256)) :]


def _garbage(draw, seed: Seed) -> bytes:
    return draw(st.binary(min_size=1, max_size=4096))


def _garbage_after_magic(draw, seed: Seed) -> bytes:
    return seed.data[: draw(st.integers(1, 32))] + draw(st.binary(min_size=0, max_size=4096))


def _empty(draw, seed: Seed) -> bytes:
    return b""


def _huge_size(draw, seed: Seed) -> bytes:
    """A huge, negative or all-ones integer written over a length / offset field."""
    offset = draw(st.sampled_from(seed.size_fields) if seed.size_fields else st.integers(0, min(len(seed.data), 64)))
    width = draw(st.sampled_from((4, 8)))
    value = draw(st.sampled_from(HUGE_INTEGERS)) % (1 << 8 * width)
    return seed.data[:offset] + value.to_bytes(width, "little") + seed.data[offset + width :]


def _huge_number_text(draw, seed: Seed) -> bytes:
    """A run of ASCII digits (a count, shape, size or offset written as text) replaced by a huge or negative one."""
    runs = [match.span() for match in re.finditer(rb"\d+", seed.data[:65536])]
    if not runs:
        return _huge_size(draw, seed)
    start, end = draw(st.sampled_from(runs))
    number = draw(st.sampled_from(("99999999999999999999", "-1", "-99999999", "1e400", "4294967296", "0")))
    return seed.data[:start] + number.encode() + seed.data[end:]


def _invalid_utf8(draw, seed: Seed) -> bytes:
    offset = draw(_offsets(seed))
    bad = draw(st.sampled_from((b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xfe\xff", b"\x00", b"\xe2\x82")))
    return seed.data[:offset] + bad + seed.data[offset:]


def _deep_nesting(draw, seed: Seed) -> bytes:
    """Brackets nested far past any parser's recursion limit (YAML, JSON)."""
    offset = draw(_offsets(seed))
    return seed.data[:offset] + draw(st.sampled_from((b"[", b"{a: ", b'{"a":'))) * 50_000 + seed.data[offset:]


MUTATIONS: dict[str, Callable] = {
    "truncate": _truncate,
    "bit flips": _flip,
    "overwrite bytes": _overwrite,
    "insert bytes": _insert,
    "delete bytes": _delete,
    "random garbage": _garbage,
    "garbage after the magic": _garbage_after_magic,
    "empty file": _empty,
    "huge size field": _huge_size,
    "huge number in text": _huge_number_text,
    "invalid UTF-8": _invalid_utf8,
    "deep nesting": _deep_nesting,
}
STACKABLE = ("truncate", "bit flips", "overwrite bytes", "insert bytes", "delete bytes", "huge size field")


@st.composite
def corrupted(draw, seeds: Sequence[Seed]) -> Input:
    """One seed with one mutation, or with 2-4 mutations stacked ('stacked')."""
    seed = draw(st.sampled_from(seeds))
    kind = draw(st.sampled_from([*MUTATIONS, "stacked"]))
    if kind != "stacked":
        return Input(kind, MUTATIONS[kind](draw, seed))
    for _ in range(draw(st.integers(2, 4))):
        data = MUTATIONS[draw(st.sampled_from(STACKABLE))](draw, seed) or b"\x00"
        seed = Seed(seed.name, data, tuple(offset for offset in seed.size_fields if offset < len(data)))
    return Input(kind, seed.data)


# --- structurally random inputs --------------------------------------------------------------------

NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from(HUGE_INTEGERS),
    st.floats(allow_nan=True, allow_infinity=True),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=20))
JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=20)
)


def _values(scalars: st.SearchStrategy, keys: Sequence[str] = ()) -> st.SearchStrategy:
    key = st.one_of(st.sampled_from(keys), st.text(max_size=10)) if keys else st.text(max_size=10)
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=4) | st.dictionaries(key, children, max_size=4),
        max_leaves=12,
    )


def _paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    """Every node's path (a tuple of dict keys / list indices) in a tree of dicts and lists."""
    paths = [prefix]
    children = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for key, child in children:
        paths.extend(_paths(child, (*prefix, key)))
    return paths


@st.composite
def tree_variants(draw, valid: Any, scalars: st.SearchStrategy, keys: Sequence[str] = ()) -> Any:
    """`valid` (a tree of dicts and lists) with 1-3 nodes replaced by random values, deleted, or
    given an extra (unknown or known) key."""
    tree = json.loads(json.dumps(valid))  # a deep copy
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(tree)))
        if not path:
            return draw(_values(scalars, keys))
        parent = tree
        for key in path[:-1]:
            parent = parent[key]
        operation = draw(st.sampled_from(("replace", "delete", "add key")))
        if operation == "replace":
            parent[path[-1]] = draw(_values(scalars, keys))
        elif operation == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            key = draw(st.one_of(st.sampled_from(keys), st.text(max_size=10))) if keys else draw(st.text(max_size=10))
            parent[key] = draw(_values(scalars, keys))
    return tree


TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)  # any encodable text
PATH_PARTS = st.sampled_from(("a", "..", ".", "", " ", "dir with space", "\\", "/", "#", "é", "\t", "x" * 300))
NUMBER_TEXTS = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(("", "1.5", "nan", "1e3", "0x10", "1_000", "\u0663", "+7", "-0", "9" * 5000, "٣٢")),
)


@st.composite
def label_lines(draw, fields: int) -> Input:
    """Text of random lines: sample paths, class names and numbers, separated by spaces or tabs."""
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        sample = "/".join(draw(st.lists(st.one_of(PATH_PARTS, TEXT), min_size=1, max_size=4)))
        values = [draw(st.one_of(NUMBER_TEXTS, TEXT)) for _ in range(draw(st.integers(0, fields)))]
        separator = draw(st.sampled_from((" ", "\t", "  ", " \t")))
        line = separator.join([sample, *values])
        lines.append(draw(st.sampled_from(("", "#", "  "))) + line)
    ending = draw(st.sampled_from(("\n", "\r\n", "\r", "\u2028")))
    return Input("random lines", ending.join(lines).encode("utf-8"))


# --- invariants of valid data ----------------------------------------------------------------------


def check_event_stream(events: EventStream) -> None:
    assert isinstance(events, EventStream)
    assert (events.t.dtype, events.x.dtype, events.y.dtype, events.p.dtype) == (np.int64, np.int16, np.int16, np.int8)
    assert events.t.ndim == 1 and len(events.t) == len(events.x) == len(events.y) == len(events.p)
    assert isinstance(events.width, int) and isinstance(events.height, int) and events.width > 0 and events.height > 0
    if len(events):
        assert np.all(events.t[1:] >= events.t[:-1]), "timestamps are not sorted"
        assert np.all((events.p == 1) | (events.p == -1))
        assert 0 <= events.x.min() and events.x.max() < events.width, "x outside the sensor"
        assert 0 <= events.y.min() and events.y.max() < events.height, "y outside the sensor"


def check_recording(recording: Recording) -> None:
    check_event_stream(recording.events)
    frames = recording.aps_frames
    assert frames.dtype == np.uint8 and frames.ndim in (3, 4)
    assert len(frames) == len(recording.frame_timestamps_us) == len(recording.frame_exposure_us)
    assert recording.frame_timestamps_us.dtype == recording.frame_exposure_us.dtype == np.int64


def check_clip_entries(entries: list[ClipEntry]) -> None:
    for entry in entries:
        assert isinstance(entry.sample, str) and entry.sample and not entry.sample.startswith("/")
        assert ".." not in entry.sample.split("/")
        assert isinstance(entry.num_frames, int) and isinstance(entry.label, int)
        assert entry.num_frames >= 0 and entry.label >= 0


def check_class_names(names: list[str]) -> None:
    assert isinstance(names, list) and all(isinstance(name, str) and name for name in names)
    assert len(set(names)) == len(names) and len(names) > max(entry.label for entry in CLASS_ENTRIES)


def check_event_labels(lines: list[EventLabelLine]) -> None:
    for line in lines:
        assert isinstance(line.sample, str) and line.sample and not line.sample.startswith("/")
        assert ".." not in line.sample.split("/") and "\t" not in line.sample
        assert isinstance(line.class_name, str) and line.class_name


def check_config(cfg: Config) -> None:
    assert isinstance(cfg, Config) and validate(cfg) == []
    for section in dataclasses.fields(cfg):
        values = getattr(cfg, section.name)
        for name, hint in typing.get_type_hints(type(values)).items():
            value = getattr(values, name)
            if hint in (int, float, str, list, dict, bool):
                assert isinstance(value, hint), f"{section.name}.{name} = {value!r} is not a {hint.__name__}"
                assert hint is bool or not isinstance(value, bool), f"{section.name}.{name} = {value!r} is a bool"


def check_adapters(checkpoint: AdapterCheckpoint) -> None:
    check_config(checkpoint.config)
    assert isinstance(checkpoint.class_names, list) and all(isinstance(name, str) for name in checkpoint.class_names)
    assert all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in checkpoint.state.items())
    assert isinstance(checkpoint.info, dict)


def check_weights(loaded: tuple[dict, dict]) -> None:
    state, meta = loaded
    assert all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    assert isinstance(meta, dict) and "patch_embed.proj.weight" in state and "pos_embed" in state


def check_packed(items: list[dict]) -> None:
    for item in items:
        for key in ("rgb", "events"):
            if key in item:
                assert item[key].dtype == torch.uint8 and item[key].shape[:2] == (PACKED_FRAMES, 3)
        label = item["label"]
        assert isinstance(label, torch.Tensor) and label.dtype == torch.int64 and label.ndim == 0 and label >= 0


def check_dv_network(decoded: tuple) -> None:
    """A DV network stream decoded: its header, then EventBatch / Frame / None (other streams) per packet."""
    from velora.stream.dvnet import EventBatch, Frame, StreamHeader

    header, packets = decoded
    assert isinstance(header, StreamHeader) and header.streams
    sizes = {s.type_id: (s.width, s.height) for s in header.streams.values() if s.width and s.height}
    for packet in packets:
        if isinstance(packet, EventBatch):
            assert (packet.t.dtype, packet.x.dtype, packet.y.dtype, packet.p.dtype) == (
                np.int64,
                np.int16,
                np.int16,
                np.int8,
            )
            assert packet.t.ndim == 1 and len(packet.t) == len(packet.x) == len(packet.y) == len(packet.p)
            assert np.all((packet.p == 1) | (packet.p == -1))
            if len(packet.t) and "EVTS" in sizes:
                width, height = sizes["EVTS"]
                assert (
                    0 <= packet.x.min() and packet.x.max() < width and 0 <= packet.y.min() and packet.y.max() < height
                )
        elif isinstance(packet, Frame):
            image = packet.image
            assert image.dtype == np.uint8 and (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3))
            assert image.shape[0] > 0 and image.shape[1] > 0
            if "FRME" in sizes:
                assert (image.shape[1], image.shape[0]) == sizes["FRME"], "a frame of another size than declared"
            assert isinstance(packet.timestamp_us, int) and isinstance(packet.exposure_us, int)
        else:
            assert packet is None, f"decoded into {type(packet).__name__}"


# --- seeds -----------------------------------------------------------------------------------------


def _aedat4_size_fields(data: bytes) -> tuple[int, ...]:
    """The IOHeader size field and every packet's stream id and size, walked like _check_packets."""
    (header_size,) = struct.unpack_from("<i", data, len(MAGIC))
    fields, position = [len(MAGIC)], len(MAGIC) + 4 + header_size
    while position + 8 <= len(data) and len(fields) < 200:
        fields.extend((position, position + 4))
        position += 8 + struct.unpack_from("<I", data, position + 4)[0]
    return tuple(fields)


def _zip_size_fields(data: bytes) -> tuple[int, ...]:
    """Sizes and offsets in the local headers, central directory and end record of a zip (npz, pth)."""
    fields = []
    for signature, offsets in (
        (b"PK\x03\x04", (14, 18, 22, 26, 28)),
        (b"PK\x01\x02", (16, 20, 24, 28, 30, 42)),
        (b"PK\x05\x06", (8, 10, 12, 16)),
    ):
        for match in re.finditer(re.escape(signature), data):
            fields.extend(match.start() + offset for offset in offsets)
    return tuple(fields)


@cache
def aedat4_seeds() -> tuple[Seed, ...]:
    import dv_processing as dv

    from test_readers import (
        write_recording,  # the recordings the reader tests compare with dv-processing
    )

    seeds = []
    real = (REAL_DATA / "davis346" / "street_davis346.aedat4").read_bytes()
    seeds.append(Seed("street_davis346 (real)", real, _aedat4_size_fields(real)))
    folder = _seed_folder()
    for compression in (dv.CompressionType.LZ4, dv.CompressionType.ZSTD, dv.CompressionType.NONE):
        path = folder / f"written_{compression.name}.aedat4"
        write_recording(path, compression)
        data = path.read_bytes()
        seeds.append(Seed(path.name, data, _aedat4_size_fields(data)))
    return tuple(seeds)


@cache
def nmnist_seeds() -> tuple[Seed, ...]:
    from test_readers import nmnist_bytes

    seeds = [Seed(name, (REAL_DATA / "nmnist" / name).read_bytes()) for name in ("1.bs2", "2.bs2")]
    seeds.append(Seed("with overflow markers", nmnist_bytes((1, 2, 1, 100), (0, 240, 0, 0), (3, 4, 0, 50))))
    return tuple(seeds)


@cache
def array_seed(suffix: str) -> tuple[Seed, ...]:
    from test_readers import random_stream, write_hdf5, write_npy, write_npz

    path = _seed_folder() / f"events{suffix}"
    {".npy": write_npy, ".npz": write_npz, ".h5": write_hdf5}[suffix](path, random_stream(n=40))
    data = path.read_bytes()
    fields = _zip_size_fields(data) if suffix == ".npz" else tuple(range(0, 64, 4)) if suffix == ".h5" else ()
    return (Seed(path.name, data, fields),)


def _head(path: Path, data_bytes: int, word_bytes: int) -> bytes:
    """A real recording's '%' header and its first data_bytes (whole words): a small real seed."""
    data = path.read_bytes()
    start = 0
    while data[start : start + 1] == b"%":
        start = data.index(b"\n", start) + 1
    return data[: start + data_bytes // word_bytes * word_bytes]


def _faery_file(name: str, n: int = 200, size: tuple[int, int] = (64, 48), **options) -> bytes:
    from faery_reference import random_events, write_with_faery

    path = _seed_folder() / name
    return write_with_faery(path, random_events(n, *size, duration_us=5_000, seed=n), size, **options).read_bytes()


@cache
def raw_seeds() -> tuple[Seed, ...]:
    from faery_reference import random_events
    from spec_writers import evt21_file

    events = random_events(200, 64, 48, duration_us=5_000)
    columns = (events["t"], events["x"], events["y"], np.where(events["on"], 1, -1))
    return (
        Seed("gen3_evt2.raw head (real)", _head(REAL_DATA / "prophesee" / "gen3_evt2.raw", 8192, 4)),
        Seed("evk4_evt3_head.raw head (real)", _head(REAL_DATA / "prophesee" / "evk4_evt3_head.raw", 8192, 2)),
        Seed("evt2.raw", _faery_file("evt2.raw", version="evt2")),
        Seed("evt3.raw", _faery_file("evt3.raw", version="evt3")),
        Seed("evt21 legacy.raw", evt21_file(*columns, 64, 48, legacy=True, extra_words=2)),
        Seed("evt21 little-endian.raw", evt21_file(*columns, 64, 48, legacy=False)),
    )


@cache
def dat_seeds() -> tuple[Seed, ...]:
    return (
        Seed("dat2.dat", _faery_file("v2.dat", version="dat2")),
        Seed("dat1.dat", _faery_file("v1.dat", version="dat1")),
    )


@cache
def es_seeds() -> tuple[Seed, ...]:
    import faery

    atis = np.zeros(100, dtype=[("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("exposure", "?"), ("polarity", "?")])
    atis["t"], atis["x"], atis["y"] = np.arange(100) * 40, np.arange(100) % 30, np.arange(100) % 20
    atis["exposure"], atis["polarity"] = np.arange(100) % 3 == 0, np.arange(100) % 2 == 0
    path = _seed_folder() / "atis.es"
    with faery.es.Encoder(path, "atis", False, (30, 20)) as encoder:
        encoder.write(atis)
    fields = (16, 18)  # width and height
    return Seed("dvs.es", _faery_file("dvs.es", n=300), fields), Seed("atis.es", path.read_bytes(), fields)


@cache
def aedat_seeds() -> tuple[Seed, ...]:
    from spec_writers import aedat2_file, aedat31_file

    rng = np.random.default_rng(6)
    t, x, y = np.sort(rng.integers(0, 10_000, 150)), rng.integers(0, 128, 150), rng.integers(0, 128, 150)
    p = np.where(rng.random(150) < 0.5, 1, -1)
    gesture = aedat31_file(t, x, y, p, "DVS128", packet_events=50, invalid_every=9)
    start = gesture.index(b"#!END-HEADER\r\n") + len(b"#!END-HEADER\r\n")
    packet_fields = tuple(start + offset for offset in range(0, 28, 4))  # the first packet's header fields
    return (
        Seed("gesture.aedat (3.1)", gesture, packet_fields),
        Seed("dvs128.aedat (2.0)", aedat2_file(t, x, y, p, "DVS128")),
        Seed("v2e.aedat (2.0)", aedat2_file(t, x, y, p, None, davis_size=(346, 260), aps_samples=3)),
    )


@cache
def csv_seeds() -> tuple[Seed, ...]:
    other = b"x,y,polarity,timestamp,label\n3,4,-1,20,7\r\n\n1,2,1,10,7\n 5 , 6 ,0, 30 ,7\n"
    return Seed("faery.csv", _faery_file("faery.csv", n=100)), Seed("columns.csv", other)


COLUMN_DTYPES = ("<i8", "<u8", "<i2", "<f8", "<f4", "?", "<c8", "S4", "<M8[us]", "<m8[us]")
COLUMN_VALUES = st.one_of(st.integers(-(2**63), 2**63 - 1), st.floats(), st.just(2**63 + 5))


@st.composite
def _column_arrays(draw) -> dict[str, np.ndarray]:
    """Columns t, x, y, p (some missing or renamed) of random lengths, dtypes and values, maybe a size."""
    length = draw(st.integers(0, 6))
    columns = {}
    for name in draw(
        st.lists(st.sampled_from(("t", "x", "y", "p", "ts", "polarity", "width", "height")), max_size=8, unique=True)
    ):
        dtype = np.dtype(draw(st.sampled_from(COLUMN_DTYPES)))
        values = draw(st.lists(COLUMN_VALUES, min_size=length, max_size=length + draw(st.integers(0, 1))))
        shape = draw(st.sampled_from(((len(values),), (), (len(values), 1))))
        with np.errstate(all="ignore"):
            try:
                array = np.array(values, dtype=np.float64).astype(dtype)
            except (OverflowError, ValueError, TypeError):
                array = np.zeros(len(values), dtype=dtype)
        columns[name] = (
            array.reshape(shape) if shape != () else array[:1].reshape(()) if len(array) else np.zeros((), dtype)
        )
    return columns


@st.composite
def npz_files(draw) -> Input:
    path = _seed_folder() / "random.npz"
    np.savez(path, **draw(_column_arrays()))
    return Input("random columns", path.read_bytes())


@st.composite
def hdf5_files(draw) -> Input:
    """HDF5 files of random columns and size attributes, some declaring huge never-written datasets."""
    import h5py

    path = _seed_folder() / "random.h5"
    with h5py.File(path, "w") as file:
        group = file.create_group("events") if draw(st.booleans()) else file
        for name, array in draw(_column_arrays()).items():
            if array.dtype.kind in "Mm":
                array = array.astype(np.int64)
            if name in ("width", "height"):
                group.attrs[name] = array
            elif draw(st.integers(0, 9)) == 0:  # declared, never written: reading it would allocate it all
                group.create_dataset(
                    name, shape=(draw(st.sampled_from((10**9, 10**12))),), dtype=array.dtype, chunks=(1024,)
                )
            else:
                group[name] = array
    return Input("random columns", path.read_bytes())


LABEL_FILE = (
    b"# sample num_frames label\naction_Poker001/dvSave-2023_03_02_18_58_21 28 0\n\naction_Poker002/dvSave 9 1\n"
)
CLASSES_FILE = b"action_Poker001\naction_Poker002\naction_Poker003\n"
CLASS_ENTRIES = (ClipEntry("action_Poker001/a", 3, 0), ClipEntry("action_Poker003/b", 3, 2))


@cache
def config_seeds() -> tuple[Seed, ...]:
    return tuple(Seed(name, shipped_config_path(name).read_bytes()) for name in ("demo", "hardvs_vitb16"))


CONFIG_KEYS = tuple(  # section and field names, so random trees often hit real keys
    sorted(
        {section.name for section in dataclasses.fields(Config)}
        | {key for section in Config().to_dict().values() for key in section}
    )
)


def config_yaml_trees() -> st.SearchStrategy[Input]:
    valid = yaml.safe_load(config_seeds()[0].data)
    return tree_variants(valid, SCALARS, CONFIG_KEYS).map(
        lambda tree: Input("random YAML tree", yaml.safe_dump(tree).encode())
    )


def _tiny_config_dict() -> dict:
    from conftest import make_tiny_config

    return make_tiny_config().to_dict()


def _adapter_file(folder: Path, metadata: dict[str, str]) -> Path:
    from safetensors.torch import save_file

    path = folder / "adapters.safetensors"
    save_file(
        {"blocks.0.mlp.fc1.lora_a": torch.zeros(2, 4), "head.weight": torch.ones(3, 4)}, str(path), metadata=metadata
    )
    return path


def _adapter_metadata(config: Any = None, class_names: Any = ("a", "b", "c"), info: Any = None) -> dict[str, str]:
    return {
        "format": ADAPTER_FORMAT,
        "config": json.dumps(_tiny_config_dict() if config is None else config),
        "class_names": json.dumps(list(class_names) if isinstance(class_names, tuple) else class_names),
        "info": json.dumps({"epoch": 1} if info is None else info),
    }


@cache
def adapter_seeds() -> tuple[Seed, ...]:
    data = _adapter_file(_seed_folder(), _adapter_metadata()).read_bytes()
    return (Seed("adapters.safetensors", data, (0, 4)),)


@st.composite
def adapter_metadata(draw) -> Input:
    """A well-formed safetensors file whose velora metadata (config, class names, info) is random."""
    field = draw(st.sampled_from(("config", "class_names", "info", "format", "missing key", "not JSON")))
    metadata = _adapter_metadata()
    if field == "config":
        metadata["config"] = json.dumps(draw(tree_variants(_tiny_config_dict(), JSON_SCALARS, CONFIG_KEYS)))
    elif field in ("class_names", "info"):
        metadata[field] = json.dumps(draw(_values(JSON_SCALARS)))
    elif field == "format":
        metadata["format"] = draw(st.sampled_from(("", "velora-adapters/2", "pt")))
    elif field == "missing key":
        del metadata[draw(st.sampled_from(sorted(metadata)))]
    else:
        metadata[draw(st.sampled_from(sorted(metadata)))] = draw(st.text(max_size=20))
    folder = _seed_folder() / "metadata"
    folder.mkdir(exist_ok=True)
    return Input(f"random metadata ({field})", _adapter_file(folder, metadata).read_bytes())


WEIGHT_SHAPES = {  # a ViT-shaped state dict: width 8, 8 x 8 patches of 16 x 16 images, 1 block
    "patch_embed.proj.weight": (8, 3, 8, 8),
    "pos_embed": (1, 5, 8),
    "cls_token": (1, 1, 8),
    "blocks.0.mlp.fc1.weight": (32, 8),
    "norm.weight": (8,),
}


@cache
def weights_seeds() -> tuple[Seed, ...]:
    from safetensors.torch import save_file

    folder = _seed_folder()
    state = {
        key: torch.randn(shape, generator=torch.Generator().manual_seed(0)) for key, shape in WEIGHT_SHAPES.items()
    }
    save_file(state, str(folder / "vit.safetensors"))
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, folder / "vit.pth")
    safetensors, pth = (folder / "vit.safetensors").read_bytes(), (folder / "vit.pth").read_bytes()
    return Seed("vit.safetensors", safetensors, (0, 4)), Seed("vit.pth", pth, _zip_size_fields(pth))


@st.composite
def weight_dicts(draw) -> Input:
    """A well-formed safetensors file with ViT key names and random shapes and dtypes."""
    from safetensors.torch import save_file

    keys = draw(
        st.lists(
            st.sampled_from(
                [
                    *WEIGHT_SHAPES,
                    "visual.class_embedding",
                    "visual.conv1.weight",
                    "visual.positional_embedding",
                    "vision_model.embeddings.class_embedding",
                    "visual.proj",
                    "visual.trunk.pos_embed",
                ]
            ),
            min_size=1,
            max_size=6,
            unique=True,
        )
    )
    state = {}
    for key in keys:
        shape = draw(st.lists(st.integers(0, 5), max_size=5))
        state[key] = torch.zeros(
            shape, dtype=draw(st.sampled_from((torch.float32, torch.float16, torch.int64, torch.bool)))
        )
    path = _seed_folder() / "random_weights.safetensors"
    save_file(state, str(path))
    return Input("random shapes and dtypes", path.read_bytes())


@cache
def resume_seeds() -> tuple[Seed, ...]:
    """A resume checkpoint shaped like Lightning's last.ckpt (tensors, counters, optimizer state)."""
    folder = _seed_folder()
    weight = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    state = {
        "epoch": 1,
        "global_step": 7,
        "state_dict": {"model.head.weight": weight},
        "loops": {"fit_loop": {"epoch_progress": {"total": {"ready": 2}}}},
        "optimizer_states": [
            {"state": {0: {"step": torch.tensor(7.0), "exp_avg": weight}}, "param_groups": [{"lr": 1e-3}]}
        ],
        "lr_schedulers": [{"last_epoch": 7, "lr_lambdas": [None]}],
        "velora_config": _tiny_config_dict(),
        "velora_history": {"train/loss": [[0, 2.0]]},
    }
    torch.save(state, folder / "last.ckpt")
    data = (folder / "last.ckpt").read_bytes()
    return (Seed("last.ckpt", data, _zip_size_fields(data)),)


def check_resume_state(state: dict) -> None:
    assert isinstance(state, dict) and "velora_config" in state


PACKED_SIZE, PACKED_FRAMES = 2, 2


def _packed_index() -> dict:
    import zlib

    frame_bytes, frames = PACKED_SIZE * PACKED_SIZE * 3, 3
    shard = bytes(range(2 * 2 * frames * frame_bytes))
    half = frames * frame_bytes
    clips = [
        {
            "sample": f"c{label}/s",
            "label": label,
            "frames": frames,
            "shard": 0,
            "offsets": {"rgb": 2 * half * label, "event": 2 * half * label + half},
            "crc32": zlib.crc32(shard[2 * half * label : 2 * half * (label + 1)]),
        }
        for label in range(2)
    ]
    header = {
        "format": "velora-packed",
        "version": 1,
        "image_size": PACKED_SIZE,
        "modalities": ["rgb", "event"],
        "class_names": ["c0", "c1"],
        "event_resample": "nearest",
        "frame_count_policy": "error",
        "shard_bytes": 1 << 30,
        "source": {"root": "/data", "label_files": {}},
    }
    return {
        "header": header,
        "splits": {"train": ["c0/s", "c1/s"]},
        "clips": clips,
        "complete": True,
        "_shard": shard.hex(),
    }


@cache
def packed_seeds() -> tuple[Seed, ...]:
    index = _packed_index()
    del index["_shard"]
    return (Seed("index.json", json.dumps(index, indent=1).encode()),)


def packed_trees() -> st.SearchStrategy[Input]:
    valid = json.loads(packed_seeds()[0].data)
    keys = (
        "header",
        "splits",
        "clips",
        "sample",
        "label",
        "frames",
        "shard",
        "offsets",
        "rgb",
        "event",
        "crc32",
        "image_size",
        "modalities",
        "class_names",
        "event_resample",
        "format",
        "version",
    )
    return tree_variants(valid, JSON_SCALARS, keys).map(
        lambda tree: Input("random JSON tree", json.dumps(tree).encode())
    )


@cache
def _seed_folder() -> Path:
    import atexit
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="velora-fuzz-seeds-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


# --- readers ---------------------------------------------------------------------------------------


def _writer(name: str, read: Callable[[Path], Any]) -> Callable[[Path, bytes], tuple[Path, Any]]:
    def write_and_read(folder: Path, data: bytes) -> tuple[Path, Any]:
        path = folder / name
        path.write_bytes(data)
        return path, read(path)

    return write_and_read


def _read_class_names(folder: Path, data: bytes) -> tuple[Path, Any]:
    (folder / "classes.txt").write_bytes(data)
    return folder, read_class_names(folder, CLASS_ENTRIES)


def _read_overrides(folder: Path, data: bytes) -> tuple[Path, Any]:
    """Command-line overrides: one per line of the input (arguments may hold any bytes but NUL)."""
    overrides = data.replace(b"\x00", b"").decode("utf-8", "surrogateescape").split("\n")
    return folder, load_config(None, overrides)


def _read_packed(folder: Path, data: bytes) -> tuple[Path, Any]:
    (folder / "index.json").write_bytes(data)
    shard = folder / "shard_00000.bin"
    if not shard.exists():
        shard.write_bytes(bytes.fromhex(_packed_index()["_shard"]))
    dataset = PackedClipDataset(folder, "train", ClipSampling(num_frames=PACKED_FRAMES, image_size=None))
    dataset.verify()
    return folder, [dataset[i] for i in range(len(dataset))]


def _quietly(read: Callable[[Path], Any], path: Path) -> Any:
    """read(path) with DataWarning silenced: a recording cut inside a word is valid data with a warning."""
    import warnings

    from velora.errors import DataWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return read(path)


CSV_FIELDS = st.one_of(
    NUMBER_TEXTS, st.sampled_from(("", " 1", "1 ", "-", "+1", "--1", "1e3", "0x1", "1.0", "\r")), TEXT
)


@st.composite
def csv_lines(draw) -> Input:
    """A header of (real or random) column names, then lines of random fields and separators."""
    names = draw(
        st.lists(
            st.one_of(st.sampled_from(("t", "x", "y", "p", "on", "x@64", "y@48", "timestamp", "polarity")), TEXT),
            min_size=0,
            max_size=6,
        )
    )
    lines = [",".join(names)] if names else []
    for _ in range(draw(st.integers(0, 6))):
        lines.append(",".join(draw(st.lists(CSV_FIELDS, min_size=1, max_size=6))))
    return Input("random lines", draw(st.sampled_from(("\n", "\r\n"))).join(lines).encode())


CONFIG_FIELDS = tuple(f"{section}.{key}" for section, values in Config().to_dict().items() for key in values)
DEFAULT_OVERRIDES = tuple(  # JSON is YAML: every field set to its default, a valid override
    f"{section}.{key}={json.dumps(value)}"
    for section, values in Config().to_dict().items()
    for key, value in values.items()
)


def override_lines() -> st.SearchStrategy[Input]:
    """`section.field=value` lines: real or random keys, values as YAML text of random trees or any text."""
    key = st.one_of(st.sampled_from(CONFIG_FIELDS), st.tuples(TEXT, TEXT).map(".".join), TEXT)
    value = st.one_of(
        _values(SCALARS, CONFIG_KEYS).map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip()), TEXT
    )
    line = st.tuples(key, value).map("=".join) | TEXT | st.sampled_from(DEFAULT_OVERRIDES)
    return st.lists(line, min_size=1, max_size=4).map(
        lambda lines: Input("random overrides", "\n".join(lines).encode())
    )


def _dv_size_fields(data: bytes) -> tuple[int, ...]:
    """The header's size, and every packet's stream id, size and flatbuffer root offset."""
    position = 4 + struct.unpack_from("<i", data)[0]
    fields = [0]
    while position + 8 <= len(data) and len(fields) < 200:
        fields.extend((position, position + 4, position + 12))
        position += 8 + struct.unpack_from("<I", data, position + 4)[0]
    return tuple(fields)


def _first_packets(data: bytes, count: int) -> bytes:
    """The header and the first `count` packets of a captured stream (small seeds fuzz faster)."""
    position = 4 + struct.unpack_from("<i", data)[0]
    for _ in range(count):
        if position + 8 > len(data):
            break
        position += 8 + struct.unpack_from("<I", data, position + 4)[0]
    return data[:position]


@cache
def dv_network_seeds() -> tuple[Seed, ...]:
    """What dv-processing NetworkWriters send: the real recording's events (no compression, LZ4,
    zstd) and frames, and small BGR, BGRA and 16-bit frames (zstd)."""
    import dv_processing as dv

    from dv_servers import DvServers, capture, free_port, wait_until

    street = REAL_DATA / "davis346" / "street_davis346.aedat4"
    seeds = []
    for compression in ("NONE", "LZ4", "ZSTD"):
        with DvServers(street, compression=compression) as servers:
            for kind, packets in (("events", 3), ("frames", 1)):
                data = _first_packets(
                    capture(servers.writers[kind], servers.ports[kind], servers.send_recording), packets
                )
                seeds.append(Seed(f"street {kind} {compression}", data, _dv_size_fields(data)))
    stream = dv.io.Stream.FrameStream(0, "frames", "TEST", (4, 3))
    stream.setCompression(dv.CompressionType.ZSTD)
    port = free_port()
    writer = dv.io.NetworkWriter("127.0.0.1", port, stream)
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 256, (3, 4, 3), dtype=np.uint8),
        rng.integers(0, 256, (3, 4, 4), dtype=np.uint8),
        rng.integers(0, 65536, (3, 4), dtype=np.uint16),
    ]

    def send() -> None:
        for k, image in enumerate(images):
            writer.writeFrame(dv.Frame(1000 * (k + 1), image))
            wait_until(lambda: writer.getQueuedPacketCount() == 0)

    data = capture(writer, port, send)
    seeds.append(Seed("small colour and 16-bit frames ZSTD", data, _dv_size_fields(data)))
    return tuple(seeds)


@st.composite
def dv_packets(draw) -> Input:
    """A valid header, then real packets whose flatbuffer tables (their first 64 bytes: offsets,
    vtables, scalar fields, vector lengths) have 1-8 bytes overwritten, or whose content is random
    bytes behind a real identifier, under declared or undeclared stream ids."""
    seed = draw(st.sampled_from(dv_network_seeds()))
    position = 4 + struct.unpack_from("<i", seed.data)[0]
    header, contents = seed.data[:position], []
    while position + 8 <= len(seed.data):
        size = struct.unpack_from("<I", seed.data, position + 4)[0]
        contents.append(seed.data[position + 8 : position + 8 + size])
        position += 8 + size
    packets = []
    for _ in range(draw(st.integers(1, 3))):
        content = bytearray(draw(st.sampled_from(contents)) if contents else b"")
        if content and draw(st.integers(0, 4)):
            for _ in range(draw(st.integers(1, 8))):
                content[draw(st.integers(0, min(len(content), 64) - 1))] = draw(st.integers(0, 255))
        else:
            content = bytearray(content[:12]) + draw(st.binary(min_size=0, max_size=512))
        stream_id = draw(st.sampled_from((0,) * 8 + (1, -1, 2**31 - 1)))
        packets.append(struct.pack("<iI", stream_id, len(content)) + bytes(content))
    return Input("random packets", header + b"".join(packets))


class _BytesSocket:
    """What a DV network server sent, as a socket that gives it in network-sized pieces, then EOF."""

    def __init__(self, data: bytes):
        self.data, self.position = data, 0

    def recv(self, size: int) -> bytes:
        chunk = self.data[self.position : self.position + min(size, 1 << 16)]
        self.position += len(chunk)
        return chunk

    def settimeout(self, timeout) -> None:
        pass

    def shutdown(self, how) -> None:
        pass

    def close(self) -> None:
        pass


def _read_dv_network(folder: Path, data: bytes) -> tuple[Path, Any]:
    """A connection's bytes decoded as velora stream decodes them, to the end (EOFError) or an error."""
    from velora.stream.dvnet import Connection

    connection = Connection(_BytesSocket(data), "fuzz")
    packets = []
    try:
        while True:
            packets.append(connection.read_packet()[0])
    except EOFError:
        pass
    finally:
        connection.close()
    return folder, (connection.header, packets)


def _protocol_error() -> tuple[type[Exception], ...]:
    from velora.stream.dvnet import ProtocolError

    return (ProtocolError,)


TARGETS = {
    target.name: target
    for target in (
        Target(
            "aedat4",
            _writer("recording.aedat4", read_aedat4),
            check_recording,
            (DataError,),
            lambda: corrupted(aedat4_seeds()),
        ),
        Target(
            "nmnist",
            _writer("sample.bs2", read_events),
            check_event_stream,
            (DataError,),
            lambda: corrupted(nmnist_seeds()),
        ),
        Target(
            "ncaltech",
            _writer("image_0001.bin", lambda path: read_events(path, width=None, height=None)),
            check_event_stream,
            (DataError,),
            lambda: corrupted(nmnist_seeds()),
        ),
        Target(
            "npy",
            _writer("events.npy", lambda path: read_events(path, width=64, height=48)),
            check_event_stream,
            (DataError,),
            lambda: corrupted(array_seed(".npy")),
        ),
        Target(
            "npz",
            _writer("events.npz", read_events),
            check_event_stream,
            (DataError,),
            lambda: corrupted(array_seed(".npz")) | npz_files(),
        ),
        Target(
            "hdf5",
            _writer("events.h5", read_events),
            check_event_stream,
            (DataError,),
            lambda: corrupted(array_seed(".h5")) | hdf5_files(),
        ),
        Target(
            "raw",
            _writer("recording.raw", lambda path: _quietly(read_events, path)),
            check_event_stream,
            (DataError,),
            lambda: corrupted(raw_seeds()),
        ),
        Target(
            "dat",
            _writer("recording.dat", read_events),
            check_event_stream,
            (DataError,),
            lambda: corrupted(dat_seeds()),
        ),
        Target(
            "event stream",
            _writer("recording.es", read_events),
            check_event_stream,
            (DataError,),
            lambda: corrupted(es_seeds()),
        ),
        Target(
            "aedat 2/3.1",
            _writer("recording.aedat", read_events),
            check_event_stream,
            (DataError,),
            lambda: corrupted(aedat_seeds()),
        ),
        Target(
            "csv",
            _writer("events.csv", read_events),
            check_event_stream,
            (DataError,),
            lambda: corrupted(csv_seeds()) | csv_lines(),
        ),
        Target(
            "label file",
            _writer("train_label.txt", read_label_file),
            check_clip_entries,
            (DataError,),
            lambda: corrupted((Seed("train_label.txt", LABEL_FILE),)) | label_lines(fields=3),
        ),
        Target(
            "classes.txt",
            _read_class_names,
            check_class_names,
            (DataError,),
            lambda: corrupted((Seed("classes.txt", CLASSES_FILE),)) | label_lines(fields=0),
        ),
        Target(
            "event labels",
            _writer("labels.txt", read_event_labels),
            check_event_labels,
            (DataError,),
            lambda: (
                corrupted((Seed("labels.txt", (REAL_DATA / "nmnist" / "labels.txt").read_bytes()),))
                | label_lines(fields=1)
            ),
        ),
        Target(
            "YAML config",
            _writer("config.yaml", lambda path: load_config(str(path))),
            check_config,
            (ConfigError,),
            lambda: corrupted(config_seeds()) | config_yaml_trees(),
        ),
        Target("config overrides", _read_overrides, check_config, (ConfigError,), override_lines, names_file=False),
        Target(
            "adapter checkpoint",
            _writer("adapters.safetensors", read_adapters),
            check_adapters,
            (CheckpointError,),
            lambda: corrupted(adapter_seeds()) | adapter_metadata(),
        ),
        Target(
            "weights .safetensors",
            _writer("vit.safetensors", load_state_dict_any),
            check_weights,
            (WeightsError,),
            lambda: corrupted(weights_seeds()[:1]) | weight_dicts(),
        ),
        Target(
            "weights .pth",
            _writer("vit.pth", load_state_dict_any),
            check_weights,
            (WeightsError,),
            lambda: corrupted(weights_seeds()[1:]),
        ),
        Target(
            "resume checkpoint",
            _writer("last.ckpt", read_resume_state),
            check_resume_state,
            (CheckpointError,),
            lambda: corrupted(resume_seeds()),
        ),
        Target(
            "packed index", _read_packed, check_packed, (DataError,), lambda: corrupted(packed_seeds()) | packed_trees()
        ),
        Target(
            "DV network stream",
            _read_dv_network,
            check_dv_network,
            _protocol_error(),
            lambda: corrupted(dv_network_seeds()) | dv_packets(),
            names_file=False,
        ),
    )
}
