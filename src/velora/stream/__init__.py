"""Live and streaming recognition (`velora stream SOURCE CHECKPOINT`).

    sources.py  where packets come from: a recording replayed, DV network servers (tcp://), a
                camera through dv-processing (optional)
    dvnet.py    the DV network protocol (AEDAT 4.0 over TCP), decoded without dv-processing
    window.py   the sliding window of the last T + 1 APS frames and the events between them (pure)
    run.py      the loop: windows -> the model input predict makes of them -> top-k, latency, gaps
    report.py   what a run reports: predictions, gaps, the summary, the --jsonl file
    options.py  StreamOptions, the command's options (no torch: `velora --help` reads them)

A top-layer package, like demo/: it uses evaluation (Recognizer), data (recording_frames) and events.
Its names are imported on first use, so `velora --help` does not load torch.
"""

import importlib

_WHERE = {
    "StreamOptions": "options",
    "StreamSummary": "report",
    "WindowPrediction": "report",
    "run_stream": "run",
    "Gap": "sources",
    "RecordingReplay": "sources",
    "SourceError": "sources",
    "open_source": "sources",
    "SlidingWindow": "window",
    "Window": "window",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"velora.stream.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'velora.stream' has no attribute {name!r}")


__all__ = [
    "Gap",
    "RecordingReplay",
    "SlidingWindow",
    "SourceError",
    "StreamOptions",
    "StreamSummary",
    "Window",
    "WindowPrediction",
    "open_source",
    "run_stream",
]
