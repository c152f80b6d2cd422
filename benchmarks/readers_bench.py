"""Decoding speed of velora's event-file readers against faery's, format by format.

    PYTHONPATH=src .venv/bin/python benchmarks/readers_bench.py [--events 3000000] [--repeats 5]
        [--work DIR] [--only 'EVT 2.0'] [--json benchmarks/results/readers_bench.json]

Files: the three real recordings of tests/data/real (Prophesee Gen3 EVT 2.0, EVK4 EVT 3.0, DAVIS346
AEDAT 4.0) and, for every other format, a file of --events random events (1280 x 720, 10 s; t
sorted, about 300 events per millisecond) written by faery (EVT 2.0, EVT 3.0, DAT 2, Event Stream
DVS, CSV, AEDAT 4.0 with LZ4) or, where faery cannot write the format, by the spec-following
writers of tests/spec_writers.py (EVT 2.1, AEDAT 2.0 DAVIS346, AEDAT 3.1 DVS128; these files have
no faery figure, since faery cannot read them either).

Each repeat decodes every file with `velora.events.readers.read_events` (which returns a validated
EventStream) and with faery (`faery.events_stream_from_file`, chunks concatenated into one array),
alternating so that load from other processes hits both, each as a batch of decodes lasting about
0.25 s (one decode of a small file is too short to time on a shared machine). The page cache is
warm (every file is read once first) and numba's kernels are compiled before timing. Reported: the
median over the repeats of the time per decode, as million events per second, and faery's time /
velora's time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import faery  # noqa: E402

from spec_writers import aedat2_file, aedat31_file, evt21_file  # noqa: E402
from velora.events.readers import read_events  # noqa: E402

REAL = REPO / "tests" / "data" / "real"
WIDTH, HEIGHT, DURATION_US = 1280, 720, 10_000_000
BATCH_SECONDS = 0.25  # each repeat times enough decodes to last about this long


def random_events(n: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    events = np.zeros(n, dtype=faery.EVENTS_DTYPE)
    events["t"] = np.sort(rng.integers(0, DURATION_US, n)) + 1_000
    events["x"], events["y"] = rng.integers(0, width, n), rng.integers(0, height, n)
    events["on"] = rng.random(n) < 0.5
    return events


def write_files(work: Path, n: int) -> list[tuple[str, Path, bool]]:
    """(format, path, faery reads it) for every benchmarked file."""
    events = random_events(n, WIDTH, HEIGHT)

    def faery_writes(name: str, size=(WIDTH, HEIGHT), data=events, **options) -> Path:
        path = work / name
        if not path.exists():
            faery.events_stream_from_array(data, dimensions=size).to_file(path, **options)
        return path

    def spec_writes(name: str, content) -> Path:
        path = work / name
        if not path.exists():
            path.write_bytes(content())
        return path

    davis, gesture = random_events(n, 346, 260, seed=1), random_events(n, 128, 128, seed=2)  # smaller sensors
    return [
        ("EVT 2.0 (real, Gen3)", REAL / "prophesee" / "gen3_evt2.raw", True),
        ("EVT 3.0 (real, EVK4)", REAL / "prophesee" / "evk4_evt3_head.raw", True),
        ("AEDAT 4.0 (real, DAVIS346)", REAL / "davis346" / "street_davis346.aedat4", True),
        ("EVT 2.0 (written)", faery_writes("evt2.raw", version="evt2"), True),
        ("EVT 3.0 (written)", faery_writes("evt3.raw", version="evt3"), True),
        (
            "EVT 2.1 (written)",
            spec_writes("evt21.raw", lambda: evt21_file(*_columns(events), WIDTH, HEIGHT, legacy=True)),
            False,
        ),
        ("DAT 2 (written)", faery_writes("events.dat", version="dat2"), True),
        ("Event Stream DVS (written)", faery_writes("events.es"), True),
        ("CSV (written)", faery_writes("events.csv"), True),
        ("AEDAT 4.0 (written)", faery_writes("events.aedat4"), True),
        (
            "AEDAT 2.0 DAVIS346 (written)",
            spec_writes("davis346.aedat", lambda: aedat2_file(*_columns(davis), "DAVIS346")),
            False,
        ),
        (
            "AEDAT 3.1 DVS128 (written)",
            spec_writes("gesture.aedat", lambda: aedat31_file(*_columns(gesture), "DVS128")),
            False,
        ),
    ]


def _columns(events: np.ndarray) -> tuple:
    return events["t"], events["x"], events["y"], np.where(events["on"], 1, -1)


def faery_read(path: Path) -> int:
    return len(np.concatenate(list(faery.events_stream_from_file(path))))


def velora_read(path: Path) -> int:
    return len(read_events(path))


def timed(read, path: Path, batch: int) -> float:
    """Seconds per decode, over a batch of decodes (small files: one decode is too short to time)."""
    start = time.perf_counter()
    for _ in range(batch):
        read(path)
    return (time.perf_counter() - start) / batch


def measure(path: Path, faery_reads: bool, repeats: int) -> dict:
    path.read_bytes()  # page cache
    events = velora_read(path)  # also compiles numba's kernels
    if faery_reads:
        assert faery_read(path) == events, f"{path}: faery and velora decode different event counts"
    readers = {"velora": velora_read, **({"faery": faery_read} if faery_reads else {})}
    batches = {name: max(1, round(BATCH_SECONDS / timed(read, path, 1))) for name, read in readers.items()}
    seconds = {name: [] for name in readers}
    for _ in range(repeats):  # alternate, so that load from other processes hits both
        for name, read in readers.items():
            seconds[name].append(timed(read, path, batches[name]))
    result = {
        "file": str(path.relative_to(REPO) if path.is_relative_to(REPO) else path.name),
        "bytes": path.stat().st_size,
        "events": events,
    }
    for name in readers:
        result[f"{name}_s"] = seconds[name]
        result[f"{name}_decodes_per_repeat"] = batches[name]
        result[f"{name}_mev_s"] = events / statistics.median(seconds[name]) / 1e6
    if faery_reads:
        result["ratio"] = statistics.median(seconds["faery"]) / statistics.median(seconds["velora"])
    return result


def markdown(results: dict) -> str:
    lines = [
        "| format | events | velora M ev/s | faery M ev/s | velora / faery speed |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, row in results.items():
        faery_column = f"{row['faery_mev_s']:.1f}" if "ratio" in row else "cannot read"
        ratio = f"{row['ratio']:.2f}x" if "ratio" in row else "-"
        lines.append(f"| {name} | {row['events']:,} | {row['velora_mev_s']:.1f} | {faery_column} | {ratio} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=3_000_000, help="events in each written file")
    parser.add_argument("--repeats", type=int, default=5, help="timed decodes per file and reader (median)")
    parser.add_argument(
        "--work", type=Path, default=None, help="folder for the written files (kept; default: a temporary one)"
    )
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "readers_bench.json")
    parser.add_argument(
        "--only", default="", help="time only the formats whose name contains this text (e.g. 'EVT 2.0')"
    )
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="velora-readers-bench-") as temporary:
        work = args.work or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        results = {}
        for name, path, faery_reads in write_files(work, args.events):
            if args.only not in name:
                continue
            results[name] = measure(path, faery_reads, args.repeats)
            row = results[name]
            print(
                f"{name}: {row['events']:,} events, velora {row['velora_mev_s']:.1f} M ev/s"
                + (f", faery {row['faery_mev_s']:.1f} M ev/s, {row['ratio']:.2f}x" if "ratio" in row else ""),
                flush=True,
            )
    report = {
        "command": " ".join(["benchmarks/readers_bench.py", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}",
        "faery": faery.__version__ if hasattr(faery, "__version__") else "0.7.1",
        "numpy": np.__version__,
        "repeats": args.repeats,
        "load_average_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "cpus": os.cpu_count(),
        "results": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    print("\n" + markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
