"""The sender of benchmarks/soak.py: a DAVIS346-sized stream in DV's network protocol from a
separate process, as DV serves it, that can be killed and started again (see soak.py).

Kept light (numpy and the standard library) so that a sender started again after a kill listens
within a fraction of a second; the bytes it sends are captured once, by `capture_loop` in a process
of its own, from two dv-processing NetworkWriters.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

LOOP_S = 2.0  # seconds of sensor time the sender loops over


def capture_loop(rate: int, path: str) -> None:
    """Pickle to `path` the bytes two NetworkWriters send for LOOP_S seconds of the synthetic
    recording of benchmarks/stream_bench.py at `rate` events/s: the two headers, and per packet
    (release time in us from the loop's start, stream 0 events / 1 frames, its bytes, the byte
    offsets of its timestamps). Run in a process of its own: it needs dv-processing and velora."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import dv_processing as dv

    from stream_bench import EXPOSURE_US, PACKET_US, read_header, read_packet, synthetic_recording
    from velora.stream.dvnet import EVENTS_ID, FRAME_ID

    recording = synthetic_recording(LOOP_S, rate)
    recording = type(recording)(
        recording.events.window(
            int(recording.frame_timestamps_us[0]), int(recording.frame_timestamps_us[0] + LOOP_S * 1e6)
        ),
        recording.aps_frames[:-1],
        recording.frame_timestamps_us[:-1],
        recording.frame_exposure_us[:-1],
        recording.path,
    )
    e, origin = recording.events, int(recording.frame_timestamps_us[0])
    edges = np.arange(origin, origin + int(LOOP_S * 1e6) + 1, PACKET_US)
    bounds = np.searchsorted(e.t, edges)
    todo = []
    for stop_us, a, b in zip(edges[1:].tolist(), bounds[:-1].tolist(), bounds[1:].tolist()):
        store = dv.EventStore()
        for values in zip(e.t[a:b].tolist(), e.x[a:b].tolist(), e.y[a:b].tolist(), (e.p[a:b] > 0).tolist()):
            store.push_back(*values)
        todo.append((stop_us - origin, 0, store))
    for image, t in zip(recording.aps_frames, recording.frame_timestamps_us.tolist()):
        todo.append((t + EXPOSURE_US - origin, 1, dv.Frame(t, image)))
    todo.sort(key=lambda p: p[:2])
    size = (e.width, e.height)
    ports = [free_port(), free_port()]
    writers = [
        dv.io.NetworkWriter("127.0.0.1", ports[0], dv.io.Stream.EventStream(0, "events", "SOAK", size)),
        dv.io.NetworkWriter("127.0.0.1", ports[1], dv.io.Stream.FrameStream(0, "frames", "SOAK", size)),
    ]
    clients = [socket.create_connection(("127.0.0.1", port)) for port in ports]
    while any(w.getClientCount() < 1 for w in writers):
        time.sleep(0.001)
    headers = [read_header(client) for client in clients]
    packets = []
    for release_us, kind, data in todo:  # one at a time: a NetworkWriter drops packets when its queue is full
        if kind == 0:
            writers[0].writeEvents(data)
            wire = read_packet(clients[0])
            while len(split_offsets(wire, EVENTS_ID)) < data.size():
                wire += read_packet(clients[0])  # a large packet may come split
        else:
            writers[1].writeFrame(data)
            wire = read_packet(clients[1])
        packets.append((release_us, kind, wire, split_offsets(wire, EVENTS_ID if kind == 0 else FRAME_ID)))
    for client in clients:
        client.close()
    while any(w.getClientCount() > 0 for w in writers):
        time.sleep(0.001)
    with open(path, "wb") as f:
        pickle.dump((headers, packets), f)
    os._exit(0)  # the NetworkWriters are not waited for


def split_offsets(wire: bytes, type_id: str) -> list[int]:
    """The byte offsets of every timestamp in one or more packets' bytes."""
    offsets, position = [], 0
    while position < len(wire):
        size = struct.unpack_from("<I", wire, position + 4)[0]
        offsets += [position + 8 + o for o in timestamp_offsets(wire[position : position + 8 + size], type_id)]
        position += 8 + size
    return offsets


def timestamp_offsets(packet: bytes, type_id: str) -> list[int]:
    """Offsets (from the content's start) of the int64 timestamps of one packet: every event's, or a
    frame's timestamp, start and end of frame and of exposure."""
    from velora.stream.dvnet import EVENT_DTYPE, EVENTS_ID, _root

    content = memoryview(packet)[8:]
    table = _root(content, type_id)
    if type_id == EVENTS_ID:
        field = table._field(0)
        start = field + struct.unpack_from("<I", content, field)[0]
        count = struct.unpack_from("<I", content, start)[0]
        return list(range(start + 4, start + 4 + count * EVENT_DTYPE.itemsize, EVENT_DTYPE.itemsize))
    return [table._field(i) for i in range(5) if table._field(i)]


def serve(ports: list[int], loop_file: str, pace: float, origin_wall: float, position_file: str) -> None:
    """The sender process: DV's network protocol on `ports` (events, frames), one client at a time.

    pace > 0: packets go out when the sensor (started at origin_wall) has reached them, at `pace`
    times its speed; a sender started again resumes at the sensor's time then. pace 0: as fast as
    the client reads, resuming after the last packet an earlier sender sent (its sensor time in
    microseconds, kept in position_file)."""
    with open(loop_file, "rb") as f:
        headers, packets = pickle.load(f)
    listeners = []
    for port in ports:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(1)
        listeners.append(listener)
    print("ready", flush=True)
    loop_us = int(LOOP_S * 1e6)
    stamps = [np.array(offsets, dtype=np.int64) for _, _, _, offsets in packets]
    sent_us = int(Path(position_file).read_text()) if Path(position_file).exists() else 0
    while True:
        sockets = []
        for listener, header in zip(listeners, headers):
            sock = listener.accept()[0]
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(header)
            sockets.append(sock)
        now_us = (time.time() - origin_wall) * 1e6 * pace if pace else sent_us
        cycle, at = divmod(max(int(now_us), sent_us), loop_us)
        index = next((i for i, p in enumerate(packets) if p[0] > at), len(packets))
        try:
            while True:
                if index == len(packets):
                    cycle, index = cycle + 1, 0
                    _keep(position_file, sent_us)
                release_us, kind, wire, _ = packets[index]
                sensor_us = cycle * loop_us + release_us
                if pace:
                    wait = origin_wall + sensor_us / 1e6 / pace - time.time()
                    if wait > 0:
                        time.sleep(wait)
                data = bytearray(wire)
                shift = cycle * loop_us
                for offset in stamps[index].tolist():
                    struct.pack_into("<q", data, offset, struct.unpack_from("<q", data, offset)[0] + shift)
                sockets[kind].sendall(data)
                sent_us = sensor_us
                index += 1
        except OSError:  # the client left: wait for the next one
            for sock in sockets:
                sock.close()


def _keep(path: str, sent_us: int) -> None:
    Path(path + ".tmp").write_text(str(sent_us))
    os.replace(path + ".tmp", path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Sender:
    """The sender process (`python dv_sender.py serve ...`): started, killed (SIGKILL) and started
    again on the same ports. The bytes it loops over are captured once, at construction."""

    def __init__(self, rate: int, pace: float, folder: Path):
        self.pace, self.ports = pace, [free_port(), free_port()]
        self.loop_file, self.position_file = folder / "loop.pickle", folder / "position"
        subprocess.run([sys.executable, __file__, "capture", str(rate), str(self.loop_file)], check=True)
        self.origin_wall: float | None = None
        self.process = None

    def start(self) -> None:
        origin = self.origin_wall if self.origin_wall is not None else time.time() + 1.0
        self.process = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "serve",
                str(self.ports[0]),
                str(self.ports[1]),
                str(self.loop_file),
                str(self.pace),
                repr(origin),
                str(self.position_file),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("the sender did not start")
        self.origin_wall = origin

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process.stdout.close()


if __name__ == "__main__":
    if sys.argv[1] == "capture":
        capture_loop(int(sys.argv[2]), sys.argv[3])
    else:
        serve([int(sys.argv[2]), int(sys.argv[3])], sys.argv[4], float(sys.argv[5]), float(sys.argv[6]), sys.argv[7])
