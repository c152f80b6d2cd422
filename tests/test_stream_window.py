"""The sliding window: T + 1 APS frames and the events between them, complete only when every event
of it is in, the same whatever order packets arrive in; event-only windows without frames."""

from __future__ import annotations

import re
from collections import deque

import numpy as np
import pytest
import torch

from velora.data.recordings import recording_frames
from velora.data.sampling import FULL_FRAME, ClipDraw
from velora.events.readers import read_aedat4
from velora.stream.window import SlidingWindow

STREET = "davis346/street_davis346.aedat4"


def event_packets(events, packet_us=1000, received=0.0):
    """(t, x, y, p, received) packets of packet_us microseconds of events each."""
    edges = np.arange(events.t[0], events.t[-1] + packet_us + 1, packet_us)
    bounds = np.searchsorted(events.t, edges)
    return [(events.t[a:b], events.x[a:b], events.y[a:b], events.p[a:b], received + k)
            for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])) if b > a]


def feed_in_time_order(window, recording, packet_us=1000):
    """Events packets and frames merged by time, as a camera delivers them."""
    items = [(int(p[0][-1]), 0, p) for p in event_packets(recording.events, packet_us)]
    items += [(int(t), 1, (image, t)) for image, t in zip(recording.aps_frames, recording.frame_timestamps_us)]
    ready = []
    for _, kind, data in sorted(items, key=lambda item: item[:2]):
        if kind == 0:
            window.add_events(*data)
        else:
            window.add_frame(data[0], data[1], received=0.0)
        ready += window.pop_ready()
    return ready


@pytest.fixture(scope="module")
def street(real_data_dir):
    return read_aedat4(real_data_dir / STREET)


@pytest.mark.parametrize("num_frames", [1, 2, 3])
def test_windows_are_t_plus_1_frames_and_the_events_between_the_first_and_the_last(street, num_frames):
    windows = feed_in_time_order(SlidingWindow(num_frames, street.sensor_size), street)
    assert len(windows) == len(street.aps_frames) - num_frames  # 4 frames: 3, 2, 1 windows
    for k, w in enumerate(windows):
        assert w.index == k and w.num_samples == num_frames and not w.event_only
        np.testing.assert_array_equal(w.boundaries_us, street.frame_timestamps_us[k : k + num_frames + 1])
        np.testing.assert_array_equal(w.aps_frames, street.aps_frames[k : k + num_frames + 1])
        expected = street.events.window(int(w.boundaries_us[0]), int(w.boundaries_us[-1]))
        for column in "txyp":
            np.testing.assert_array_equal(getattr(w.events, column), getattr(expected, column))
        recording = w.recording()
        assert recording.sensor_size == street.sensor_size and len(recording.aps_frames) == num_frames + 1


def test_a_window_is_complete_once_an_event_at_or_after_its_last_frame_is_in(street):
    window = SlidingWindow(2, street.sensor_size)
    t = street.frame_timestamps_us
    for image, stamp in zip(street.aps_frames[:3], t[:3]):
        window.add_frame(image, stamp, received=0.0)
    e = street.events
    before = e.t < t[2]
    window.add_events(e.t[before], e.x[before], e.y[before], e.p[before], received=1.0)
    assert window.pop_ready() == []  # an event just before t_2 could still be on its way
    at = np.array([t[2]])
    window.add_events(at, np.array([0]), np.array([0]), np.array([1]), received=2.0)
    (w,) = window.pop_ready()
    assert w.t_end_us == t[2] and len(w.events) == np.count_nonzero((e.t >= t[0]) & before)
    assert (w.last_event_received, w.completed_received) == (1.0, 2.0)  # latency counts from 1.0


def test_the_end_of_the_stream_completes_the_last_window(street):
    window = SlidingWindow(3, street.sensor_size)
    for image, stamp in zip(street.aps_frames, street.frame_timestamps_us):
        window.add_frame(image, stamp, received=0.0)
    assert window.pop_ready() == []  # no event yet
    window.finish()
    (w,) = window.pop_ready()
    assert len(w.events) == 0 and w.num_samples == 3


def test_frames_that_lag_behind_the_events_make_the_same_windows(street):
    """Two connections: all events first, the frames later; or the frames first."""
    in_order = feed_in_time_order(SlidingWindow(2, street.sensor_size), street)
    for frames_first in (False, True):
        window, ready = SlidingWindow(2, street.sensor_size), []
        frames = list(zip(street.aps_frames, street.frame_timestamps_us))
        packets = event_packets(street.events)
        steps = [("frame", f) for f in frames] + [("events", p) for p in packets]
        if not frames_first:
            steps = steps[len(frames):] + steps[: len(frames)]
        for kind, data in steps:
            if kind == "frame":
                window.add_frame(data[0], data[1], received=0.0)
            else:
                window.add_events(*data)
            ready += window.pop_ready()
        assert [w.boundaries_us.tolist() for w in ready] == [w.boundaries_us.tolist() for w in in_order]
        for a, b in zip(ready, in_order):
            np.testing.assert_array_equal(a.events.t, b.events.t)


def synthetic(num_frames=20, period_us=10_000, events_per_frame=50, seed=0):
    """Frames (8 x 6, value = index) every period_us and random events between them."""
    rng = np.random.default_rng(seed)
    frame_t = np.arange(num_frames, dtype=np.int64) * period_us + 1_000_000
    t = np.sort(rng.integers(frame_t[0], frame_t[-1] + period_us, num_frames * events_per_frame))
    x, y = rng.integers(0, 8, len(t)), rng.integers(0, 6, len(t))
    p = rng.choice([-1, 1], len(t))
    frames = np.stack([np.full((6, 8), k % 256, np.uint8) for k in range(num_frames)])
    return frames, frame_t, (t, x, y, p)


def feed_synthetic(window, frames, frame_t, events, until_us=None):
    t, x, y, p = events
    ready = []
    for k, (image, stamp) in enumerate(zip(frames, frame_t)):
        window.add_frame(image, stamp, received=float(k))
        upto = np.searchsorted(t, stamp + (frame_t[1] - frame_t[0]))
        start = np.searchsorted(t, stamp)
        window.add_events(t[start:upto], x[start:upto], y[start:upto], p[start:upto], received=k + 0.5)
        ready += window.pop_ready()
    return ready


def test_hop_in_frames_and_in_milliseconds():
    frames, frame_t, events = synthetic()
    ends = [w.t_end_us for w in feed_synthetic(SlidingWindow(4, (8, 6), hop_frames=3), frames, frame_t, events)]
    assert ends == frame_t[4::3].tolist()
    ends = [w.t_end_us for w in feed_synthetic(SlidingWindow(4, (8, 6), hop_us=25_000), frames, frame_t, events)]
    assert ends == frame_t[4::3].tolist()  # 10 ms frames: the first frame 25 ms or more after the last end
    ends = [w.t_end_us for w in feed_synthetic(SlidingWindow(4, (8, 6), hop_us=20_000), frames, frame_t, events)]
    assert ends == frame_t[4::2].tolist()


def test_without_frames_windows_are_virtual_frames_every_period_said_once():
    _, _, (t, x, y, p) = synthetic()
    said = []
    window = SlidingWindow(3, (8, 6), expect_frames=False, frame_period_us=20_000, notify=said.append)
    ready = []
    for start in range(0, len(t), 37):
        part = slice(start, start + 37)
        window.add_events(t[part], x[part], y[part], p[part], 0.0)
        ready += window.pop_ready()
    assert ready and all(w.event_only and w.aps_frames is None for w in ready)
    for k, w in enumerate(ready):
        np.testing.assert_array_equal(w.boundaries_us, t[0] + 20_000 * np.arange(k, k + 4))
        assert len(w.events) == np.count_nonzero((t >= w.t_start_us) & (t < w.t_end_us))
    assert said == []  # the caller says it once for a stream without frames; the window only on a switch


def test_frames_that_stop_switch_to_event_only_windows_and_back_when_they_return():
    frames, frame_t, (t, x, y, p) = synthetic(num_frames=200)
    said = []
    window = SlidingWindow(2, (8, 6), frame_timeout_us=100_000, frame_period_us=10_000, notify=said.append)
    ready = []
    gap = (frame_t >= frame_t[50]) & (frame_t < frame_t[80])  # frames 50..79 are dropped
    for k, (image, stamp) in enumerate(zip(frames, frame_t)):
        if not gap[k]:
            window.add_frame(image, stamp, received=float(k))
        a, b = np.searchsorted(t, [stamp, stamp + 10_000])
        window.add_events(t[a:b], x[a:b], y[a:b], p[a:b], received=float(k))
        ready += window.pop_ready()
    kinds = "".join("E" if w.event_only else "F" for w in ready)
    assert re.fullmatch("F+E+F+", kinds) and kinds.count("E") > 5  # frames, event-only, frames again
    first_event_only = ready[kinds.index("E")]
    assert first_event_only.t_start_us == frame_t[49]  # the virtual frames start at the last frame
    assert len(said) == 2 and said[0].startswith("no new APS frame") and said[1].startswith("APS frames again")
    for w in ready:  # never a window mixing frames and virtual frames
        if not w.event_only:
            assert set(w.boundaries_us.tolist()) <= set(frame_t.tolist())


def test_frames_lagging_on_their_own_connection_are_not_taken_for_missing():
    """With frame_timeout_s, events far ahead in sensor time do not switch while frames keep coming."""
    frames, frame_t, (t, x, y, p) = synthetic(num_frames=100)
    window = SlidingWindow(2, (8, 6), frame_timeout_us=50_000, frame_timeout_s=1.0)
    window.add_events(t, x, y, p, received=0.0)  # all events of the whole second at once
    for k, (image, stamp) in enumerate(zip(frames, frame_t)):
        window.add_frame(image, stamp, received=0.01 * k)
    window.add_events(t[-1:] + 1, x[-1:], y[-1:], p[-1:], received=0.5)
    ready = window.pop_ready()
    assert len(ready) == 98 and not any(w.event_only for w in ready)
    window.add_events(t[-1:] + 60_000, x[-1:], y[-1:], p[-1:], received=2.0)  # 1 s of receive time without frames
    assert window.frame_mode is False


def test_repeated_frames_are_ignored_and_memory_stays_bounded():
    frames, frame_t, (t, x, y, p) = synthetic(num_frames=400)
    window = SlidingWindow(4, (8, 6))
    ready = []
    for k, (image, stamp) in enumerate(zip(frames, frame_t)):
        window.add_frame(image, stamp, received=0.0)
        window.add_frame(image, stamp, received=0.0)  # a repeat
        a, b = np.searchsorted(t, [stamp, stamp + 10_000])
        window.add_events(t[a:b], x[a:b], y[a:b], p[a:b], received=0.0)
        ready += window.pop_ready()
        assert len(window._boundaries) <= 6 and len(window._chunks) <= 6
    assert window.frames_ignored == 400 and len(ready) == 396


def test_a_sample_alone_is_drawn_as_in_the_whole_window(street):
    """The encoder computes each sample once from sample(j): the same image as from the window."""
    (w,) = feed_in_time_order(SlidingWindow(3, street.sensor_size), street)

    def samples(indices):
        return ClipDraw({"rgb": indices, "event": indices}, FULL_FRAME, False)

    whole = recording_frames(w.recording(), samples(np.arange(3)), 32)
    for j in range(3):
        alone = recording_frames(w.sample(j), samples(np.zeros(1, np.int64)), 32)
        for key in ("rgb", "events"):
            assert torch.equal(alone[key][0], whole[key][j])


def test_invalid_arguments_are_listed():
    with pytest.raises(ValueError, match="num_frames must be >= 1.*hop_frames must be >= 1"):
        SlidingWindow(0, (8, 6), hop_frames=0)


def test_the_clock_going_back_restarts_the_window_said_and_counted():
    """A camera reset: the second half of the stream starts again at the first half's timestamps."""
    frames, frame_t, events = synthetic(num_frames=400)  # 4 s
    frames = np.stack([np.full((6, 8), k // 2, np.uint8) for k in range(400)])  # images 0..199 once each
    said = []
    window = SlidingWindow(2, (8, 6), notify=said.append)
    first = feed_synthetic(window, frames[:200], frame_t[:200], events)
    second = feed_synthetic(window, frames[200:], frame_t[:200], events)  # other images, the same times
    assert len(first) == 198 and len(second) == 198 and window.clock_jumps == 1 and window.restarts == 1
    assert [w.boundaries_us.tolist() for w in second] == [w.boundaries_us.tolist() for w in first]
    for w in second:  # windows of the new clock only: its images
        assert np.unique(w.aps_frames).min() >= 100
    assert len(said) == 1 and said[0].startswith("frame timestamps went back 1.990 s (a camera reset")
    assert "the window restarts (0 windows dropped)" in said[0]


def test_a_small_step_back_is_not_a_reset_and_a_duplicated_packet_is_dropped():
    frames, frame_t, (t, x, y, p) = synthetic(num_frames=40)
    expected = feed_synthetic(SlidingWindow(2, (8, 6)), frames, frame_t, (t, x, y, p))
    said = []
    window, ready = SlidingWindow(2, (8, 6), notify=said.append), []
    for k, (image, stamp) in enumerate(zip(frames, frame_t)):
        window.add_frame(image, stamp, received=float(k))
        a, b = np.searchsorted(t, [stamp, stamp + 10_000])
        window.add_events(t[a:b], x[a:b], y[a:b], p[a:b], received=k + 0.5)
        window.add_events(t[a:b], x[a:b], y[a:b], p[a:b], received=k + 0.6)  # sent twice
        ready += window.pop_ready()
    assert window.duplicates == 40 and window.clock_jumps == 0 and len(said) == 1 and "duplicated" in said[0]
    assert [w.boundaries_us.tolist() for w in ready] == [w.boundaries_us.tolist() for w in expected]
    for a, b in zip(ready, expected):
        np.testing.assert_array_equal(a.events.t, b.events.t)  # each event once


def test_frames_without_events_complete_on_frames_alone_and_memory_stays_bounded():
    frames, frame_t, (t, x, y, p) = synthetic(num_frames=400)  # 4 s of frames, events only in the first 0.5 s
    said = []
    window = SlidingWindow(2, (8, 6), event_timeout_us=200_000, notify=said.append)
    early = t < frame_t[50]
    window.add_events(t[early], x[early], y[early], p[early], received=0.0)
    ready = []
    for k, (image, stamp) in enumerate(zip(frames, frame_t)):
        window.add_frame(image, stamp, received=0.01 * k)
        ready += window.pop_ready()
        assert len(window._boundaries) <= 25  # the event timeout's worth of frames, not all of them
    assert len(ready) > 350 and all(not w.event_only for w in ready)
    assert all(w.num_events == 0 for w in ready if w.t_start_us >= frame_t[50])
    assert sum("no events for 0.2 s of APS frames" in n for n in said) == 1


def test_events_with_no_frame_to_hold_them_are_kept_for_the_horizon_only():
    """An RGB-only model never switches to event-only windows: events before any frame are bounded."""
    window = SlidingWindow(2, (8, 6), frame_timeout_us=1 << 62)
    rng = np.random.default_rng(0)
    for k in range(300):  # 30 s of events, no frame
        t = np.sort(rng.integers(k * 100_000, (k + 1) * 100_000, 50))
        window.add_events(t, rng.integers(0, 8, 50), rng.integers(0, 6, 50), rng.choice([-1, 1], 50), received=k)
        assert window._chunks[-1].t[-1] - window._chunks[0].t[0] <= 10_100_000
    assert window.frame_mode and window.pop_ready() == []


def test_restart_drops_the_windows_that_were_waiting():
    frames, frame_t, (t, x, y, p) = synthetic(num_frames=20)
    window = SlidingWindow(2, (8, 6), hop_frames=2)
    for image, stamp in zip(frames[:10], frame_t[:10]):
        window.add_frame(image, stamp, received=0.0)
    a = np.searchsorted(t, frame_t[5])
    window.add_events(t[:a], x[:a], y[:a], p[:a], received=0.0)
    assert [w.t_end_us for w in window.pop_ready()] == frame_t[[2, 4]].tolist()  # complete up to frame 5's events
    assert window.restart() == 2  # the windows ending at frames 6 and 8 had their frames, not all their events
    assert window._boundaries == deque() and window.pop_ready() == []
    ready = feed_synthetic(window, frames[10:], frame_t[10:], (t, x, y, p))
    assert ready[0].t_end_us == frame_t[12] and ready[0].index == 2
