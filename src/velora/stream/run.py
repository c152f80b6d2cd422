"""The streaming loop: packets in, a prediction per window out, a summary at the end.

    recognizer = velora.load("runs/demo/velora")
    source = open_source("tcp://127.0.0.1:7777,7778")
    summary = run_stream(recognizer, source, StreamOptions(hop_frames=2), on_window=print)

Each window (velora.stream.window) becomes exactly the model input `Recognizer.predict` makes of
its frames and events as a recording: every sample goes through `recording_frames`, the function
the recordings dataset and `predict` use, on the sample's two frames and the events between them.
A sample is computed once and reused by the next T - 1 windows, which changes no value.

Latency of a window: from the receive time of the packet holding the window's last event (see
velora.stream.sources) to the moment its class probabilities are in memory. It includes waiting
for the packet that proves the window complete (the next event, or a frame that lags behind on
its own connection), building the model input, and the forward pass.

Real-time factor: the sensor time the stream covered (first to last timestamp received by the
last prediction) over the wall time from the first packet to the end of the last prediction. A
live source gives about 1; a recording replayed as fast as possible gives how much faster than
real time the whole pipeline runs.

Late windows: with a live source, when a window is ready but more packets are already waiting,
the window is late; it is skipped if a newer one becomes ready before the backlog is read, so
predictions keep up with the sensor instead of falling further behind (`all_windows` predicts
every window; a replay as fast as possible never skips).

Gaps (velora.stream.sources): when a live source comes back after going away, the window
restarts, so no window spans the gap, and the samples computed before it are forgotten (after a
DV restart the same timestamps may come again). Each gap is said when the source goes and when it
is back, written to --jsonl ({"gap": ...}) and counted in the summary with the windows it cost
(an estimate, `gap_windows`). The same restart happens, without a gap, when the sensor's
timestamps go back (velora.stream.window).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from velora.data.factory import layout
from velora.data.names import BATCH_KEY
from velora.data.recordings import recording_frames
from velora.data.sampling import FULL_FRAME, ClipDraw
from velora.errors import DataError, OutputError
from velora.evaluation.metrics import topk_indices
from velora.evaluation.recognizer import Recognizer
from velora.stream.options import StreamOptions, parse_hop  # noqa: F401 (parse_hop: the API of this module)
from velora.stream.report import GapRecord, JsonlWriter, StreamSummary, WindowPrediction
from velora.stream.sources import Gap, Source, SourceError
from velora.stream.tokens import FrameTokens
from velora.stream.window import SlidingWindow, Window

NEVER_US = 1 << 62  # a frame timeout that never fires (an RGB-only model waits for frames)


class WindowEncoder:
    """Windows -> the model input `Recognizer.item` makes of them, each sample computed once.

    modalities: the model's data.modalities ("rgb", "event"); an event-only window feeds "event" only.
    representation, event_resize: the model's data.representation and data.event_resize (how events
        become images of the model's size).
    """

    def __init__(
        self,
        image_size: int,
        modalities: list[str],
        representation: str = "event_image",
        event_resize: str = "keep_events",
    ):
        self.image_size, self.modalities, self.representation = image_size, list(modalities), representation
        self.event_resize = event_resize
        self._samples: dict[tuple, dict[str, torch.Tensor]] = {}

    def fed(self, window: Window) -> list[str]:
        """The modalities a window gives the model."""
        return [m for m in self.modalities if m == "event"] if window.event_only else list(self.modalities)

    def keys(self, window: Window) -> list[tuple]:
        """The window's samples, each named by its time bounds (the same sample in two windows has one key)."""
        return [
            (window.event_only, int(window.boundaries_us[j]), int(window.boundaries_us[j + 1]))
            for j in range(window.num_samples)
        ]

    def item(self, window: Window) -> dict[str, torch.Tensor]:
        """{"rgb"?: (T, 3, S, S), "events"?: (T, 3, S, S)} uint8."""
        modalities = self.fed(window)
        # Sample 0 of a two-frame recording, as evaluation draws it.
        one = ClipDraw({m: np.zeros(1, dtype=np.int64) for m in modalities}, FULL_FRAME, False)
        samples = []
        for j, key in enumerate(self.keys(window)):
            if key not in self._samples:
                self._samples[key] = recording_frames(
                    window.sample(j), one, self.image_size, modalities, self.representation, self.event_resize
                )
            samples.append(self._samples[key])
        for key in [k for k in self._samples if k[1] < window.t_start_us]:
            del self._samples[key]  # before this window: no later window needs it
        return {BATCH_KEY[m]: torch.cat([s[BATCH_KEY[m]] for s in samples]) for m in modalities}

    def forget(self) -> None:
        """Forget every sample (the window restarted: the same times may come again with other content)."""
        self._samples.clear()


def training_sensor_size(recognizer: Recognizer) -> tuple[tuple[int, int], str] | None:
    """(width, height) of the model's training data and where that was read, or None when unknown.

    From data.sensor_size when the config sets it, else from the training data if it is still at
    data.root: the first APS frame of a frame dataset, the event stream of the first recording of
    a recordings dataset. The checkpoint itself does not store it.
    """
    d = recognizer.config.data
    if d.sensor_size:
        return (int(d.sensor_size[0]), int(d.sensor_size[1])), "data.sensor_size of its config"
    root = Path(d.root) if d.root else None
    if root is None or not root.is_dir():
        return None
    return layout(recognizer.config).sensor_size(root)


def check_source(recognizer: Recognizer, source: Source, options: StreamOptions, notify: Callable[[str], None]) -> None:
    """Refuse a stream the model cannot take as it is: a sensor size other than its training
    data's (unless resize), frames of another size than the events, RGB-only without frames."""
    modalities = list(recognizer.config.data.modalities)
    if source.frame_size is None and "event" not in modalities:
        raise DataError(f"{source.name} has no APS frames and the model takes RGB only ({recognizer.checkpoint})")
    sizes = [source.sensor_size] + ([source.frame_size] if source.frame_size else [])

    def show(size):
        return f"{size[0]} x {size[1]}"

    if source.frame_size and source.frame_size != source.sensor_size and not options.resize:
        raise DataError(
            f"{source.name}: its APS frames are {show(source.frame_size)} pixels but its events "
            f"{show(source.sensor_size)}, so they do not line up; pass --resize to resize each to the model's size "
            "anyway"
        )
    trained = training_sensor_size(recognizer)
    size = recognizer.config.model.image_size
    if trained is None:
        notify(
            f"the model's training sensor size is unknown (its data.root is not here); frames and event images "
            f"are resized from {show(source.sensor_size)} to {size} x {size}, as predict does"
        )
        return
    trained_size, where = trained
    if any(tuple(s) != tuple(trained_size) for s in sizes) and not options.resize:
        raise DataError(
            f"{source.name}: the sensor is {show(source.sensor_size)} pixels but the model was trained on "
            f"{show(trained_size)} data ({where}). The model sees everything resized to {size} x {size}, so another "
            "sensor changes the scale and aspect ratio of what it sees. Pass --resize to go on (the stream is resized "
            "as predict resizes a recording), or use a model trained on this sensor"
        )


def run_stream(
    recognizer: Recognizer,
    source: Source,
    options: StreamOptions = StreamOptions(),
    *,
    on_window: Callable[[WindowPrediction], None] = lambda prediction: None,
    notify: Callable[[str], None] = lambda message: None,
    jsonl: str | Path | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> StreamSummary:
    """Predict every window of `source` until it ends, stalls, breaks, reaches max_windows or
    Ctrl-C (KeyboardInterrupt), and return the summary; the source is closed on return.

    Raises DataError before reading any packet when the source does not fit the model (see
    check_source) and for a --jsonl path that cannot be written; a stall, a broken connection that
    did not come back, or a --jsonl file that fails mid-run (OutputError) end the run with
    `summary.error` set. `on_window` gets each prediction as it is made; `notify` the notices of
    the run and of the source (event-only windows, a connection that went or ended); `jsonl`
    receives the predictions and gaps, one line each, and the summary as a last line. `clock`
    must be the clock of the source's receive times (time.perf_counter unless a test injects one).
    """
    writer = None
    source.notify = notify
    source.reconnect_s = options.reconnect_s
    try:
        writer = JsonlWriter(jsonl)
        check_source(recognizer, source, options, notify)
        return _loop(recognizer, source, options, on_window, notify, writer, clock)
    finally:
        source.close()
        if writer is not None:
            writer.close()


class _Timeline:
    """Sensor time across restarts. Within a stretch between restarts, timestamps are one clock;
    at a restart the next stretch's seconds go on from where the last one ended (plus the gap)."""

    def __init__(self):
        self.first_us: int | None = None  # this stretch's first and last timestamps
        self.last_us: int | None = None
        self.offset_s = 0.0  # the stream's seconds at this stretch's first timestamp
        self.before_s = 0.0  # sensor seconds covered by the stretches before

    def add(self, first_us: int, last_us: int) -> None:
        self.first_us = first_us if self.first_us is None else min(self.first_us, first_us)
        self.last_us = last_us if self.last_us is None else max(self.last_us, last_us)

    def seconds(self, t_us: int) -> float:
        """A timestamp of this stretch as seconds since the stream's first timestamp."""
        assert self.first_us is not None, "a window's stretch has had its packets added"
        return self.offset_s + (t_us - self.first_us) / 1e6

    @property
    def covered_s(self) -> float:
        first, last = self.first_us, self.last_us  # None together, before a packet
        return self.before_s + ((last - first) / 1e6 if first is not None and last is not None else 0.0)

    def restart(self, gap_s: float) -> None:
        if self.first_us is not None and self.last_us is not None:  # set together
            self.offset_s, self.before_s = self.seconds(self.last_us), self.covered_s
        self.offset_s += gap_s
        self.first_us = self.last_us = None


def gap_windows(
    dropped: int,
    gap_s: float,
    period_us: float,
    num_frames: int,
    hop_frames: int,
    hop_us: float | None,
    spacing_us: float,
) -> int:
    """The windows a gap cost (an estimate): `dropped`, the windows that were waiting when the source
    went; the windows its `gap_s` seconds would have held, one every `period_us` (the hop); and the
    windows whose T + 1 frames would have straddled the gap (a window needs T new frames, each
    `spacing_us` apart, before the first one after it)."""
    during = round(gap_s * 1e6 / period_us)
    refill = math.ceil(num_frames / hop_frames) if hop_us is None else round(num_frames * spacing_us / hop_us)
    return dropped + during + refill


def _loop(recognizer, source, options, on_window, notify, writer, clock) -> StreamSummary:
    config = recognizer.config
    modalities = list(config.data.modalities)
    num_frames = options.num_frames or config.data.num_frames
    if recognizer.fixed_clip_length and num_frames != config.data.num_frames:
        raise DataError(
            f"{recognizer.checkpoint} takes clips of {config.data.num_frames} frames (fixed when it was exported), not "
            f"--num-frames {num_frames}: leave --num-frames out, or stream the adapter file instead"
        )
    rgb_only = "event" not in modalities

    def window_notice(message: str) -> None:
        if message.startswith(("no APS", "no new APS")) and "rgb" in modalities:
            message += f"; the model (trained on {'+'.join(modalities)}) takes its missing-modality path"
        notify(message)

    hop_us = None if options.hop_ms is None else round(options.hop_ms * 1000)
    frame_period_us = round(options.frame_period_ms * 1000)
    window = SlidingWindow(
        num_frames,
        source.sensor_size,
        hop_frames=options.hop_frames,
        hop_us=hop_us,
        expect_frames=source.frame_size is not None,
        frame_period_us=frame_period_us,
        frame_timeout_us=NEVER_US if rgb_only else round(options.frame_timeout_s * 1e6),
        frame_timeout_s=options.frame_timeout_s if source.frames_apart else None,
        event_timeout_us=round(options.frame_timeout_s * 1e6),
        notify=window_notice,
    )
    if source.frame_size is None:
        window_notice(
            f"no APS frames in {source.name}: event-only windows of {num_frames} x {options.frame_period_ms:g} ms"
        )
    encoder = WindowEncoder(config.model.image_size, modalities, config.data.representation, config.data.event_resize)
    tokens = None
    if options.reuse_frames:
        if getattr(recognizer, "model", None) is None:
            raise DataError(
                f"--reuse-frames needs a PyTorch model (a run folder or adapter file); {recognizer.checkpoint} "
                "runs each window as one graph"
            )
        tokens = FrameTokens(recognizer.model, recognizer.device, keep=6 * (num_frames + 2))
    summary = StreamSummary(source.name)
    skip_late = source.live and not options.all_windows
    timeline = _Timeline()
    first_wall = last_done = None
    covered_at_done = 0.0
    last_boundaries: np.ndarray | None = None  # the last window predicted's boundaries
    restarts = window.restarts
    ready: list[Window] = []

    def predict(w: Window) -> None:
        nonlocal last_done, covered_at_done, last_boundaries
        started = clock()
        item = encoder.item(w)
        fed = encoder.fed(w)
        if tokens is not None:
            probs = tokens.probabilities(item, encoder.keys(w), fed)
        else:
            probs = recognizer.probabilities([item], expected=fed)[0]
        done = last_done = clock()
        covered_at_done = timeline.covered_s
        last_boundaries = w.boundaries_us
        ranked = topk_indices(probs[None], min(options.top_k, len(probs)))[0]
        prediction = WindowPrediction(
            window=w.index,
            t_start_us=w.t_start_us,
            t_end_us=w.t_end_us,
            t_start_s=timeline.seconds(w.t_start_us),
            t_end_s=timeline.seconds(w.t_end_us),
            frames=0 if w.event_only else len(w.boundaries_us),
            events=w.num_events,
            modalities=fed,
            topk=[(recognizer.class_names[c], float(probs[c])) for c in ranked],
            latency_ms=(done - w.last_event_received) * 1e3,
            wait_ms=(w.completed_received - w.last_event_received) * 1e3,
            compute_ms=(done - started) * 1e3,
        )
        summary.windows += 1
        summary.event_only_windows += w.event_only
        summary.latency.add(prediction.latency_ms)
        summary.compute.add(prediction.compute_ms)
        writer.write(asdict(prediction))
        on_window(prediction)

    def flush() -> bool:
        """Predict the ready windows (the newest only when skipping); True at max_windows."""
        nonlocal ready
        if skip_late and len(ready) > 1:
            summary.skipped += len(ready) - 1
            ready = ready[-1:]
        for w in ready:
            predict(w)
            if options.max_windows is not None and summary.windows + summary.skipped >= options.max_windows:
                return True
        ready = []
        return False

    def restarted(gap_s: float) -> None:
        """The window restarted (a gap, or the clock went back): forget what was computed before."""
        nonlocal restarts
        restarts = window.restarts
        timeline.restart(gap_s)
        encoder.forget()
        if tokens is not None:
            tokens.tokens.clear()

    def came_back(gap: Gap) -> None:
        # boundary spacing of the last window predicted (the virtual frames' before one)
        spacing_us = float(frame_period_us if last_boundaries is None else np.median(np.diff(last_boundaries)))
        period_us = hop_us if hop_us is not None else options.hop_frames * spacing_us
        lost = gap_windows(
            window.restart(), gap.duration_s, period_us, num_frames, options.hop_frames, hop_us, spacing_us
        )
        restarted(gap.duration_s)
        summary.gaps += 1
        summary.gap_s += gap.duration_s
        summary.gap_windows += lost
        origin = first_wall if first_wall is not None else gap.lost
        notify(f"{gap.what}: back after {gap.duration_s:.1f} s; the window restarts (about {lost} windows lost)")
        writer.write_gap(GapRecord(gap.what, gap.reason, gap.lost - origin, gap.back - origin, gap.duration_s, lost))

    try:
        while True:
            packet = source.next(options.timeout_s)
            if packet is None:
                window.finish()
                ready.extend(window.pop_ready())
                flush()
                summary.ended = "end of stream"
                break
            if isinstance(packet, Gap):
                if flush():  # the windows completed before the gap
                    summary.ended = "max windows"
                    break
                came_back(packet)
                continue
            data = packet.data
            if packet.kind == "frame":
                window.add_frame(data.image, data.timestamp_us, packet.received)
                span: tuple[int, int] | None = (data.timestamp_us, data.timestamp_us)
            else:
                window.add_events(data.t, data.x, data.y, data.p, packet.received)
                span = (int(data.t[0]), int(data.t[-1])) if len(data.t) else None
            if window.restarts != restarts:  # the clock went back: windows still waiting are of the old clock
                summary.skipped += len(ready)
                ready = []
                restarted(0.0)
            if span is not None:
                timeline.add(*span)
            if first_wall is None:
                first_wall = packet.received
            ready.extend(window.pop_ready())
            if ready and not (skip_late and source.backlog()):
                if flush():
                    summary.ended = "max windows"
                    break
    except KeyboardInterrupt:
        summary.ended = "interrupted (Ctrl-C)"
    except (SourceError, OutputError) as error:
        summary.ended = summary.error = str(error)
    if first_wall is not None:  # up to the last prediction: a stall's timeout or a quiet tail is no work
        summary.wall_s = (last_done if last_done is not None else clock()) - first_wall
        summary.sensor_s = covered_at_done if last_done is not None else timeline.covered_s
    summary.clock_jumps, summary.duplicate_packets = window.clock_jumps, window.duplicates
    summary.frames_ignored = window.frames_ignored
    summary.finish()
    try:
        writer.write({"summary": summary.as_dict()})
    except OutputError as error:
        summary.ended = summary.error = summary.error or str(error)
    return summary
