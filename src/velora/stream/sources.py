"""Where a stream comes from: a recording replayed, a DV network stream, a camera.

    open_source("recording.aedat4", realtime=True)      # a file at its own pace (or as fast as possible)
    open_source("tcp://127.0.0.1:7777,7778")            # DV network servers: events and frames
    open_source("camera:") / open_source("camera:DAVIS346_00000499")   # through dv-processing

Every source gives packets in arrival order, `Packet("events", EventBatch)` or `Packet("frame",
Frame)`, each stamped with its receive time (`time.perf_counter()` when velora's reader had its
last byte, or when a replay released it), and says what it carries (`sensor_size`, `frame_size`)
before the first packet. `next(timeout)` returns None at the end of the stream and raises
`SourceError` when nothing arrives for `timeout` seconds (a stall) or a connection breaks.

Replay timing. A recording's events are released in packets of `packet_us` (10 ms) of event
time, as DV packs a DAVIS346's events (the street recording's packets are 10 ms), each when its
last microsecond has passed; an APS frame when its exposure has ended (start of exposure +
exposure time), the earliest a camera could deliver it. With `realtime` a packet is
released when that much wall time has passed since the start; otherwise at once.

The DV network protocol (velora.stream.dvnet) carries one stream per server, so a DAVIS's events
and frames come from two ports: `tcp://host:7777,7778` (or `tcp://host:7777,host2:7778`) connects
to both and tells them apart by their headers. With only the event port, the stream is event-only.

Gaps. A live source (tcp://, camera:) that goes away once it has streamed (a DV restart, a
server that closes or resets the connection or closes it inside a packet, an unplugged camera,
or a silence of the stall timeout, which is what a pulled cable looks like) is reconnected with
backoff (0.1 s, doubling to 2 s between tries) for up to `reconnect_s` seconds; None turns
reconnecting off, and then a lost connection ends the stream as a stall or a cut does. While any
of its inputs is away the source is away: packets of its other inputs are dropped. When all are
back, `next` returns a `Gap` (what went, why, when it went and came back), so the windows restart
and none spans the gap. A second silence right after a reconnect, before any packet, is a stall
(an error). Not reconnected, but errors: bytes that break the protocol or its limits, a server
that comes back serving another stream, and a sender that trickles (bytes come, but no whole
packet within the stall timeout). A source that never connected is an error at once.

Memory. Packets wait for the loop in a queue of at most MAX_QUEUED_BYTES; a reader that finds it
full waits (TCP then slows the sender down; a camera's driver drops), so a loop that falls
behind cannot make velora's memory grow.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np

from velora.errors import DataError, VeloraError
from velora.events.aedat4 import Recording, frame_uint8
from velora.events.readers import SUFFIXES, read_aedat4, read_events, require_events
from velora.stream.dvnet import (
    EVENTS_ID,
    FRAME_ID,
    Connection,
    ConnectionLost,
    EventBatch,
    Frame,
    ProtocolError,
)

TCP_PREFIX, CAMERA_PREFIX = "tcp://", "camera:"
CONNECT_TIMEOUT_S = 5.0
FIRST_BACKOFF_S, MAX_BACKOFF_S = 0.1, 2.0
MAX_QUEUED_BYTES = 256 << 20  # packets waiting for the loop: about 20 s of a 1 Mev/s DAVIS346 stream

_Input = TypeVar("_Input")  # what a reader reopens: a Connection, a camera


class SourceError(VeloraError, RuntimeError):
    """A stream source cannot be opened, stalled, or broke: the message says which and what to do."""


class _NotTheSame(SourceError):
    """A source that came back with another stream than it had (no further try)."""


@dataclass(frozen=True)
class Packet:
    """One packet of a stream: kind "events" (data: EventBatch) or "frame" (data: Frame)."""

    kind: str
    data: EventBatch | Frame
    received: float  # time.perf_counter() seconds

    @property
    def nbytes(self) -> int:
        data = self.data
        if isinstance(data, Frame):  # kind "frame"
            return data.image.nbytes
        return sum(column.nbytes for column in (data.t, data.x, data.y, data.p))


@dataclass(frozen=True)
class Gap:
    """A live source was away: `what` went (`reason`) at `lost` and all of it was back at `back`
    (time.perf_counter() seconds). Packets sent meanwhile are lost."""

    what: str
    reason: str
    lost: float
    back: float

    @property
    def duration_s(self) -> float:
        return self.back - self.lost


class Source:
    """What every source has. name: for messages; sensor_size: (width, height) of the events;
    frame_size: (width, height) of the APS frames, None without a frame stream; live: packets come
    at the sensor's pace (a window can be late); frames_apart: frames and events travel apart, so
    frames can lag behind events (two connections, a camera's two queues)."""

    name: str
    sensor_size: tuple[int, int]
    frame_size: tuple[int, int] | None
    live: bool = True
    frames_apart: bool = False
    notify: Callable[[str], None] = staticmethod(lambda message: None)  # notices (run_stream sets its own)
    reconnect_s: float | None = None  # live sources: how long to try to get a lost source back (run_stream sets it)

    def next(self, timeout: float) -> Packet | Gap | None:
        raise NotImplementedError

    def backlog(self) -> bool:
        """Whether another packet is already waiting (then a window ready now is already late)."""
        return False

    def close(self) -> None:
        """Stop reading and release sockets, threads, the camera."""


def open_source(spec: str, *, realtime: bool = False) -> Source:
    """The source a command-line SOURCE names: a recording file, tcp://..., or camera:[serial]."""
    if spec.startswith(TCP_PREFIX):
        return TcpSource(parse_tcp(spec))
    if spec.startswith(CAMERA_PREFIX):
        return CameraSource(spec[len(CAMERA_PREFIX) :] or None)
    path = Path(spec)
    if not path.is_file():
        raise SourceError(
            f"stream source '{spec}' is neither a recording file, nor tcp://HOST:PORT[,PORT], nor camera:[SERIAL]"
        )
    return RecordingReplay(read_recording(path), str(path), realtime=realtime)


def read_recording(path: Path) -> Recording:
    """A recording file to replay: an .aedat4 with its APS frames, or any event file, events only."""
    if path.suffix.lower() == ".aedat4":
        return read_aedat4(path)
    if path.suffix.lower() not in SUFFIXES:
        raise DataError(
            f"{path}: cannot replay a '{path.suffix}' file; give an .aedat4 recording or an event file "
            f"({', '.join(sorted(SUFFIXES))})"
        )
    events = require_events(read_events(path), path)
    empty = np.zeros(0, dtype=np.int64)
    return Recording(events, np.zeros((0, events.height, events.width), dtype=np.uint8), empty, empty, path)


# ---------------------------------------------------------------------------------- replay
class RecordingReplay(Source):
    """A decoded recording replayed packet by packet, at its own pace (`realtime`) or at once.

    packet_us: event time per events packet. clock/sleep: injectable for tests.
    """

    frames_apart = False

    def __init__(
        self,
        recording: Recording,
        name: str,
        *,
        realtime: bool = False,
        packet_us: int = 10_000,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ):
        events = recording.events
        self.name, self.live = name, realtime
        self.sensor_size = (events.width, events.height)
        frames = recording.aps_frames
        self.frame_size = (frames.shape[2], frames.shape[1]) if len(frames) else None
        self.clock, self.sleep = clock, sleep
        self._schedule = _replay_schedule(recording, packet_us)
        self._position = 0
        self._origin_wall: float | None = None
        self._origin_us = self._schedule[0][0] if self._schedule else 0

    def _due(self, release_us: int) -> float:
        assert self._origin_wall is not None, "set by the first next(); backlog() is asked after one"
        return self._origin_wall + (release_us - self._origin_us) / 1e6

    def next(self, timeout: float) -> Packet | None:
        if self._position >= len(self._schedule):
            return None
        release_us, kind, data = self._schedule[self._position]
        self._position += 1
        if self._origin_wall is None:
            self._origin_wall = self.clock()
        if not self.live:
            return Packet(kind, data, self.clock())
        due = self._due(release_us)
        wait = due - self.clock()
        if wait > 0:
            self.sleep(wait)
        return Packet(kind, data, due)  # it reached the process at its release, even if the loop was busy

    def backlog(self) -> bool:
        if not self.live or self._position >= len(self._schedule):
            return False
        return self._due(self._schedule[self._position][0]) <= self.clock()


def _replay_schedule(recording: Recording, packet_us: int) -> list[tuple[int, str, EventBatch | Frame]]:
    """(release time in microseconds, kind, data) of every packet, in release order."""
    events = recording.events
    schedule: list[tuple[int, int, str, EventBatch | Frame]] = []
    if len(events):
        edges = np.arange(events.t[0], events.t[-1] + packet_us + 1, packet_us, dtype=np.int64)
        bounds = np.searchsorted(events.t, edges, side="left")
        for stop_us, start, stop in zip(edges[1:].tolist(), bounds[:-1].tolist(), bounds[1:].tolist()):
            if stop > start:
                part = slice(start, stop)
                batch = EventBatch(events.t[part], events.x[part], events.y[part], events.p[part])
                schedule.append((stop_us, 0, "events", batch))
    for image, start, exposure in zip(
        recording.aps_frames, recording.frame_timestamps_us.tolist(), recording.frame_exposure_us.tolist()
    ):
        schedule.append((start + exposure, 1, "frame", Frame(image, start, exposure)))
    schedule.sort(key=lambda entry: entry[:2])  # by release time, events before a frame released with them
    return [(release, kind, data) for release, _, kind, data in schedule]


# ---------------------------------------------------------------------------------- threaded sources
@dataclass(frozen=True)
class _End:
    """Put on the queue by a reader thread when its input ends. what: the input, for messages;
    error: None for a clean end; events: the input carried the events (their end ends the stream);
    note: said with a clean end."""

    what: str
    error: str | None
    events: bool
    note: str = ""


@dataclass(frozen=True)
class _Lost:
    """Put on the queue by a reader whose input went; it is reconnecting."""

    what: str
    reason: str
    at: float


@dataclass(frozen=True)
class _Back:
    """Put on the queue by a reader whose input is back."""

    what: str
    at: float


class _QueuedSource(Source):
    """Reader threads put packets on one queue; next() takes them off, watches for stalls, and
    turns the readers' reports of inputs lost and back into Gaps."""

    live = True

    def __init__(self, name: str, readers: int):
        self.name = name
        self._queue: queue.Queue = queue.Queue()
        self._space = threading.Condition()
        self._queued_bytes = 0
        self._stop = threading.Event()
        self._readers: list[threading.Thread] = []  # started by the first next()
        self._open_readers = readers
        self._away: dict[str, _Lost] = {}  # inputs lost and being reconnected
        self._gap: _Lost | None = None  # the first input lost of the current gap
        self._silence_asked = 0  # silences taken for a lost connection: each reader reconnects once per silence
        self._silence_answered = 0  # the silences a reader answered by reporting its input lost
        self._silence_reconnected = False  # a silence was taken for a lost connection, and no packet came since

    def next(self, timeout: float) -> Packet | Gap | None:
        while self._readers:
            self._readers.pop().start()
        while True:
            waiting = self._away or self._silence_asked > self._silence_answered
            progress = self._progress()
            try:
                # while an input is away, its reader's reconnect limit applies, not the stall timeout
                item = self._queue.get(timeout=0.5 if waiting else timeout)
            except queue.Empty:
                if not waiting:
                    self._silence(timeout, progress)
                continue
            if isinstance(item, Packet):
                with self._space:
                    self._queued_bytes -= item.nbytes
                    self._space.notify_all()
                if self._away:
                    continue  # the source is away until all its inputs are back
                self._silence_reconnected = False
                return item
            if isinstance(item, _Lost):
                self._silence_answered = self._silence_asked
                if not self._away:
                    self._gap = item
                    self.notify(f"{item.what}: lost ({item.reason}); reconnecting for up to {self.reconnect_s:g} s")
                self._away[item.what] = item
                continue
            if isinstance(item, _Back):
                self._away.pop(item.what, None)
                if not self._away:
                    return self._gap_until(item.at)
                continue
            self._open_readers -= 1
            was_away = self._away.pop(item.what, None)
            if item.error:
                raise SourceError(f"{item.what}: {item.error}")
            if item.events or self._open_readers == 0:
                self.notify(f"{item.what}: the stream ended{item.note}")
                return None
            self.notify(f"{item.what}: the stream ended{item.note}; going on with events alone")
            if was_away is not None and not self._away:
                return self._gap_until(time.perf_counter())

    def _gap_until(self, back: float) -> Gap:
        """The Gap that ends at `back`, now that every input is back."""
        assert self._gap is not None, "an input was away, so the gap's first _Lost came"
        return Gap(self._gap.what, self._gap.reason, self._gap.at, back)

    def _silence(self, timeout: float, progress: tuple) -> None:
        """Nothing for `timeout` seconds: a sender that trickles or stalled (errors), or a lost
        connection that did not say so (reconnected, once). `progress`: _progress() before the wait."""
        trickle = self._trickle(progress)
        if trickle:
            raise SourceError(
                f"{trickle}; no whole packet for {timeout:g} s (--timeout): the sender trickles or the stream is broken"
            )
        if self.reconnect_s and not self._silence_reconnected:
            self._silence_reconnected = True
            self._silence_asked += 1  # every reader reconnects
            return
        again = " again after reconnecting" if self._silence_reconnected else ""
        raise SourceError(
            f"{self.name}: nothing received for {timeout:g} s (--timeout){again}; the sender stalled, paused or "
            "lost its network"
        )

    def _progress(self) -> tuple:
        """Bytes received so far per input (inputs that count bytes: TCP connections)."""
        return ()

    def _trickle(self, progress: tuple) -> str | None:
        """How an input whose packet is partly in and grew since `progress` trickles, if one does."""
        return None

    def _put(self, packet: Packet) -> None:
        """Queue a packet for next(); wait while the queue holds MAX_QUEUED_BYTES (until stop)."""
        with self._space:
            while self._queued_bytes > MAX_QUEUED_BYTES and not self._stop.is_set():
                self._space.wait(0.2)
            self._queued_bytes += packet.nbytes
        self._queue.put(packet)

    def _reconnect(
        self, what: str, reason: str, open_input: Callable[[float], _Input]
    ) -> tuple[_Input | None, str, bool]:
        """Report `what` lost and try `open_input(timeout)` with backoff for up to reconnect_s
        seconds (a SourceError from it means: not yet). Returns (what it opened, or None when
        stopped, not back in time or back with another stream; the last reason it was not; whether
        it came back with another stream)."""
        assert self.reconnect_s is not None, "readers reconnect only with reconnect_s set"
        self._queue.put(_Lost(what, reason, time.perf_counter()))
        deadline = time.monotonic() + self.reconnect_s
        backoff = FIRST_BACKOFF_S
        while not self._stop.wait(min(backoff, max(0.0, deadline - time.monotonic()))):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                return open_input(min(CONNECT_TIMEOUT_S, left)), reason, False
            except _NotTheSame as error:
                return None, str(error), True
            except SourceError as error:
                reason = str(error)
            backoff = min(2 * backoff, MAX_BACKOFF_S)
        return None, reason, False

    def _gave_up(self, what: str, reason: str, clean: bool, events: bool, other_stream: bool) -> None:
        """A reader's input did not come back, or came back with another stream: a clean close that
        stayed closed ends it, anything else is an error."""
        if self._stop.is_set():
            return
        if other_stream:
            self._queue.put(_End(what, reason, events))
        elif clean:
            self._queue.put(_End(what, None, events, f" (closed, and not back within {self.reconnect_s:g} s)"))
        else:
            self._queue.put(
                _End(what, f"lost and not back within {self.reconnect_s:g} s (--reconnect): {reason}", events)
            )

    def _start(self, target: Callable[[], None], name: str) -> None:
        """Read with `target` in a thread from the first next() on, when run_stream has set the
        source's notify and reconnect_s."""
        self._readers.append(threading.Thread(target=target, name=name, daemon=True))


def parse_tcp(spec: str) -> list[tuple[str, int]]:
    """tcp://HOST:PORT[,PORT | ,HOST:PORT ...] -> [(host, port), ...]; a bare port reuses the previous host."""
    addresses: list[tuple[str, int]] = []
    host: str | None = None
    name: str | None
    for part in spec[len(TCP_PREFIX) :].split(","):
        part = part.strip()
        name, colon, port = part.rpartition(":")
        if not colon:
            name, port = host, part
        name = name.strip("[]") if name else name  # [::1]:7777
        if not name or not port.isdecimal() or not 0 < int(port) < 65536:
            raise SourceError(
                f"'{spec}': give tcp://HOST:PORT, or two servers (events and frames) as tcp://HOST:PORT,PORT "
                f"or tcp://HOST:PORT,HOST:PORT; '{part}' is not HOST:PORT or PORT"
            )
        host = name
        addresses.append((name, int(port)))
    return addresses


class TcpSource(_QueuedSource):
    """DV network servers (velora.stream.dvnet): one for the events, optionally one for the frames.

    Connects to every address and reads its header before returning, so a refused port, a server
    that speaks another protocol, or two event streams are reported before anything is predicted.
    """

    frames_apart = True

    def __init__(self, addresses: list[tuple[str, int]], *, connect_timeout: float = CONNECT_TIMEOUT_S):
        super().__init__(TCP_PREFIX + ",".join(f"{h}:{p}" for h, p in addresses), len(addresses))
        self.connections: list[Connection] = []
        try:
            for host, port in addresses:
                self.connections.append(_connect(host, port, connect_timeout))
        except BaseException:
            self.close()
            raise
        kinds = {c.address: [s.type_id for s in c.header.streams.values()] for c in self.connections}
        events = [c for c in self.connections if EVENTS_ID in kinds[c.address]]
        frames = [c for c in self.connections if FRAME_ID in kinds[c.address]]
        if len(events) != 1 or len(frames) > 1:
            self.close()
            found = "; ".join(f"{address}: {', '.join(types)}" for address, types in kinds.items())
            raise SourceError(
                f"{self.name}: need exactly one event stream and at most one frame stream, found {found}; give "
                "the port of the events output and, for APS frames, the port of the frames output"
            )
        self._events_connection = events[0]
        info = _stream(events[0], EVENTS_ID)
        self.sensor_size = (info.width, info.height)
        self.frame_size = None
        if frames:
            frame_info = _stream(frames[0], FRAME_ID)
            self.frame_size = (frame_info.width, frame_info.height)
        self._addresses = {connection.address: address for connection, address in zip(self.connections, addresses)}
        for index, connection in enumerate(self.connections):
            kind = "events" if connection is self._events_connection else "frames"
            connection.what = f"tcp://{connection.address} ({kind})"
            self._start(partial(self._read, index, kind == "events"), f"velora-{kind}")

    def _read(self, index: int, events: bool) -> None:
        connection = self.connections[index]
        connection.sock.settimeout(0.2)  # wake up to see a stop request; stalls are next()'s business
        silences = self._silence_asked
        while not self._stop.is_set():
            if self._silence_asked > silences:
                silences = self._silence_asked
                reason, clean = "nothing received for the stall timeout", False
            else:
                try:
                    decoded, received = connection.read_packet()
                except TimeoutError:
                    continue
                except EOFError:
                    reason, clean = "the server closed the connection", True
                except ConnectionLost as error:
                    reason, clean = str(error), False
                except ProtocolError as error:
                    message = f"{error}; the stream is cut or is not DV's network stream"
                    self._queue.put(_End(connection.what, message, events))
                    return
                except OSError as error:
                    if self._stop.is_set():
                        return
                    reason, clean = f"the connection broke ({error.strerror or error})", False
                except Exception as error:  # a packet that decodes into nonsense: end this input, say why
                    self._queue.put(_End(connection.what, f"a packet could not be decoded ({error})", events))
                    return
                else:
                    if decoded is not None:
                        self._put(Packet("frame" if isinstance(decoded, Frame) else "events", decoded, received))
                    continue
            if not self.reconnect_s:  # the connection's end is the stream's, as without reconnecting
                if not clean:
                    reason = f"{reason}; the stream is cut or is not DV's network stream"
                self._queue.put(_End(connection.what, None if clean else reason, events))
                return
            connection.close()
            again, reason, other_stream = self._reconnect(
                connection.what, reason, partial(self._connect_again, connection)
            )
            if again is None:
                self._gave_up(connection.what, reason, clean, events, other_stream)
                return
            self.connections[index] = connection = again
            connection.sock.settimeout(0.2)
            silences = self._silence_asked
            self._queue.put(_Back(connection.what, time.perf_counter()))
        connection.close()  # one opened while close() ran

    def _connect_again(self, old: Connection, timeout: float) -> Connection:
        """A new connection to the server of `old`, which must serve the streams it served."""
        host, port = self._addresses[old.address]
        connection = _connect(host, port, timeout)
        before = [(s.type_id, s.width, s.height) for s in old.header.streams.values()]
        now = [(s.type_id, s.width, s.height) for s in connection.header.streams.values()]
        if now != before:
            connection.close()
            raise _NotTheSame(f"tcp://{old.address} came back serving {now} (type, width, height), not {before}")
        connection.what = old.what
        return connection

    def _progress(self) -> tuple:
        return tuple(connection.bytes_received for connection in self.connections)

    def _trickle(self, progress: tuple) -> str | None:
        for connection, before in zip(self.connections, progress):
            partial = connection.partial_packet()
            if partial and connection.bytes_received > before:
                return f"{connection.what}: {partial[0]:,} of a {partial[1]:,}-byte packet arrived in pieces"
        return None

    def close(self) -> None:
        self._stop.set()
        for connection in self.connections:
            connection.close()


def _stream(connection: Connection, type_id: str):
    info = next(s for s in connection.header.streams.values() if s.type_id == type_id)
    if not info.width or not info.height:
        raise SourceError(f"tcp://{connection.address}: its {type_id} stream does not declare its size (sizeX, sizeY)")
    return info


def _connect(host: str, port: int, timeout: float) -> Connection:
    address = f"{host}:{port}"
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError:
        raise SourceError(
            f"tcp://{address}: connection refused; no server listens on that port. Start the sender first "
            "(DV's TCP output or dv-processing's NetworkWriter) and check the port"
        ) from None
    except TimeoutError:
        raise SourceError(
            f"tcp://{address}: no answer within {timeout:g} s; check the host, the port and the network"
        ) from None
    except OSError as error:
        raise SourceError(f"tcp://{address}: cannot connect ({error.strerror or error})") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        return Connection(sock, address, header_timeout=timeout)
    except TimeoutError:
        sock.close()
        raise SourceError(
            f"tcp://{address}: connected, but no stream header came within {timeout:g} s; is it a DV network server?"
        ) from None
    except ProtocolError as error:
        sock.close()
        raise SourceError(f"tcp://{address}: {error}") from None
    except OSError as error:
        sock.close()
        raise SourceError(
            f"tcp://{address}: the connection broke while reading its header ({error.strerror or error})"
        ) from None


# ---------------------------------------------------------------------------------- camera
class CameraSource(_QueuedSource):
    """A camera through dv-processing (optional): `camera:` opens the first one, `camera:SERIAL` that one.

    One thread polls the camera's events and frames (dv-processing's frames are BGR: turned to RGB).
    `open_camera(serial)` (injectable for tests) returns an object with dv-processing's camera API;
    a camera that stops or fails is opened again with it (see Gaps, above).
    """

    frames_apart = True

    def __init__(self, serial: str | None, *, open_camera: Callable | None = None):
        super().__init__(f"camera:{serial or ''}", 1)
        self.serial, self._open_camera = serial, open_camera or _open_dv_camera
        self.camera = self._open_camera(serial)
        self.sensor_size = tuple(self.camera.getEventResolution())
        self.frame_size = tuple(self.camera.getFrameResolution()) if self.camera.isFrameStreamAvailable() else None
        self._start(self._poll, "velora-camera")

    def _poll(self) -> None:
        what = f"{self.name} (events)"
        while True:
            reason = self._read_camera()
            if reason is None:
                return
            if not self.reconnect_s:
                self._queue.put(_End(what, reason, True))
                return
            self.camera = None  # released before it is opened again (a driver may allow one handle)
            camera, last, other_stream = self._reconnect(what, reason, lambda timeout: self._open_again())
            if camera is None:
                self._gave_up(what, last, False, True, other_stream)
                return
            self.camera = camera
            self._queue.put(_Back(what, time.perf_counter()))

    def _read_camera(self) -> str | None:
        """Poll the camera until it stops or fails (returns why) or the source closes (None)."""
        silences = self._silence_asked
        try:
            while not self._stop.is_set():
                if self._silence_asked > silences:
                    return "nothing received for the stall timeout"
                got = False
                batch = self.camera.getNextEventBatch()
                if batch is not None and len(batch):
                    received = time.perf_counter()
                    columns = batch.numpy()
                    p = np.where(columns["polarity"] > 0, 1, -1).astype(np.int8)
                    self._put(
                        Packet(
                            "events",
                            EventBatch(
                                columns["timestamp"].astype(np.int64),
                                columns["x"].astype(np.int16),
                                columns["y"].astype(np.int16),
                                p,
                            ),
                            received,
                        )
                    )
                    got = True
                if self.frame_size is not None:
                    frame = self.camera.getNextFrame()
                    if frame is not None:
                        received = time.perf_counter()
                        image = frame.image
                        if image.ndim == 3 and image.shape[2] < 3:  # gray with a second channel
                            image = image[..., 0]
                        image = frame_uint8(image, bgr=True)  # OpenCV's BGR(A)
                        exposure = int(frame.exposure.total_seconds() * 1e6)
                        self._put(Packet("frame", Frame(image, int(frame.timestamp), exposure), received))
                        got = True
                if not got:
                    if not self.camera.isRunning():  # checked when idle: what it delivered is read first
                        return "the camera stopped or was disconnected"
                    time.sleep(0.0005)
        except Exception as error:  # the driver's errors (a USB failure) end the stream with its message
            return f"the camera failed ({error})"
        return None

    def _open_again(self):
        """The camera opened again, which must give what it gave before (a SourceError if not yet)."""
        try:
            camera = self._open_camera(self.serial)
        except SourceError:
            raise
        except Exception as error:  # noqa: BLE001 (the driver's errors: not back yet)
            raise SourceError(f"{self.name}: cannot open it again ({error})") from None
        frame_size = tuple(camera.getFrameResolution()) if camera.isFrameStreamAvailable() else None
        if (tuple(camera.getEventResolution()), frame_size) != (self.sensor_size, self.frame_size):
            raise _NotTheSame(
                f"{self.name} came back with events {tuple(camera.getEventResolution())} and frames "
                f"{frame_size}, not {self.sensor_size} and {self.frame_size}"
            )
        return camera

    def close(self) -> None:
        self._stop.set()


def _open_dv_camera(serial: str | None):
    try:
        import dv_processing as dv
    except ImportError:
        raise SourceError(
            "camera: sources read the camera through dv-processing, iniVation's Python bindings, which is not "
            "installed: pip install dv-processing (or stream from tcp:// or a recording)"
        ) from None
    found = [device.serialNumber for device in dv.io.camera.discover()]
    if not found:
        raise SourceError(
            "camera: dv-processing finds no camera; connect one (and check its USB permissions), or "
            "stream from tcp:// or a recording"
        )
    if serial and serial not in found:
        raise SourceError(f"camera:{serial}: no camera with that serial number; connected: {', '.join(found)}")
    try:
        return dv.io.camera.open(serial) if serial else dv.io.camera.open()
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise SourceError(f"camera:{serial or ''}: dv-processing cannot open it ({first_line})") from None
