"""Soak: `velora stream` on a DV network stream for an hour of sensor time, with DV killed and
restarted along the way. Memory and latency must not drift; every restart must be survived.

    .venv/bin/python benchmarks/soak.py --minutes 60 --rate 1000000 --kills 12,24,36,48 \
        --json benchmarks/results/soak.json

The sender is a separate process, as DV is: it serves a DAVIS346-sized stream (346 x 260, APS
frames every 40 ms, --rate events per second in 10 ms packets) in DV's network protocol on two
ports (events, frames), at the sensor's pace (--pace 1; --pace 0: as fast as the client reads).
Its bytes are those two dv-processing NetworkWriters send for a 2 s synthetic recording built
from the real street recording (benchmarks/stream_bench.py), looped with every timestamp shifted
by 2 s per loop, so the stream never repeats a timestamp. Its clock is the sensor's: a sender
started again after a kill goes on at the time the sensor has reached meanwhile, as a camera
that kept running while DV restarted (the packets of the down time are lost).

At each --kills minute of sensor time the sender is killed (SIGKILL) and started again
--down-s seconds later on the same ports. velora streams with its defaults: a prediction every
frame (--hop 1), late windows skipped, reconnecting for up to 60 s. The model is the tests' tiny
VELoRA (tests/conftest.py: CLIP ViT-B/16's blocks at width 32, depth 3, 2 heads, 32 px, T = 3,
rgb + event, fresh adapters), or --checkpoint; frames and events are resized from 346 x 260 as
predict does.

Recorded: resident memory (RSS) every 10 s, each window's latency, model input + forward time
and the CPU time the loop thread spent on it (time.thread_time: what a window costs whatever else
runs), the seconds velora's threads waited for a CPU while runnable (/proc/self/task/*/schedstat:
what other processes took from it), the summary (windows, skipped, gaps), and from them the
figures of the soak: RSS at the start and the end, p95 latency of the first and the last ten
minutes, windows skipped, kills survived.

A window that costs more CPU late in the run is either velora ageing or the machine slowing down
(other virtual machines on the same host share its cores' caches and memory bandwidth, which no
counter inside this one shows). To tell them apart, a canary runs every --canary-every-s seconds:
a fresh Python process does a fixed NumPy workload and reports the CPU time it took. A fresh
process cannot have aged, so a canary that slows with the windows says it is the machine.
--py-spy PATH samples velora's threads with py-spy for --profile-s seconds at each
--profile-at sensor minute, to compare where a window's time goes early and late. The garbage
collector's pauses are counted every 10 s too.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from statistics import median

import numpy as np
import torch

import velora
from velora.config import load_config
from velora.model.adapter_file import save_adapters
from velora.model.velora import VELoRA
from velora.stream import StreamOptions, run_stream
from velora.stream.sources import TcpSource

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from dv_sender import Sender  # noqa: E402 (a module beside this one, run as a script)


# ---------------------------------------------------------------------------------- the client
def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def scheduler_s() -> tuple[float, float]:
    """Seconds this process's threads have run on a CPU, and waited for one while runnable
    (/proc/self/task/*/schedstat): the wait is the time other processes took from velora."""
    run = wait = 0
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/schedstat") as stat:
                values = stat.read().split()
        except OSError:  # a thread that ended
            continue
        run, wait = run + int(values[0]), wait + int(values[1])
    return run / 1e9, wait / 1e9


# The tests' tiny model (tests/conftest.py), without importing the test suite.
TINY = [
    "model.backbone_args={embed_dim: 32, depth: 3, num_heads: 2}",
    "model.weights=none",
    "model.image_size=32",
    "model.num_classes=8",
    "model.high_level_blocks=1",
    "lora.rank=2",
    "lora.alpha=4.0",
    "lora.dropout=0.0",
    "lora.targets=[fc1, fc2]",
    "data.num_frames=3",
    "data.root=''",
]


def tiny_recognizer(folder: Path, checkpoint: str | None):
    if checkpoint:
        return velora.load(checkpoint)
    config = load_config("demo", TINY)
    model = VELoRA.from_config(config)
    save_adapters(folder / "best.safetensors", model, config, [f"class_{i}" for i in range(config.model.num_classes)])
    return velora.load(folder)


# The canary's fixed work, in a fresh process each time: small float32 matrix products (as the
# tiny model's layers), a sort and a Python loop (as the window code), ~20 ms on this machine.
CANARY = """
import time
import numpy as np
rng = np.random.default_rng(0)
a, b, keys = rng.random((64, 64), np.float32), rng.random((64, 64), np.float32), rng.integers(0, 1 << 40, 100_000)
start = time.thread_time()
for _ in range(300):
    a = np.tanh(a @ b)
np.sort(keys, kind="stable")
total = 0
for i in range(200_000):
    total += i & 7
print((time.thread_time() - start) * 1e3)
"""


def canary_ms() -> float | None:
    """CPU milliseconds the canary's workload took in a fresh process (None if it failed)."""
    done = subprocess.run([sys.executable, "-c", CANARY], capture_output=True, text=True, timeout=60)
    try:
        return float(done.stdout.strip())
    except ValueError:
        return None


def p95(values) -> float | None:
    return float(np.percentile(values, 95)) if len(values) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="sensor minutes to stream")
    parser.add_argument("--rate", type=int, default=1_000_000, help="events per second")
    parser.add_argument("--pace", type=float, default=1.0, help="1: the sensor's pace; 0: as fast as velora reads")
    parser.add_argument("--kills", default="12,24,36,48", help="sensor minutes at which DV is killed and restarted")
    parser.add_argument("--down-s", type=float, default=2.0, help="seconds the killed sender stays down")
    parser.add_argument("--checkpoint", help="a trained run (default: the tests' tiny model, fresh adapters)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the figures and the series here")
    parser.add_argument("--canary-every-s", type=float, default=60.0, help="0: no canary")
    parser.add_argument("--py-spy", help="the py-spy executable, to profile velora at --profile-at")
    parser.add_argument("--profile-at", default="5,55", help="sensor minutes at which to start a profile")
    parser.add_argument("--profile-s", type=float, default=60.0, help="seconds each profile samples")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    kills = [float(k) for k in args.kills.split(",") if k.strip()]

    folder = Path(tempfile.mkdtemp(prefix="velora-soak-"))
    recognizer = tiny_recognizer(folder, args.checkpoint)
    sender = Sender(args.rate, args.pace, folder)
    sender.start()
    source = TcpSource([("127.0.0.1", sender.ports[0]), ("127.0.0.1", sender.ports[1])])

    capacity = int(args.minutes * 60 * 25 * 1.2) + 1000
    series = {name: np.full(capacity, np.nan) for name in ("wall_s", "sensor_s", "latency_ms", "compute_ms", "cpu_ms")}
    count = 0
    cpu_before = time.thread_time()
    rss, notices, schedule, canaries, profiles, collector = [], [], [], [], [], []
    started = time.monotonic()
    done = threading.Event()
    end_s = args.minutes * 60

    def on_window(prediction) -> None:
        nonlocal count, cpu_before
        cpu_now = time.thread_time()  # the loop thread's CPU time: what a window costs, whatever the load
        cpu_ms, cpu_before = (cpu_now - cpu_before) * 1e3, cpu_now
        if count < capacity:
            for name, value in (
                ("wall_s", time.monotonic() - started),
                ("sensor_s", prediction.t_end_s),
                ("latency_ms", prediction.latency_ms),
                ("compute_ms", prediction.compute_ms),
                ("cpu_ms", cpu_ms),
            ):
                series[name][count] = value
            count += 1
        if prediction.t_end_s >= end_s:
            raise KeyboardInterrupt  # the soak's end: the summary is written as for Ctrl-C

    def notify(message: str) -> None:
        notices.append((round(time.monotonic() - started, 1), message))
        print(f"[{time.monotonic() - started:8.1f} s] {message}", flush=True)

    def monitor() -> None:
        while not done.wait(10.0):
            now = round(time.monotonic() - started, 1)
            rss.append((now, rss_bytes(), os.getloadavg()[0]))
            schedule.append((now, *scheduler_s()))
            collector.append((now, gc_pause["collections"], gc_pause["total"]))
            if len(rss) % 6 == 0:
                window = series["latency_ms"][max(0, count - 1500) : count]
                print(
                    f"[{time.monotonic() - started:8.1f} s] sensor {sensor_now():7.1f} s, {count} windows, "
                    f"RSS {rss[-1][1] / 2**20:.1f} MiB, p95 (last minute) {p95(window[~np.isnan(window)])} ms, "
                    f"load {rss[-1][2]:.2f}",
                    flush=True,
                )

    def sensor_now() -> float:
        return float(series["sensor_s"][count - 1]) if count else 0.0

    def killer() -> None:
        for minute in kills:
            while sensor_now() < minute * 60 and not done.is_set():
                time.sleep(0.2)
            if done.is_set():
                return
            notify(f"soak: killing the sender at {sensor_now():.1f} s of sensor time")
            sender.kill()
            time.sleep(args.down_s)
            sender.start()
            notify("soak: the sender is listening again")

    gc_pause = {"since": 0.0, "total": 0.0, "collections": 0}  # the garbage collector's pauses, seconds

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            gc_pause["since"] = time.perf_counter()
        else:
            gc_pause["total"] += time.perf_counter() - gc_pause["since"]
            gc_pause["collections"] += 1

    gc.callbacks.append(on_gc)

    def canary() -> None:
        while not done.wait(args.canary_every_s):
            canaries.append((round(time.monotonic() - started, 1), round(sensor_now(), 1), canary_ms()))

    def profiler() -> None:
        for minute in [float(m) for m in args.profile_at.split(",") if m.strip()]:
            while sensor_now() < minute * 60 and not done.is_set():
                time.sleep(0.5)
            if done.is_set():
                return
            out = (args.json or Path("soak.json")).with_suffix(f".pyspy-{minute:g}min.txt")
            command = [args.py_spy, "record", "--nonblocking", "--threads", "-r", "100", "-f", "raw"]
            command += ["-d", str(int(args.profile_s)), "-o", str(out), "-p", str(os.getpid())]
            done_profile = subprocess.run(command, capture_output=True, text=True)
            profiles.append({"sensor_minute": minute, "file": out.name, "rc": done_profile.returncode})
            notify(f"soak: profiled {args.profile_s:g} s from sensor minute {minute:g} into {out}")

    threading.Thread(target=monitor, daemon=True).start()
    threading.Thread(target=killer, daemon=True).start()
    if args.canary_every_s > 0:
        threading.Thread(target=canary, daemon=True).start()
    if args.py_spy:
        threading.Thread(target=profiler, daemon=True).start()
    rss.append((0.0, rss_bytes(), os.getloadavg()[0]))
    schedule.append((0.0, *scheduler_s()))
    summary = run_stream(recognizer, source, StreamOptions(resize=True), on_window=on_window, notify=notify)
    done.set()
    rss.append((round(time.monotonic() - started, 1), rss_bytes(), os.getloadavg()[0]))
    sender.kill()

    n = count
    wall, sensor = series["wall_s"][:n], series["sensor_s"][:n]
    latency, compute, cpu = series["latency_ms"][:n], series["compute_ms"][:n], series["cpu_ms"][:n]
    first, last = sensor <= 600, sensor >= sensor[-1] - 600

    def waited(start_s: float, stop_s: float) -> float:
        """Seconds velora's threads waited for a CPU per second of wall time between two times."""
        inside = [(t, w) for t, _, w in schedule if start_s <= t <= stop_s]
        return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0]) if len(inside) > 1 else float("nan")

    at = {label: next((m for t, m, _ in rss if t >= s), rss[-1][1]) for label, s in (("1 min", 60), ("10 min", 600))}
    figures = {
        "sensor_s": float(sensor[-1]),
        "wall_s": float(wall[-1]),
        "pace": float(sensor[-1] / wall[-1]),
        "rss_before_streaming_mib": rss[0][1] / 2**20,
        "rss_1min_mib": at["1 min"] / 2**20,
        "rss_10min_mib": at["10 min"] / 2**20,
        "rss_end_mib": rss[-1][1] / 2**20,
        "rss_growth_from_1min_pct": 100 * (rss[-1][1] / at["1 min"] - 1),
        "rss_growth_from_10min_pct": 100 * (rss[-1][1] / at["10 min"] - 1),
        "p95_latency_first_10min_ms": p95(latency[first]),
        "p95_latency_last_10min_ms": p95(latency[last]),
        "p95_compute_first_10min_ms": p95(compute[first]),
        "p95_compute_last_10min_ms": p95(compute[last]),
        "mean_cpu_per_window_first_10min_ms": float(np.mean(cpu[first][1:])),
        "mean_cpu_per_window_last_10min_ms": float(np.mean(cpu[last])),
        "runqueue_wait_first_10min_s_per_s": waited(wall[first][0], wall[first][-1]),
        "runqueue_wait_last_10min_s_per_s": waited(wall[last][0], wall[last][-1]),
        "windows": summary.windows,
        "skipped": summary.skipped,
        "kills": len([k for k in kills if k * 60 < sensor[-1]]),
        "gaps": summary.gaps,
        "gap_s": summary.gap_s,
        "gap_windows": summary.gap_windows,
        "ended": summary.ended,
        "error": summary.error,
        "load_1min_mean": float(np.mean([load for _, _, load in rss])),
    }
    # the canary: median CPU ms of its fixed work in the first and the last ten sensor minutes
    early = [ms for _, s, ms in canaries if ms is not None and s <= 600]
    late = [ms for _, s, ms in canaries if ms is not None and s >= sensor[-1] - 600]
    if early and late:
        figures["canary_ms_first_10min"], figures["canary_ms_last_10min"] = median(early), median(late)
        figures["canary_change_pct"] = 100 * (median(late) / median(early) - 1)
    figures["cpu_per_window_change_pct"] = 100 * (
        figures["mean_cpu_per_window_last_10min_ms"] / figures["mean_cpu_per_window_first_10min_ms"] - 1
    )
    figures["p95_latency_change_pct"] = 100 * (
        figures["p95_latency_last_10min_ms"] / figures["p95_latency_first_10min_ms"] - 1
    )
    print(json.dumps(figures, indent=1))
    print(summary.text())
    if args.json:
        result = {
            "command": "benchmarks/soak.py " + " ".join(sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"torch {torch.__version__}",
            "model": f"{recognizer.config.model.backbone} {recognizer.config.model.backbone_args}, "
            f"{recognizer.config.model.image_size} px, T = {recognizer.config.data.num_frames}",
            "figures": figures,
            "summary": summary.as_dict(),
            "notices": notices,
            "rss_every_10s": [(t, round(m / 2**20, 2), load) for t, m, load in rss],
            "p95_latency_per_minute_ms": [
                p95(latency[(sensor >= 60 * k) & (sensor < 60 * (k + 1))]) for k in range(int(sensor[-1] // 60) + 1)
            ],
            "mean_cpu_per_window_per_minute_ms": [
                float(np.mean(cpu[(sensor >= 60 * k) & (sensor < 60 * (k + 1))])) for k in range(int(sensor[-1] // 60))
            ],
            "scheduler_every_10s": [(t, round(run, 3), round(wait, 3)) for t, run, wait in schedule],
            "canary_wall_s_sensor_s_cpu_ms": canaries,
            "profiles": profiles,
            "gc_collections_and_pause_s_every_10s": [(t, n, round(pause, 4)) for t, n, pause in collector],
        }
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
