"""Latency and real-time factor of `velora stream` with the demo config on this CPU.

    .venv/bin/python benchmarks/stream_bench.py [--seconds 10] [--rates 50000,1000000] [--threads 1,2]
        [--hops 1,2,4] [--modes replay,realtime,tcp] [--repeats 3] [--checkpoint RUN] [--json FILE]

The model: the demo config (the shipped fractal-pretrained 128-wide, 4-block ViT, 64 px, T = 4,
rgb + event) with fresh adapters, or a trained run with --checkpoint; trained or not, a window costs
the same. The stream: a DAVIS346-sized recording of --seconds built from the real street
recording (tests/data/real): APS frames every 40 ms (its frames, shifted), and between them its
real event windows, shifted copies added or events left out to reach each --rates events per
second. Windows of T + 1 = 5 frames, a prediction every frame (--hop 1), as `velora stream` runs
by default.

Runs per rate, thread count and repeat (modes interleaved):
- replay: the recording as fast as possible, predicting every --hops frames; real-time factor =
  recording seconds / wall seconds;
- realtime: the recording at its own pace (events in 10 ms packets, as DV packs a DAVIS346's,
  each released when its last microsecond has passed; a frame at the end of its exposure);
  latency of each window from the release of the packet holding its last event to its
  probabilities;
- tcp: the same pace in DV's network protocol from a separate process (as DV would be), two
  servers on loopback (events, frames), read by velora's own decoder; the bytes are those two
  dv-processing NetworkWriters sent for the recording, replayed from plain sockets; latency from
  the arrival of the packet holding the window's last event;
- tcp-dv: the same through live dv-processing NetworkWriters, which busy-wait while a client is
  connected (about half a core of this 2-core machine), so this run also measures that.
Late windows are skipped in the live runs, as `velora stream` does (counted). Medians over repeats.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import socket
import struct
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import velora
from velora.config import load_config
from velora.events.aedat4 import Recording
from velora.events.readers import read_aedat4
from velora.events.render import EventStream
from velora.model.adapter_file import save_adapters
from velora.model.velora import VELoRA
from velora.stream import RecordingReplay, StreamOptions, run_stream
from velora.stream.dvnet import decode_events
from velora.stream.sources import TcpSource

REPO_ROOT = Path(__file__).resolve().parents[1]
STREET = REPO_ROOT / "tests" / "data" / "real" / "davis346" / "street_davis346.aedat4"
FRAME_PERIOD_US, EXPOSURE_US, PACKET_US = 40_000, 500, 10_000


def synthetic_recording(seconds: float, events_per_s: int, seed: int = 0) -> Recording:
    """A DAVIS346 recording: the street's frames and event windows, shifted, at events_per_s."""
    street = read_aedat4(STREET)
    e = street.events
    street_t = street.frame_timestamps_us
    windows = [e.window(int(a), int(b)) for a, b in zip(street_t[:-1], street_t[1:])]
    rng = np.random.default_rng(seed)
    num_frames = int(seconds * 1e6 // FRAME_PERIOD_US) + 1
    start = 1_700_000_000_000_000
    frame_t = start + FRAME_PERIOD_US * np.arange(num_frames, dtype=np.int64)
    frames, columns = [], []
    per_interval = round(events_per_s * FRAME_PERIOD_US / 1e6)
    for k in range(num_frames):
        shift = rng.integers(-20, 21, 2)
        frames.append(np.roll(street.aps_frames[1 + k % 3], tuple(shift), axis=(0, 1)))
        window = windows[k % len(windows)]
        copies = -(-per_interval // len(window))
        t, x, y, p = [], [], [], []
        for _ in range(copies):
            dx, dy = rng.integers(0, e.width), rng.integers(0, e.height)
            t.append(window.t - window.t[0] + frame_t[k] + rng.integers(0, 100))
            x.append((window.x + dx) % e.width), y.append((window.y + dy) % e.height), p.append(window.p)
        keep = np.sort(rng.choice(len(window) * copies, per_interval, replace=False))
        t, x, y, p = (np.concatenate(c)[keep] for c in (t, x, y, p))
        t = np.minimum(t, frame_t[k] + FRAME_PERIOD_US - 1)  # events go on for a period after the last frame
        order = np.argsort(t, kind="stable")
        columns.append([c[order] for c in (t, x, y, p)])
    t, x, y, p = (np.concatenate([c[i] for c in columns]) for i in range(4))
    exposure = np.full(num_frames, EXPOSURE_US, dtype=np.int64)
    return Recording(EventStream(t, x, y, p, e.width, e.height), np.stack(frames), frame_t, exposure, Path("synthetic"))


def demo_recognizer(folder: Path, checkpoint: str | None):
    if checkpoint:
        return velora.load(checkpoint)
    config = load_config("demo")
    model = VELoRA.from_config(config)
    save_adapters(folder / "best.safetensors", model, config, [f"class_{i}" for i in range(config.model.num_classes)])
    return velora.load(folder)


def sender(seconds: float, events_per_s: int, pipe) -> None:
    """A separate process, as DV would be: serves the synthetic recording in DV's network protocol,
    once per ("run", how) command, at its own pace, events in 10 ms packets, frames at the end of
    their exposure.

    how = "dv": through two live dv-processing NetworkWriters (events, frames). A NetworkWriter
        with a client connected busy-waits, about half a core of this machine even when idle.
    how = "light": the bytes those NetworkWriters sent for the whole recording (captured once, at
        start) from two plain sockets, which cost next to nothing.
    Per run: sends the ports, waits for the client, sends "ready", paces the packets, waits until
    the client has left (a NetworkWriter cannot be dropped while one is connected), sends "done"."""
    import dv_processing as dv

    recording = synthetic_recording(seconds, events_per_s)
    e = recording.events
    edges = np.arange(e.t[0], e.t[-1] + PACKET_US + 1, PACKET_US)
    bounds = np.searchsorted(e.t, edges)
    packets = []
    for stop_us, a, b in zip(edges[1:].tolist(), bounds[:-1].tolist(), bounds[1:].tolist()):
        if b > a:
            store = dv.EventStore()
            for values in zip(e.t[a:b].tolist(), e.x[a:b].tolist(), e.y[a:b].tolist(), (e.p[a:b] > 0).tolist()):
                store.push_back(*values)
            packets.append((stop_us, 0, store))
    for image, t in zip(recording.aps_frames, recording.frame_timestamps_us.tolist()):
        packets.append((t + EXPOSURE_US, 1, dv.Frame(t, image)))
    packets.sort(key=lambda p: p[:2])
    resolution = (e.width, e.height)

    def writers():
        ports, servers = [], []
        for kind, make in (("events", dv.io.Stream.EventStream), ("frames", dv.io.Stream.FrameStream)):
            ports.append(free_port())
            servers.append(dv.io.NetworkWriter("127.0.0.1", ports[-1], make(0, kind, "SYNTHETIC", resolution)))
        return ports, servers

    def wait_for_clients(servers, count):
        while any((s.getClientCount() < 1) if count else (s.getClientCount() > 0) for s in servers):
            time.sleep(0.001)

    def write(servers, kind, data):
        if kind == 0:
            servers[0].writeEvents(data)
        else:
            servers[1].writeFrame(data)

    # The bytes of every packet, as the NetworkWriters send them: (header, [packet bytes]) per stream.
    ports, servers = writers()
    clients = [socket.create_connection(("127.0.0.1", port)) for port in ports]
    wait_for_clients(servers, 1)
    captured = [[read_header(client), []] for client in clients]
    for _, kind, data in packets:  # one at a time: a NetworkWriter drops packets when its queue is full
        write(servers, kind, data)
        wire = read_packet(clients[kind])
        if kind == 0:  # a NetworkWriter may split a large packet: read until all its events are in
            received = len(decode_events(memoryview(wire)[8:]).t)
            while received < data.size():
                more = read_packet(clients[kind])
                received += len(decode_events(memoryview(more)[8:]).t)
                wire += more
        captured[kind][1].append(wire)
    for client in clients:
        client.close()
    wait_for_clients(servers, 0)
    del servers
    pipe.send("built")

    while (command := pipe.recv()) != "stop":
        how = command[1]
        if how == "dv":
            ports, servers = writers()
        else:
            listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
            ports = [listener.getsockname()[1] for listener in listeners]
        pipe.send(ports)
        if how == "dv":
            wait_for_clients(servers, 1)
        else:
            sockets = []
            for listener, (header, _) in zip(listeners, captured):  # the header on connect, as a DV server
                sockets.append(listener.accept()[0])
                sockets[-1].setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sockets[-1].sendall(header)
        pipe.send("ready")
        origin_us, origin = packets[0][0], time.perf_counter() + 0.05
        sent = [0, 0]
        for release_us, kind, data in packets:
            wait = origin + (release_us - origin_us) / 1e6 - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            if how == "dv":
                write(servers, kind, data)
            else:
                try:
                    sockets[kind].sendall(captured[kind][1][sent[kind]])
                except OSError:  # the client has stopped at its last window and left
                    break
                sent[kind] += 1
        if how == "dv":
            wait_for_clients(servers, 0)
            del servers
        else:
            for sock in sockets:
                try:
                    sock.recv(1)  # until the client closes
                except OSError:
                    pass
                sock.close()
            for listener in listeners:
                listener.close()
        pipe.send("done")


def receive(sock, size: int) -> bytes:
    data = b""
    while len(data) < size:
        data += sock.recv(size - len(data))
    return data


def read_header(sock) -> bytes:
    """The int32-prefixed IOHeader a DV network server sends first, as bytes."""
    size = receive(sock, 4)
    return size + receive(sock, struct.unpack("<i", size)[0])


def read_packet(sock) -> bytes:
    """One packet (int32 stream id, uint32 size, content), as bytes."""
    head = receive(sock, 8)
    return head + receive(sock, struct.unpack_from("<I", head, 4)[0])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_tcp(recognizer, pipe, how: str, windows: int, options: StreamOptions):
    """One run against the sender process: connect, let it send, stop after the last window."""
    pipe.send(("run", how))
    events_port, frames_port = pipe.recv()
    source = TcpSource([("127.0.0.1", events_port), ("127.0.0.1", frames_port)])
    assert pipe.recv() == "ready"
    # the sender keeps its connections open (it cannot close a NetworkWriter while a client is connected)
    summary = run_stream(recognizer, source, replace(options, max_windows=windows, timeout_s=10))
    assert pipe.recv() == "done"
    return summary


def load_average() -> float:
    return os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="recording length")
    parser.add_argument("--rates", default="50000,1000000", help="events per second, comma-separated")
    parser.add_argument("--threads", default="1,2", help="torch thread counts, comma-separated")
    parser.add_argument("--hops", default="1,2,4", help="replay runs: predict every N frames, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--checkpoint", help="a trained run (default: the demo config with fresh adapters)")
    parser.add_argument(
        "--modes",
        default="replay,realtime,tcp,tcp-dv",
        help="runs: replay (at each --hops), "
        "realtime, tcp and tcp-dv (hop 1; tcp needs dv-processing), comma-separated",
    )
    parser.add_argument(
        "--reuse-frames",
        action="store_true",
        help="velora stream --reuse-frames (each sample's low-level tokens kept for the next windows)",
    )
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    thread_counts = [int(t) for t in args.threads.split(",")]
    hops = [int(h) for h in args.hops.split(",")]
    recognizer = demo_recognizer(Path(tempfile.mkdtemp(prefix="velora-stream-bench-")), args.checkpoint)
    config = recognizer.config
    results = {
        "command": "benchmarks/stream_bench.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v not in (None, False, True))
        + (" --reuse-frames" if args.reuse_frames else ""),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"torch {torch.__version__}",
        "model": f"{config.model.backbone} {config.model.backbone_args}, {config.model.image_size} px, "
        f"T = {config.data.num_frames}, {'+'.join(config.data.modalities)}",
        "load_average_1min_before": load_average(),
        "runs": [],
    }
    print(results["machine"], "|", results["model"], "| load", results["load_average_1min_before"])
    print(
        f"{'events/s':>9} {'threads':>7} {'mode':>8} {'hop':>3} {'windows':>7} {'skipped':>7} {'lat mean':>8} "
        f"{'lat p95':>8} {'lat max':>8} {'compute p95':>11} {'RTF':>6} {'load':>5}"
    )
    modes = args.modes.split(",")
    runs = [("replay", hop) for hop in hops if "replay" in modes]
    runs += [(m, 1) for m in ("realtime", "tcp", "tcp-dv") if m in modes]
    for rate in rates:
        recording = synthetic_recording(args.seconds, rate)
        windows = len(recording.aps_frames) - config.data.num_frames
        pipe = None
        if "tcp" in modes or "tcp-dv" in modes:
            pipe, child_end = multiprocessing.get_context("spawn").Pipe()
            child = multiprocessing.get_context("spawn").Process(target=sender, args=(args.seconds, rate, child_end))
            child.start()
            assert pipe.recv() == "built"  # its packets are ready: it takes no CPU until a run
        for threads in thread_counts:
            torch.set_num_threads(threads)
            run_stream(
                recognizer,
                RecordingReplay(recording, "warmup"),
                StreamOptions(resize=True, max_windows=5, reuse_frames=args.reuse_frames),
            )
            for repeat in range(args.repeats):  # modes interleaved, so the load of other processes hits them alike
                for mode, hop in runs:
                    options = StreamOptions(resize=True, hop_frames=hop, reuse_frames=args.reuse_frames)
                    if mode.startswith("tcp"):
                        summary = run_tcp(recognizer, pipe, "dv" if mode == "tcp-dv" else "light", windows, options)
                    else:
                        source = RecordingReplay(recording, "synthetic", realtime=mode == "realtime")
                        summary = run_stream(recognizer, source, options)
                    run = {
                        "events_per_s": rate,
                        "threads": threads,
                        "mode": mode,
                        "hop": hop,
                        "repeat": repeat,
                        "load_average_1min": load_average(),
                        **summary.as_dict(),
                    }
                    results["runs"].append(run)
                    if summary.error or not summary.windows:
                        print(f"{rate:>9} {threads:>7} {mode:>8} {hop:>3} failed: {summary.ended}", flush=True)
                        continue
                    print(
                        f"{rate:>9} {threads:>7} {mode:>8} {hop:>3} {summary.windows:>7} {summary.skipped:>7} "
                        f"{summary.mean_latency_ms:>8.1f} {summary.p95_latency_ms:>8.1f} "
                        f"{summary.max_latency_ms:>8.1f} {summary.p95_compute_ms:>11.1f} "
                        f"{summary.realtime_factor:>6.2f} {run['load_average_1min']:>5.2f}",
                        flush=True,
                    )
        if pipe is not None:
            pipe.send("stop")
            child.join()
    results["load_average_1min_after"] = load_average()
    results["medians"] = medians(results["runs"])
    print("\nmedians over repeats")
    print(
        "| events/s | threads | mode | hop | windows | skipped | latency mean ms | p95 ms | max ms | "
        "input + forward p95 ms | real-time factor | load (1 min) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in results["medians"]:
        print(
            f"| {row['events_per_s']:,} | {row['threads']} | {row['mode']} | {row['hop']} | {row['windows']:.0f} | "
            f"{row['skipped']:.0f} | {row['mean_latency_ms']:.1f} | {row['p95_latency_ms']:.1f} | "
            f"{row['max_latency_ms']:.1f} | {row['p95_compute_ms']:.1f} | {row['realtime_factor']:.2f}x | "
            f"{row['load_average_1min']:.1f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def medians(runs: list[dict]) -> list[dict]:
    order = {"replay": 0, "realtime": 1, "tcp": 2, "tcp-dv": 3}
    keys = sorted(
        {(r["events_per_s"], r["threads"], r["mode"], r["hop"]) for r in runs},
        key=lambda k: (k[0], k[1], order[k[2]], k[3]),
    )
    rows = []
    for rate, threads, mode, hop in keys:
        group = [
            r
            for r in runs
            if (r["events_per_s"], r["threads"], r["mode"], r["hop"]) == (rate, threads, mode, hop)
            and not r["error"]
            and r["windows"]
        ]
        if not group:
            continue
        row = {"events_per_s": rate, "threads": threads, "mode": mode, "hop": hop, "repeats": len(group)}
        for name in (
            "windows",
            "skipped",
            "mean_latency_ms",
            "p95_latency_ms",
            "max_latency_ms",
            "p95_compute_ms",
            "realtime_factor",
            "load_average_1min",
        ):
            row[name] = float(np.median([r[name] for r in group]))
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
