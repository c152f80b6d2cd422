"""`velora stream` over hours: a DV server that restarts mid-stream is reconnected and the window
restarts after the gap (one gap in the summary and in --jsonl); with reconnecting off it ends as
before. Hostile or broken servers (a 4 GB packet length, garbage, bytes at a trickle, silence) end
in one clear error with velora's memory bounded; a camera that stops is opened again."""

from __future__ import annotations

import json
import struct
import threading
import time
import tracemalloc

import dv_processing as dv
import numpy as np
import pytest

import velora
from dv_servers import (
    BytesServer,
    DvServers,
    WriterProcess,
    capture,
    free_port,
    network_header,
    wait_until,
)
from velora.cli import main
from velora.events.aedat4 import Recording
from velora.events.readers import read_aedat4
from velora.stream import SourceError, StreamOptions, open_source, run_stream
from velora.stream.sources import CameraSource, TcpSource

STREET = "davis346/street_davis346.aedat4"
FRAMES, PERIOD_US, START_US = 24, 40_000, 1_000_000


@pytest.fixture(scope="module")
def recognizer(tiny_run):
    return velora.load(tiny_run)


@pytest.fixture(scope="module")
def synthetic_path(tmp_path_factory):
    """A 32 x 32 recording written by dv-processing: 24 frames 40 ms apart, 300 events between each two."""
    path = tmp_path_factory.mktemp("recording") / "synthetic.aedat4"
    rng = np.random.default_rng(0)
    config = dv.io.MonoCameraWriter.Config("DAVIS_TEST")
    config.addEventStream((32, 32))
    config.addFrameStream((32, 32))
    writer = dv.io.MonoCameraWriter(str(path), config)
    for k in range(FRAMES):
        t = START_US + k * PERIOD_US
        writer.writeFrame(dv.Frame(t, rng.integers(0, 256, (32, 32), dtype=np.uint8)))
        store = dv.EventStore()
        for stamp in np.sort(rng.integers(t, t + PERIOD_US, 300)).tolist():
            store.push_back(stamp, int(rng.integers(0, 32)), int(rng.integers(0, 32)), bool(rng.random() < 0.5))
        writer.writeEvents(store)
    del writer  # closes the file
    return path


def expected_topk(recognizer, recording: Recording, first: int, num_frames: int) -> list:
    """What predict gives on the window of frames first..first+T of a recording."""
    t = recording.frame_timestamps_us
    frames = slice(first, first + num_frames + 1)
    events = recording.events.window(int(t[first]), int(t[first + num_frames]))
    window = Recording(
        events, recording.aps_frames[frames], t[frames], recording.frame_exposure_us[frames], recording.path
    )
    config = recognizer.data_config(overrides=[f"data.num_frames={num_frames}"])
    probs = recognizer.probabilities([recognizer.item(window, config)], expected=config.data.modalities)[0]
    ranked = np.argsort(-probs, kind="stable")[:5]
    return [(recognizer.class_names[c], float(probs[c])) for c in ranked]


def through_packet(packets, kind: str, index: int) -> int:
    """The number of packets up to and including the index-th of `kind` ("events" or "frames")."""
    seen = -1
    for position, (_, packet_kind) in enumerate(packets):
        seen += packet_kind == kind
        if seen == index:
            return position + 1
    raise ValueError(index)


@pytest.mark.parametrize("reconnect", [True, False])
def test_a_network_writer_stopped_and_started_again_is_one_gap(recognizer, synthetic_path, tmp_path, reconnect):
    """DV killed after frame 9 and started again on the same ports; frames 10-13 are lost with it.
    Reconnecting, velora goes on from frame 14 with a new window: every window is predict's on
    consecutive frames of one side of the gap. Without reconnecting, the stream ends there."""
    recording = read_aedat4(synthetic_path)
    ports = {"events": free_port(), "frames": free_port()}
    num_frames, last_before, first_after = 2, 9, 14
    before = last_before + 1 - num_frames  # windows ending at frames 2..9
    after = FRAMES - first_after - num_frames  # windows ending at frames 16..23
    predicted, notices = [], []
    server = WriterProcess(synthetic_path, ports)
    jsonl = tmp_path / "w.jsonl"
    try:
        source = open_source(f"tcp://127.0.0.1:{ports['events']},{ports['frames']}")
        server.wait_for_clients()
        # the events of frame 9's interval, which complete the window ending at frame 9
        server.send(0, through_packet(server.packets, "events", last_before))

        def restart():
            nonlocal server
            wait_until(lambda: len(predicted) == before, timeout=30, what="the windows before the gap")
            server.kill()
            if not reconnect:
                return
            server = WriterProcess(synthetic_path, ports)
            server.wait_for_clients()
            # once velora has both connections back: packets that come before are dropped (still away)
            wait_until(lambda: any("back after" in n for n in notices), timeout=30, what="the source to be back")
            server.send(through_packet(server.packets, "events", first_after - 1), len(server.packets))

        thread = threading.Thread(target=restart)
        thread.start()
        options = StreamOptions(
            num_frames=num_frames,
            all_windows=True,
            max_windows=before + after if reconnect else None,
            reconnect_s=30 if reconnect else None,
            timeout_s=10,
        )
        summary = run_stream(
            recognizer, source, options, on_window=predicted.append, notify=notices.append, jsonl=jsonl
        )
        thread.join(30)
    finally:
        server.kill()
    ends = [int(np.searchsorted(recording.frame_timestamps_us, p.t_end_us)) for p in predicted]
    if not reconnect:
        assert summary.ended == "end of stream" and summary.error is None and summary.gaps == 0
        assert ends == list(range(num_frames, last_before + 1))
        return
    assert summary.error is None and summary.ended == "max windows"
    assert ends == list(range(num_frames, last_before + 1)) + list(range(first_after + num_frames, FRAMES))
    for prediction, end in zip(predicted, ends):
        assert prediction.topk == expected_topk(recognizer, recording, end - num_frames, num_frames)
    assert summary.gaps == 1 and summary.gap_s > 0 and summary.gap_windows >= num_frames
    lost = [n for n in notices if "lost (" in n]
    back = [n for n in notices if "back after" in n]
    assert len(lost) == 1 and "reconnecting for up to 30 s" in lost[0] and len(back) == 1
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    gaps = [line["gap"] for line in lines if "gap" in line]
    assert len(gaps) == 1 and gaps[0]["duration_s"] == pytest.approx(summary.gap_s)
    assert gaps[0]["windows"] == summary.gap_windows and gaps[0]["back_s"] > gaps[0]["lost_s"] >= 0
    assert lines[-1]["summary"]["gaps"] == 1 and lines[-1]["summary"]["gap_windows"] == summary.gap_windows


@pytest.fixture(scope="module")
def event_bytes(real_data_dir) -> tuple[bytes, int]:
    """What a NetworkWriter sends for the street recording's events, and the length of its header."""
    with DvServers(real_data_dir / STREET, frames=False) as servers:
        data = capture(servers.writers["events"], servers.ports["events"], servers.send_recording)
    return data, 4 + struct.unpack_from("<i", data)[0]


def test_a_server_that_closes_inside_a_packet_and_comes_back_is_one_gap(recognizer, event_bytes):
    """The second session repeats the first one's timestamps (DV restarted on the same recording):
    the windows after the gap are exactly those of the whole stream alone."""
    data, _ = event_bytes
    whole = BytesServer(data)
    alone = []
    run_stream(
        recognizer,
        open_source(whole.address),
        StreamOptions(resize=True, num_frames=2, reconnect_s=None, all_windows=True),
        on_window=lambda p: alone.append(p.topk),
    )
    whole.close()
    server = BytesServer([data[: len(data) // 2], data])  # cut inside a packet, then the whole stream
    happened = []
    summary = run_stream(
        recognizer,
        open_source(server.address),
        StreamOptions(resize=True, num_frames=2, reconnect_s=1, all_windows=True),
        on_window=lambda p: happened.append(p.topk),
        notify=happened.append,
    )
    server.close()
    assert server.clients == 2 and summary.gaps == 1 and summary.error is None and summary.ended == "end of stream"
    lost = [k for k, item in enumerate(happened) if isinstance(item, str) and "inside a packet" in item]
    back = [k for k, item in enumerate(happened) if isinstance(item, str) and "back after" in item]
    assert len(lost) == len(back) == 1 and "reconnecting for up to 1 s" in happened[lost[0]]
    assert [item for item in happened[back[0] :] if isinstance(item, list)] == alone and len(alone) == 3


def test_not_back_in_time_is_an_error_naming_the_limit(recognizer, event_bytes):
    data, _ = event_bytes
    server = BytesServer([data[: len(data) // 2]])  # one session, then nobody listens
    summary = run_stream(
        recognizer, open_source(server.address), StreamOptions(resize=True, num_frames=2, reconnect_s=0.5)
    )
    server.close()
    assert "lost and not back within 0.5 s (--reconnect)" in summary.error and summary.gaps == 0


def test_a_server_that_comes_back_with_another_stream_is_an_error_at_once(recognizer, event_bytes):
    data, header = event_bytes
    other = network_header("EVTS", 640, 480) + data[header:]  # another sensor on the same port
    server = BytesServer([data[: len(data) // 2], other])
    started = time.monotonic()
    summary = run_stream(
        recognizer, open_source(server.address), StreamOptions(resize=True, num_frames=2, reconnect_s=30)
    )
    server.close()
    assert "came back serving [('EVTS', 640, 480)] (type, width, height), not [('EVTS', 346, 260)]" in summary.error
    assert summary.gaps == 0 and time.monotonic() - started < 10  # not tried again for 30 s


def test_a_silence_is_reconnected_once_then_is_a_stall(recognizer, event_bytes):
    """A pulled cable looks like silence: velora reconnects; a server still silent after that has stalled."""
    data, header = event_bytes
    start = data[: header + 2000]  # the header and a few packets, then silence
    server = BytesServer([start, start], close=False)
    started = time.monotonic()
    summary = run_stream(
        recognizer,
        open_source(server.address),
        StreamOptions(resize=True, num_frames=1, frame_period_ms=5, timeout_s=0.4, reconnect_s=5),
    )
    server.close()
    assert server.clients == 2 and summary.gaps == 1
    assert "nothing received for 0.4 s (--timeout) again after reconnecting" in summary.error
    assert time.monotonic() - started < 5


def hostile_cases(event_bytes):
    data, header = event_bytes
    huge = data[:header] + struct.pack("<iI", 0, 0xFFFF_FFF0) + b"\x00" * 1024
    large = data[:header] + struct.pack("<iI", 0, 1 << 29) + b"\x00" * 1024  # once received into a 512 MiB buffer
    garbage = data[:header] + bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8))
    undeclared = data[:header] + struct.pack("<iI", 7, 16) + b"\x00" * 16
    too_many = "more than the 67,112,960 bytes of 4,194,304 events"
    return {
        "a 4 GB packet length": ({"data": huge, "close": False}, f"declares 4,294,967,280 bytes, {too_many}"),
        "a 512 MiB packet length": ({"data": large, "close": False}, f"declares 536,870,912 bytes, {too_many}"),
        "garbage after the header": ({"data": garbage, "close": False}, "the stream is cut or is not DV's"),
        "a packet of a stream the header does not declare": (
            {"data": undeclared, "close": False},
            "a packet of stream 7, which the header does not declare",
        ),
        "bytes at a trickle": (
            {"data": data, "close": False, "trickle_from": header + 4, "trickle_s": 0.02},
            "no whole packet for 0.5 s (--timeout): the sender trickles",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "a 4 GB packet length",
        "a 512 MiB packet length",
        "garbage after the header",
        "a packet of a stream the header does not declare",
        "bytes at a trickle",
    ],
)
def test_a_hostile_server_ends_in_one_clear_error_with_memory_bounded(recognizer, event_bytes, tmp_path, capsys, case):
    server_args, message = hostile_cases(event_bytes)[case]
    server = BytesServer(**server_args)
    tracemalloc.start()
    started = time.monotonic()
    try:
        code = main(
            ["stream", server.address, str(recognizer.checkpoint), "--resize", "--timeout", "0.5", "--reconnect", "5"]
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        server.close()
    err = capsys.readouterr().err
    assert code == 1 and err.count("error:") == 1 and message in err, err
    assert peak < 64 << 20, f"velora allocated {peak / 2**20:.0f} MiB for a hostile server"
    assert time.monotonic() - started < 5  # not hung beyond --timeout (0.5 s) and the reconnect limit


def test_a_header_at_a_trickle_is_cut_off_at_the_connect_timeout(event_bytes):
    data, _ = event_bytes
    server = BytesServer(data, close=False, trickle_from=2, trickle_s=0.05)  # the whole header would take minutes
    started = time.monotonic()
    with pytest.raises(SourceError, match="no stream header came within"):
        TcpSource([("127.0.0.1", server.port)], connect_timeout=0.5)
    assert time.monotonic() - started < 2
    server.close()


def test_a_camera_that_stops_is_opened_again(recognizer, real_data_dir):
    """An unplugged camera: dv-processing's recording reader has a camera's API and stops at its end."""
    opened = []

    def open_camera(serial):
        if len(opened) >= 2:
            raise RuntimeError("no camera connected")
        opened.append(dv.io.MonoCameraRecording(str(real_data_dir / STREET)))
        return opened[-1]

    predicted, notices = [], []
    source = CameraSource(None, open_camera=open_camera)
    summary = run_stream(
        recognizer,
        source,
        StreamOptions(resize=True, num_frames=2, all_windows=True, reconnect_s=0.5),
        on_window=predicted.append,
        notify=notices.append,
    )
    assert len(opened) == 2 and summary.gaps == 1
    assert len(predicted) == 4  # the recording's 4 frames make 2 windows, on each side of the gap
    assert [p.topk for p in predicted[:2]] == [p.topk for p in predicted[2:]]  # the same frames again
    assert "not back within 0.5 s" in summary.error and "no camera connected" in summary.error
    assert any("the camera stopped or was disconnected" in n for n in notices)
