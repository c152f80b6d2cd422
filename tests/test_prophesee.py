"""Contracts of the Prophesee readers (RAW EVT 2.0 / 2.1 / 3.0, DAT), against faery 0.7.1.

- Both real recordings decode to exactly faery's events (t, x, y, polarity, count); the cut EVT 3.0
  recording too, and a cut inside a vector group keeps exactly the events of the words that arrived.
- Files faery writes (EVT 2.0, EVT 3.0, DAT 1 and 2) read back exactly what was written, also across
  TIME_HIGH wrap-arounds, and agree with faery's decoder; EVT 2.1, which faery cannot write, reads
  back what the spec-following writer of tests/spec_writers.py wrote, in both word orders.
- Skipped words are counted; events before the first TIME_HIGH are dropped and counted.
- Truncated or corrupt files raise DataError naming the file and the byte offset; a recording cut
  inside a word keeps its complete events with a DataWarning.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import REAL_DATA
from faery_reference import (
    assert_same_events,
    faery_decode,
    random_events,
    write_with_faery,
)
from spec_writers import evt21_file
from velora.errors import DataError, DataWarning
from velora.events import evt
from velora.events.prophesee import read_dat, read_raw
from velora.events.readers import read_events
from velora.events.render import EventStream

GEN3_EVT2 = REAL_DATA / "prophesee" / "gen3_evt2.raw"
EVK4_EVT3 = REAL_DATA / "prophesee" / "evk4_evt3_head.raw"


def data_offset(data: bytes) -> int:
    """Where the '%' header lines end."""
    position = 0
    while data[position : position + 1] == b"%":
        position = data.index(b"\n", position) + 1
    return position


def first(events: EventStream, n: int) -> EventStream:
    return EventStream(events.t[:n], events.x[:n], events.y[:n], events.p[:n], events.width, events.height)


def no_warnings(read, path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        return read(path)


# --- real recordings ---------------------------------------------------------------------------------


def test_real_gen3_evt2_recording_equals_faery():
    recording = no_warnings(read_raw, GEN3_EVT2)
    assert_same_events(recording.events, faery_decode(GEN3_EVT2))
    assert len(recording.events) == 521_252 and recording.format == "EVT 2.0"
    # no geometry line: the size comes from the sensor table (plugin hal_plugin_gen3_fx3 -> Gen3 VGA)
    assert (recording.events.width, recording.events.height) == (640, 480)
    assert (
        recording.triggers,
        recording.others,
        recording.continued,
        recording.dropped_events,
        recording.truncated_bytes,
    ) == (0, 0, 0, 0, 0)


def test_real_evk4_evt3_recording_equals_faery_and_counts_its_system_words():
    recording = no_warnings(read_raw, EVK4_EVT3)  # cut at a word boundary, not inside a vector group
    assert_same_events(recording.events, faery_decode(EVK4_EVT3))
    assert len(recording.events) == 242_937 and recording.format == "EVT 3.0"
    assert (recording.events.width, recording.events.height) == (1280, 720)
    data = EVK4_EVT3.read_bytes()
    assert data_offset(data) == 225  # the header ends at an odd byte
    kinds = np.frombuffer(data, dtype="<u2", offset=225) >> 12
    assert recording.others == np.count_nonzero(kinds == 0xE) == 8359
    assert recording.continued == np.count_nonzero((kinds == 0x7) | (kinds == 0xF))
    assert recording.triggers == recording.dropped_events == recording.truncated_bytes == 0


def evt3_cut_inside_a_vector_group(tmp_path: Path) -> tuple[Path, int]:
    """The real EVT 3.0 recording cut after the first VECT_12 of its last complete vector group."""
    data = EVK4_EVT3.read_bytes()
    words = np.frombuffer(data, dtype="<u2", offset=225)
    base = np.flatnonzero(words >> 12 == 0x3)[-1]
    assert [int(word) >> 12 for word in words[base : base + 4]] == [0x3, 0x4, 0x4, 0x5]
    path = tmp_path / "cut_in_vector.raw"
    path.write_bytes(data[: 225 + 2 * (base + 2)])  # VECT_BASE_X and one VECT_12 arrive
    return path, int(base)


def test_recording_cut_inside_a_vector_group_keeps_the_events_that_arrived_and_warns(tmp_path):
    path, base = evt3_cut_inside_a_vector_group(tmp_path)
    with pytest.warns(DataWarning, match=rf"{re.escape(str(path))}.*vector group \(12 of its 32 columns sent\)"):
        cut = read_raw(path).events
    assert_same_events(cut, faery_decode(path))  # faery also keeps them: we agree on the tail
    # exactly the events of the words before the cut: the full file's events up to the VECT_12's
    full = read_raw(EVK4_EVT3).events
    words = np.frombuffer(EVK4_EVT3.read_bytes(), dtype="<u2", offset=225)
    vect12 = int(words[base + 1]) & 0xFFF
    arrived = len(cut)
    assert arrived == evt.compiled(evt._count_evt3)(words[: base + 2])
    for name in "txyp":
        assert np.array_equal(getattr(cut, name), getattr(full, name)[:arrived])
    assert vect12.bit_count() == arrived - evt.compiled(evt._count_evt3)(words[: base + 1])


@pytest.mark.parametrize(
    "recording, kept, dropped",
    [(EVK4_EVT3, 1, "1 byte of an incomplete EVT 3.0"), (GEN3_EVT2, 3, "3 bytes of an incomplete EVT 2.0")],
)
def test_recording_cut_inside_a_word_drops_its_bytes_and_warns(tmp_path, recording, kept, dropped):
    data = recording.read_bytes()
    path = tmp_path / "cut.raw"
    path.write_bytes(data[: len(data) - 8 + kept])  # the last 8 bytes cut, `kept` bytes of a word left
    with pytest.warns(DataWarning, match=rf"{re.escape(str(path))}: the recording ends with {dropped} word, dropped"):
        cut = read_raw(path)
    assert cut.truncated_bytes == kept
    whole = tmp_path / "whole.raw"
    whole.write_bytes(data[: len(data) - 8])
    assert_same_events(cut.events, faery_decode(whole))


def test_uncompiled_loops_decode_as_the_compiled_ones():
    """The loops are plain Python: numba must not change what they compute (checked on real words)."""
    words = np.frombuffer(EVK4_EVT3.read_bytes(), dtype="<u2", offset=225)[:20_000]
    capacity = evt._count_evt3(words)
    assert capacity == evt.compiled(evt._count_evt3)(words)
    outputs = [[np.empty(capacity, dtype) for dtype in (np.int64, np.int16, np.int16, np.int8)] for _ in range(2)]
    plain = evt._decode_evt3(words, 1280, 720, 5, *outputs[0])
    fast = evt.compiled(evt._decode_evt3)(words, 1280, 720, 5, *outputs[1])
    assert tuple(plain) == tuple(fast)
    assert all(np.array_equal(a[: plain[0]], b[: plain[0]]) for a, b in zip(*outputs))


# --- EVT 3.0 words by hand ---------------------------------------------------------------------------


def decode_evt3_words(*words: int, t0: int | None = None) -> evt.Decoded:
    array = np.array(words, dtype="<u2")
    return evt.decode_evt3(array, 640, 480) if t0 is None else evt.decode_evt3(array, 640, 480, t0)  # t0 0 by default


def test_evt3_new_time_high_resets_the_low_bits_and_a_repeated_one_keeps_them():
    # TIME_HIGH 0x8hhh gives t[23:12], TIME_LOW 0x6lll t[11:0]; ADDR_Y 0x0yyy; ADDR_X 0x2pxx (p: bit 11).
    changed = decode_evt3_words(0x8001, 0x6005, 0x0007, 0x2803, 0x8002, 0x2004)
    assert changed.t.tolist() == [(1 << 12) + 5, 2 << 12]  # 4101, then 8192: no TIME_LOW since the new high
    assert changed.x.tolist() == [3, 4] and changed.y.tolist() == [7, 7] and changed.p.tolist() == [1, -1]
    repeated = decode_evt3_words(0x8002, 0x6007, 0x0001, 0x8002, 0x2005)
    assert repeated.t.tolist() == [(2 << 12) + 7]  # the same TIME_HIGH again: the low bits stay
    assert decode_evt3_words(0x8002, 0x6007, 0x0001, 0x2005, t0=1000).t.tolist() == [8199 + 1000]


def test_evt3_vectors_by_hand():
    # VECT_BASE_X 0x3 (polarity bit 11, x), VECT_12 0x4 (12-bit mask, then base += 12),
    # VECT_8 0x5 (8-bit mask, then base += 8): an event at base + i for each set bit i.
    out = decode_evt3_words(0x8000, 0x6010, 0x0002, 0x3805, 0x4005, 0x5081, 0x4003, 0x2001)
    assert out.x.tolist() == [5, 7, 17, 24, 25, 26, 1]  # base 5, then 17, then 25
    assert out.y.tolist() == [2] * 7 and out.t.tolist() == [16] * 7 and out.p.tolist() == [1] * 6 + [-1]
    assert (out.dropped, out.triggers, out.others, out.continued, out.in_order) == (0, 0, 0, 0, True)
    # A base at column 0 advances too; VECT_8 reads only its 8 mask bits (11..8 are not events).
    out = decode_evt3_words(0x8000, 0x0001, 0x3000, 0x4001, 0x5F01, 0x4001, 0xA000, 0xA000)
    assert out.x.tolist() == [0, 12, 20] and out.p.tolist() == [-1, -1, -1] and out.triggers == 2


def test_evt3_events_before_their_state_are_dropped_and_other_words_counted():
    # An event before any TIME_HIGH, one before any ADDR_Y, a vector before any VECT_BASE_X (2 bits).
    out = decode_evt3_words(0x2001, 0x8000, 0x2002, 0x0003, 0x4003, 0xA000, 0xE000, 0x7000, 0xF000, 0x2004)
    assert out.dropped == 1 + 1 + 2
    assert out.x.tolist() == [4] and out.y.tolist() == [3]
    assert (out.triggers, out.others, out.continued) == (1, 1, 2)
    # A row but no time yet; then the same again after TIME_HIGH 0.
    out = decode_evt3_words(0x0003, 0x2001, 0x8000, 0x2001, 0xA000, 0xE000)
    assert out.dropped == 1 and out.t.tolist() == [0] and out.in_order and (out.triggers, out.others) == (1, 1)


def test_evt3_errors_name_the_word_and_the_format():
    with pytest.raises(evt.CorruptWord, match="^a word of reserved type 0x1, which no EVT 3.0 stream holds$") as raised:
        decode_evt3_words(0x8000, 0x0000, 0x1000)
    assert raised.value.index == 2
    assert decode_evt3_words(0x8000, 0x01DF, 0x227F).x.tolist() == [639]  # x 639, y 479 fit 640 x 480
    with pytest.raises(evt.CorruptWord, match="^an event at x=640, y=0, outside the 640 x 480 sensor$"):
        decode_evt3_words(0x8000, 0x0000, 0x2280)
    with pytest.raises(evt.CorruptWord, match="^an event at x=1, y=480, outside the 640 x 480 sensor$"):
        decode_evt3_words(0x8000, 0x01E0, 0x2001)


@pytest.mark.parametrize(
    "kinds, covered",
    [
        ([], 0),
        ([0x3], 0),  # a base without vectors yet: nothing to cut
        ([0x3, 0x4], 12),
        ([0x3, 0x5], 8),
        ([0x3, 0x4, 0x5], 20),
        ([0x2, 0x3, 0x4, 0x4], 24),
        ([0x3, 0x4, 0x4, 0x5], 0),  # 32 columns: the group is complete
        ([0x3, 0x4, 0x4, 0x5, 0x3, 0x4], 12),  # the last group counts
        ([0x3, 0x4, 0x6], 0),  # ends with another word
        ([0x3, 0x4, 0x2, 0x4], 0),  # a non-vector word after the base
        ([0x4, 0x4], 0),  # no base among the last words
        ([0x5], 0),
    ],
)
def test_evt3_cut_vector_group_by_hand(kinds, covered):
    words = np.array([kind << 12 for kind in kinds], dtype="<u2")
    assert evt.evt3_cut_vector_group(words) == covered


def test_evt3_time_high_wraps_only_on_a_drop_of_half_its_range():
    # 24-bit time: TIME_HIGH 4095 -> 0 is a wrap (+ 2**24); 2100 -> 100 (a drop of 2000 < 2048) is not.
    wrapped = decode_evt3_words(0x0000, 0x8FFF, 0x2001, 0x8000, 0x2002)
    assert wrapped.t.tolist() == [4095 << 12, 1 << 24]
    back = decode_evt3_words(0x0000, 0x8834, 0x2001, 0x8064, 0x2002, 0x8900, 0x2003)
    assert back.t.tolist() == [0x834 << 12, 0x064 << 12, 0x900 << 12] and not back.in_order  # out of order for good
    half = decode_evt3_words(0x0000, 0x8800, 0x2001, 0x8000, 0x2002)  # a drop of exactly 2048
    assert half.t.tolist() == [0x800 << 12, 1 << 24]


# --- EVT 2.0 and 2.1 words by hand -------------------------------------------------------------------


def evt2_cd(on: bool, t_low: int, x: int, y: int) -> int:
    return (int(on) << 28) | (t_low << 22) | (x << 11) | y


def evt2_high(high: int) -> int:
    return (0x8 << 28) | high


def decode_evt21_halves(halves, legacy: bool) -> evt.Decoded:
    """EVT 2.1 from (CD or other half, mask half) pairs, in the word order of `legacy`."""
    return evt.decode_evt21(np.array([h if legacy else h[::-1] for h in halves], dtype="<u4"), legacy, 640, 480)


def test_evt2_words_by_hand():
    words = [
        evt2_cd(True, 1, 0, 0),
        evt2_high(1),
        evt2_cd(True, 5, 3, 4),
        evt2_cd(False, 63, 639, 479),
        0xA << 28,
        0xE << 28,
        0xF << 28,
        0xF << 28,
        0xA << 28,
        0xE << 28,
        evt2_high(2),
        evt2_cd(True, 0, 1, 2),
        evt2_cd(True, 0, 2, 2),
    ]
    out = evt.decode_evt2(np.array(words, dtype="<u4"), 640, 480, t0=7)
    assert out.t.tolist() == [64 + 5 + 7, 64 + 63 + 7, 128 + 7, 128 + 7]  # t = high << 6 | low, plus t0
    assert out.x.tolist() == [3, 639, 1, 2] and out.y.tolist() == [4, 479, 2, 2] and out.p.tolist() == [1, -1, 1, 1]
    assert (out.dropped, out.triggers, out.others, out.continued, out.in_order) == (
        1,
        2,
        2,
        2,
        True,
    )  # equal times: in order
    assert evt.decode_evt2(np.array(words, dtype="<u4"), 640, 480).t.tolist() == [69, 127, 128, 128]  # t0 0 by default
    assert out.t.dtype == np.int64 and out.x.dtype == np.int16 and out.p.dtype == np.int8


# (TIME_HIGH before, TIME_HIGH after, whether that is a wrap-around): EVT 2.x time high is 28 bits.
EVT2_WRAPS = [
    ((1 << 28) - 1, 0, True),
    ((1 << 27) + 5, 5, True),  # a drop of exactly half the range
    ((1 << 27) + 4, 5, False),  # one less
    (100, 99, False),
    (1 << 27, (1 << 27) + 1, False),  # a step forward high in the range
]


@pytest.mark.parametrize("before, after, wrapped", EVT2_WRAPS)
@pytest.mark.parametrize("version", ["2.0", "2.1"])
def test_evt2x_time_high_wraps_on_a_drop_of_half_its_range_or_more(version, before, after, wrapped):
    halves = [(evt2_high(before), 0), (evt2_cd(True, 0, 0, 0), 1), (evt2_high(after), 0), (evt2_cd(True, 0, 0, 0), 1)]
    if version == "2.0":
        out = evt.decode_evt2(np.array([h[0] for h in halves], dtype="<u4"), 640, 480)
    else:
        out = decode_evt21_halves(halves, legacy=True)
    assert out.t.tolist() == [before << 6, (after << 6) + (wrapped << 34)]
    assert out.in_order == (wrapped or after > before)


@pytest.mark.parametrize("version", ["2.0", "2.1"])
def test_evt2x_every_wrap_around_adds_a_range_and_time_zero_is_in_order(version):
    highs = [0, (1 << 28) - 1, 0, (1 << 28) - 1, 0]  # two wrap-arounds
    halves = [h for high in highs for h in ((evt2_high(high), 0), (evt2_cd(True, 0, 0, 0), 1))]
    if version == "2.0":
        out = evt.decode_evt2(np.array([h[0] for h in halves], dtype="<u4"), 640, 480)
    else:
        out = decode_evt21_halves(halves, legacy=False)
    top = ((1 << 28) - 1) << 6
    assert out.t.tolist() == [0, top, 1 << 34, (1 << 34) + top, 2 << 34]
    assert out.in_order  # the first event at t = 0 is in order


def test_evt2_errors_name_the_word():
    with pytest.raises(evt.CorruptWord, match="^a word of reserved type 0x2, which no EVT 2.0 stream holds$") as raised:
        evt.decode_evt2(np.array([evt2_high(0), 0x2 << 28], dtype="<u4"), 640, 480)
    assert raised.value.index == 1
    with pytest.raises(evt.CorruptWord, match="x=640, y=5, outside the 640 x 480 sensor") as raised:
        evt.decode_evt2(
            np.array([evt2_high(0), evt2_cd(True, 0, 1, 1), evt2_cd(True, 0, 640, 5)], dtype="<u4"), 640, 480
        )
    assert raised.value.index == 2
    with pytest.raises(evt.CorruptWord, match="y=480"):
        evt.decode_evt2(np.array([evt2_high(0), evt2_cd(True, 0, 5, 480)], dtype="<u4"), 640, 480)
    unknown_size = evt.decode_evt2(np.array([evt2_high(0), evt2_cd(True, 0, 2047, 2047)], dtype="<u4"), None, None)
    assert unknown_size.x.tolist() == [2047]  # without a size, every 11-bit address fits


@pytest.mark.parametrize("legacy", [True, False])
def test_evt21_masks_by_hand(legacy):
    # A CD half (as EVT 2.0, x 32-aligned) and a 32-bit mask: an event at x + i for each set bit i.
    mask = (1 << 31) | (1 << 8) | 0b101
    halves = [
        (evt2_high(1), 0),
        (evt2_cd(True, 2, 64, 9), mask),
        (evt2_cd(False, 3, 0, 1), 1 << 9),
        (0xA << 28, 0),
        (0xE << 28, 0),
        (0xF << 28, 0),
        (0xF << 28, 0),
        (0xE << 28, 0),
        (0xA << 28, 0),
        (0xF << 28, 0),
    ]
    words = np.array([h if legacy else h[::-1] for h in halves], dtype="<u4")
    out = evt.decode_evt21(words, legacy, 640, 480, t0=1000)
    assert out.x.tolist() == [64, 66, 72, 95, 9]
    assert out.y.tolist() == [9, 9, 9, 9, 1] and out.p.tolist() == [1, 1, 1, 1, -1]
    assert out.t.tolist() == [1066, 1066, 1066, 1066, 1067] and out.dropped == 0
    assert (out.triggers, out.others, out.continued) == (2, 2, 3)
    with pytest.raises(evt.CorruptWord, match="^a word of reserved type 0x2, which no EVT 2.1 stream holds$") as raised:
        evt.decode_evt21(
            np.array([h if legacy else h[::-1] for h in [(evt2_high(0), 0), (0x2 << 28, 0)]], dtype="<u4"),
            legacy,
            640,
            480,
        )
    assert raised.value.index == 1
    outside = [(evt2_high(0), 0), (evt2_cd(True, 0, 608, 3), 1 << 31)]  # x = 608 + 31 fits, y = 3 fits
    assert evt.decode_evt21(
        np.array([h if legacy else h[::-1] for h in outside], dtype="<u4"), legacy, 640, 480
    ).x.tolist() == [639]
    outside[1] = (evt2_cd(True, 0, 608, 480), 1)
    with pytest.raises(evt.CorruptWord, match="^an event at x=608, y=480, outside the 640 x 480 sensor$"):
        evt.decode_evt21(np.array([h if legacy else h[::-1] for h in outside], dtype="<u4"), legacy, 640, 480)
    outside[1] = (evt2_cd(True, 0, 608, 3), 1)  # x = 608 fits
    outside.append((evt2_cd(True, 0, 640, 3), 1))  # x = 640 does not
    with pytest.raises(evt.CorruptWord, match="x=640, y=3, outside the 640 x 480 sensor") as raised:
        evt.decode_evt21(np.array([h if legacy else h[::-1] for h in outside], dtype="<u4"), legacy, 640, 480)
    assert raised.value.index == 2
    early = np.array([(evt2_cd(True, 0, 0, 0), 0b111), (evt2_high(0), 0)], dtype="<u4")
    assert evt.decode_evt21(early if legacy else early[:, ::-1].copy(), legacy, 640, 480).dropped == 3


@pytest.mark.parametrize("legacy", [True, False])
def test_evt21_time_wrap_order_and_early_events(legacy):
    cd = lambda t_low, x=0: (evt2_cd(True, t_low, x, 0), 1)  # noqa: E731  one event at x
    # Events before the first TIME_HIGH are dropped (all bits of their masks), later ones kept;
    # TIME_HIGH 0 is a time like any other.
    out = decode_evt21_halves(
        [(evt2_cd(True, 0, 0, 0), 0b11), cd(1), (evt2_high(0), 0), cd(2), cd(2, 32), cd(3)], legacy
    )
    assert out.dropped == 3 and out.t.tolist() == [2, 2, 3] and out.x.tolist() == [0, 32, 0] and out.in_order
    # A drop of TIME_HIGH by half its range or more is a wrap-around (+ 2**34 us).
    out = decode_evt21_halves([(evt2_high((1 << 28) - 1), 0), cd(0), (evt2_high(0), 0), cd(0)], legacy)
    assert out.t.tolist() == [((1 << 28) - 1) << 6, 1 << 34] and out.in_order
    # A smaller step back is kept as written, and the stream is then out of order for good.
    out = decode_evt21_halves([(evt2_high(5), 0), cd(0), (evt2_high(4), 0), cd(0), (evt2_high(6), 0), cd(0)], legacy)
    assert out.t.tolist() == [5 << 6, 4 << 6, 6 << 6] and not out.in_order


# --- files faery writes ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["evt2", "evt3"])
def test_written_raw_reads_back_exactly_and_equals_faery(tmp_path, version):
    events = random_events(20_000, 1280, 720, duration_us=3_000_000, t0=123_456)
    path = write_with_faery(tmp_path / f"{version}.raw", events, (1280, 720), version=version)
    ours = no_warnings(read_raw, path).events
    assert_same_events(ours, events)  # faery writes `% t0 123456` and times from 0; both are applied
    assert_same_events(ours, faery_decode(path))
    assert (ours.width, ours.height) == (1280, 720)


def test_evt3_timestamps_stay_monotonic_across_time_high_wrap_arounds(tmp_path):
    """EVT 3.0 time is 24 bits (16.8 s): a 60 s recording wraps three times.

    Here faery 0.7.1 disagrees with the events it wrote: its encoder lets TIME_HIGH step past 4095
    (4000 -> 429, say) but its decoder takes only an exact 4095 -> 0 as a wrap-around and ignores
    other steps back, so its clock stops at the first wrap. Up to there we agree."""
    events = random_events(3_000, 640, 480, duration_us=60_000_000, seed=1)
    path = write_with_faery(tmp_path / "long.raw", events, (640, 480), version="evt3", zero_t0=False)
    ours = read_raw(path).events
    assert_same_events(ours, events)
    assert ours.t[-1] > 3 * (1 << 24)
    before_wrap = int(np.searchsorted(events["t"], 1 << 24))
    assert_same_events(first(ours, before_wrap), faery_decode(path)[:before_wrap])


def test_evt2_timestamps_stay_monotonic_across_time_high_wrap_arounds(tmp_path):
    """EVT 2.0 time is 34 bits (4.8 hours): 10 hours of sparse events wrap twice."""
    events = random_events(2_000, 640, 480, duration_us=10 * 3600 * 10**6, seed=2)
    path = write_with_faery(tmp_path / "long.raw", events, (640, 480), version="evt2", zero_t0=False)
    ours = read_raw(path).events
    assert_same_events(ours, events)
    assert_same_events(ours, faery_decode(path))


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy order", "64-bit little-endian"])
def test_evt21_written_from_the_spec_reads_back_exactly(tmp_path, legacy):
    events = random_events(20_000, 1280, 720, duration_us=2_000_000, seed=3)
    # bursts along rows, as vectorised sensors emit them: 8 neighbours share t, y and polarity
    burst = np.repeat(events[:2_000], 8)
    burst["x"] = (burst["x"] // 32 * 32) + np.tile(np.arange(0, 32, 4), 2_000)
    events = np.sort(np.concatenate((events, np.unique(burst))), order="t", kind="stable")
    _, first = np.unique(np.stack([events["t"], events["x"], events["y"]]), axis=1, return_index=True)
    events = events[np.sort(first)]
    path = tmp_path / "evt21.raw"
    path.write_bytes(
        evt21_file(
            events["t"], events["x"], events["y"], np.where(events["on"], 1, -1), 1280, 720, legacy, extra_words=5
        )
    )
    recording = no_warnings(read_raw, path)
    assert recording.format == "EVT 2.1" and recording.triggers == 5
    ours = recording.events
    # the writer groups a run of events into one word and the word's events come out in column order
    order = np.lexsort((events["x"], events["y"], events["t"]))
    ours_order = np.lexsort((ours.x, ours.y, ours.t))
    assert len(ours) == len(events)
    for name, column in (("t", "t"), ("x", "x"), ("y", "y")):
        assert np.array_equal(getattr(ours, name)[ours_order], events[column][order].astype(np.int64))
    assert np.array_equal(ours.p[ours_order] > 0, events["on"][order])


def test_evt21_with_only_an_evt_line_is_read_in_the_legacy_word_order(tmp_path):
    """Recorders older than the `% format` line wrote `% evt 2.1` and the IMX636's legacy order."""
    events = random_events(500, 640, 480, duration_us=100_000, seed=7)
    data = evt21_file(events["t"], events["x"], events["y"], np.where(events["on"], 1, -1), 640, 480, legacy=True)
    words = data[data.index(b"% end\n") + len(b"% end\n") :]
    path = tmp_path / "old.raw"
    path.write_bytes(b"% evt 2.1\n% geometry 640x480\n" + words)
    ours = read_raw(path).events
    assert len(ours) == len(events) and np.array_equal(np.sort(ours.t), np.sort(events["t"].astype(np.int64)))


@pytest.mark.parametrize("version", ["dat1", "dat2"])
def test_written_dat_reads_back_exactly_and_equals_faery(tmp_path, version):
    size = (320, 240) if version == "dat1" else (1280, 720)  # DAT 1 holds 9-bit x and 8-bit y
    events = random_events(20_000, *size, duration_us=3_000_000, t0=5_000)
    path = write_with_faery(tmp_path / "events.dat", events, size, version=version)
    ours = read_dat(path)
    assert_same_events(ours, events)
    assert_same_events(ours, faery_decode(path))
    assert (ours.width, ours.height) == size


def test_read_events_dispatches_raw_and_dat(tmp_path):
    events = random_events(100, 64, 48, duration_us=10_000)
    for name in ("a.raw", "a.dat"):
        assert_same_events(read_events(write_with_faery(tmp_path / name, events, (64, 48))), events)


# --- counts, dropped events, sizes ---------------------------------------------------------------------


def evt2_words(*words: int) -> bytes:
    return b"% evt 2.0\n% geometry 64x48\n" + np.array(words, dtype="<u4").tobytes()


def cd(on: int, t_low: int, x: int, y: int) -> int:
    return (on << 28) | (t_low << 22) | (x << 11) | y


def test_events_before_the_first_time_high_are_dropped_and_counted(tmp_path):
    path = tmp_path / "early.raw"
    path.write_bytes(
        evt2_words(cd(1, 5, 1, 1), cd(0, 6, 2, 2), (0x8 << 28) | 10, cd(1, 7, 3, 3), 0xA << 28, 0xE << 28, 0xF << 28)
    )
    recording = read_raw(path)
    assert recording.dropped_events == 2 and (recording.triggers, recording.others, recording.continued) == (1, 1, 1)
    assert recording.events.t.tolist() == [10 * 64 + 7] and recording.events.x.tolist() == [3]


def test_out_of_order_events_are_sorted_stably(tmp_path):
    path = tmp_path / "backwards.raw"
    path.write_bytes(evt2_words((0x8 << 28) | 1, cd(1, 9, 1, 0), cd(1, 3, 2, 0), cd(0, 3, 3, 0)))
    events = read_raw(path).events
    assert events.t.tolist() == [67, 67, 73] and events.x.tolist() == [2, 3, 1]


def test_where_faery_differs_a_step_back_in_time_is_sorted_not_clamped(tmp_path):
    """faery raises every timestamp to the largest seen so far (t = max(t, previous)); velora keeps
    what the file says and sorts the events stably. The events agree, their times do not."""
    path = tmp_path / "backwards.raw"
    path.write_bytes(evt2_words((0x8 << 28) | 1, cd(1, 9, 1, 0), cd(1, 3, 2, 0), cd(0, 3, 3, 0)))
    ours, theirs = read_raw(path).events, faery_decode(path)
    assert ours.t.tolist() == [67, 67, 73] and theirs["t"].tolist() == [73, 73, 73]
    assert sorted(ours.x.tolist()) == sorted(theirs["x"].tolist())


def test_size_without_geometry_comes_from_arguments_then_the_table_then_max_plus_one(tmp_path):
    words = np.array([(0x8 << 28) | 1, cd(1, 0, 100, 50)], dtype="<u4").tobytes()
    path = tmp_path / "nosize.raw"
    path.write_bytes(b"% evt 2.0\n" + words)
    assert (read_raw(path).events.width, read_raw(path).events.height) == (101, 51)
    assert (read_raw(path, width=200, height=100).events.width, read_events(path, 200, 100).height) == (200, 100)
    path.write_bytes(b"% evt 2.0\n% plugin_name hal_plugin_imx636_evk4\n" + words)
    assert (read_raw(path).events.width, read_raw(path).events.height) == (1280, 720)
    path.write_bytes(b"% evt 2.0\n% plugin_name hal_plugin_genx320\n" + words)  # 320 x 320: x=100 fits
    assert read_raw(path).events.width == 320
    path.write_bytes(
        b"% evt 2.0\n% sensor_generation 3.1\n" + np.array([(0x8 << 28), cd(1, 0, 700, 5)], dtype="<u4").tobytes()
    )
    with pytest.raises(DataError, match=r"x=700.*640 x 480 sensor assumed.*width= and height="):
        read_raw(path)


def test_header_geometry_wins_over_arguments(tmp_path):
    path = write_with_faery(tmp_path / "a.raw", random_events(10, 64, 48, 1000), (64, 48))
    assert (read_events(path, 640, 480).width, read_events(path, 640, 480).height) == (64, 48)


def test_empty_recording_is_valid_when_the_header_gives_the_size(tmp_path):
    path = tmp_path / "quiet.raw"
    path.write_bytes(b"% evt 3.0\n% format EVT3;height=720;width=1280\n% end\n")
    events = read_raw(path).events
    assert len(events) == 0 and (events.width, events.height) == (1280, 720)


# --- errors ------------------------------------------------------------------------------------------


def raises_naming(path: Path, match: str):
    return pytest.raises(DataError, match=re.escape(str(path)) + ".*" + match)


def test_reserved_word_type_raises_with_its_byte_offset(tmp_path):
    data = bytearray(EVK4_EVT3.read_bytes())
    data[225 + 2 * 1000 + 1] = 0x90 | (data[225 + 2 * 1000 + 1] & 0x0F)  # word 1000 becomes type 0x9
    path = tmp_path / "corrupt.raw"
    path.write_bytes(bytes(data))
    with raises_naming(path, r"corrupt EVT 3.0 data at byte 2225: a word of reserved type 0x9"):
        read_raw(path)


def test_event_outside_the_header_geometry_raises_with_its_byte_offset(tmp_path):
    path = tmp_path / "outside.raw"
    path.write_bytes(evt2_words((0x8 << 28), cd(1, 0, 1, 1), cd(1, 0, 64, 1)))
    offset = len(b"% evt 2.0\n% geometry 64x48\n") + 8
    with raises_naming(path, rf"at byte {offset}: an event at x=64, y=1, outside the 64 x 48 sensor"):
        read_raw(path)


@pytest.mark.parametrize(
    "header, problem",
    [
        (b"% date 2020\n", "names no event format"),
        (b"% evt 4.0\n", "names format '4.0'"),
        (b"% format MTR;height=3\n", "names format 'MTR;height=3'"),
        (b"% evt 3.0\n% geometry 1280 by 720\n", "geometry '1280 by 720' is not WIDTHxHEIGHT"),
        (b"% evt 3.0\n% format EVT3;height=0;width=10\n", "height '0' is not a positive integer"),
        ("% evt 3.0\n% geometry 1280x720\n% format EVT3;height=\u00b2;width=10\n".encode(), "height '\u00b2' is not"),
    ],
)
def test_bad_raw_header_raises_naming_the_file(tmp_path, header, problem):
    path = tmp_path / "bad.raw"
    path.write_bytes(header + b"\x00\x80")
    with raises_naming(path, re.escape(problem)):
        read_raw(path)


def test_truncated_dat_raises_with_the_byte_offset_of_the_partial_event(tmp_path):
    path = write_with_faery(tmp_path / "cut.dat", random_events(100, 64, 48, 1000), (64, 48))
    data = path.read_bytes()
    path.write_bytes(data[:-3])
    last = len(data) - 8
    with raises_naming(path, rf"truncated: the event at byte {last} has 5 of its 8 bytes"):
        read_dat(path)
    path.write_bytes(data[: data_offset(data) + 1])
    with raises_naming(path, "event type and size bytes after the header are missing"):
        read_dat(path)


def test_corrupt_dat_raises_with_the_byte_offset_of_the_event(tmp_path):
    path = write_with_faery(tmp_path / "bad.dat", random_events(100, 64, 48, 1000), (64, 48), version="dat2")
    data = bytearray(path.read_bytes())
    start = data_offset(bytes(data)) + 2
    data[start + 8 * 7 + 7] = 0x30  # event 7: polarity field 3
    path.write_bytes(bytes(data))
    with raises_naming(path, rf"event at byte {start + 56} has polarity field 3"):
        read_dat(path)
    data[start + 8 * 7 + 7] = 0x10
    data[start + 8 * 9 + 4 : start + 8 * 9 + 6] = (100).to_bytes(2, "little")  # event 9: x = 100
    path.write_bytes(bytes(data))
    with raises_naming(path, rf"event at byte {start + 72} has x=100, .* outside the 64 x 48 sensor of the header"):
        read_dat(path)
    data[start - 2] = 0x0E
    path.write_bytes(bytes(data))
    with raises_naming(path, "holds external triggers"):
        read_dat(path)


def test_dat_timestamps_unwrap_after_71_minutes(tmp_path):
    path = tmp_path / "long.dat"
    t = np.array([10, (1 << 32) - 5, (1 << 32) + 7, (3 << 31) + 100, (2 << 32) + 1], dtype=np.int64)  # gaps < 2**32
    records = np.stack([t & 0xFFFFFFFF, np.arange(1, 6) | (1 << 28)], axis=1).astype("<u4")
    path.write_bytes(b"% Version 2\n% Width 8\n% Height 8\n" + bytes([0x0C, 8]) + records.tobytes())
    events = read_dat(path)
    assert events.t.tolist() == t.tolist() and events.x.tolist() == [1, 2, 3, 4, 5]
