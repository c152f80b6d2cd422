"""`velora stream`: live recognition: a sliding window over a recording, a DV network stream or a camera."""

from __future__ import annotations

import argparse
import sys
import textwrap
from dataclasses import fields

from velora.commands.common import add_device
from velora.stream.options import StreamOptions, parse_hop


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "stream",
        help="live recognition: a sliding window over a recording, a DV network stream or a camera",
        description=textwrap.dedent(
            """\
            Predict continuously from SOURCE with a sliding window of the last T APS frames and the events
            between them (T + 1 frames give the model's T samples, exactly as predict reads a recording),
            every --hop frames or milliseconds. Each window prints its time range, top-k and latency (from
            the receipt of the window's last event to its prediction); Ctrl-C or the end of the stream prints
            a summary: windows, mean and p95 latency, real-time factor.

            SOURCE:
              FILE.aedat4               a recording, replayed as fast as possible (--realtime: at its own pace);
                                        other event files replay their events alone
              tcp://HOST:PORT[,PORT]    DV network servers (DV's TCP output, dv-processing's NetworkWriter):
                                        the events port and, for APS frames, the frames port
              camera: | camera:SERIAL   a camera through dv-processing (pip install dv-processing)
            Without APS frames the windows are event-only (T x --frame-ms) and an RGB + event model takes
            its missing-modality path. A tcp:// or camera: source that goes away is reconnected
            (--reconnect); no window spans the gap, and the summary and --jsonl record it."""
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", help="a recording file, tcp://HOST:PORT[,PORT], or camera:[SERIAL]")
    p.add_argument("checkpoint", help="adapter checkpoint (.safetensors) or a training run's folder")
    p.add_argument(
        "--realtime", action="store_true", help="replay a recording at its own pace (default: as fast as possible)"
    )
    p.add_argument("--hop", default="1", help="predict every N frames (2) or milliseconds (100ms); default 1 frame")
    p.add_argument("--jsonl", metavar="FILE", help="also write each window (and the summary, last) as a JSON line")
    add_options(p)
    add_device(p)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for the forward pass (default 1: one small "
        "window at a time gains little from more, and the reading threads need a core)",
    )
    return p


def run(args) -> int:
    live = args.source.startswith(("tcp://", "camera:"))
    problems = []
    if args.realtime and live:
        problems.append("--realtime replays a recording at its own pace; a tcp:// or camera: source is live already")
    try:
        hop_frames, hop_ms = parse_hop(args.hop)
    except ValueError as error:
        problems.append(str(error))
    if args.threads < 1:
        problems.append(f"--threads must be at least 1, got {args.threads}")
    problems += options_of(args, 1, None).problems()
    if problems:
        print("velora stream: " + "; ".join(problems), file=sys.stderr)
        return 2
    try:
        return _stream(args, hop_frames, hop_ms)
    except KeyboardInterrupt:  # while loading or connecting; once streaming, Ctrl-C ends with the summary
        print("velora stream: interrupted before the stream started", file=sys.stderr)
        return 130


def _stream(args, hop_frames: int, hop_ms: float | None) -> int:
    import torch

    import velora
    from velora.stream import open_source, run_stream

    torch.set_num_threads(args.threads)
    options = options_of(args, hop_frames, hop_ms)
    recognizer = velora.load(args.checkpoint, device=args.device)

    def notify(message: str) -> None:
        print(f"velora stream: {message}", file=sys.stderr, flush=True)

    source = open_source(args.source, realtime=args.realtime)
    summary = run_stream(
        recognizer,
        source,
        options,
        on_window=lambda p: print(p.line(), flush=True),
        notify=notify,
        jsonl=args.jsonl,
    )
    print(summary.text())
    if args.jsonl:
        print(f"windows: {args.jsonl}")
    if summary.error:
        print(f"velora stream: error: {summary.error}", file=sys.stderr)
        return 1
    return 0


def add_options(p: argparse.ArgumentParser) -> None:
    """One option per StreamOptions field that names a flag; the help is the field's."""
    for f in fields(StreamOptions):
        flag, help = f.metadata["flag"], f.metadata["help"]
        if flag is None:
            continue
        if f.type in ("bool", bool):
            p.add_argument(flag, dest=f.name, action="store_true", help=help)
            continue
        kind = int if f.type.startswith("int") else float
        shown = f" (default {f.default:g})" if f.default is not None and "default" not in help else ""
        p.add_argument(
            flag, dest=f.name, type=kind, default=f.default, metavar=f.metadata["metavar"], help=help + shown
        )
        if f.metadata["off"]:
            off_flag, off_help = f.metadata["off"]
            p.add_argument(off_flag, dest=f"no_{f.name}", action="store_true", help=off_help)


def options_of(args, hop_frames: int, hop_ms: float | None) -> StreamOptions:
    """The StreamOptions the command line gives (--hop parsed into hop_frames / hop_ms)."""
    given = {f.name: getattr(args, f.name) for f in fields(StreamOptions) if f.metadata["flag"]}
    for f in fields(StreamOptions):
        if f.metadata["off"] and getattr(args, f"no_{f.name}"):
            given[f.name] = None
    return StreamOptions(hop_frames=hop_frames, hop_ms=hop_ms, **given)
