"""DV network servers on loopback for the streaming tests: dv-processing's NetworkWriter serving a
recording (events and frames on two ports, as DV serves them), and a plain socket server that
sends given bytes (for cut, stalled or foreign streams).

A NetworkWriter's destructor waits while a client is still connected, so `DvServers.close`
waits for the clients to leave before dropping the writers.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import dv_processing as dv


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.002)


class DvServers:
    """NetworkWriters for the events and (frames=True) the APS frames of `path`, on free ports.

    compression: a dv.CompressionType name (NONE, LZ4, LZ4_HIGH, ZSTD, ZSTD_HIGH).
    """

    def __init__(self, path: str | Path, *, frames: bool = True, compression: str = "NONE",
                 source: str = "DAVIS346_TEST"):
        self.path = str(path)
        recording = dv.io.MonoCameraRecording(self.path)
        streams = {"events": dv.io.Stream.EventStream(0, "events", source, recording.getEventResolution())}
        if frames:
            streams["frames"] = dv.io.Stream.FrameStream(0, "frames", source, recording.getFrameResolution())
        self.ports, self.writers = {}, {}
        for kind, stream in streams.items():
            stream.setCompression(getattr(dv.CompressionType, compression))
            self.ports[kind] = free_port()
            self.writers[kind] = dv.io.NetworkWriter("127.0.0.1", self.ports[kind], stream)

    @property
    def address(self) -> str:
        """tcp://127.0.0.1:EVENTS[,FRAMES]"""
        return "tcp://127.0.0.1:" + ",".join(str(self.ports[k]) for k in ("events", "frames") if k in self.ports)

    def wait_for_clients(self, count: int = 1) -> None:
        wait_until(lambda: all(w.getClientCount() >= count for w in self.writers.values()), what="clients to connect")

    def send_recording(self) -> None:
        """Every event batch and frame of the recording, in time order across the two servers."""
        recording = dv.io.MonoCameraRecording(self.path)
        packets = []
        while (batch := recording.getNextEventBatch()) is not None:
            packets.append((batch.getLowestTime(), 0, "events", batch))
        while "frames" in self.writers and (frame := recording.getNextFrame()) is not None:
            packets.append((frame.timestamp, 1, "frames", frame))
        for _, _, kind, data in sorted(packets, key=lambda p: p[:2]):
            if kind == "events":
                self.writers[kind].writeEvents(data)
            else:
                self.writers[kind].writeFrame(data)

    def close(self) -> None:
        wait_until(lambda: all(w.getClientCount() == 0 for w in self.writers.values()), what="clients to leave")
        self.writers.clear()

    def __enter__(self) -> DvServers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def capture(writer: dv.io.NetworkWriter, port: int, send) -> bytes:
    """The bytes a NetworkWriter sends a client that connects, then `send()` writes, until 0.3 s of quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=0.3) as sock:
        wait_until(lambda: writer.getClientCount() == 1, what="the client")
        send()
        data = b""
        try:
            while chunk := sock.recv(1 << 20):
                data += chunk
        except TimeoutError:
            pass
    wait_until(lambda: writer.getClientCount() == 0, what="the client to leave")
    return data


class BytesServer:
    """A TCP server on loopback that sends `data` to its first client, then closes the connection
    (close=True) or keeps it open without sending anything more (a stalled sender). With
    `pause_at`, it sends the first pause_at bytes, waits until `resume()`, then the rest."""

    def __init__(self, data: bytes, *, close: bool = True, pause_at: int | None = None):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.data, self.close_after, self.pause_at = data, close, pause_at
        self._done, self._resume = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        client, _ = self.sock.accept()
        with client:
            if self.pause_at is not None:
                client.sendall(self.data[: self.pause_at])
                self._resume.wait(30)
                client.sendall(self.data[self.pause_at :])
            else:
                client.sendall(self.data)
            if not self.close_after:
                self._done.wait(30)

    def resume(self) -> None:
        self._resume.set()

    def close(self) -> None:
        self._done.set()
        self._resume.set()
        self.thread.join(5)
        self.sock.close()
