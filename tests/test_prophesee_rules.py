"""The rules of the Prophesee readers one at a time, on files written byte by byte here: the '%'
header (how lines end, `% end`, case, undecodable bytes), where the sensor size comes from and the
exact message for each wrong size, the DAT records at their limits (polarity, sensor edge, a step
back in time, the wrap-around at exactly 2**31) and every error's whole message.

tests/test_prophesee.py checks the readers against faery and real recordings; this file pins what
those leave open (each test here was written for a mutant of velora.events.prophesee that survived
them, see benchmarks/results/mutation.md).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import columns, error_of
from velora.errors import DataWarning
from velora.events.prophesee import read_dat, read_prophesee_header, read_raw, read_raw_events
from velora.events.readers import read_events


def time_high(high: int) -> int:
    return (0x8 << 28) | high


def cd(on: int, t_low: int, x: int, y: int) -> int:
    """An EVT 2.0 CD word: type 0 (OFF) or 1 (ON), 6 low time bits, x (11 bits), y (11 bits)."""
    return (on << 28) | (t_low << 22) | (x << 11) | y


def raw_file(path: Path, header: bytes, *words: int) -> Path:
    path.write_bytes(header + np.array(words, dtype="<u4").tobytes())
    return path


def dat_record(t: int, x: int, y: int, polarity: int) -> tuple[int, int]:
    """A version 2 DAT record: t, then x (bits 0-13), y (bits 14-27), polarity (bits 28-31)."""
    return t, x | y << 14 | polarity << 28


def dat_file(path: Path, header: bytes, *records: tuple[int, int], event_type: int = 0x0C) -> Path:
    body = np.array(records, dtype="<u4").reshape(-1, 2).tobytes()
    path.write_bytes(header + bytes([event_type, 8]) + body)
    return path


# --- the '%' header --------------------------------------------------------------------------------


def test_an_end_line_ends_the_header_even_when_the_data_starts_with_a_percent_byte(tmp_path):
    header = b"% evt 2.0\n% geometry 64x48\n"
    words = (time_high(0x25), cd(1, 2, 3, 4))  # the first data byte is 0x25, '%'
    for end in (b"% end\n", b"% END\n", b"%End\n"):
        path = raw_file(tmp_path / "end.raw", header + end, *words)
        assert read_prophesee_header(path.read_bytes()).data_offset == len(header + end)
        assert columns(read_raw(path).events) == [(0x25 << 6 | 2, 3, 4, 1)]


def test_a_header_is_read_to_the_end_of_a_file_with_no_data(tmp_path):
    for header in (b"% evt 2.0\n% geometry 8x6\n", b"% evt 2.0\n% geometry 8x6"):  # with and without a last newline
        path = tmp_path / "header-only.raw"
        path.write_bytes(header)
        parsed = read_prophesee_header(header)
        assert parsed.fields == {"evt": "2.0", "geometry": "8x6"} and parsed.data_offset == len(header)
        events = read_raw(path).events
        assert len(events) == 0 and (events.width, events.height) == (8, 6)


def test_header_lines_without_a_space_after_the_percent_or_with_bytes_that_are_not_utf8(tmp_path):
    header = b"%evt 2.0\n% comment \xff\xfe not UTF-8\n%geometry 64x48\n"
    parsed = read_prophesee_header(header)
    assert parsed.get("evt") == "2.0" and parsed.get("geometry") == "64x48" and parsed.get("comment")
    events = read_raw(raw_file(tmp_path / "bare.raw", header, time_high(1), cd(0, 0, 5, 6))).events
    assert columns(events) == [(64, 5, 6, -1)] and (events.width, events.height) == (64, 48)


def test_keywords_are_matched_whatever_their_case(tmp_path):
    header = b"% EVT 2.0\n% GEOMETRY 64x48\n% T0 1000\n"
    events = read_raw(raw_file(tmp_path / "upper.raw", header, time_high(1), cd(1, 0, 1, 2))).events
    assert columns(events) == [(1064, 1, 2, 1)] and (events.width, events.height) == (64, 48)


# --- the sensor size of a .raw file ----------------------------------------------------------------


def test_a_format_line_with_only_one_dimension_leaves_the_size_to_the_geometry_line(tmp_path):
    header = b"% format EVT2;width=640\n% geometry 64x48\n"
    events = read_raw(raw_file(tmp_path / "half.raw", header, time_high(0), cd(1, 0, 1, 1))).events
    assert (events.width, events.height) == (64, 48)


def test_a_width_line_without_a_height_line_gives_no_size(tmp_path):
    path = raw_file(tmp_path / "width-only.raw", b"% evt 2.0\n% Width 640\n", time_high(0), cd(1, 0, 9, 4))
    events = read_raw(path).events
    assert (events.width, events.height) == (10, 5)  # max + 1: the lone Width line is not a size


@pytest.mark.parametrize("size", [(1, 1), (32767, 32767)])
def test_sizes_from_1_to_32767_are_accepted_in_every_header_form(tmp_path, size):
    width, height = size
    forms = [
        f"% format EVT2;width={width};height={height}\n",
        f"% evt 2.0\n% geometry {width}x{height}\n",
        f"% evt 2.0\n% Width {width}\n% Height {height}\n",
    ]
    for form in forms:
        path = raw_file(tmp_path / "size.raw", form.encode(), time_high(0), cd(1, 0, 0, 0))
        events = read_raw(path).events
        assert (events.width, events.height) == size, form


@pytest.mark.parametrize(
    "lines, name, text",
    [
        ("% format EVT2;width=0;height=48", "width", "0"),
        ("% format EVT2;width=64;height=32768", "height", "32768"),
        ("% format EVT2;width=1280=;height=720", "width", "1280="),  # the value is all after the first '='
        ("% evt 2.0\n% geometry 0x48", "width", "0"),
        ("% evt 2.0\n% geometry 64x99999", "height", "99999"),
        ("% evt 2.0\n% Width -3\n% Height 48", "width", "-3"),
        ("% evt 2.0\n% Width 64\n% Height 4.5", "height", "4.5"),
    ],
)
def test_each_impossible_size_is_refused_naming_the_dimension_and_its_text(tmp_path, lines, name, text):
    path = raw_file(tmp_path / "size.raw", lines.encode() + b"\n", time_high(0))
    assert error_of(read_raw, path) == (
        f"{path}: the header's sensor {name} {text!r} is not a positive integer below 32768; the header is corrupt."
    )


def test_a_missing_size_comes_from_the_arguments_and_reaches_read_events(tmp_path):
    path = raw_file(tmp_path / "nosize.raw", b"% evt 2.0\n", time_high(0), cd(1, 0, 9, 4))
    for events in (read_raw_events(path, 100, 50), read_events(path, width=100, height=50)):
        assert (events.width, events.height) == (100, 50)
    events = read_raw(path, width=100)  # one dimension given: the other is max + 1
    assert (events.events.width, events.events.height) == (100, 5)
    events = read_raw(path, height=50)
    assert (events.events.width, events.events.height) == (10, 50)


def test_numbers_in_a_plugin_name_are_not_sensor_generations(tmp_path):
    words = (time_high(0), cd(1, 0, 9, 4))
    path = raw_file(tmp_path / "plugin.raw", b"% evt 2.0\n% plugin_name hal_plugin_v3.1_4.0\n", *words)
    assert (read_raw(path).events.width, read_raw(path).events.height) == (10, 5)  # no table entry: max + 1
    path = raw_file(tmp_path / "generation.raw", b"% evt 2.0\n% sensor_generation 4.1\n", *words)
    assert (read_raw(path).events.width, read_raw(path).events.height) == (1280, 720)


@pytest.mark.parametrize("x, y", [(640, 0), (0, 480)])
def test_an_event_on_the_edge_of_the_camera_tables_size_is_refused(tmp_path, x, y):
    path = raw_file(
        tmp_path / "gen3.raw", b"% evt 2.0\n% plugin_name hal_plugin_gen3_fx3\n", time_high(0), cd(1, 0, x, y)
    )
    assert error_of(read_raw, path) == (
        f"{path}: events reach x={x}, y={y}, outside the 640 x 480 sensor assumed for this camera (the header has "
        "no geometry); pass the sensor's width= and height=."
    )


def test_a_recording_without_events_or_size_asks_for_the_size(tmp_path):
    path = raw_file(tmp_path / "nothing.raw", b"% evt 2.0\n", time_high(0))
    assert error_of(read_raw, path) == f"{path}: the file holds no events and no sensor size; pass width= and height=."


def test_events_past_a_width_given_alone_are_refused_naming_the_file(tmp_path):
    path = raw_file(tmp_path / "narrow.raw", b"% evt 2.0\n", time_high(0), cd(1, 0, 9, 4))
    message = error_of(read_raw, path, width=4)
    assert message.startswith(f"{path}: the decoded events are invalid (") and message.endswith("the file is corrupt.")


# --- corrupt words: the advice depends on where the size came from ---------------------------------


def evt21_word(x: int, y: int) -> tuple[int, int]:
    """An EVT 2.1 ON group at (x, y) with only its first pixel set, as two little-endian uint32 halves
    (64-bit word: type 1 in bits 60-63, 6 time bits, x in 11, y in 11, then a 32-bit mask)."""
    upper = (1 << 28) | (0 << 22) | (x << 11) | y
    return 1, upper


@pytest.mark.parametrize(
    "header, words, offset_word, problem",
    [
        (b"% evt 2.0\n% geometry 64x48\n", (time_high(0), cd(1, 0, 1, 48)), 1, "an event at x=1, y=48"),
        (
            b"% format EVT21;width=64;height=48\n",
            (0, time_high(0), *evt21_word(64, 1)),
            1,
            "an event at x=64, y=1",
        ),
        (
            b"% format EVT21;width=64;height=48\n",
            (0, time_high(0), *evt21_word(1, 48)),
            1,
            "an event at x=1, y=48",
        ),
    ],
    ids=["EVT 2.0 y", "EVT 2.1 x", "EVT 2.1 y"],
)
def test_an_event_outside_the_headers_size_is_corrupt_data_to_re_copy(tmp_path, header, words, offset_word, problem):
    path = raw_file(tmp_path / "outside.raw", header, *words)
    name = "EVT 2.1" if b"EVT21" in header else "EVT 2.0"
    word_bytes = 8 if name == "EVT 2.1" else 4
    assert error_of(read_raw, path) == (
        f"{path}: corrupt {name} data at byte {len(header) + word_bytes * offset_word}: {problem}, outside the "
        "64 x 48 sensor; re-copy or re-record the file."
    )


def test_an_event_outside_a_size_given_by_the_caller_may_mean_the_size_is_wrong(tmp_path):
    path = raw_file(tmp_path / "given.raw", b"% evt 2.0\n", time_high(0), cd(1, 0, 70, 3))
    assert error_of(read_raw, path, width=64, height=48) == (
        f"{path}: corrupt EVT 2.0 data at byte 14: an event at x=70, y=3, outside the 64 x 48 sensor; "
        "the file is corrupt or width/height are wrong."
    )


@pytest.mark.parametrize("x, y", [(64, 1), (1, 48)])
def test_evt3_events_are_checked_against_the_headers_size(tmp_path, x, y):
    words = (0x8000, 0x0000 | y, 0x2000 | x)  # TIME_HIGH 0, EVT_ADDR_Y y, EVT_ADDR_X x (OFF)
    path = tmp_path / "outside.raw"
    header = b"% format EVT3;width=64;height=48\n"
    path.write_bytes(header + np.array(words, dtype="<u2").tobytes())
    assert error_of(read_raw, path) == (
        f"{path}: corrupt EVT 3.0 data at byte {len(header) + 4}: an event at x={x}, y={y}, outside the 64 x 48 "
        "sensor; re-copy or re-record the file."
    )


def test_t0_is_added_to_evt21_times_and_a_bad_t0_is_refused_naming_it(tmp_path):
    header = b"% format EVT21;width=64;height=48\n% t0 1000\n"
    events = read_raw(raw_file(tmp_path / "t0.raw", header, 0, time_high(2), *evt21_word(3, 4))).events
    assert columns(events) == [(1000 + 2 * 64, 3, 4, 1)]
    path = raw_file(tmp_path / "bad-t0.raw", b"% evt 2.0\n% geometry 8x8\n% t0 soon\n", time_high(0))
    assert error_of(read_raw, path) == (
        f"{path}: the header's t0 'soon' is not a non-negative integer; the header is corrupt."
    )


def test_a_header_without_a_known_format_says_which_formats_exist(tmp_path):
    path = raw_file(tmp_path / "none.raw", b"% date 2020\n", 0)
    assert error_of(read_raw, path) == (
        f"{path}: the header names no event format; this reader knows EVT 2.0, 2.1 and 3.0 (a '% format EVT3' or "
        "'% evt 3.0' line). Re-export the recording in one of them."
    )


def test_the_vector_group_warning_says_what_was_kept(tmp_path):
    words = (0x8000, 0x0003, 0x3005, 0x4001)  # TIME_HIGH, ADDR_Y 3, VECT_BASE_X 5, VECT_12 (12 of 32 columns)
    path = tmp_path / "cut.raw"
    path.write_bytes(b"% format EVT3;width=64;height=48\n" + np.array(words, dtype="<u2").tobytes())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        events = read_raw(path).events
    assert columns(events) == [(0, 5, 3, -1)]
    assert [str(w.message) for w in caught] == [
        f"{path}: the recording ends inside a vector group (12 of its 32 columns sent); "
        "the events of the columns sent were kept."
    ]


# --- DAT ---------------------------------------------------------------------------------------------

DAT_HEADER = b"% Version 2\n% Width 64\n% Height 48\n"


def test_a_dat_file_without_a_version_line_is_version_2(tmp_path):
    path = dat_file(tmp_path / "v.dat", b"% Width 64\n% Height 48\n", dat_record(5, 63, 47, 1), dat_record(9, 0, 1, 0))
    assert columns(read_dat(path)) == [(5, 63, 47, 1), (9, 0, 1, -1)]


def test_a_dat_file_of_type_and_size_bytes_only_is_empty(tmp_path):
    events = read_dat(dat_file(tmp_path / "empty.dat", DAT_HEADER))
    assert len(events) == 0 and (events.width, events.height) == (64, 48)


def test_a_dat_step_back_in_time_is_sorted_and_a_drop_of_exactly_2_31_is_a_wrap_around(tmp_path):
    back = dat_file(tmp_path / "back.dat", DAT_HEADER, dat_record(100, 1, 1, 1), dat_record(40, 2, 2, 0))
    assert columns(read_dat(back)) == [(40, 2, 2, -1), (100, 1, 1, 1)]
    half = 1 << 31
    wrap = dat_file(tmp_path / "wrap.dat", DAT_HEADER, dat_record(half, 1, 1, 1), dat_record(0, 2, 2, 1))
    assert read_dat(wrap).t.tolist() == [half, 1 << 32]
    short = dat_file(tmp_path / "short.dat", DAT_HEADER, dat_record(half - 1, 1, 1, 1), dat_record(0, 2, 2, 1))
    assert read_dat(short).t.tolist() == [0, half - 1]  # one less: a step back, sorted


@pytest.mark.parametrize("polarity", [2, 15])
def test_a_dat_polarity_field_above_1_is_refused_with_its_offset(tmp_path, polarity):
    path = dat_file(tmp_path / "p.dat", DAT_HEADER, dat_record(1, 1, 1, 1), dat_record(2, 1, 1, polarity))
    assert error_of(read_dat, path) == (
        f"{path}: the event at byte {len(DAT_HEADER) + 2 + 8} has polarity field {polarity}, not 0 or 1; "
        "the file is corrupt."
    )


@pytest.mark.parametrize("x, y", [(64, 0), (0, 48)])
def test_a_dat_event_on_the_headers_sensor_edge_is_refused(tmp_path, x, y):
    path = dat_file(tmp_path / "edge.dat", DAT_HEADER, dat_record(1, x, y, 1))
    assert error_of(read_dat, path) == (
        f"{path}: the event at byte {len(DAT_HEADER) + 2} has x={x}, y={y}, outside the 64 x 48 sensor of the "
        "header; the file is corrupt."
    )


def test_a_dat_event_outside_a_size_given_by_the_caller_may_mean_the_size_is_wrong(tmp_path):
    path = dat_file(tmp_path / "given.dat", b"% Version 2\n", dat_record(1, 10, 3, 1))
    assert error_of(read_dat, path, width=10, height=48) == (
        f"{path}: the event at byte {len(b'% Version 2') + 1 + 2} has x=10, y=3, outside the 10 x 48 sensor; the "
        "file is corrupt or width/height are wrong."
    )


def test_a_dat_file_without_size_takes_the_arguments_then_max_plus_one(tmp_path):
    path = dat_file(tmp_path / "nosize.dat", b"% Version 2\n", dat_record(1, 9, 4, 1), dat_record(2, 16383, 3, 0))
    events = read_dat(path)
    assert (events.width, events.height) == (16384, 5) and columns(events)[1] == (2, 16383, 3, -1)
    events = read_dat(path, width=20000, height=30)
    assert (events.width, events.height) == (20000, 30)
    events = read_dat(path, height=30)  # one dimension given: the other is max + 1
    assert (events.width, events.height) == (16384, 30)
    empty = dat_file(tmp_path / "empty.dat", b"% Version 2\n")
    assert (
        error_of(read_dat, empty) == f"{empty}: the file holds no events and no sensor size; pass width= and height=."
    )
    message = error_of(read_dat, path, width=100)
    assert message.startswith(f"{path}: the decoded events are invalid (")


@pytest.mark.parametrize(
    "header, message",
    [
        (b"% Version 3\n", "DAT version 3 is unknown (versions 1 and 2 exist); the header is corrupt."),
        (b"% Version two\n", "the header's Version 'two' is not a non-negative integer; the header is corrupt."),
        (b"% t0 -5\n", "the header's t0 '-5' is not a non-negative integer; the header is corrupt."),
        (
            b"% Width 64\n% Height 0\n",
            "the header's sensor height '0' is not a positive integer below 32768; the header is corrupt.",
        ),
    ],
)
def test_each_bad_dat_header_field_has_its_whole_message(tmp_path, header, message):
    path = dat_file(tmp_path / "bad.dat", header, dat_record(1, 1, 1, 1))
    assert error_of(read_dat, path) == f"{path}: {message}"


@pytest.mark.parametrize(
    "event_type, kind", [(0x0E, "external triggers"), (0x10, "events of type 0x10"), (0x0D, "events of type 0x0d")]
)
def test_a_dat_file_of_other_events_says_what_it_holds(tmp_path, event_type, kind):
    path = dat_file(tmp_path / "other.dat", DAT_HEADER, dat_record(1, 1, 1, 1), event_type=event_type)
    assert error_of(read_dat, path) == (
        f"{path}: holds {kind} (type byte at byte {len(DAT_HEADER)}), not CD events; only CD (0x0C) and 2D (0x00) "
        "DAT files hold polarity events."
    )


def test_a_dat_event_size_other_than_8_and_a_cut_event_have_their_whole_messages(tmp_path):
    path = dat_file(tmp_path / "size.dat", DAT_HEADER, dat_record(1, 1, 1, 1))
    data = bytearray(path.read_bytes())
    data[len(DAT_HEADER) + 1] = 12
    path.write_bytes(bytes(data))
    assert error_of(read_dat, path) == (
        f"{path}: the event size at byte {len(DAT_HEADER) + 1} is 12, not 8; the file is corrupt."
    )
    data[len(DAT_HEADER) + 1] = 8
    path.write_bytes(bytes(data[:-3]))
    assert error_of(read_dat, path) == (
        f"{path}: truncated: the event at byte {len(DAT_HEADER) + 2} has 5 of its 8 bytes; re-copy the file."
    )
