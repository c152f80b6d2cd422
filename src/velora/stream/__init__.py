"""Live and streaming recognition (`velora stream SOURCE CHECKPOINT`).

    sources.py  where packets come from: a recording replayed, DV network servers (tcp://), a
                camera through dv-processing (optional)
    dvnet.py    the DV network protocol (AEDAT 4.0 over TCP), decoded without dv-processing
    window.py   the sliding window of the last T + 1 APS frames and the events between them (pure)
    run.py      the loop: windows -> the model input predict makes of them -> top-k, latency, gaps
    report.py   what a run reports: predictions, gaps, the summary, the --jsonl file

A top-layer package, like demo/: it uses evaluation (Recognizer), data (recording_frames) and events.
"""

from velora.stream.report import StreamSummary, WindowPrediction
from velora.stream.run import StreamOptions, run_stream
from velora.stream.sources import Gap, RecordingReplay, SourceError, open_source
from velora.stream.window import SlidingWindow, Window

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
