"""`velora stream`: predictions from a stream (a replay, DV's network stream over loopback, a camera)
equal `predict` on the same windows of the file; event-only windows; clear errors for a refused
port, a stall, a cut connection, a sensor of another size; Ctrl-C and the end give a summary."""

from __future__ import annotations

import errno
import json
import struct
import sys
import time
from dataclasses import replace
from pathlib import Path

import dv_processing as dv
import numpy as np
import pytest

import velora
from conftest import fill_adapters
from dv_servers import BytesServer, DvServers, capture, free_port
from velora.cli import main
from velora.errors import DataError
from velora.events.aedat4 import Recording
from velora.events.readers import read_aedat4
from velora.stream import (
    RecordingReplay,
    SourceError,
    StreamOptions,
    open_source,
    run_stream,
)
from velora.stream.report import Durations
from velora.stream.run import gap_windows, parse_hop
from velora.stream.sources import CameraSource, parse_tcp

STREET = "davis346/street_davis346.aedat4"


@pytest.fixture(scope="module")
def recognizer(tiny_run):
    return velora.load(tiny_run)


@pytest.fixture(scope="module")
def street(real_data_dir):
    return read_aedat4(real_data_dir / STREET)


def expected_topk(recognizer, recording, num_frames, k, top_k=5, modalities=None):
    """What predict gives on window k of a recording: its frames k..k+T and the events between."""
    t = recording.frame_timestamps_us
    frames = slice(k, k + num_frames + 1)
    events = recording.events.window(int(t[k]), int(t[k + num_frames]))
    exposure = recording.frame_exposure_us[frames]
    window = Recording(events, recording.aps_frames[frames], t[frames], exposure, recording.path)
    config = recognizer.data_config(modalities=modalities, overrides=[f"data.num_frames={num_frames}"])
    probs = recognizer.probabilities([recognizer.item(window, config)], expected=config.data.modalities)[0]
    ranked = np.argsort(-probs, kind="stable")[:top_k]
    return [(recognizer.class_names[c], float(probs[c])) for c in ranked]


def stream(recognizer, source, clock=time.perf_counter, **options):
    predictions, notices = [], []
    options.setdefault("resize", True)
    options.setdefault("reconnect_s", None)  # a lost source ends the stream; the tests of reconnecting set it
    summary = run_stream(
        recognizer, source, StreamOptions(**options), on_window=predictions.append, notify=notices.append, clock=clock
    )
    return predictions, summary, notices


@pytest.mark.parametrize("num_frames", [1, 2])
def test_a_replay_predicts_what_predict_gives_on_the_same_windows(recognizer, street, real_data_dir, num_frames):
    predictions, summary, _ = stream(recognizer, open_source(str(real_data_dir / STREET)), num_frames=num_frames)
    assert len(predictions) == summary.windows == len(street.aps_frames) - num_frames
    for k, prediction in enumerate(predictions):
        assert prediction.topk == expected_topk(recognizer, street, num_frames, k)
        assert prediction.frames == num_frames + 1 and prediction.modalities == ["rgb", "event"]
    assert summary.ended == "end of stream" and summary.error is None and summary.skipped == 0


def test_a_replay_draws_events_as_the_models_representation(tiny_run, street, real_data_dir):
    """A model trained on another event representation (here two-channel counts, from recordings)
    streams with it."""
    recognizer = velora.load(tiny_run)
    data = replace(recognizer.config.data, layout="recordings", representation="count")
    recognizer.config = replace(recognizer.config, data=data)
    predictions, _, _ = stream(recognizer, open_source(str(real_data_dir / STREET)), num_frames=2, top_k=8)
    assert len(predictions) == len(street.aps_frames) - 2
    for k, prediction in enumerate(predictions):
        assert prediction.topk == expected_topk(recognizer, street, 2, k, top_k=8)


def test_a_window_of_the_whole_recording_is_predict_on_the_file(recognizer, real_data_dir):
    """The model's T = 3 and a recording of 4 APS frames: one window, the file itself."""
    (prediction,), _, _ = stream(recognizer, open_source(str(real_data_dir / STREET)), top_k=8)
    assert prediction.topk == recognizer.predict(real_data_dir / STREET, top_k=8).topk
    assert prediction.t_start_s == 0.0 and prediction.t_end_s == pytest.approx(0.12)


@pytest.mark.parametrize("num_frames", [2, 3])
def test_the_tcp_stream_of_a_network_writer_predicts_what_predict_gives_on_the_file(
    recognizer, street, real_data_dir, num_frames
):
    """The real recording served by dv-processing's NetworkWriter on loopback, events and frames
    on two ports, read by velora's own decoder."""
    windows = len(street.aps_frames) - num_frames
    with DvServers(real_data_dir / STREET) as servers:  # waits for the client to leave: close the source first
        source = open_source(servers.address)
        try:
            servers.wait_for_clients()
            servers.send_recording()
            predictions, summary, _ = stream(
                recognizer, source, num_frames=num_frames, all_windows=True, max_windows=windows
            )
        finally:
            source.close()
    assert source.sensor_size == source.frame_size == (346, 260)
    assert [p.topk for p in predictions] == [expected_topk(recognizer, street, num_frames, k) for k in range(windows)]
    assert summary.ended == "max windows" and summary.p95_latency_ms > 0 and summary.realtime_factor > 0
    if num_frames == 3:
        assert predictions[0].topk == recognizer.predict(real_data_dir / STREET).topk


def event_only_expected(recognizer, events, boundaries, top_k=5):
    """predict on an event-only window: its events between virtual frames, the event modality alone."""
    frames = np.zeros((len(boundaries), events.height, events.width), np.uint8)  # not read: events only
    window = Recording(
        events.window(int(boundaries[0]), int(boundaries[-1])),
        frames,
        boundaries,
        np.zeros(len(boundaries), np.int64),
        Path("<window>"),
    )
    config = recognizer.data_config(modalities=["event"], overrides=[f"data.num_frames={len(boundaries) - 1}"])
    probs = recognizer.probabilities([recognizer.item(window, config)], expected=["event"])[0]
    ranked = np.argsort(-probs, kind="stable")[:top_k]
    return [(recognizer.class_names[c], float(probs[c])) for c in ranked]


def test_without_aps_frames_windows_are_event_only_and_the_model_takes_its_missing_modality_path(recognizer, street):
    empty = np.zeros(0, np.int64)
    events_only = Recording(street.events, np.zeros((0, 260, 346), np.uint8), empty, empty, street.path)
    predictions, summary, notices = stream(
        recognizer, RecordingReplay(events_only, "events only"), num_frames=2, frame_period_ms=30
    )
    assert len(predictions) == 4 and summary.event_only_windows == 4  # 170 ms of events: ticks every 30 ms
    for prediction in predictions:
        boundaries = np.arange(prediction.t_start_us, prediction.t_end_us + 1, 30_000)
        assert prediction.topk == event_only_expected(recognizer, street.events, boundaries)
        assert prediction.frames == 0 and prediction.modalities == ["event"]
    said = [n for n in notices if "missing-modality" in n]
    assert len(said) == 1 and "event-only windows of 2 x 30 ms" in said[0]


def test_an_event_only_tcp_stream_too(recognizer, street, real_data_dir):
    with DvServers(real_data_dir / STREET, frames=False) as servers:
        source = open_source(servers.address)
        try:
            servers.wait_for_clients()
            servers.send_recording()
            predictions, summary, notices = stream(
                recognizer, source, num_frames=2, frame_period_ms=30, all_windows=True, max_windows=4
            )
        finally:
            source.close()
    assert source.frame_size is None
    for prediction in predictions:
        boundaries = np.arange(prediction.t_start_us, prediction.t_end_us + 1, 30_000)
        assert prediction.topk == event_only_expected(recognizer, street.events, boundaries)
    assert summary.windows == 4 and sum("missing-modality" in n for n in notices) == 1


def test_a_sensor_of_another_size_than_the_training_data_needs_resize_and_writes_nothing(
    recognizer, real_data_dir, tmp_path
):
    jsonl = tmp_path / "windows.jsonl"
    jsonl.write_text("an earlier run\n")
    with pytest.raises(DataError, match=r"346 x 260 pixels but the model was trained on 32 x 32 .*--resize"):
        run_stream(recognizer, open_source(str(real_data_dir / STREET)), StreamOptions(), jsonl=jsonl)
    assert jsonl.read_text() == "an earlier run\n"
    new = tmp_path / "new.jsonl"
    code = main(["stream", str(real_data_dir / STREET), str(recognizer.checkpoint), "--jsonl", str(new)])
    assert code == 2 and not new.exists()


def test_a_refused_port_is_one_clear_error_and_no_file(recognizer, tmp_path, capsys):
    port = free_port()
    with pytest.raises(SourceError, match=f"tcp://127.0.0.1:{port}: connection refused; no server listens"):
        open_source(f"tcp://127.0.0.1:{port}")
    code = main(["stream", f"tcp://127.0.0.1:{port}", str(recognizer.checkpoint), "--jsonl", str(tmp_path / "w.jsonl")])
    assert code == 2 and not (tmp_path / "w.jsonl").exists()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "connection refused" in err and "Traceback" not in err


@pytest.fixture(scope="module")
def event_bytes(real_data_dir) -> tuple[bytes, int]:
    """What a NetworkWriter sends for the street recording's events, and the length of its header."""
    with DvServers(real_data_dir / STREET, frames=False) as servers:
        data = capture(servers.writers["events"], servers.ports["events"], servers.send_recording)
    return data, 4 + struct.unpack_from("<i", data)[0]


def test_a_stalled_sender_is_reported_with_a_summary_and_whole_lines(recognizer, event_bytes, tmp_path):
    data, header = event_bytes
    server = BytesServer(data[: header + 2000], close=False)  # the header and a few packets, then silence
    jsonl = tmp_path / "w.jsonl"
    summary = run_stream(
        recognizer,
        open_source(server.address),
        StreamOptions(resize=True, timeout_s=0.3, frame_period_ms=5, num_frames=1, reconnect_s=None),
        jsonl=jsonl,
    )
    server.close()
    assert "nothing received for 0.3 s" in summary.error and "stalled" in summary.error
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert lines[-1]["summary"]["error"] == summary.error and all("topk" in line for line in lines[:-1])


def test_a_connection_cut_inside_a_packet_is_an_error_a_clean_close_ends_the_stream(recognizer, event_bytes):
    data, _ = event_bytes
    cut = BytesServer(data[:-5])
    _, summary, _ = stream(recognizer, open_source(cut.address))
    cut.close()
    assert "closed the connection inside a packet" in summary.error
    whole = BytesServer(data)
    _, summary, notices = stream(recognizer, open_source(whole.address), num_frames=2)
    whole.close()
    assert summary.error is None and summary.ended == "end of stream"
    assert summary.windows + summary.skipped == 3  # 170 ms of events, 40 ms virtual frames, T = 2
    assert any("the stream ended" in n for n in notices)


def test_ctrl_c_writes_the_summary(recognizer, real_data_dir, tmp_path):
    def interrupt(prediction):
        raise KeyboardInterrupt

    jsonl = tmp_path / "w.jsonl"
    summary = run_stream(
        recognizer,
        open_source(str(real_data_dir / STREET)),
        StreamOptions(resize=True, num_frames=1),
        on_window=interrupt,
        jsonl=jsonl,
    )
    assert summary.ended == "interrupted (Ctrl-C)" and summary.windows == 1
    lines = jsonl.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["summary"]["windows"] == 1


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_realtime_replay_runs_at_the_recordings_pace_and_skips_late_windows(recognizer, street, monkeypatch):
    clock = FakeClock()
    replay = RecordingReplay(street, "street", realtime=True, clock=clock, sleep=clock.sleep)
    predictions, summary, _ = stream(recognizer, replay, clock=clock, num_frames=1)
    assert len(predictions) == 3 and summary.skipped == 0
    assert summary.realtime_factor == pytest.approx(1.0, abs=0.01)
    assert all(p.latency_ms < 1 for p in predictions)  # counted from the release of the last event's packet

    probabilities = recognizer.probabilities

    def slow(*args, **kwargs):  # a forward pass of 100 ms of the fake clock: slower than the 40 ms frames
        clock.now += 0.1
        return probabilities(*args, **kwargs)

    monkeypatch.setattr(recognizer, "probabilities", slow)
    clock = FakeClock()
    replay = RecordingReplay(street, "street", realtime=True, clock=clock, sleep=clock.sleep)
    summary = run_stream(recognizer, replay, StreamOptions(resize=True, num_frames=1), clock=clock)
    assert summary.windows + summary.skipped == 3 and summary.skipped >= 1
    clock = FakeClock()
    replay = RecordingReplay(street, "street", realtime=True, clock=clock, sleep=clock.sleep)
    summary = run_stream(recognizer, replay, StreamOptions(resize=True, num_frames=1, all_windows=True), clock=clock)
    assert summary.windows == 3 and summary.skipped == 0 and summary.p95_latency_ms >= 100


def test_a_camera_is_read_through_dv_processing(recognizer, street, real_data_dir):
    """A recording opened by dv-processing has a camera's reading API: the camera code path runs on it."""
    source = CameraSource(None, open_camera=lambda serial: dv.io.MonoCameraRecording(str(real_data_dir / STREET)))
    assert source.sensor_size == source.frame_size == (346, 260)
    predictions, _, _ = stream(recognizer, source, num_frames=2, all_windows=True, max_windows=2)
    assert [p.topk for p in predictions] == [expected_topk(recognizer, street, 2, k) for k in range(2)]
    source = CameraSource(None, open_camera=lambda serial: dv.io.MonoCameraRecording(str(real_data_dir / STREET)))
    _, summary, _ = stream(recognizer, source, num_frames=2)
    assert summary.error == "camera: (events): the camera stopped or was disconnected"


def test_camera_sources_say_what_is_missing(monkeypatch):
    monkeypatch.setattr(dv.io.camera, "discover", lambda: [])
    with pytest.raises(SourceError, match="dv-processing finds no camera; connect one"):
        open_source("camera:")

    class Device:
        serialNumber = "00000499"

    monkeypatch.setattr(dv.io.camera, "discover", lambda: [Device()])
    with pytest.raises(SourceError, match="camera:123: no camera with that serial number; connected: 00000499"):
        open_source("camera:123")
    monkeypatch.setitem(sys.modules, "dv_processing", None)  # not installed
    with pytest.raises(SourceError, match="pip install dv-processing"):
        open_source("camera:")


def test_source_and_hop_arguments():
    assert parse_tcp("tcp://127.0.0.1:7777") == [("127.0.0.1", 7777)]
    assert parse_tcp("tcp://cam.local:7777,7778") == [("cam.local", 7777), ("cam.local", 7778)]
    assert parse_tcp("tcp://a:1,b:2") == [("a", 1), ("b", 2)]
    assert parse_tcp("tcp://[::1]:7777") == [("::1", 7777)]
    for bad in ("tcp://host", "tcp://:7777", "tcp://host:0", "tcp://host:99999", "tcp://7777"):
        with pytest.raises(SourceError, match="give tcp://HOST:PORT"):
            parse_tcp(bad)
    with pytest.raises(SourceError, match="neither a recording file"):
        open_source("nowhere.aedat4")
    assert parse_hop("2") == (2, None) and parse_hop("100ms") == (1, 100.0) and parse_hop(" 2.5MS") == (1, 2.5)
    for bad in ("0", "-1", "1.5", "ms", "0ms", "infms", "2 frames"):
        with pytest.raises(ValueError, match="--hop"):
            parse_hop(bad)


def test_the_command_prints_windows_and_a_summary(recognizer, real_data_dir, tmp_path, capsys):
    jsonl = tmp_path / "w.jsonl"
    code = main(
        [
            "stream",
            str(real_data_dir / STREET),
            str(recognizer.checkpoint),
            "--resize",
            "--frames",
            "2",
            "--top-k",
            "3",
            "--jsonl",
            str(jsonl),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("window ") == 2 and "summary: 2 windows" in out and "real-time factor" in out
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [len(line["topk"]) for line in lines[:2]] == [3, 3] and lines[2]["summary"]["ended"] == "end of stream"
    assert main(["stream", "tcp://127.0.0.1:1", str(recognizer.checkpoint), "--realtime"]) == 2
    assert main(["stream", str(real_data_dir / STREET), str(recognizer.checkpoint), "--hop", "0"]) == 2
    assert main(["stream", "tcp://127.0.0.1:1", str(recognizer.checkpoint), "--reconnect", "0"]) == 2
    assert "--reconnect must be greater than 0" in capsys.readouterr().err


def test_an_event_file_replays_its_events_alone(recognizer, real_data_dir):
    """An N-MNIST file (34 x 34, no frames): event-only windows; another sensor size needs --resize."""
    path = str(real_data_dir / "nmnist" / "1.bs2")
    source = open_source(path)
    assert source.sensor_size == (34, 34) and source.frame_size is None
    with pytest.raises(DataError, match="34 x 34 pixels but the model was trained on 32 x 32"):
        run_stream(recognizer, source, StreamOptions())
    predictions, summary, _ = stream(recognizer, open_source(path), num_frames=2, frame_period_ms=50)
    assert predictions and all(p.frames == 0 and p.modalities == ["event"] for p in predictions)
    assert summary.error is None and summary.windows == summary.event_only_windows


def test_a_jsonl_path_that_cannot_be_written_is_refused_before_streaming(recognizer, real_data_dir, tmp_path):
    for bad, message in ((tmp_path, "is a folder"), (tmp_path / "missing" / "w.jsonl", "does not exist")):
        with pytest.raises(DataError, match=message):
            run_stream(recognizer, open_source(str(real_data_dir / STREET)), StreamOptions(resize=True), jsonl=bad)


def test_reusing_each_frames_tokens_gives_the_full_forward_passs_predictions(tiny_run, street, real_data_dir):
    """--reuse-frames: the low-level tokens of a sample are computed once for all its windows; the
    probabilities equal the full forward pass's up to float rounding, window by window (T = 1 and 2
    on the street recording's frames, both modalities, and event-only windows). The adapters are
    made large, so that every stream (the frame differences too) moves the probabilities."""
    recognizer = velora.load(tiny_run)
    fill_adapters(recognizer.model, seed=3, scale=0.3)
    for num_frames in (1, 2):
        full, _, _ = stream(recognizer, open_source(str(real_data_dir / STREET)), num_frames=num_frames, top_k=8)
        reused, summary, _ = stream(
            recognizer, open_source(str(real_data_dir / STREET)), num_frames=num_frames, top_k=8, reuse_frames=True
        )
        assert summary.windows == len(full) == len(reused) >= 2
        for a, b in zip(full, reused):
            assert dict(b.topk) == pytest.approx(dict(a.topk), abs=1e-5)

    def events_only() -> RecordingReplay:  # the street recording without its APS frames, replayed afresh
        frames = slice(0, 0)
        without = Recording(
            street.events,
            street.aps_frames[frames],
            street.frame_timestamps_us[frames],
            street.frame_exposure_us[frames],
            street.path,
        )
        return RecordingReplay(without, "events only")

    full, _, _ = stream(recognizer, events_only(), num_frames=2, top_k=8, frame_period_ms=30)
    reused, _, _ = stream(recognizer, events_only(), num_frames=2, top_k=8, frame_period_ms=30, reuse_frames=True)
    assert len(full) == len(reused) >= 2 and all(w.modalities == ["event"] for w in reused)
    for a, b in zip(full, reused):
        assert dict(b.topk) == pytest.approx(dict(a.topk), abs=1e-5)


def test_a_jsonl_file_on_a_full_disk_keeps_whole_lines_and_ends_the_run_with_one_error(
    recognizer, real_data_dir, tmp_path, monkeypatch, capsys
):
    from velora.stream import report

    class FullDisk:
        """An unbuffered file whose third write puts half of its bytes on disk, then finds no space."""

        def __init__(self, path):
            self.file, self.writes = open(path, "wb", buffering=0), 0

        def write(self, data: bytes) -> int:
            self.writes += 1
            if self.writes == 3:
                self.file.write(data[: len(data) // 2])
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.file.write(data)

        def truncate(self, size: int) -> int:
            return self.file.truncate(size)

        def close(self) -> None:
            self.file.close()

    monkeypatch.setattr(report, "open", lambda path, mode, buffering: FullDisk(path), raising=False)
    jsonl = tmp_path / "w.jsonl"
    code = main(
        [
            "stream",
            str(real_data_dir / STREET),
            str(recognizer.checkpoint),
            "--resize",
            "--frames",
            "1",
            "--jsonl",
            str(jsonl),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and err.count("error:") == 1, err
    assert f"--jsonl {jsonl}: cannot write (No space left on device); its 2 lines before are whole" in err
    lines = jsonl.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(line)["topk"] for line in lines)


def test_latency_percentiles_are_kept_in_constant_memory_within_one_percent():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.lognormal(3, 1, 20_000), [0.0, 1e-6, 5e8]])
    durations = Durations()
    for value in values:
        durations.add(value)
    for q in (50, 95, 99):
        exact = np.percentile(values, q, method="inverted_cdf")
        assert exact <= durations.percentile(q) <= exact * 1.01
    assert durations.max == values.max() and durations.mean == pytest.approx(values.mean())
    assert durations.count == len(values) and durations.bins.nbytes < 32_000
    assert Durations().percentile(95) is None and Durations().mean is None


def test_the_windows_a_gap_costs():
    """Dropped when it went + its time at the hop + the T frames a restarted window needs."""
    assert gap_windows(2, 1.0, 40_000, 4, 1, None, 40_000) == 2 + 25 + 4
    assert gap_windows(0, 1.0, 80_000, 4, 2, None, 40_000) == 0 + 12 + 2  # every 2nd frame (12.5 rounds to 12)
    assert gap_windows(0, 0.5, 100_000, 4, 1, 100_000, 40_000) == 0 + 5 + 2  # every 100 ms, 4 frames of 40 ms
