"""The shared column checks (velora.events.columns) and the readers of velora.events.readers (suffix
dispatch, N-MNIST's 40-bit events, NumPy and HDF5 columns) rule by rule, on inputs written here
byte by byte or array by array, each error whole.

tests/test_readers.py checks each reader against an independent decoder on real and synthetic
recordings; this file pins the rules those leave open (written for mutation testing, see
benchmarks/results/mutation.md).
"""

from __future__ import annotations

import os
import warnings

import h5py
import numpy as np
import pytest

from conftest import error_of
from velora.errors import DataWarning
from velora.events.columns import (
    check_file,
    decoded_stream,
    event_stream,
    read_file_bytes,
    sensor_size,
    unwrap_uint32,
    warn_dropped,
)
from velora.events.readers import read_events, read_hdf5, read_nmnist, read_npy, require_events
from velora.events.render import EventStream


def columns_of(stream: EventStream) -> tuple[list, list, list, list, int, int]:
    return stream.t.tolist(), stream.x.tolist(), stream.y.tolist(), stream.p.tolist(), stream.width, stream.height


# --- files ------------------------------------------------------------------------------------------


def test_a_missing_folder_or_empty_path_is_named_with_what_to_do(tmp_path):
    missing = tmp_path / "nope.npy"
    assert error_of(check_file, missing) == f"{missing}: cannot be read (No such file or directory); check the path."
    assert error_of(check_file, tmp_path) == f"{tmp_path}: is not a file; pass the path of one event file."
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert error_of(check_file, empty) == f"{empty}: the file is empty (0 bytes); re-copy or re-record it."
    assert error_of(read_file_bytes, empty) == f"{empty}: the file is empty (0 bytes); re-copy or re-record it."
    (tmp_path / "one.bin").write_bytes(b"\x01\x02")
    assert read_file_bytes(tmp_path / "one.bin") == b"\x01\x02"


def reader_that_drops(path):
    warn_dropped(path, "the last 3 bytes, half an event, were dropped")  # the reader's own line


def test_a_dropped_part_warns_naming_the_file_at_the_readers_caller(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reader_that_drops(tmp_path / "r.raw")  # the line the warning points at
    (warning,) = caught
    assert warning.category is DataWarning
    assert str(warning.message) == f"{tmp_path / 'r.raw'}: the last 3 bytes, half an event, were dropped"
    # stacklevel 3: past warn_dropped and the reader, to the reader's caller. (Under mutation testing
    # mutmut's trampoline around warn_dropped adds the frames stacklevel counts, so it is not checked there.)
    here = test_a_dropped_part_warns_naming_the_file_at_the_readers_caller.__code__.co_firstlineno + 3
    if "MUTANT_UNDER_TEST" not in os.environ:
        assert (warning.filename, warning.lineno) == (__file__, here)


# --- the sensor size -------------------------------------------------------------------------------------


def test_the_sensor_size_given_wins_and_each_missing_side_is_its_max_plus_one(tmp_path):
    x, y = np.array([3, 9, 1]), np.array([4, 2, 7])
    assert sensor_size(tmp_path, x, y, 20, 30) == (20, 30)
    assert sensor_size(tmp_path, x, y, None, None) == (10, 8)
    assert sensor_size(tmp_path, x, y, 20, None) == (20, 8)
    assert sensor_size(tmp_path, x, y, None, 30) == (10, 30)
    empty = np.array([], dtype=np.int64)
    assert sensor_size(tmp_path, empty, empty, 5, 6) == (5, 6)


def test_impossible_sensor_sizes_are_refused(tmp_path):
    empty = np.array([], dtype=np.int64)
    for width, height in ((None, 6), (5, None)):
        assert error_of(sensor_size, tmp_path, empty, empty, width, height) == (
            f"{tmp_path}: the file holds no events and no sensor size; pass width= and height=."
        )
    assert sensor_size(tmp_path, empty, empty, 32767, 1) == (32767, 1)
    for width, height in ((0, 5), (5, 0), (-1, 5), (32768, 5), (5, 32768)):
        assert error_of(sensor_size, tmp_path, empty, empty, width, height) == (
            f"{tmp_path}: a {width} x {height} sensor is not possible (int16 coordinates); check width/height."
        )


# --- 32-bit timestamps ---------------------------------------------------------------------------------


def test_a_drop_of_2_to_the_31_or_more_is_a_wrap_of_the_32_bit_clock():
    t = np.array([4_294_967_000, 100, 200], dtype=np.int64)
    out = unwrap_uint32(t)
    assert out is t  # in place
    assert t.tolist() == [4_294_967_000, 4_294_967_396, 4_294_967_496]
    assert unwrap_uint32(np.array([2**31, 0], dtype=np.int64)).tolist() == [2**31, 2**32]
    assert unwrap_uint32(np.array([2**31 - 1, 0], dtype=np.int64)).tolist() == [2**31 - 1, 0]  # kept: not a wrap
    assert unwrap_uint32(np.array([5000, 4000, 4500], dtype=np.int64)).tolist() == [5000, 4000, 4500]
    two = np.array([3_000_000_000, 10, 3_000_000_000, 20], dtype=np.int64)  # two wraps add 2**32 each
    assert unwrap_uint32(two).tolist() == [3_000_000_000, 2**32 + 10, 2**32 + 3_000_000_000, 2**33 + 20]


# --- building the stream -------------------------------------------------------------------------------------


def decoded(t, x, in_order=False, width=8):
    n = len(t)
    cols = np.array(t, np.int64), np.array(x, np.int16), np.zeros(n, np.int16), np.array([1, -1, 1][:n], np.int8)
    return decoded_stream("rec.bin", *cols, width, 4, in_order=in_order)


def test_decoder_output_is_sorted_stably_unless_the_decoder_saw_it_in_order():
    assert columns_of(decoded([5, 3, 3], [0, 1, 2])) == ([3, 3, 5], [1, 2, 0], [0, 0, 0], [-1, 1, 1], 8, 4)
    assert columns_of(decoded([1, 2, 2], [0, 1, 2], in_order=True))[:2] == ([1, 2, 2], [0, 1, 2])
    # a decoder that claims order wrongly is caught by EventStream's own check
    assert error_of(decoded, [5, 3], [0, 1], in_order=True) == (
        "rec.bin: the decoded events are invalid (EventStream timestamps t must be sorted; sort all four arrays "
        "with np.argsort(t, kind='stable').); the file is corrupt."
    )
    assert error_of(decoded, [1, 2], [0, 8]).startswith(
        "rec.bin: the decoded events are invalid (EventStream coordinates fall outside the 8 x 4 sensor"
    )


def test_columns_of_different_lengths_are_named_with_their_lengths():
    assert error_of(event_stream, "e.npz", [1, 2, 3], [0, 1], [0, 0, 0], [1, 1, 1], 4, 4) == (
        "e.npz: columns t, x, y, p have different lengths (3, 2, 3, 3); the file is corrupt."
    )


@pytest.mark.parametrize(
    "p", [[True, False, True], [1, 0, 1], [1, -1, 1], np.array([1.0, 0.0, 1.0]), np.array([1, 0, 1], np.uint8)]
)
def test_every_polarity_convention_becomes_plus_and_minus_one(p):
    stream = event_stream("e.npz", [1, 2, 3], [0, 1, 2], [0, 0, 1], p, None, None)
    assert columns_of(stream) == ([1, 2, 3], [0, 1, 2], [0, 0, 1], [1, -1, 1], 3, 2)
    assert (stream.t.dtype, stream.x.dtype, stream.y.dtype, stream.p.dtype) == (np.int64, np.int16, np.int16, np.int8)


def test_other_polarity_values_are_listed_up_to_eight():
    assert error_of(event_stream, "e.npz", [1, 2], [0, 0], [0, 0], [0, 2], 4, 4) == (
        "e.npz: polarity holds values [0, 2]; expected bool, 0/1 or -1/+1."
    )
    many = np.arange(-1, 10)  # 11 distinct values: the first 8 are shown
    n = len(many)
    assert error_of(event_stream, "e.npz", np.arange(n), np.zeros(n), np.zeros(n), many, 4, 4) == (
        "e.npz: polarity holds values [-1, 0, 1, 2, 3, 4, 5, 6]; expected bool, 0/1 or -1/+1."
    )


def test_coordinates_outside_the_sensor_are_named_with_their_ranges():
    for x, y in (([0, 4], [0, 1]), ([0, 1], [0, 3])):
        message = error_of(event_stream, "e.npz", [1, 2], x, y, [1, 1], 4, 3)
        assert message == (
            f"e.npz: event coordinates (x in [{min(x)}, {max(x)}], y in [{min(y)}, {max(y)}]) fall outside "
            "the 4 x 3 sensor; pass the right width/height (or None to infer max + 1)."
        )
    # a negative coordinate is no matter of size, given or inferred (max + 1 of x = [-3, -1] would be 0)
    for x, y, size in (([-1, 1], [0, 1], 4), ([0, 1], [-2, 1], 4), ([-3, -1], [0, 1], None)):
        message = error_of(event_stream, "e.npz", [1, 2], x, y, [1, 1], size, size)
        assert message == (
            f"e.npz: event coordinates are negative (x in [{min(x)}, {max(x)}], y in [{min(y)}, {max(y)}]); "
            "they count from 0 at the sensor's top-left corner, so the file is corrupt or uses another origin."
        )
    # at the edge: x = width - 1 and y = height - 1 are inside
    assert columns_of(event_stream("e.npz", [1, 2], [0, 3], [2, 0], [1, 1], 4, 3))[1:3] == ([0, 3], [2, 0])


def test_an_empty_file_of_columns_is_an_empty_stream_of_the_given_size():
    stream = event_stream("e.npz", [], [], [], np.array([], bool), 4, 3)
    assert len(stream) == 0 and (stream.width, stream.height) == (4, 3)


def test_unsorted_columns_are_sorted_stably_and_two_d_columns_flattened():
    t = np.array([[30], [10], [10]])
    stream = event_stream("e.npz", t, [[0], [1], [2]], [0, 0, 0], [1, 0, 1], None, None)
    assert columns_of(stream) == ([10, 10, 30], [1, 2, 0], [0, 0, 0], [-1, 1, 1], 3, 1)


def test_columns_must_be_integers_or_integral_floats():
    assert error_of(event_stream, "e.npz", np.array(["1", "2"]), [0, 0], [0, 0], [1, 1], 4, 4) == (
        "e.npz: timestamps t has dtype <U1; expected integers."
    )
    assert error_of(event_stream, "e.npz", [1, 2], np.array([0j, 1j]), [0, 0], [1, 1], 4, 4) == (
        "e.npz: x has dtype complex128; expected integers."
    )
    floats = (
        "holds non-integer or non-finite floats; timestamps must be integer microseconds and coordinates integer "
        "pixels (convert seconds with np.round(t * 1e6).astype(np.int64))."
    )
    for bad in ([0.5, 1.0], [np.inf, 1.0], [np.nan, 1.0], [2.0**63, 1.0], [-(2.0**63), 1.0]):
        assert error_of(event_stream, "e.npz", [1, 2], [0, 0], np.array(bad), [1, 1], 4, 4) == f"e.npz: y {floats}"
    stream = event_stream("e.npz", np.array([1.0, 2.0]), [0, 0], np.array([0.0, 1.0]), [1, 1], None, None)
    assert columns_of(stream) == ([1, 2], [0, 0], [0, 1], [1, 1], 1, 2)


# --- the readers -----------------------------------------------------------------------------------------


def npz(path, **arrays):
    with open(path, "wb") as file:  # a file object: np.savez appends .npz to a name in other case
        np.savez(file, **arrays)
    return path


def test_the_reader_is_picked_by_suffix_in_any_case_and_sizes_pass_only_when_given(tmp_path):
    path = npz(tmp_path / "EVENTS.NPZ", t=[1, 2], x=[0, 5], y=[0, 2], p=[1, 0])
    assert columns_of(read_events(path)) == ([1, 2], [0, 5], [0, 2], [1, -1], 6, 3)
    assert columns_of(read_events(path, width=10))[4:] == (10, 3)
    assert columns_of(read_events(path, height=7))[4:] == (6, 7)
    other = tmp_path / "events.txt"
    other.write_text("1 2 3 1")
    assert error_of(read_events, other) == (
        f"{other}: unsupported event file suffix '.txt'; supported suffixes: "
        ".aedat, .aedat4, .bin, .bs2, .csv, .dat, .es, .h5, .hdf5, .npy, .npz, .raw."
    )


def test_a_stream_without_events_is_refused_only_where_events_are_needed(tmp_path):
    empty = EventStream(*(np.array([], dtype) for dtype in (np.int64, np.int16, np.int16, np.int8)), 4, 4)
    assert error_of(require_events, empty, tmp_path / "quiet.npz") == (
        f"{tmp_path / 'quiet.npz'}: the file holds no events, and this step needs at least one; "
        "check the recording or leave the file out of the dataset."
    )
    one = EventStream(np.array([1]), np.array([0], np.int16), np.array([0], np.int16), np.array([1], np.int8), 4, 4)
    assert require_events(one, "x") is one


def nmnist_event(x: int, y: int, on: bool, t: int) -> bytes:
    """5 bytes: x, y, then p in the top bit and a 23-bit timestamp (big-endian) below it."""
    return bytes([x, y, (on << 7) | (t >> 16), (t >> 8) & 0xFF, t & 0xFF])


def test_nmnist_bytes_are_x_y_polarity_bit_and_a_23_bit_timestamp(tmp_path):
    path = tmp_path / "sample.bin"
    path.write_bytes(bytes([3, 4, 0x81, 0x02, 0x03]) + nmnist_event(33, 33, False, 2**23 - 1))
    assert columns_of(read_nmnist(path)) == ([66051, 2**23 - 1], [3, 33], [4, 33], [1, -1], 34, 34)
    assert columns_of(read_nmnist(path, width=None, height=None))[4:] == (34, 34)
    assert columns_of(read_nmnist(path, width=40, height=None))[4:] == (40, 34)


def test_an_nmnist_overflow_marker_adds_2_to_the_13_to_later_events_and_is_dropped(tmp_path):
    path = tmp_path / "sample.bs2"
    events = [nmnist_event(1, 1, True, 8000), nmnist_event(0, 240, False, 0), nmnist_event(2, 2, True, 10)]
    path.write_bytes(b"".join(events + [nmnist_event(0, 240, False, 0), nmnist_event(3, 3, False, 5)]))
    assert columns_of(read_nmnist(path)) == ([8000, 8202, 16389], [1, 2, 3], [1, 2, 3], [1, 1, -1], 34, 34)


def test_an_nmnist_file_of_partial_events_is_refused(tmp_path):
    path = tmp_path / "sample.bin"
    path.write_bytes(nmnist_event(1, 1, True, 5) + b"\x01\x02")
    assert error_of(read_nmnist, path) == (
        f"{path}: 7 bytes is not a multiple of 5, the size of one N-MNIST event; the file is truncated or not in "
        "the 40-bit format. Re-copy it."
    )


def test_numpy_columns_go_by_their_aliases_and_a_npz_may_store_the_size(tmp_path):
    rows = np.array(
        [(2, 1, 0, True), (1, 0, 1, False)], dtype=[("ts", "<i8"), ("x", "<i2"), ("y", "<i2"), ("polarity", "?")]
    )
    np.save(tmp_path / "events.npy", rows)
    assert columns_of(read_npy(tmp_path / "events.npy")) == ([1, 2], [0, 1], [1, 0], [-1, 1], 2, 2)
    path = npz(tmp_path / "sized.npz", timestamp=[5], x=[1], y=[1], on=[1], width=np.array(9), height=np.array([7]))
    assert columns_of(read_npy(path))[4:] == (9, 7)
    assert columns_of(read_npy(path, width=3, height=2))[4:] == (3, 2)  # the arguments win


def test_numpy_files_without_named_columns_or_a_good_size_are_explained(tmp_path):
    np.save(tmp_path / "plain.npy", np.zeros((3, 4), np.int64))
    assert error_of(read_npy, tmp_path / "plain.npy") == (
        f"{tmp_path / 'plain.npy'}: holds a plain int64 array of shape (3, 4); save a structured array with fields "
        "t, x, y, p (or a .npz with arrays t, x, y, p) so the columns are named."
    )
    path = npz(tmp_path / "nop.npz", t=[1], x=[0], y=[0])
    assert error_of(read_npy, path) == (
        f"{path}: no array named 'p' / 'polarity' / 'polarities' / 'pol' / 'on'; the file has ['t', 'x', 'y']. "
        "Store the events as columns t, x, y, p."
    )
    for stored in (np.array(0), np.array(2.5), np.array([3, 4])):
        path = npz(tmp_path / "bad.npz", t=[1], x=[0], y=[0], p=[1], width=stored)
        assert error_of(read_npy, path) == (
            f"{path}: the stored sensor width {stored!r} is not a positive integer; fix it or pass width=."
        )


def hdf5_file(path, **datasets):
    with h5py.File(path, "w") as file:
        for name, values in datasets.items():
            file.create_dataset(name, data=np.array(values))
    return path


def test_hdf5_columns_are_read_from_the_events_group_else_the_root(tmp_path):
    path = tmp_path / "grouped.h5"
    with h5py.File(path, "w") as file:
        file.attrs["width"], file.attrs["height"] = 50, 40
        group = file.create_group("events")
        group.attrs["height"] = 30  # the group's attribute wins over the root's
        for name, values in (("t", [1, 2]), ("x", [0, 1]), ("y", [2, 3]), ("polarity", [1, 0])):
            group.create_dataset(name, data=np.array(values))
    assert columns_of(read_hdf5(path)) == ([1, 2], [0, 1], [2, 3], [1, -1], 50, 30)
    # a dataset called events is not the group
    path = hdf5_file(tmp_path / "root.h5", ts=[3], x=[4], y=[5], p=[1], events=[0])
    assert columns_of(read_hdf5(path)) == ([3], [4], [5], [1], 5, 6)
    with h5py.File(path, "a") as file:
        file.attrs["width"] = -3
    assert error_of(read_hdf5, path) == (
        f"{path}: the stored sensor width array(-3) is not a positive integer; fix it or pass width=."
    )


def test_sorting_is_stable_beyond_numpys_small_array_insertion_sort():
    # 40 events alternating t = 2, 1: equal timestamps keep their file order (x ascending within a t)
    t, x = np.tile([2, 1], 20), np.arange(40)
    expected = [1] * 20 + [2] * 20, list(range(1, 40, 2)) + list(range(0, 40, 2))
    cols = np.array(t, np.int64), np.array(x, np.int16), np.zeros(40, np.int16), np.ones(40, np.int8)
    assert columns_of(decoded_stream("rec.bin", *cols, 64, 4))[:2] == expected  # in_order defaults to False
    assert columns_of(event_stream("e.npz", t, x, np.zeros(40), np.ones(40), 64, 4))[:2] == expected


def test_a_decrease_after_a_rise_is_sorted_too():
    cols = np.array([1, 5, 3], np.int64), np.array([0, 1, 2], np.int16), np.zeros(3, np.int16), np.ones(3, np.int8)
    assert columns_of(decoded_stream("rec.bin", *cols, 4, 4))[:2] == ([1, 3, 5], [0, 2, 1])
    assert columns_of(event_stream("e.npz", [1, 5, 3], [0, 1, 2], [0, 0, 0], [1, 1, 1], 4, 4))[:2] == (
        [1, 3, 5],
        [0, 2, 1],
    )


def test_large_integral_float_timestamps_are_accepted():
    stream = event_stream("e.npz", np.array([1e3, 2.5e9]), [0, 0], [0, 0], [1, 1], 1, 1)
    assert stream.t.tolist() == [1000, 2_500_000_000]


def test_a_file_that_stat_sees_but_cannot_read_says_to_check_permissions(tmp_path, monkeypatch):
    path = tmp_path / "locked.bin"
    path.write_bytes(b"\x01")

    def refuse(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(type(path), "read_bytes", refuse)  # tests run as root, which no chmod stops
    assert (
        error_of(read_file_bytes, path) == f"{path}: cannot be read (Permission denied); check the file's permissions."
    )


# --- what the NumPy and HDF5 readers say (written for the mutation run of events/readers.py) ----------


def test_a_stored_height_is_checked_as_the_width_is_and_a_size_of_1_is_a_size(tmp_path):
    for stored in (np.array(0), np.array(2.5), np.array([3, 4])):
        path = npz(tmp_path / "bad.npz", t=[1], x=[0], y=[0], p=[1], height=stored)
        assert error_of(read_npy, path) == (
            f"{path}: the stored sensor height {stored!r} is not a positive integer; fix it or pass height=."
        )
    path = npz(tmp_path / "one.npz", t=[1], x=[0], y=[0], p=[1], width=np.array(1), height=np.array(1))
    assert columns_of(read_npy(path))[4:] == (1, 1)


def test_a_npy_names_its_missing_field_and_a_broken_file_its_error(tmp_path):
    rows = np.array([(1, 0, 0)], dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2")])
    np.save(tmp_path / "nop.npy", rows)
    assert error_of(read_npy, tmp_path / "nop.npy") == (
        f"{tmp_path / 'nop.npy'}: no field named 'p' / 'polarity' / 'polarities' / 'pol' / 'on'; "
        "the file has ['t', 'x', 'y']. Store the events as columns t, x, y, p."
    )
    path = tmp_path / "cut.npy"
    np.save(path, rows)
    path.write_bytes(path.read_bytes()[:20])
    message = error_of(read_npy, path)
    assert message.startswith(f"{path}: cannot be read as a NumPy file (ValueError: ")
    assert message.endswith("); the file is truncated or corrupt.")


def test_a_npy_of_python_objects_is_refused_unpickled(tmp_path):
    path = tmp_path / "objects.npy"  # unpickling would run whatever code the file names
    np.save(path, np.array([{"t": 1}], dtype=object), allow_pickle=True)
    message = error_of(read_npy, path)
    assert message.startswith(f"{path}: cannot be read as a NumPy file (ValueError: ")
    assert "allow_pickle=False" in message


def test_hdf5_sizes_given_win_over_stored_ones_and_a_bad_stored_height_is_named(tmp_path):
    path = hdf5_file(tmp_path / "sized.h5", t=[1, 2], x=[0, 1], y=[2, 3], p=[1, 0])
    with h5py.File(path, "a") as file:
        file.attrs["width"], file.attrs["height"] = 50, 40
    assert columns_of(read_hdf5(path))[4:] == (50, 40)
    assert columns_of(read_hdf5(path, width=7, height=9))[4:] == (7, 9)
    assert columns_of(read_hdf5(path, height=9))[4:] == (50, 9)
    with h5py.File(path, "a") as file:
        file.attrs["height"] = 0
    assert error_of(read_hdf5, path) == (
        f"{path}: the stored sensor height array(0) is not a positive integer; fix it or pass height=."
    )


def test_hdf5_errors_name_the_file_the_group_and_what_it_holds(tmp_path):
    path = tmp_path / "empty.h5"
    with h5py.File(path, "w") as file:
        file.create_group("events")
    assert error_of(read_hdf5, path) == (
        f"{path}: no dataset (in /events) named 't' / 'ts' / 'timestamp' / 'timestamps' / 'time'; "
        "the file has none. Store the events as columns t, x, y, p."
    )
    path = hdf5_file(tmp_path / "negative.h5", t=[1], x=[-1], y=[0], p=[1])
    assert error_of(read_hdf5, path).startswith(f"{path}: event coordinates are negative")


def hdf5_declaring(path, events: int, padding: int) -> int:
    """A file whose 4 int64 datasets declare `events` rows each, none written; its size in bytes."""
    with h5py.File(path, "w") as file:
        file.attrs["padding"] = "." * padding  # moves the file's size
        for name in "txyp":
            file.create_dataset(name, shape=(events,), dtype="i8", chunks=(1024,))
    return path.stat().st_size


def test_hdf5_datasets_may_declare_up_to_1032_times_the_files_size(tmp_path):
    path = tmp_path / "limit.h5"
    for padding in range(64):  # a file size S for which 4 x 8 bytes x rows == 1032 S holds exactly
        size = hdf5_declaring(path, 1024, padding)
        if size % 4 == 0 and hdf5_declaring(path, size * 1032 // 32, padding) == size:
            break
    else:
        pytest.fail("no file size in 64 paddings is a multiple of 4; the test's file needs another padding")
    rows = size * 1032 // 32
    assert len(read_hdf5(path)) == rows  # exactly the limit: read (never-written rows read as 0)
    assert hdf5_declaring(path, rows + 1, padding) == size
    assert error_of(read_hdf5, path) == (
        f"{path}: the datasets t, x, y, p declare {32 * (rows + 1)} bytes, more than a file of {size} bytes can "
        "hold even compressed; the file is corrupt."
    )
