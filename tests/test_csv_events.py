"""Contracts of the CSV reader (.csv), against faery 0.7.1.

- A file faery writes (header `t,x@W,y@H,on`) reads back exactly what was written, with the sensor
  size of the header, and agrees with faery's decoder.
- Other column orders are found from the header's names or given by `columns=`; extra columns,
  blanks, '\\r\\n' line ends and blank lines are accepted.
- Cut or malformed files raise DataError naming the file, the line and the byte offset.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from faery_reference import assert_same_events, faery_decode, random_events, write_with_faery
from velora.errors import DataError
from velora.events.csv_events import read_csv
from velora.events.readers import read_events


def raises_naming(path: Path, match: str):
    return pytest.raises(DataError, match=re.escape(str(path)) + ".*" + match)


def test_csv_written_by_faery_reads_back_exactly_and_equals_faery(tmp_path):
    events = random_events(20_000, 640, 480, duration_us=2_000_000, t0=10**9)
    path = write_with_faery(tmp_path / "events.csv", events, (640, 480))
    assert path.read_bytes().startswith(b"t,x@640,y@480,on\r\n")
    ours = read_csv(path)
    assert_same_events(ours, events)
    assert_same_events(ours, faery_decode(path))
    assert (ours.width, ours.height) == (640, 480)
    assert_same_events(read_events(path, 1000, 1000), events)  # the header's size wins


def write_lines(path: Path, text: str) -> Path:
    path.write_bytes(text.encode())
    return path


def test_columns_are_found_by_their_header_names_in_any_order(tmp_path):
    path = write_lines(tmp_path / "a.csv", "x, y ,polarity,timestamp,label\r\n3,4,-1,20,7\r\n\r\n1,2,1,10,7\r\n")
    events = read_csv(path, width=8, height=8)
    assert events.t.tolist() == [10, 20] and events.x.tolist() == [1, 3] and events.y.tolist() == [2, 4]
    assert events.p.tolist() == [1, -1] and (events.width, events.height) == (8, 8)


def test_columns_argument_names_a_file_without_a_header(tmp_path):
    path = write_lines(tmp_path / "b.csv", "3,4,0,20\n1,2,1,10")  # no final line end
    events = read_csv(path, columns=("x", "y", "p", "t"))
    assert events.t.tolist() == [10, 20] and events.x.tolist() == [1, 3] and events.p.tolist() == [1, -1]
    assert (events.width, events.height) == (4, 5)  # max + 1
    events = read_csv(write_lines(tmp_path / "c.csv", "10,1,2,1\n20,3,4,0\n"))  # no header: t, x, y, p
    assert events.t.tolist() == [10, 20] and events.x.tolist() == [1, 3]
    with pytest.raises(ValueError, match="must name each of 't', 'x', 'y', 'p' once"):
        read_csv(path, columns=("x", "y", "t"))


def test_header_only_is_an_empty_stream_when_the_size_is_known(tmp_path):
    assert len(read_csv(write_lines(tmp_path / "d.csv", "t,x@34,y@34,p\n"))) == 0
    with raises_naming(tmp_path / "e.csv", "no events and no sensor size"):
        read_csv(write_lines(tmp_path / "e.csv", "t,x,y,p\n"))


@pytest.mark.parametrize(
    "body, line, offset, problem",
    [
        ("1,2,3,1\n4,5,6\n", 3, 8, "has 3 fields where 4 are expected"),
        ("1,2,3,1\n4,5,6,1,", 3, 15, "has more than 4 fields"),
        ("1,2,3,1\n4,5,,1\n", 3, 12, "has an empty field"),
        ("1,2,3,1\n4.5,5,6,1\n", 3, 9, "has a character that is not part of an integer"),
        ("1,2,3,1\n4,5,6,2\n", 3, 14, r"has polarity 2, where 1 \(ON\) or 0 / -1 \(OFF\)"),
        ("1,2,3,1\n4,50,6,1\n", 3, 10, "has a coordinate 50, outside the 10 x 10 sensor"),
        ("1,-2,3,1\n", 2, 2, "has a coordinate -2, outside the 10 x 10 sensor"),
        ("1" * 19 + ",2,3,1\n", 2, 18, "has a number of more than 18 digits"),
    ],
)
def test_malformed_lines_raise_with_line_and_byte_offset(tmp_path, body, line, offset, problem):
    header = "t,x@10,y@10,p\n"  # the offsets below count from the end of this header line
    path = write_lines(tmp_path / "bad.csv", header + body)
    with raises_naming(path, rf"line {line} \(byte {len(header) + offset}\) {problem}"):
        read_csv(path)


def test_cut_file_raises_with_the_offset_of_the_partial_line(tmp_path):
    path = write_with_faery(tmp_path / "cut.csv", random_events(100, 64, 48, 10_000), (64, 48))
    data = path.read_bytes()
    last = data.rindex(b"\r\n", 0, len(data) - 2) + 2
    path.write_bytes(data[: last + data[last:].index(b",", data[last:].index(b",") + 1)])  # cut after "t,x"
    with raises_naming(path, rf"line 101 \(byte {last}\) has 2 fields where 4 are expected"):
        read_csv(path)


def test_header_size_that_is_not_a_decimal_number_raises(tmp_path):
    path = write_lines(tmp_path / "size.csv", "t,x@\u00b2,y@4,p\n1,1,1,1\n")  # '²' is a digit to str.isdigit
    with raises_naming(path, "sensor size 'x@\u00b2'"):
        read_csv(path)


def test_header_without_the_needed_names_raises(tmp_path):
    path = write_lines(tmp_path / "names.csv", "time_s,col,row,sign\n1,2,3,1\n")
    with raises_naming(path, r"names no column for t, x, y, p.*columns=\(\.\.\.\)"):
        read_csv(path)
    assert read_csv(path, columns=("t", "x", "y", "p")).t.tolist() == [1]
