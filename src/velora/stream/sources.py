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
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from velora.errors import DataError, VeloraError
from velora.events.aedat4 import Recording, frame_uint8
from velora.events.readers import SUFFIXES, read_aedat4, read_events, require_events
from velora.stream.dvnet import EVENTS_ID, FRAME_ID, Connection, EventBatch, Frame, ProtocolError

TCP_PREFIX, CAMERA_PREFIX = "tcp://", "camera:"
CONNECT_TIMEOUT_S = 5.0


class SourceError(VeloraError, RuntimeError):
    """A stream source cannot be opened, stalled, or broke: the message says which and what to do."""


@dataclass(frozen=True)
class Packet:
    """One packet of a stream: kind "events" (data: EventBatch) or "frame" (data: Frame)."""

    kind: str
    data: EventBatch | Frame
    received: float  # time.perf_counter() seconds

    @property
    def last_timestamp_us(self) -> int:
        if self.kind == "frame":
            return self.data.timestamp_us
        return int(self.data.t[-1]) if len(self.data.t) else -1


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

    def next(self, timeout: float) -> Packet | None:
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
        raise DataError(f"{path}: cannot replay a '{path.suffix}' file; give an .aedat4 recording or an event file "
                        f"({', '.join(sorted(SUFFIXES))})")
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
    schedule = []
    if len(events):
        edges = np.arange(events.t[0], events.t[-1] + packet_us + 1, packet_us, dtype=np.int64)
        bounds = np.searchsorted(events.t, edges, side="left")
        for stop_us, start, stop in zip(edges[1:].tolist(), bounds[:-1].tolist(), bounds[1:].tolist()):
            if stop > start:
                part = slice(start, stop)
                batch = EventBatch(events.t[part], events.x[part], events.y[part], events.p[part])
                schedule.append((stop_us, 0, "events", batch))
    for image, start, exposure in zip(recording.aps_frames, recording.frame_timestamps_us.tolist(),
                                      recording.frame_exposure_us.tolist()):
        schedule.append((start + exposure, 1, "frame", Frame(image, start, exposure)))
    schedule.sort(key=lambda entry: entry[:2])  # by release time, events before a frame released with them
    return [(release, kind, data) for release, _, kind, data in schedule]


# ---------------------------------------------------------------------------------- threaded sources
@dataclass(frozen=True)
class _End:
    """Put on the queue by a reader thread when its input ends. what: the input, for messages;
    error: None for a clean end; events: the input carried the events (their end ends the stream)."""

    what: str
    error: str | None
    events: bool


class _QueuedSource(Source):
    """Reader threads put packets on one queue; next() takes them off and watches for stalls."""

    live = True

    def __init__(self, name: str, readers: int):
        self.name = name
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._open_readers = readers

    def next(self, timeout: float) -> Packet | None:
        while True:
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                raise SourceError(
                    f"{self.name}: nothing received for {timeout:g} s (--timeout); the sender stalled, paused or "
                    "lost its network"
                ) from None
            if isinstance(item, Packet):
                return item
            self._open_readers -= 1
            if item.error:
                raise SourceError(f"{item.what}: {item.error}")
            if item.events or self._open_readers == 0:
                self.notify(f"{item.what}: the stream ended")
                return None
            self.notify(f"{item.what}: the stream ended; going on with events alone")

    def backlog(self) -> bool:
        return not self._queue.empty()

    def _start(self, target: Callable[[], None], name: str) -> None:
        threading.Thread(target=target, name=name, daemon=True).start()


def parse_tcp(spec: str) -> list[tuple[str, int]]:
    """tcp://HOST:PORT[,PORT | ,HOST:PORT ...] -> [(host, port), ...]; a bare port reuses the previous host."""
    addresses, host = [], None
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
        for connection in self.connections:
            kind = "events" if connection is self._events_connection else "frames"
            connection.what = f"tcp://{connection.address} ({kind})"
            self._start(lambda c=connection, e=kind == "events": self._read(c, e), f"velora-{kind}")

    def _read(self, connection: Connection, events: bool) -> None:
        connection.sock.settimeout(0.2)  # wake up to see a stop request; stalls are next()'s business
        while not self._stop.is_set():
            try:
                decoded, received = connection.read_packet()
            except TimeoutError:
                continue
            except EOFError:
                self._queue.put(_End(connection.what, None, events))
                return
            except ProtocolError as error:
                message = f"{error}; the stream is cut or is not DV's network stream"
                self._queue.put(_End(connection.what, message, events))
                return
            except OSError as error:
                if not self._stop.is_set():
                    self._queue.put(_End(connection.what, f"the connection broke ({error.strerror or error})", events))
                return
            except Exception as error:  # a packet that decodes into nonsense: end this input, say why
                self._queue.put(_End(connection.what, f"a packet could not be decoded ({error})", events))
                return
            if decoded is not None:
                self._queue.put(Packet("frame" if isinstance(decoded, Frame) else "events", decoded, received))

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
        return Connection(sock, address)
    except TimeoutError:
        sock.close()
        raise SourceError(f"tcp://{address}: connected, but no stream header came within {timeout:g} s; is it a DV "
                          "network server?") from None
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
    `open_camera(serial)` (injectable for tests) returns an object with dv-processing's camera API.
    """

    frames_apart = True

    def __init__(self, serial: str | None, *, open_camera: Callable | None = None):
        super().__init__(f"camera:{serial or ''}", 1)
        self.camera = (open_camera or _open_dv_camera)(serial)
        self.sensor_size = tuple(self.camera.getEventResolution())
        self.frame_size = tuple(self.camera.getFrameResolution()) if self.camera.isFrameStreamAvailable() else None
        self._start(self._poll, "velora-camera")

    def _poll(self) -> None:
        what = f"{self.name} (events)"
        try:
            while not self._stop.is_set():
                got = False
                batch = self.camera.getNextEventBatch()
                if batch is not None and len(batch):
                    received = time.perf_counter()
                    columns = batch.numpy()
                    p = np.where(columns["polarity"] > 0, 1, -1).astype(np.int8)
                    self._queue.put(Packet("events", EventBatch(columns["timestamp"].astype(np.int64),
                                                                columns["x"].astype(np.int16),
                                                                columns["y"].astype(np.int16), p), received))
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
                        self._queue.put(Packet("frame", Frame(image, int(frame.timestamp), exposure), received))
                        got = True
                if not got:
                    if not self.camera.isRunning():  # checked when idle: what it delivered is read first
                        self._queue.put(_End(what, "the camera stopped or was disconnected", True))
                        return
                    time.sleep(0.0005)
        except Exception as error:  # the driver's errors (a USB failure) end the stream with its message
            self._queue.put(_End(what, f"the camera failed ({error})", True))

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
        raise SourceError("camera: dv-processing finds no camera; connect one (and check its USB permissions), or "
                          "stream from tcp:// or a recording")
    if serial and serial not in found:
        raise SourceError(f"camera:{serial}: no camera with that serial number; connected: {', '.join(found)}")
    try:
        return dv.io.camera.open(serial) if serial else dv.io.camera.open()
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise SourceError(f"camera:{serial or ''}: dv-processing cannot open it ({first_line})") from None
