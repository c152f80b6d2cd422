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
from velora.stream.window import STREAM_PATH, SlidingWindow

STREET = "davis346/street_davis346.aedat4"


def event_packets(events, packet_us=1000, received=0.0):
    """(t, x, y, p, received) packets of packet_us microseconds of events each."""
    edges = np.arange(events.t[0], events.t[-1] + packet_us + 1, packet_us)
    bounds = np.searchsorted(events.t, edges)
    return [
        (events.t[a:b], events.x[a:b], events.y[a:b], events.p[a:b], received + k)
        for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))
        if b > a
    ]


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
            steps = steps[len(frames) :] + steps[: len(frames)]
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
    for image, stamp in zip(frames, frame_t):
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


def packet(*times: int):
    t = np.array(times, dtype=np.int64)
    return t, t.astype(np.int16) % 7, np.zeros(len(t), np.int16), np.ones(len(t), np.int8)


@pytest.mark.parametrize(
    "times, inside",
    [
        ((150, 200), [150]),  # ends exactly on the window's end: that event belongs to the next window
        ((200, 210), []),  # starts exactly on the end
        ((100, 150), [100, 150]),  # starts exactly on the start: whole
        ((50, 100), [100]),  # ends exactly on the start: its last event is in
        ((50, 99), []),
        ((100, 199), [100, 199]),
        ((50, 120, 200, 250), [120]),  # spans the whole window
    ],
)
def test_events_are_those_from_the_first_boundary_up_to_before_the_last(times, inside):
    from velora.stream.window import Window

    window = Window(0, np.array([100, 150, 200]), None, 0.0, 0.0, (8, 8), (packet(*times),))
    assert window.events.t.tolist() == inside
    assert window.num_events == len(inside)
    first_sample = [t for t in inside if t < 150]
    assert window.sample(0).events.t.tolist() == first_sample
    assert window.events_between(100, 150).t.tolist() == first_sample


def test_a_packet_ending_on_a_boundary_goes_to_the_window_that_starts_there():
    sliding = SlidingWindow(2, (8, 8))
    image = np.zeros((8, 8), np.uint8)
    for k, t in enumerate((0, 100, 200, 300)):
        sliding.add_frame(image, t, received=float(k))
    sliding.add_events(*packet(50, 100), received=1.0)
    sliding.add_events(*packet(150, 200), received=2.0)  # ends exactly on window 0's end
    sliding.add_events(*packet(250, 300), received=3.0)  # ends exactly on window 1's end
    first, second = sliding.pop_ready()
    assert first.boundaries_us.tolist() == [0, 100, 200] and first.events.t.tolist() == [50, 100, 150]
    assert second.boundaries_us.tolist() == [100, 200, 300] and second.events.t.tolist() == [100, 150, 200, 250]
    assert first.last_event_received == 2.0 and second.last_event_received == 3.0


def test_every_invalid_argument_is_listed_in_one_error():
    with pytest.raises(ValueError) as raised:
        SlidingWindow(0, (8, 6), hop_frames=0, hop_us=0, frame_period_us=0)
    assert str(raised.value) == (
        "invalid SlidingWindow: num_frames must be >= 1, got 0; hop_frames must be >= 1, got 0; "
        "hop_us must be > 0, got 0; frame_period_us, frame_timeout_us, event_timeout_us and clock_jump_us must be "
        "> 0, got 0, 1000000, 1000000, 1000000"
    )
    with pytest.raises(ValueError, match="clock_jump_us must be > 0, got 40000, 0, 1000000, 1000000$"):
        SlidingWindow(1, (8, 6), frame_timeout_us=0)
    with pytest.raises(ValueError, match="clock_jump_us must be > 0, got 40000, 1000000, 1000000, -1$"):
        SlidingWindow(1, (8, 6), clock_jump_us=-1)
    SlidingWindow(  # the smallest valid
        1, (8, 6), hop_frames=1, hop_us=1, frame_period_us=1, frame_timeout_us=1, event_timeout_us=1, clock_jump_us=1
    )


def test_no_frame_for_the_timeout_switches_to_event_only_and_says_so():
    said = []
    window = SlidingWindow(2, (8, 8), frame_timeout_us=100_000, frame_period_us=10_000, notify=said.append)
    window.add_events(*packet(1_000, 100_999), received=0.0)  # 99.999 ms of events: not yet
    assert window.frame_mode and said == []
    window.add_events(*packet(101_000), received=0.0)  # exactly the timeout after the first event
    assert not window.frame_mode
    assert said == ["no APS frame for 0.1 s of events: event-only windows of 2 x 10 ms"]
    window.add_events(*packet(130_000), received=0.0)
    first = window.pop_ready()[0]
    assert first.event_only and first.boundaries_us.tolist() == [1_000, 11_000, 21_000]  # from the first event
    assert first.events.t.tolist() == [1_000] and first.num_events == 1
    with pytest.raises(
        ValueError, match="^an event-only window has no APS frames; use sample[(][)] for its event samples$"
    ):
        first.recording()
    sample = first.sample(0)
    assert sample.aps_frames.shape == (0, 8, 8) and sample.aps_frames.dtype == np.uint8
    assert sample.events.t.tolist() == [1_000]


def test_a_frame_windows_recording_and_samples_are_whole_recordings():
    window = SlidingWindow(3, (8, 8))
    images = [np.full((8, 8), 10 * k, np.uint8) for k in range(4)]
    for k, image in enumerate(images):
        window.add_frame(image, 100 * k, received=0.0)
    window.add_events(*packet(50, 150, 250, 300), received=0.0)
    (w,) = window.pop_ready()
    recording = w.recording()
    assert np.array_equal(recording.aps_frames, np.stack(images)) and recording.events.t.tolist() == [50, 150, 250]
    assert recording.frame_timestamps_us.tolist() == [0, 100, 200, 300]
    assert recording.frame_exposure_us.dtype == np.int64 and recording.frame_exposure_us.tolist() == [0, 0, 0, 0]
    assert recording.path == STREAM_PATH
    for j in range(3):
        sample = w.sample(j)
        assert np.array_equal(sample.aps_frames, np.stack(images[j : j + 2]))
        assert sample.frame_timestamps_us.tolist() == [100 * j, 100 * (j + 1)]
        assert sample.frame_exposure_us.dtype == np.int64 and sample.frame_exposure_us.tolist() == [0, 0]
        assert sample.path == STREAM_PATH and sample.events.t.tolist() == [50 + 100 * j]


def test_packets_out_of_order_are_sorted_and_merged():
    window = SlidingWindow(1, (8, 8))
    image = np.zeros((8, 8), np.uint8)
    window.add_frame(image, 0, received=0.0)
    window.add_frame(image, 100, received=0.0)
    window.add_events(*packet(60, 10, 30), received=1.0)  # unsorted inside
    window.add_events(*packet(20, 50), received=2.0)  # starts before the previous packet ends
    window.add_events(*packet(100), received=3.0)
    (w,) = window.pop_ready()
    assert w.events.t.tolist() == [10, 20, 30, 50, 60]
    assert w.events.x.tolist() == [3, 6, 2, 1, 4]  # each event keeps its own x (t % 7)
    assert w.last_event_received == 2.0  # when the last of its events arrived (the packet at t = 100 holds none)
    assert w.completed_received == 3.0


def test_a_window_without_events_takes_the_receive_time_of_what_completed_it():
    window = SlidingWindow(1, (8, 8))
    image = np.zeros((8, 8), np.uint8)
    window.add_frame(image, 0, received=0.5)
    window.add_frame(image, 100, received=0.6)
    window.add_events(*packet(150), received=0.7)  # after the window: completes it, is not in it
    (w,) = window.pop_ready()
    assert w.num_events == 0 and w.events.t.tolist() == []
    assert w.last_event_received == 0.7 and w.completed_received == 0.7


@pytest.mark.parametrize("times", [(30, 10, 20), (10, 30, 20)])
def test_a_packet_out_of_order_on_its_own_is_sorted(times):
    window = SlidingWindow(1, (8, 8))
    image = np.zeros((8, 8), np.uint8)
    window.add_frame(image, 0, received=0.0)
    window.add_frame(image, 100, received=0.0)
    window.add_events(*packet(*times), received=0.0)
    window.add_events(*packet(100), received=0.0)
    (w,) = window.pop_ready()
    assert w.events.t.tolist() == [10, 20, 30] and w.events.x.tolist() == [3, 6, 2]


def test_sorting_a_packet_keeps_events_of_equal_time_in_arrival_order():
    rng = np.random.default_rng(0)
    t = rng.permutation(np.repeat(np.arange(1, 4, dtype=np.int64), 300))  # 900 events, 300 per time
    x = np.arange(900, dtype=np.int16) % 8
    y = (np.arange(900) // 8 % 8).astype(np.int16)
    window = SlidingWindow(1, (8, 8))
    image = np.zeros((8, 8), np.uint8)
    window.add_frame(image, 0, received=0.0)
    window.add_frame(image, 10, received=0.0)
    window.add_events(t, x, y, np.ones(900, np.int8), received=0.0)
    window.add_events(*packet(10), received=0.0)
    (w,) = window.pop_ready()
    order = np.argsort(t, kind="stable")
    assert w.events.t.tolist() == t[order].tolist()
    assert w.events.x.tolist() == x[order].tolist() and w.events.y.tolist() == y[order].tolist()


def test_a_frame_that_completes_a_window_gives_it_its_receive_time():
    window = SlidingWindow(1, (8, 8))
    image = np.zeros((8, 8), np.uint8)
    window.add_frame(image, 0, received=1.0)
    window.add_events(*packet(50, 120), received=2.0)  # events past the next frame's time first
    window.add_frame(image, 100, received=5.0)  # the frame that completes the window
    (w,) = window.pop_ready()
    assert w.completed_received == 5.0 and w.last_event_received == 2.0


def test_frames_still_arriving_keep_frame_mode_however_far_ahead_events_are():
    window = SlidingWindow(2, (8, 8), frame_timeout_us=50_000, frame_timeout_s=1.0)
    image = np.zeros((8, 8), np.uint8)
    window.add_events(*packet(0), received=0.0)  # the stream starts
    for k in range(10):
        window.add_frame(image, 10_000 * k, received=0.125 * k)  # the last at 1.125 s
    window.add_events(*packet(500_000), received=1.5)  # 0.375 s after the last frame
    assert window.frame_mode
    window.add_events(*packet(500_001), received=2.125)  # exactly frame_timeout_s after it
    assert not window.frame_mode


def test_back_in_event_only_mode_a_frame_not_after_the_last_virtual_frame_is_ignored():
    said = []
    window = SlidingWindow(2, (8, 8), frame_timeout_us=20_000, frame_period_us=10_000, notify=said.append)
    window.add_events(*packet(0, 30_000), received=0.0)  # -> event-only, virtual frames 0, 10k, 20k, 30k
    assert not window.frame_mode
    image = np.zeros((8, 8), np.uint8)
    for t in (25_000, 30_000):  # before or on the last virtual frame
        window.add_frame(image, t, received=0.0)
        assert not window.frame_mode
    window.add_frame(image, 30_001, received=0.0)
    assert window.frame_mode and said[-1].startswith("APS frames again")
    window.add_events(*packet(60_000), received=0.0)  # frames stop again: event-only, said only the first time
    assert not window.frame_mode
    assert [m.split(" ")[0] for m in said] == ["no", "APS"]


def test_event_only_windows_take_a_virtual_frame_on_the_last_events_time():
    window = SlidingWindow(2, (8, 8), expect_frames=False, frame_period_us=10_000)
    window.add_events(*packet(0, 20_000), received=0.0)  # virtual frames at 0, 10 ms and exactly 20 ms
    (w,) = window.pop_ready()
    assert w.boundaries_us.tolist() == [0, 10_000, 20_000] and w.events.t.tolist() == [0]


def test_hop_in_microseconds_starts_again_after_a_switch_to_event_only():
    window = SlidingWindow(1, (8, 8), hop_us=20_000, frame_timeout_us=50_000, frame_period_us=10_000)
    image = np.zeros((8, 8), np.uint8)
    for k in range(4):
        window.add_frame(image, 10_000 * k, received=0.0)
    window.add_events(*packet(5_000, 35_000), received=0.0)
    assert [w.t_end_us for w in window.pop_ready()] == [10_000, 30_000]
    window.add_events(*packet(100_000), received=0.0)  # no frame for 70 ms: event-only from the last frame
    ends = [w.t_end_us for w in window.pop_ready()]
    assert ends[0] == 40_000 and all(b - a >= 20_000 for a, b in zip(ends, ends[1:]))


@pytest.mark.parametrize(
    "hop_frames, hop_us, ends",
    [
        (1, 20_000, [10_000, 30_000, 50_000, 70_000, 90_000]),  # the first frame 20 ms or more after the last end
        (3, 20_000, [10_000, 30_000, 50_000, 70_000, 90_000]),  # hop_us wins over hop_frames
        (1, 10_000, [10_000 * k for k in range(1, 11)]),  # every frame
        (3, None, [10_000, 40_000, 70_000, 100_000]),
    ],
)
@pytest.mark.parametrize("at_once", [False, True], ids=["as-they-come", "all-at-once"])
def test_hops_give_exactly_these_windows(hop_frames, hop_us, ends, at_once):
    window = SlidingWindow(1, (8, 8), hop_frames=hop_frames, hop_us=hop_us)
    image = np.zeros((8, 8), np.uint8)
    ready = []
    for k in range(11):
        window.add_frame(image, 10_000 * k, received=0.0)
        window.add_events(*packet(10_000 * k + 5_000), received=0.0)
        if not at_once:
            ready += window.pop_ready()
    ready += window.pop_ready()
    assert [w.t_end_us for w in ready] == ends
    assert all(w.boundaries_us.tolist() == [w.t_end_us - 10_000, w.t_end_us] for w in ready)
    assert all(w.events.t.tolist() == [w.t_end_us - 5_000] for w in ready)
    assert [w.index for w in ready] == list(range(len(ends)))


def test_packets_overlapping_anywhere_are_merged_in_time_order():
    window = SlidingWindow(1, (8, 8))
    image = np.zeros((8, 8), np.uint8)
    window.add_frame(image, 0, received=0.0)
    window.add_frame(image, 100, received=0.0)
    window.add_events(*packet(10, 20, 40), received=0.0)
    window.add_events(*packet(30, 50), received=0.0)  # starts between the previous packet's last two
    window.add_events(*packet(100), received=0.0)
    (w,) = window.pop_ready()
    assert w.events.t.tolist() == [10, 20, 30, 40, 50]


def test_merging_packets_keeps_events_of_equal_time_in_arrival_order():
    window = SlidingWindow(1, (8, 8))
    image = np.zeros((8, 8), np.uint8)
    window.add_frame(image, 0, received=0.0)
    window.add_frame(image, 10, received=0.0)
    t = np.repeat(np.arange(1, 4, dtype=np.int64), 300)  # each packet sorted, the two overlapping
    for k in range(2):
        x = (np.arange(900) + k) % 8
        window.add_events(t, x.astype(np.int16), np.full(900, k, np.int16), np.ones(900, np.int8), received=0.0)
    window.add_events(*packet(10), received=0.0)
    (w,) = window.pop_ready()
    both = np.concatenate([t, t])
    order = np.argsort(both, kind="stable")
    assert w.events.t.tolist() == both[order].tolist()
    assert w.events.y.tolist() == np.repeat([0, 1], 900)[order].tolist()  # which packet each event came from


def test_a_late_packet_of_earlier_events_does_not_undo_a_later_one():
    window = SlidingWindow(2, (8, 8))
    image = np.zeros((8, 8), np.uint8)
    for t in (0, 100, 200):
        window.add_frame(image, t, received=0.0)
    window.add_events(*packet(50, 250), received=0.0)
    window.add_events(*packet(120), received=0.0)  # arrives later, holds an earlier time
    (w,) = window.pop_ready()  # an event at 250 >= 200 is in: the window is complete
    assert w.events.t.tolist() == [50, 120]


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


def test_events_going_back_start_the_frame_timeout_again():
    """After an events packet restarts the window, the frame timeout counts from that packet, as at
    the start of a stream (it was left unset, and a long packet then failed on it)."""
    window = SlidingWindow(2, (8, 6), frame_timeout_s=0.5)
    xy, p = np.zeros(2, np.int16), np.ones(2, np.int8)
    window.add_events(np.array([5_000_000, 5_000_001]), xy, xy, p, received=1.0)
    window.add_events(np.array([0, 2_000_000]), xy, xy, p, received=2.0)  # back 5 s, 2 s of events at once
    assert window.clock_jumps == 1 and window.frame_mode  # no receive time without frames yet
    window.add_events(np.array([2_000_001, 2_000_002]), xy, xy, p, received=2.6)
    assert not window.frame_mode


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
