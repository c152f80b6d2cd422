"""What a stream run reports: each window's prediction, the gaps, the summary, the --jsonl file.

Memory stays bounded however long a run lasts: latencies are kept as a histogram (`Durations`),
not one number per window, and the --jsonl file is written line by line.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from velora.errors import DataError, OutputError


@dataclass
class WindowPrediction:
    """One window's prediction: time range (microseconds, and seconds since the stream's first
    timestamp, counted on across gaps and clock resets), what it held, top-k, and timings in
    milliseconds."""

    window: int
    t_start_us: int
    t_end_us: int
    t_start_s: float
    t_end_s: float
    frames: int  # APS frames (T + 1), 0 for an event-only window
    events: int
    modalities: list[str]
    topk: list[tuple[str, float]]
    latency_ms: float  # last event received -> probabilities ready
    wait_ms: float  # last event received -> the packet completing the window received
    compute_ms: float  # model input + forward pass

    def line(self) -> str:
        classes = ", ".join(f"{name} {score:.3f}" for name, score in self.topk)
        kind = "" if self.frames else "  [events only]"
        return (
            f"window {self.window:>5}  {self.t_start_s:8.3f}-{self.t_end_s:8.3f} s  {classes}  "
            f"latency {self.latency_ms:6.1f} ms{kind}"
        )


@dataclass
class GapRecord:
    """A live source that went away and came back (a --jsonl line {"gap": ...}).

    lost_s, back_s: seconds since the stream's first packet (receive time); windows: the windows
    it cost (see velora.stream.run, gap_windows)."""

    what: str
    reason: str
    lost_s: float
    back_s: float
    duration_s: float
    windows: int


class Durations:
    """Count, mean, max and percentiles of durations (milliseconds) in constant memory.

    Values are counted in log-spaced bins 1 % wide from 1 microsecond to 3 hours; a percentile is
    the upper edge of the bin holding that rank (nearest rank), at most the maximum: within 1 % of
    the exact value, never below it.
    """

    LOW_MS, HIGH_MS, STEP = 1e-3, 1e7, 1.01

    def __init__(self):
        self.bins = np.zeros(math.ceil(math.log(self.HIGH_MS / self.LOW_MS, self.STEP)) + 1, dtype=np.int64)
        self.count, self.total, self.max = 0, 0.0, 0.0

    def add(self, ms: float) -> None:
        ms = max(float(ms), 0.0)
        index = 0 if ms <= self.LOW_MS else min(len(self.bins) - 1, math.ceil(math.log(ms / self.LOW_MS, self.STEP)))
        self.bins[index] += 1
        self.count += 1
        self.total += ms
        self.max = max(self.max, ms)

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def percentile(self, q: float) -> float | None:
        if not self.count:
            return None
        rank = max(1, math.ceil(q / 100 * self.count))
        index = int(np.searchsorted(np.cumsum(self.bins), rank))
        return min(self.LOW_MS * self.STEP**index, self.max)


@dataclass
class StreamSummary:
    """What a stream run did. latency in milliseconds; realtime_factor: sensor seconds / wall seconds.

    gaps, gap_s, gap_windows: times a live source went away and came back, the seconds it was away,
    and the windows that cost. clock_jumps: times the sensor's timestamps went back (the window
    restarted); duplicate_packets: events packets received twice (dropped); frames_ignored: frames
    not after the previous frame.
    """

    source: str
    windows: int = 0
    skipped: int = 0
    event_only_windows: int = 0
    gaps: int = 0
    gap_s: float = 0.0
    gap_windows: int = 0
    clock_jumps: int = 0
    duplicate_packets: int = 0
    frames_ignored: int = 0
    mean_latency_ms: float | None = None
    p95_latency_ms: float | None = None
    max_latency_ms: float | None = None
    mean_compute_ms: float | None = None
    p95_compute_ms: float | None = None
    sensor_s: float = 0.0
    wall_s: float = 0.0
    realtime_factor: float | None = None
    ended: str = ""  # "end of stream", "interrupted (Ctrl-C)", "max windows", or the error
    error: str | None = None
    latency: Durations = field(default_factory=Durations, repr=False)
    compute: Durations = field(default_factory=Durations, repr=False)

    def finish(self) -> None:
        if self.latency.count:
            self.mean_latency_ms, self.max_latency_ms = self.latency.mean, self.latency.max
            self.p95_latency_ms = self.latency.percentile(95)
            self.mean_compute_ms, self.p95_compute_ms = self.compute.mean, self.compute.percentile(95)
        self.realtime_factor = self.sensor_s / self.wall_s if self.wall_s > 0 and self.sensor_s > 0 else None

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.repr}

    def text(self) -> str:
        def ms(value):
            return "-" if value is None else f"{value:.1f} ms"

        rtf = "-" if self.realtime_factor is None else f"{self.realtime_factor:.2f}x"
        lines = [
            (
                f"summary: {self.windows} windows ({self.event_only_windows} event-only, {self.skipped} skipped late), "
                f"{self.ended}"
            ),
            (
                f"  latency mean {ms(self.mean_latency_ms)}, p95 {ms(self.p95_latency_ms)}, "
                f"max {ms(self.max_latency_ms)}; model input + forward mean {ms(self.mean_compute_ms)}, "
                f"p95 {ms(self.p95_compute_ms)}"
            ),
            f"  {self.sensor_s:.3f} s of sensor time in {self.wall_s:.3f} s: real-time factor {rtf}",
        ]
        troubles = []
        if self.gaps:
            troubles.append(
                f"{self.gaps} gap{'s' * (self.gaps > 1)} ({self.gap_s:.1f} s, {self.gap_windows} windows lost)"
            )
        if self.clock_jumps:
            troubles.append(f"timestamps went back {self.clock_jumps} time{'s' * (self.clock_jumps > 1)}")
        if self.duplicate_packets:
            troubles.append(f"{self.duplicate_packets} duplicated packets dropped")
        if troubles:
            lines.append("  " + "; ".join(troubles))
        return "\n".join(lines)


class JsonlWriter:
    """One JSON object per line, each written whole. The file is created with its first line, so a
    run that fails before predicting leaves no file (and an older one intact). A write that fails
    (no space left, no permission) cuts the file back to its last whole line and raises one
    OutputError naming the file; the writer then writes nothing more."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self._file: io.FileIO | None = None
        self._size = 0  # bytes of whole lines written
        self.lines = 0
        self.failed = False
        if self.path is not None:
            if self.path.is_dir():
                raise DataError(f"--jsonl {self.path} is a folder; give a file name")
            if not self.path.parent.is_dir():
                raise DataError(f"--jsonl {self.path}: the folder {self.path.parent} does not exist")

    def write(self, record: dict) -> None:
        if self.path is None or self.failed:
            return
        line = (json.dumps(record) + "\n").encode()
        try:
            if self._file is None:
                self._file = open(self.path, "wb", buffering=0)
            written = 0
            while written < len(line):  # an unbuffered write may take part of the line
                written += self._file.write(line[written:])
        except OSError as error:
            self.failed = True
            if self._file is not None:
                try:
                    self._file.truncate(self._size)
                except OSError:
                    pass
            raise OutputError(
                f"--jsonl {self.path}: cannot write ({error.strerror or error}); its {self.lines} lines before are "
                "whole. Free disk space or check the folder's permissions"
            ) from None
        self._size += len(line)
        self.lines += 1

    def write_gap(self, gap: GapRecord) -> None:
        self.write({"gap": asdict(gap)})

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
