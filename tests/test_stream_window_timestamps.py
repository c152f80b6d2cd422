"""The sliding window's rules for timestamps as cameras send them, each at its threshold: when the
clock going back is a reset, when events are silent (sensor time, and receive time with
frame_timeout_s), what a duplicate is and how many packets are remembered, how many windows a
restart drops, and the whole notice of each case.

tests/test_stream_window.py checks the windows a stream makes; this file pins the edges it leaves
open (each test here was written for a mutant of velora.stream.window that survived it, see
benchmarks/results/mutation.md).
"""

from __future__ import annotations

import numpy as np
import pytest

from velora.stream.window import DUPLICATE_MEMORY, SlidingWindow

IMAGE = np.zeros((6, 8), np.uint8)


def events_at(*times: int) -> tuple[np.ndarray, ...]:
    """A packet (t, x, y, p) of events at these times, each at pixel (1, 2), ON."""
    n = len(times)
    return np.array(times, np.int64), np.ones(n, np.int16), np.full(n, 2, np.int16), np.ones(n, np.int8)


def ends(windows) -> list[int]:
    return [w.t_end_us for w in windows]


def test_a_zero_event_timeout_is_refused_like_the_other_timeouts():
    with pytest.raises(ValueError, match="clock_jump_us must be > 0, got 40000, 1000000, 0, 1000000$"):
        SlidingWindow(1, (8, 6), event_timeout_us=0)


# --- the clock going back ------------------------------------------------------------------------


def test_a_step_back_of_exactly_clock_jump_us_is_not_a_reset():
    window = SlidingWindow(2, (8, 6), clock_jump_us=1000)
    window.add_events(*events_at(5000), received=0.0)
    window.add_events(*events_at(4000), received=0.1)  # back exactly 1000 us: merged, not a reset
    window.add_frame(IMAGE, 5000, received=0.2)
    window.add_frame(IMAGE, 4000, received=0.3)  # a frame back exactly 1000 us: ignored, not a reset
    assert (window.clock_jumps, window.restarts, window.frames_ignored) == (0, 0, 1)
    window.add_events(*events_at(3999), received=0.4)  # 1001 us back from 5000: a reset
    assert (window.clock_jumps, window.restarts) == (1, 1)


def test_every_clock_jump_and_restart_is_counted_and_said_with_its_size():
    said = []
    window = SlidingWindow(2, (8, 6), clock_jump_us=1000, notify=said.append)
    window.add_events(*events_at(5000), received=0.0)
    window.add_events(*events_at(3500, 3600), received=0.1)  # back 1500 us from the newest event
    window.add_events(*events_at(9000), received=0.2)
    window.add_events(*events_at(1000, 1200), received=0.3)  # back 8000 us
    window.restart()
    assert (window.clock_jumps, window.restarts) == (2, 3)
    assert said == [
        "event timestamps went back 0.002 s (a camera reset or a DV restart): the window restarts (0 windows dropped)",
        "event timestamps went back 0.008 s (a camera reset or a DV restart): the window restarts (0 windows dropped)",
    ]


@pytest.mark.parametrize("frames, dropped", [(3, "1 window"), (4, "2 windows")])
def test_the_notice_of_a_reset_counts_the_windows_it_dropped(frames, dropped):
    said = []
    window = SlidingWindow(2, (8, 6), notify=said.append)
    for k in range(frames):  # frames only: windows wait for events (or for the event timeout)
        window.add_frame(IMAGE, 3_000_000 + 100_000 * k, received=0.0)
    assert window.pop_ready() == []
    window.add_frame(IMAGE, 0, received=0.0)
    assert said == [
        f"frame timestamps went back {(2_900_000 + 100_000 * frames) / 1e6:.3f} s (a camera reset or a DV restart): "
        f"the window restarts ({dropped} dropped)"
    ]


def test_a_restart_with_a_hop_in_microseconds_drops_only_the_windows_the_hop_would_emit():
    window = SlidingWindow(2, (8, 6), hop_us=250_000)
    for k in range(7):  # frames every 100 ms: windows end at 200 ms, then at the first frame >= 450 ms: 500 ms
        window.add_frame(IMAGE, 100_000 * k, received=0.0)
    assert window.restart() == 2


# --- duplicates ----------------------------------------------------------------------------------


def test_a_duplicate_of_a_packet_of_one_timestamp_is_dropped_and_said_once():
    said = []
    window = SlidingWindow(2, (8, 6), notify=said.append)
    for _ in range(3):
        window.add_events(*events_at(1000, 1000), received=0.0)
    assert window.duplicates == 2
    assert said == [
        "a duplicated events packet (the same events again): dropped; later ones are dropped without a notice "
        "and counted"
    ]


def test_only_the_last_packets_are_remembered_for_duplicates():
    window = SlidingWindow(2, (8, 6))
    for k in range(3 * DUPLICATE_MEMORY):
        window.add_events(*events_at(1000 * k), received=float(k))
    assert len(window._recent) == DUPLICATE_MEMORY  # memory bounded however long the stream
    window.add_events(*events_at(1000 * 2 * DUPLICATE_MEMORY), received=99.0)  # the oldest remembered
    window.add_events(*events_at(0), received=99.0)  # long forgotten: merged as a small step back
    assert window.duplicates == 1


# --- silent events -------------------------------------------------------------------------------


def test_without_events_windows_complete_once_frames_span_exactly_the_event_timeout():
    said = []
    window = SlidingWindow(2, (8, 6), event_timeout_us=200_000, notify=said.append)
    window.add_frame(IMAGE, 0, received=0.0)
    window.add_frame(IMAGE, 100_000, received=0.0)
    assert window.pop_ready() == []
    window.add_frame(IMAGE, 200_000, received=0.0)  # 200 ms of frames since the first: silent
    assert ends(window.pop_ready()) == [200_000]
    assert said == ["no events for 0.2 s of APS frames: windows of frames alone (blank event images)"]


def test_the_silent_notice_gives_the_timeout_in_seconds():
    said = []
    window = SlidingWindow(1, (8, 6), event_timeout_us=100_000, notify=said.append)
    for t in (0, 100_000):
        window.add_frame(IMAGE, t, received=0.0)
    assert ends(window.pop_ready()) == [100_000]
    assert said == ["no events for 0.1 s of APS frames: windows of frames alone (blank event images)"]


def test_events_are_silent_only_event_timeout_us_after_the_newest_event():
    window = SlidingWindow(2, (8, 6), event_timeout_us=200_000)
    window.add_events(*events_at(0, 250_000, 500_000), received=0.0)
    for k in range(7):
        window.add_frame(IMAGE, 100_000 * k, received=0.0)
    # up to 500 ms the events complete the windows; 600 ms is only 100 ms past the newest event
    assert ends(window.pop_ready()) == [200_000, 300_000, 400_000, 500_000]
    window.add_frame(IMAGE, 700_000, received=0.0)  # 200 ms past it: silent
    assert ends(window.pop_ready()) == [600_000, 700_000]


def test_with_frame_timeout_s_frames_alone_wait_that_long_from_the_first_packet():
    window = SlidingWindow(2, (8, 6), event_timeout_us=100_000, frame_timeout_s=1.0)
    ready = []
    for k in range(5):  # frames every 100 ms of sensor time, received every 0.25 s
        window.add_frame(IMAGE, 100_000 * k, received=0.25 * k)
        ready.append(ends(window.pop_ready()))
    assert ready == [[], [], [], [], [200_000, 300_000, 400_000]]  # at 1.0 s after the first frame


def test_with_frame_timeout_s_an_empty_events_packet_first_starts_the_wait():
    window = SlidingWindow(2, (8, 6), event_timeout_us=100_000, frame_timeout_s=1.0)
    window.add_events(*events_at(), received=0.0)  # connected: an empty packet
    ready = []
    for k in range(6):
        window.add_frame(IMAGE, 100_000 * k, received=0.5 + 0.1 * k)
        ready.append(ends(window.pop_ready()))
    assert ready == [[], [], [], [], [], [200_000, 300_000, 400_000, 500_000]]  # at 1.0 s after the empty packet


def test_with_frame_timeout_s_frames_wait_that_long_from_the_last_events_packet():
    window = SlidingWindow(2, (8, 6), event_timeout_us=100_000, frame_timeout_s=1.0)
    window.add_frame(IMAGE, 0, received=0.0)
    window.add_events(*events_at(10_000, 50_000), received=5.0)
    ready = []
    for k in range(1, 6):
        window.add_frame(IMAGE, 100_000 * k, received=5.0 + 0.2 * k)
        ready.append(ends(window.pop_ready()))
    assert ready == [[], [], [], [], [200_000, 300_000, 400_000, 500_000]]  # at exactly 1.0 s after the events
