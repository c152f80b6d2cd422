"""The sliding window of a stream: the last T + 1 APS frames and the events between them.

A window is what `Recognizer.predict` takes from a recording (velora.data.recordings): T + 1 APS
frames give T samples, sample j pairing frame j + 1 with the image of the events
`t_j <= t < t_j+1` (`t_k`: frame k's start of exposure, microseconds). Frame 0 of a window only
opens its first event interval, as the first frame of a recording does; so T + 1 frames, not T,
make the model's T samples, and `Recognizer.item(window.recording())` is exactly the model input
`predict` makes of those frames and events.

Boundaries. The window's T + 1 boundaries are APS frames. Without frames (an event-only sensor, a
stream without its frame connection, frames that stopped) they are virtual frame times every
`frame_period_us` of event time, from the first event (or the last frame); the window then holds
events only, and the model takes its missing-modality path. Windows never mix the two kinds: a
switch starts a new window from scratch.

When a window is complete. Events arrive in time order, so once an event with t >= t_T (the
window's last boundary) is in, every event of the window is in. A window is complete when its last
frame and such an event have arrived, or when the stream has ended (`finish`).

Hop. A window is emitted every `hop_frames` boundaries, or (with `hop_us`) at the first boundary
at least `hop_us` after the previous window's end.

Timestamps as cameras send them (each case is counted; a clock going back is said each time by
`notify`, the others the first time):
- The clock goes back: events more than `clock_jump_us` before the newest event, or a frame that
  far before the last frame (a camera reset, a DV restart): the window restarts from them, as it
  does after a gap (`restart`); the windows that were waiting are dropped.
- A duplicated events packet (the same events as one of the last DUPLICATE_MEMORY packets, as a
  sender that resends gives): dropped. A frame not after the previous frame: ignored. Events a
  little out of order (less than `clock_jump_us`) are merged in time order, as read_aedat4 sorts a
  file.
- Frames without events: once frames run `event_timeout_us` of sensor time past the newest event
  (and, with `frame_timeout_s`, that long in receive time without an events packet), the events
  are taken as silent and windows complete on their frames alone (blank event images, what
  predict gives on a recording without events there); events that come later go on as usual.
- Events without frames: event-only windows (above). Events with no boundary to hold them (before
  any frame, or while only frames are expected) are kept for EVENT_HORIZON_US at most.
So memory stays bounded whatever a source sends: the boundaries and events kept are those of the
next window, plus the frame or event timeouts' worth.

Pure: no clock, no I/O. Receive times are given with each packet (any monotonic clock, seconds)
and only travel into the windows, for latency.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from velora.events.aedat4 import Recording
from velora.events.render import EventStream

STREAM_PATH = Path("<stream>")  # the `path` of a window's Recording: it comes from no file
DUPLICATE_MEMORY = 16  # events packets remembered to recognise a duplicate
EVENT_HORIZON_US = 10_000_000  # events kept without a boundary to hold them: 10 s of sensor time


@dataclass(frozen=True, eq=False)
class Window:
    """T + 1 boundaries and the events between the first and the last.

    index: 0, 1, ... in the order windows are emitted.
    boundaries_us: int64 (T + 1,), the APS frames' start of exposure, or the virtual frame times
        of an event-only window, microseconds.
    aps_frames: uint8 (T + 1, H, W) or (T + 1, H, W, 3); None for an event-only window.
    last_event_received: receive time of the packet holding the window's last event (of the
        packet that completed the window when it has no events), seconds.
    completed_received: receive time of the packet that completed the window, seconds.
    sensor_size: (width, height) of the events.
    packets: the event packets (t, x, y, p) that overlap the window, in time order; the window's
        events are cut from them only when asked for (`events`, `sample`), since a busy sensor
        puts hundreds of thousands in a window and a sliding window needs one new sample each.
    """

    index: int
    boundaries_us: np.ndarray
    aps_frames: np.ndarray | None
    last_event_received: float
    completed_received: float
    sensor_size: tuple[int, int]
    packets: tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], ...]

    @property
    def num_samples(self) -> int:
        return len(self.boundaries_us) - 1

    @property
    def event_only(self) -> bool:
        return self.aps_frames is None

    @property
    def t_start_us(self) -> int:
        return int(self.boundaries_us[0])

    @property
    def t_end_us(self) -> int:
        return int(self.boundaries_us[-1])

    @cached_property
    def events(self) -> EventStream:
        """The events with boundaries_us[0] <= t < boundaries_us[-1]."""
        return self.events_between(self.t_start_us, self.t_end_us)

    @cached_property
    def num_events(self) -> int:
        return sum(cut.stop - cut.start for _, cut in self._cuts(self.t_start_us, self.t_end_us))

    @cached_property
    def _packet_spans(self) -> tuple[np.ndarray, np.ndarray]:
        """First and last timestamp of every packet."""
        return np.array([p[0][0] for p in self.packets]), np.array([p[0][-1] for p in self.packets])

    def _cuts(self, t_start_us: int, t_end_us: int) -> list[tuple[int, slice]]:
        """(packet index, slice of its events) of the events with t_start_us <= t < t_end_us."""
        first, last = self._packet_spans
        cuts = []
        for k in np.flatnonzero((last >= t_start_us) & (first < t_end_us)).tolist():
            t = self.packets[k][0]
            if first[k] >= t_start_us and last[k] < t_end_us:  # most packets: whole, no search
                cuts.append((k, slice(0, len(t))))
            else:
                start, stop = np.searchsorted(t, [t_start_us, t_end_us], side="left").tolist()
                cuts.append((k, slice(start, stop)))
        return cuts

    def events_between(self, t_start_us: int, t_end_us: int) -> EventStream:
        """The window's events with t_start_us <= t < t_end_us."""
        cuts = self._cuts(t_start_us, t_end_us)
        t, x, y, p = (
            np.concatenate([self.packets[k][i][cut] for k, cut in cuts]) if cuts else np.zeros(0) for i in range(4)
        )
        return EventStream(t, x, y, p, *self.sensor_size)

    def recording(self) -> Recording:
        """The window as a decoded recording, what `Recognizer.predict` takes (frame windows only)."""
        if self.aps_frames is None:
            raise ValueError("an event-only window has no APS frames; use sample() for its event samples")
        exposure = np.zeros(len(self.boundaries_us), dtype=np.int64)
        return Recording(self.events, self.aps_frames, self.boundaries_us, exposure, STREAM_PATH)

    def sample(self, j: int) -> Recording:
        """Sample j alone (boundaries j and j + 1 and the events between them) as a two-frame
        recording: `recording_frames` gives it the same image as in the whole window. In an
        event-only window the recording's aps_frames are empty (0, H, W): read its events only."""
        events = self.events_between(int(self.boundaries_us[j]), int(self.boundaries_us[j + 1]))
        if self.aps_frames is None:
            frames = np.zeros((0, events.height, events.width), dtype=np.uint8)
        else:
            frames = self.aps_frames[j : j + 2]
        return Recording(events, frames, self.boundaries_us[j : j + 2], np.zeros(2, dtype=np.int64), STREAM_PATH)


@dataclass
class _Chunk:
    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    p: np.ndarray
    received: float


class SlidingWindow:
    """Packets in (events, frames, in arrival order), complete windows out.

    num_frames: T, samples per window (T + 1 boundaries).
    sensor_size: (width, height) of the event sensor.
    hop_frames / hop_us: emit a window every hop_frames boundaries, or at the first boundary
        hop_us microseconds or more after the previous window's end (hop_us wins when given).
    expect_frames: the stream has APS frames; False starts in event-only mode.
    frame_period_us: the spacing of virtual frame times in event-only mode.
    frame_timeout_us: events this far (microseconds of event time) past the last frame, or past
        the first event before any frame, with no new frame switch to event-only mode.
    frame_timeout_s: also require this much receive time without a frame (None: not required).
        Sources whose frames and events travel apart (two TCP connections, a camera) set it, so
        frames that merely lag behind the events do not count as missing; it also applies to
        events that lag behind frames (event_timeout_us).
    event_timeout_us: frames this far (microseconds of sensor time) past the newest event with no
        new event: the events are silent, windows complete on frames alone.
    clock_jump_us: timestamps this far back are a new clock (a reset): the window restarts.
    notify: called with a sentence when the mode changes (event-only, frames again), when the
        clock goes back, and the first time a duplicate packet or silent events are seen.

    Counts: windows_emitted, frames_ignored (not after the previous frame), duplicates (events
    packets dropped), clock_jumps, restarts (clock jumps and `restart` calls: the caller's
    caches of samples must be forgotten when it changes).
    """

    def __init__(
        self,
        num_frames: int,
        sensor_size: tuple[int, int],
        *,
        hop_frames: int = 1,
        hop_us: int | None = None,
        expect_frames: bool = True,
        frame_period_us: int = 40_000,
        frame_timeout_us: int = 1_000_000,
        frame_timeout_s: float | None = None,
        event_timeout_us: int = 1_000_000,
        clock_jump_us: int = 1_000_000,
        notify: Callable[[str], None] = lambda message: None,
    ):
        problems = []
        if num_frames < 1:
            problems.append(f"num_frames must be >= 1, got {num_frames}")
        if hop_frames < 1:
            problems.append(f"hop_frames must be >= 1, got {hop_frames}")
        if hop_us is not None and hop_us <= 0:
            problems.append(f"hop_us must be > 0, got {hop_us}")
        if min(frame_period_us, frame_timeout_us, event_timeout_us, clock_jump_us) <= 0:
            problems.append(
                "frame_period_us, frame_timeout_us, event_timeout_us and clock_jump_us must be > 0, got "
                f"{frame_period_us}, {frame_timeout_us}, {event_timeout_us}, {clock_jump_us}"
            )
        if problems:
            raise ValueError("invalid SlidingWindow: " + "; ".join(problems))
        self.num_frames = num_frames
        self.width, self.height = sensor_size
        self.hop_frames, self.hop_us = hop_frames, hop_us
        self.frame_period_us, self.frame_timeout_us = frame_period_us, frame_timeout_us
        self.frame_timeout_s, self.notify = frame_timeout_s, notify
        self.event_timeout_us, self.clock_jump_us = event_timeout_us, clock_jump_us
        self.expect_frames = expect_frames
        self.windows_emitted = 0
        self.frames_ignored = 0  # frames not after the previous one (repeated or out of order)
        self.duplicates = 0
        self.clock_jumps = 0
        self.restarts = 0
        self._said: set[str] = set()  # the notices said once
        self._first = 0  # absolute index of _boundaries[0]
        self._boundaries: deque[tuple[int, np.ndarray | None]] = deque()  # (t_us, image or None)
        self._next_end: int  # absolute index of the next window's last boundary (set by _forget_boundaries)
        self._previous_end_t: int | None  # the last window's last boundary, None before one since a switch
        self._chunks: deque[_Chunk] = deque()
        self._recent: deque[tuple[np.ndarray, ...]] = deque(maxlen=DUPLICATE_MEMORY)  # the last events packets
        self._last_received = 0.0
        self._finished = False
        self._start_over()

    def _start_over(self) -> None:
        """The state of a new stream (the counts and notices said are kept)."""
        self.frame_mode = self.expect_frames
        self._forget_boundaries()
        self._chunks.clear()
        self._recent.clear()
        self._first_event_t: int | None = None
        self._max_event_t: int | None = None
        self._last_frame_t: int | None = None
        self._last_frame_received: float | None = None
        self._last_events_received: float | None = None
        self._first_received: float | None = None  # the first packet's receive time since the (re)start

    def restart(self) -> int:
        """Start again from the next packet, as at the start of a stream (after a gap, or when the
        clock went back): no window spans the restart. Returns the windows dropped: those whose
        last boundary was in but that were not complete yet."""
        dropped = self._pending_windows()
        self._start_over()
        self.restarts += 1
        return dropped

    def _say_once(self, key: str, message: str) -> None:
        if key not in self._said:
            self._said.add(key)
            self.notify(message)

    # ------------------------------------------------------------------ packets in
    def add_events(self, t: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray, received: float) -> None:
        """One packet of events (t int64 microseconds, sorted; x, y pixels; p +1/-1)."""
        self._last_received = received
        if self._first_received is None:
            self._first_received = received
        if self._last_frame_received is None:
            self._last_frame_received = received  # the frame timeout starts with the stream
        if len(t) == 0:
            return
        if np.any(t[1:] < t[:-1]):  # a packet out of time order: sort it, as read_aedat4 sorts a file
            order = np.argsort(t, kind="stable")
            t, x, y, p = t[order], x[order], y[order], p[order]
        if self._max_event_t is not None and t[0] <= self._max_event_t:  # overlaps what came: a repeat, or a reset
            if self._max_event_t - t[0] > self.clock_jump_us:
                self._clock_went_back("event", self._max_event_t - int(t[0]))
                self._first_received = self._last_frame_received = received  # as at the start of a stream
            elif any(
                len(t) == len(old[0]) and all(np.array_equal(a, b) for a, b in zip((t, x, y, p), old))
                for old in self._recent
            ):
                self.duplicates += 1
                self._say_once(
                    "duplicate",
                    "a duplicated events packet (the same events again): dropped; later "
                    "ones are dropped without a notice and counted",
                )
                return
        self._recent.append((t, x, y, p))
        self._last_events_received = received
        self._chunks.append(_Chunk(t, x, y, p, received))
        if self._first_event_t is None:
            self._first_event_t = int(t[0])
        self._max_event_t = int(t[-1]) if self._max_event_t is None else max(self._max_event_t, int(t[-1]))
        if self.frame_mode and self.expect_frames and self._frames_missing(received):
            self._switch_to_ticks()
        if not self.frame_mode:
            self._add_ticks()
        elif not self._boundaries:  # nothing to hold the events yet: keep EVENT_HORIZON_US of them
            self._drop_events_before(self._max_event_t - EVENT_HORIZON_US)

    def add_frame(self, image: np.ndarray, t_us: int, received: float) -> None:
        """One APS frame (uint8 (H, W) or (H, W, 3)) with its start of exposure, microseconds."""
        self._last_received = received
        t_us = int(t_us)
        if self._last_frame_t is not None and self._last_frame_t - t_us > self.clock_jump_us:
            self._clock_went_back("frame", self._last_frame_t - t_us)
        if self._first_received is None:
            self._first_received = received
        self._last_frame_received = received
        if self._last_frame_t is not None and t_us <= self._last_frame_t:
            self.frames_ignored += 1
            return
        self._last_frame_t = t_us
        if not self.frame_mode:
            if self._boundaries and t_us <= self._boundaries[-1][0]:
                return  # inside event-only windows already cut
            self.frame_mode = True
            self._forget_boundaries()
            self.notify("APS frames again: windows of APS frames and events")
        self._boundaries.append((t_us, image))

    def _clock_went_back(self, what: str, by_us: int) -> None:
        dropped = self.restart()
        self.clock_jumps += 1
        self.notify(
            f"{what} timestamps went back {by_us / 1e6:.3f} s (a camera reset or a DV restart): the window "
            f"restarts ({dropped} window{'s' if dropped != 1 else ''} dropped)"
        )

    def finish(self) -> None:
        """The stream has ended: every event there will be is in."""
        self._finished = True

    # ------------------------------------------------------------------ windows out
    def pop_ready(self) -> list[Window]:
        """The windows completed since the last call, oldest first."""
        ready = []
        while True:
            end = self._due_end()
            if end is None or not self._complete(end):
                break
            ready.append(self._window(end))
            self.windows_emitted += 1
            self._advance(end)
        return ready

    def _due_end(self) -> int | None:
        """Absolute index of the next window's last boundary, if that boundary exists yet."""
        return self._end_after(self._next_end, self._previous_end_t)

    def _end_after(self, next_end: int, previous_end_t: int | None) -> int | None:
        """The last boundary of the window due after one that left `next_end` and ended at
        `previous_end_t` (the hop's rule), if that boundary exists yet."""
        last = self._first + len(self._boundaries) - 1
        if self.hop_us is None or previous_end_t is None:
            return next_end if next_end <= last else None
        for index in range(next_end, last + 1):
            if self._boundaries[index - self._first][0] - previous_end_t >= self.hop_us:
                return index
        return None

    def _step(self, end: int) -> tuple[int, int]:
        """(next_end, previous_end_t) once the window ending at boundary `end` is emitted."""
        return end + (1 if self.hop_us is not None else self.hop_frames), self._boundaries[end - self._first][0]

    def _complete(self, end: int) -> bool:
        t_end = self._boundaries[end - self._first][0]
        if self._finished or (self._max_event_t is not None and self._max_event_t >= t_end):
            return True
        return self.frame_mode and self._events_silent()

    def _events_silent(self) -> bool:
        """Frames have run event_timeout_us past the newest event (or the first frame), and, with
        frame_timeout_s, that long in receive time without an events packet."""
        reference = self._max_event_t if self._max_event_t is not None else self._boundaries[0][0]
        if self._boundaries[-1][0] - reference < self.event_timeout_us:
            return False
        since = self._last_events_received if self._last_events_received is not None else self._first_received
        assert since is not None, "a boundary is in, so a packet came since the (re)start"
        if self.frame_timeout_s is not None and self._last_received - since < self.frame_timeout_s:
            return False
        self._say_once(
            "silent",
            f"no events for {self.event_timeout_us / 1e6:g} s of APS frames: windows of frames "
            "alone (blank event images)",
        )
        return True

    def _pending_windows(self) -> int:
        """Windows whose last boundary is in but that are not complete yet."""
        count, next_end, previous = 0, self._next_end, self._previous_end_t
        while (end := self._end_after(next_end, previous)) is not None:
            count += 1
            next_end, previous = self._step(end)
        return count

    def _window(self, end: int) -> Window:
        picked = [self._boundaries[i - self._first] for i in range(end - self.num_frames, end + 1)]
        boundaries = np.array([t for t, _ in picked], dtype=np.int64)
        frames: np.ndarray | None = None
        if picked[0][1] is not None:
            images = [image for _, image in picked if image is not None]
            assert len(images) == len(picked), "windows never mix APS frames and virtual frame times"
            frames = np.stack(images)
        t_start, t_end = int(boundaries[0]), int(boundaries[-1])
        chunks = [c for c in self._chunks if c.t[-1] >= t_start and c.t[0] < t_end]
        packets = tuple((c.t, c.x, c.y, c.p) for c in chunks)
        if any(b.t[0] < a.t[-1] for a, b in zip(chunks, chunks[1:])):  # packets out of order: merge them
            t, x, y, p = (np.concatenate([getattr(c, name) for c in chunks]) for name in "txyp")
            order = np.argsort(t, kind="stable")  # as read_aedat4 sorts a file's events
            packets = ((t[order], x[order], y[order], p[order]),)
        window = Window(
            self.windows_emitted, boundaries, frames, 0.0, self._last_received, (self.width, self.height), packets
        )
        last_event = max(c.received for c in chunks) if window.num_events else self._last_received
        return replace(window, last_event_received=last_event)

    def _advance(self, end: int) -> None:
        """Move on past the window ending at `end`: drop boundaries and events no later window needs."""
        self._next_end, self._previous_end_t = self._step(end)
        keep_from = self._next_end - self.num_frames  # the next window's first boundary
        while self._first < keep_from and self._boundaries:
            self._boundaries.popleft()
            self._first += 1
        if self._boundaries:
            self._drop_events_before(self._boundaries[0][0])

    def _drop_events_before(self, t_us: int) -> None:
        while self._chunks and self._chunks[0].t[-1] < t_us:
            self._chunks.popleft()

    # ------------------------------------------------------------------ event-only mode
    def _frames_missing(self, now: float) -> bool:
        assert self._max_event_t is not None, "add_events asks after its first event"
        if self._max_event_t - self._tick_origin() < self.frame_timeout_us:
            return False
        if self.frame_timeout_s is None:
            return True
        assert self._last_frame_received is not None, "add_events sets it, at the start and after a restart"
        return now - self._last_frame_received >= self.frame_timeout_s

    def _tick_origin(self) -> int:
        """Where event-only boundaries start: the last frame, or the first event without one."""
        start = self._last_frame_t if self._last_frame_t is not None else self._first_event_t
        assert start is not None, "asked by add_events after its first event"
        return start

    def _switch_to_ticks(self) -> None:
        start = self._tick_origin()
        self.frame_mode = False
        self._forget_boundaries()
        self._boundaries.append((start, None))
        what = "no APS frame" if self._last_frame_t is None else "no new APS frame"
        self._say_once(
            "event-only",
            f"{what} for {self.frame_timeout_us / 1e6:g} s of events: event-only windows of "
            f"{self.num_frames} x {self.frame_period_us / 1000:g} ms",
        )

    def _add_ticks(self) -> None:
        assert self._first_event_t is not None and self._max_event_t is not None, "called by add_events after an event"
        if not self._boundaries:
            self._boundaries.append((self._first_event_t, None))
        t = self._boundaries[-1][0] + self.frame_period_us
        while t <= self._max_event_t:
            self._boundaries.append((t, None))
            t += self.frame_period_us

    def _forget_boundaries(self) -> None:
        """Forget the boundaries (a mode switch): the next window starts from the next boundary."""
        self._first += len(self._boundaries)
        self._boundaries.clear()
        self._next_end = self._first + self.num_frames
        self._previous_end_t = None
