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

    def __init__(
        self, path: str | Path, *, frames: bool = True, compression: str = "NONE", source: str = "DAVIS346_TEST"
    ):
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


def network_header(type_id: str, width: int, height: int) -> bytes:
    """The IOHeader a NetworkWriter sends for one stream of this type ("EVTS", "FRME") and size."""
    make = dv.io.Stream.EventStream if type_id == "EVTS" else dv.io.Stream.FrameStream
    port = free_port()
    server = dv.io.NetworkWriter("127.0.0.1", port, make(0, "s", "TEST", (width, height)))
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        data = b""
        while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "little"):
            data += sock.recv(1 << 16)
    finally:
        sock.close()
        wait_until(lambda: server.getClientCount() == 0)
    return data


class BytesServer:
    """A TCP server on loopback that sends `data` to its first client, then closes the connection
    (close=True) or keeps it open without sending anything more (a stalled sender). With
    `pause_at`, it sends the first pause_at bytes, waits until `resume()`, then the rest. With
    `trickle_from`, it sends the first trickle_from bytes, then one byte every `trickle_s` seconds.
    `data` may be a list: one session per client, in the order they connect (a server that comes
    back after a restart); after the last session it accepts no one."""

    def __init__(
        self,
        data: bytes | list[bytes],
        *,
        close: bool = True,
        pause_at: int | None = None,
        trickle_from: int | None = None,
        trickle_s: float = 0.05,
    ):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.sessions = data if isinstance(data, list) else [data]
        self.close_after, self.pause_at = close, pause_at
        self.trickle_from, self.trickle_s = trickle_from, trickle_s
        self.clients = 0
        self._done, self._resume = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        for data in self.sessions:
            try:
                client, _ = self.sock.accept()
            except OSError:  # closed
                return
            self.clients += 1
            with client:
                try:
                    self._send(client, data)
                except OSError:  # the client left
                    continue
                if not self.close_after:
                    self._wait_for_leave(client)
        self.sock.close()

    def _wait_for_leave(self, client: socket.socket) -> None:
        """Keep the connection open, silent, until the client leaves or the server closes."""
        client.settimeout(0.05)
        while not self._done.is_set():
            try:
                if not client.recv(1 << 16):
                    return
            except TimeoutError:
                continue
            except OSError:
                return

    def _send(self, client: socket.socket, data: bytes) -> None:
        if self.pause_at is not None:
            client.sendall(data[: self.pause_at])
            self._resume.wait(30)
            client.sendall(data[self.pause_at :])
        elif self.trickle_from is not None:
            client.sendall(data[: self.trickle_from])
            for k in range(self.trickle_from, len(data)):
                if self._done.wait(self.trickle_s):
                    return
                client.sendall(data[k : k + 1])
        else:
            client.sendall(data)

    def resume(self) -> None:
        self._resume.set()

    def close(self) -> None:
        self._done.set()
        self._resume.set()
        try:
            self.sock.close()
        except OSError:
            pass
        self.thread.join(5)


class WriterProcess:
    """dv-processing NetworkWriters for the events and frames of an .aedat4 recording in a child
    process on given ports, as DV serves them: killing it (`kill`) is a DV that crashed or was
    restarted, and a new WriterProcess on the same ports is DV back.

    `packets`: (timestamp, kind) of the recording's event batches and frames in the order they are
    sent; `send(a, b)` sends packets a..b-1 and returns when the writers have sent them.
    """

    def __init__(self, path: str | Path, ports: dict[str, int]):
        import json
        import subprocess
        import sys

        self.ports = ports
        self.process = subprocess.Popen(
            [sys.executable, __file__, str(path), str(ports["events"]), str(ports["frames"])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the writer process did not start")
        self.packets = [tuple(p) for p in json.loads(line)]

    def _command(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline().strip()
        if answer != "ok":
            raise RuntimeError(f"the writer process answered {answer!r} to {line!r}")

    def wait_for_clients(self) -> None:
        self._command("wait")

    def send(self, start: int, stop: int) -> None:
        self._command(f"send {start} {stop}")

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self.process.stdin.close()
        self.process.stdout.close()


def _serve(path: str, events_port: int, frames_port: int) -> None:
    """The child of WriterProcess: commands on stdin ("wait", "send A B"), "ok" on stdout."""
    import json
    import os
    import sys

    recording = dv.io.MonoCameraRecording(path)
    streams = {
        "events": dv.io.Stream.EventStream(0, "events", "DAVIS_TEST", recording.getEventResolution()),
        "frames": dv.io.Stream.FrameStream(0, "frames", "DAVIS_TEST", recording.getFrameResolution()),
    }
    ports = {"events": events_port, "frames": frames_port}
    writers = {kind: dv.io.NetworkWriter("127.0.0.1", ports[kind], stream) for kind, stream in streams.items()}
    packets = []
    while (batch := recording.getNextEventBatch()) is not None:
        packets.append((batch.getLowestTime(), 0, "events", batch))
    while (frame := recording.getNextFrame()) is not None:
        packets.append((frame.timestamp, 1, "frames", frame))
    packets.sort(key=lambda p: p[:2])
    print(json.dumps([(t, kind) for t, _, kind, _ in packets]), flush=True)
    for line in sys.stdin:
        command = line.split()
        if command[0] == "wait":
            wait_until(lambda: all(w.getClientCount() >= 1 for w in writers.values()), timeout=30, what="clients")
        elif command[0] == "send":
            for _, _, kind, data in packets[int(command[1]) : int(command[2])]:
                writer = writers[kind]
                writer.writeEvents(data) if kind == "events" else writer.writeFrame(data)
                # one at a time: a NetworkWriter drops packets when its queue is full
                wait_until(lambda writer=writer: writer.getQueuedPacketCount() == 0, what="the packet to be sent")
        print("ok", flush=True)
    os._exit(0)  # a NetworkWriter waits for its clients to leave when dropped: this one does not wait


if __name__ == "__main__":
    import sys

    _serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
