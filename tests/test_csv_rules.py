"""The CSV reader's rules one at a time, on files written here: the header line (case, bytes that
are not UTF-8, a repeated column, the '@' sizes at their limits), whitespace and signs around
fields, blank lines, each kind of bad field with its whole message, coordinates on the sensor's
edge, the order of timestamps, and 18-digit timestamps kept exactly.

tests/test_csv_events.py checks the reader against faery; this file pins what that leaves open (each
test here was written for a mutant of velora.events.csv_events that survived it, see
benchmarks/results/mutation.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import columns
from velora.errors import DataError
from velora.events.csv_events import read_csv


def csv_file(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def error_of(path: Path, **kwargs) -> str:
    with pytest.raises(DataError) as caught:
        read_csv(path, **kwargs)
    return str(caught.value)


# --- the header line ---------------------------------------------------------------------------------


def test_a_header_in_capitals_and_with_bytes_that_are_not_utf8_is_read(tmp_path):
    path = csv_file(tmp_path / "upper.csv", b"T,X@8,Y@6,P,note \xff\xfe\n5,1,2,1,0\n")
    events = read_csv(path)
    assert columns(events) == [(5, 1, 2, 1)] and (events.width, events.height) == (8, 6)


def test_a_header_of_capitals_alone_is_a_header(tmp_path):
    events = read_csv(csv_file(tmp_path / "caps.csv", "T,X,Y,P\n5,1,2,0\n"))
    assert columns(events) == [(5, 1, 2, -1)]


def test_a_second_column_of_the_same_meaning_is_ignored(tmp_path):
    path = csv_file(tmp_path / "twice.csv", "t,x,y,p,timestamp,x\n5,1,2,1,999,7\n")
    assert columns(read_csv(path, width=8, height=6)) == [(5, 1, 2, 1)]


def test_a_header_without_a_newline_is_an_empty_file_of_its_size(tmp_path):
    events = read_csv(csv_file(tmp_path / "header.csv", "t,x@8,y@6,p"))
    assert len(events) == 0 and (events.width, events.height) == (8, 6)


def test_a_header_is_only_the_first_line(tmp_path):
    path = csv_file(tmp_path / "late.csv", "\nt,x,y,p\n1,2,3,1\n")
    assert error_of(path) == (
        f"{path}: line 2 (byte 1) has a character that is not part of an integer, ',' or a line end; each line "
        "must hold 4 integers (t, x, y, p)."
    )


@pytest.mark.parametrize("size", [1, 32767])
def test_header_sizes_from_1_to_32767_are_accepted(tmp_path, size):
    events = read_csv(csv_file(tmp_path / "size.csv", f"t,x@{size},y@{size},p\n1,0,0,1\n"))
    assert (events.width, events.height) == (size, size)


@pytest.mark.parametrize("field", ["x@0", "x@32768", "x@65536"])
def test_header_sizes_outside_1_to_32767_are_refused(tmp_path, field):
    path = csv_file(tmp_path / "size.csv", f"t,{field},y@6,p\n1,0,0,1\n")
    assert error_of(path) == f"{path}: the header gives the sensor size {field!r}, which is not 1 to 32767 pixels."


def test_a_header_naming_too_few_columns_says_how_to_name_them(tmp_path):
    header = "time," + ",".join(f"column{k}" for k in range(20))  # longer than the 80 characters quoted
    path = csv_file(tmp_path / "names.csv", header + "\n1,2,3\n")
    assert error_of(path) == (
        f"{path}: the header line {header[:80]!r} names no column for x, y, p; name the columns t, x, y, p (or "
        "t/ts/timestamp/timestamps/time, x, y, p/polarity/polarities/pol/on), or pass columns=(...) with each "
        "column's name in file order."
    )


def test_one_size_from_the_header_or_the_arguments_and_the_other_from_the_events(tmp_path):
    path = csv_file(tmp_path / "half.csv", "t,x@8,y,p\n1,2,5,1\n")
    events = read_csv(path)
    assert (events.width, events.height) == (8, 6)
    events = read_csv(csv_file(tmp_path / "tall.csv", "t,x,y@9,p\n1,2,5,1\n"))
    assert (events.width, events.height) == (3, 9)
    path = csv_file(tmp_path / "none.csv", "t,x,y,p\n1,2,5,1\n")
    events = read_csv(path, width=10)
    assert (events.width, events.height) == (10, 6)
    path = csv_file(tmp_path / "past.csv", "t,x@8,y,p\n1,10,5,1\n")
    assert error_of(path).startswith(f"{path}: the decoded events are invalid (")


# --- lines and fields ----------------------------------------------------------------------------------


def test_spaces_tabs_and_signs_around_fields_blank_lines_and_a_blank_tail_are_allowed(tmp_path):
    text = "t,x,y,p\n  +1001 , 2,\t3 ,-1\n\n \t \r\n+1002,+0,-0,+1\r\n1003,1,1,0\n  \t"
    events = read_csv(csv_file(tmp_path / "spaces.csv", text), width=8, height=6)
    assert columns(events) == [(1001, 2, 3, -1), (1002, 0, 0, 1), (1003, 1, 1, -1)]


def test_many_lines_of_the_shortest_form_are_all_read(tmp_path):
    events = read_csv(csv_file(tmp_path / "short.csv", "0,0,0,1\n" * 1000), width=1, height=1)
    assert len(events) == 1000 and set(events.p.tolist()) == {1}


def test_an_18_digit_timestamp_is_kept_exactly(tmp_path):
    t = 123_456_789_012_345_678  # beyond float64's 2**53: exact only as an integer
    events = read_csv(csv_file(tmp_path / "late.csv", f"{t},1,1,1\n{t + 1},1,1,0\n"), width=2, height=2)
    assert events.t.tolist() == [t, t + 1]


def test_timestamps_out_of_order_anywhere_are_sorted(tmp_path):
    events = read_csv(csv_file(tmp_path / "order.csv", "5,0,0,1\n3,1,0,1\n4,2,0,1\n"), width=4, height=1)
    assert events.t.tolist() == [3, 4, 5] and events.x.tolist() == [1, 2, 0]


@pytest.mark.parametrize(
    "text, line, offset, problem",
    [
        ("0,0,0,1\n1,a,2,1\n", 2, 10, "a character that is not part of an integer, ',' or a line end"),
        ("0,0,0,1\n1,2,3,1x\n", 2, 15, "a character that is not part of an integer, ',' or a line end"),
        ("1,2,3,1,5\n", 1, 7, "more than 4 fields"),
        ("1,2,3,\r\n", 1, 6, "an empty field"),
        ("1,2,3,1\n1,2,3,", 2, 14, "an empty field"),
        ("1,2,3,1\n1,2,3, ", 2, 15, "an empty field"),
        ("1,2,3,-2\n", 1, 6, "polarity -2, where 1 (ON) or 0 / -1 (OFF) are expected"),
        ("1,8,3,1\n", 1, 2, "a coordinate 8, outside the 8 x 6 sensor"),
        ("1,2,6,1\n", 1, 4, "a coordinate 6, outside the 8 x 6 sensor"),
        ("\n1,2,x,1\n", 2, 5, "a character that is not part of an integer, ',' or a line end"),
    ],
)
def test_each_bad_field_has_its_whole_message(tmp_path, text, line, offset, problem):
    path = csv_file(tmp_path / "bad.csv", text)
    assert error_of(path, width=8, height=6) == (
        f"{path}: line {line} (byte {offset}) has {problem}; each line must hold 4 integers (t, x, y, p)."
    )


def test_without_a_size_coordinates_must_fit_int16(tmp_path):
    path = csv_file(tmp_path / "wide.csv", "1,40000,3,1\n")
    assert error_of(path) == (
        f"{path}: line 1 (byte 2) has a coordinate 40000, outside 0 to 32767; each line must hold 4 integers "
        "(t, x, y, p)."
    )


def test_a_taller_than_wide_sensor_checks_y_against_the_height(tmp_path):
    path = csv_file(tmp_path / "tall.csv", "t,x@4,y@8,p\n1,3,6,1\n")
    assert columns(read_csv(path)) == [(1, 3, 6, 1)]


def test_the_message_names_ignored_columns(tmp_path):
    path = csv_file(tmp_path / "ignored.csv", "1,2,9,4,1\n")
    assert error_of(path, width=4, height=4, columns=("t", "x", None, "y", "p")) == (
        f"{path}: line 1 (byte 6) has a coordinate 4, outside the 4 x 4 sensor; each line must hold 5 integers "
        "(t, x, ignored, y, p)."
    )
