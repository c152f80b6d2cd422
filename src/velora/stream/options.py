"""The options of a stream (`velora stream`'s, whose command-line options are made from these
fields by velora.commands.stream): plain values, no torch, so the command line loads fast."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

RECONNECT_S = 60.0  # how long a live source that went away is tried again (velora stream --reconnect)


def _option(
    default, help: str, flag: str | None = None, metavar: str | None = None, off: tuple[str, str] | None = None
):
    """A StreamOptions field; `flag` is its `velora stream` option, whose help is `help` (written once).
    off: (flag, help) of a switch that sets the field to None (e.g. --no-reconnect)."""
    return field(default=default, metadata={"help": help, "flag": flag, "metavar": metavar, "off": off})


@dataclass(frozen=True)
class StreamOptions:
    """How a stream is cut into windows and predicted (the options of `velora stream`, whose
    command-line options are made from these fields: velora.commands.stream)."""

    num_frames: int | None = _option(
        None, "samples per window, T + 1 APS frames (default: the model's data.num_frames)", "--frames", "T"
    )
    # Every hop_frames frames, or (hop_ms given) at the first frame at least hop_ms after the
    # previous window's end: the --hop option ("2" or "100ms", velora.stream.run.parse_hop).
    hop_frames: int = _option(1, "predict every N frames")
    hop_ms: float | None = _option(None, "predict every N milliseconds")
    top_k: int = _option(5, "classes per prediction", "--top-k", "K")
    frame_period_ms: float = _option(
        40.0, "event-only windows (no APS frames): milliseconds per sample", "--frame-ms", "MS"
    )
    frame_timeout_s: float = _option(
        1.0,
        "seconds of events without an APS frame (in sensor time, and for sources whose frames travel apart, "
        "also in receive time) before event-only windows",
        "--frame-timeout",
        "S",
    )
    resize: bool = _option(
        False,
        "accept a sensor of another size than the model's training data: frames and event images are "
        "resized to the model's size, as predict does",
        "--resize",
    )
    all_windows: bool = _option(
        False,
        "live sources: predict every window, even late ones (default: a window is skipped when a newer one "
        "is ready before it was predicted)",
        "--all-windows",
    )
    max_windows: int | None = _option(
        None,
        "stop after N windows, predicted or skipped late (default: until the stream ends or Ctrl-C)",
        "--max-windows",
        "N",
    )
    timeout_s: float = _option(
        5.0,
        "seconds of silence that count as a stall (an error; a live source that streamed is first "
        "reconnected, see --reconnect)",
        "--timeout",
        "S",
    )
    reconnect_s: float | None = _option(
        RECONNECT_S,
        "tcp:// and camera: sources that go away (a DV restart, a cut cable, an unplugged camera) are "
        "reconnected with backoff for up to S seconds; no window spans the gap",
        "--reconnect",
        "S",
        off=("--no-reconnect", "do not reconnect: a lost or closed source ends the stream"),
    )
    reuse_frames: bool = _option(
        False,
        "keep each sample's low-level tokens for the next windows (velora.stream.tokens): 1.3-1.5x as fast "
        "predicting every frame, equal to the full forward pass up to float rounding (PyTorch models)",
        "--reuse-frames",
    )

    def problems(self) -> list[str]:
        """Values out of range, each named by its command-line option."""
        found = []
        for f in fields(self):
            value, flag = getattr(self, f.name), f.metadata["flag"] or f.name
            if f.name in ("num_frames", "hop_frames", "top_k", "max_windows") and value is not None and value < 1:
                found.append(f"{flag} must be at least 1, got {value}")
            if (
                f.name in ("hop_ms", "frame_period_ms", "frame_timeout_s", "timeout_s", "reconnect_s")
                and value is not None
                and not value > 0
            ):
                found.append(f"{flag} must be greater than 0, got {value}")
        return found


def parse_hop(text: str) -> tuple[int, float | None]:
    """'--hop' -> (hop_frames, hop_ms): '2' is every 2 frames, '100ms' every 100 milliseconds."""
    value = text.strip().lower()
    try:
        if value.endswith("ms"):
            hop_ms = float(value[:-2])
            if hop_ms > 0 and math.isfinite(hop_ms):
                return 1, hop_ms
        elif value.isdecimal() and int(value) > 0:
            return int(value), None
    except ValueError:
        pass
    raise ValueError(f"--hop {text!r}: give a number of frames (2) or milliseconds (100ms), greater than 0")
