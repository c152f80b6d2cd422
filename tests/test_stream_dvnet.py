"""The DV network protocol: what a dv-processing NetworkWriter sends decodes, without
dv-processing, to exactly what read_aedat4 reads from the recording it serves."""

from __future__ import annotations

import socket
import struct

import dv_processing as dv
import numpy as np
import pytest
from dv_servers import BytesServer, DvServers, capture, free_port, wait_until

from velora.events.readers import read_aedat4
from velora.stream.dvnet import Connection, ProtocolError, parse_header

STREET = "davis346/street_davis346.aedat4"


def read_until(connection: Connection, done) -> list:
    """Packets until done(packets) holds (each receive waits at most 5 s)."""
    connection.sock.settimeout(5)
    packets = []
    while not done(packets):
        packets.append(connection.read_packet()[0])
    return packets


@pytest.mark.parametrize("compression", ["NONE", "LZ4", "ZSTD"])
def test_a_network_writer_serving_a_real_recording_decodes_to_what_read_aedat4_reads(real_data_dir, compression):
    expected = read_aedat4(real_data_dir / STREET)
    servers = DvServers(real_data_dir / STREET, compression=compression)
    events = Connection(socket.create_connection(("127.0.0.1", servers.ports["events"]), timeout=5), "events")
    frames = Connection(socket.create_connection(("127.0.0.1", servers.ports["frames"]), timeout=5), "frames")
    try:
        assert events.header.compression_name == frames.header.compression_name == compression
        (event_info,), (frame_info,) = events.header.streams.values(), frames.header.streams.values()
        assert (event_info.type_id, event_info.width, event_info.height) == ("EVTS", 346, 260)
        assert event_info.source == "DAVIS346_TEST"
        assert (frame_info.type_id, frame_info.width, frame_info.height) == ("FRME", 346, 260)
        servers.wait_for_clients()
        servers.send_recording()
        batches = read_until(events, lambda got: sum(len(b.t) for b in got) >= len(expected.events))
        images = read_until(frames, lambda got: len(got) == len(expected.aps_frames))
    finally:
        events.close(), frames.close()
        servers.close()
    for column in ("t", "x", "y", "p"):
        got = np.concatenate([getattr(batch, column) for batch in batches])
        assert got.dtype == getattr(expected.events, column).dtype
        np.testing.assert_array_equal(got, getattr(expected.events, column))
    np.testing.assert_array_equal(np.stack([f.image for f in images]), expected.aps_frames)
    assert [f.timestamp_us for f in images] == expected.frame_timestamps_us.tolist()
    assert [f.exposure_us for f in images] == expected.frame_exposure_us.tolist()


@pytest.mark.parametrize("compression", ["NONE", "ZSTD"])
def test_colour_and_16_bit_frames_decode_as_read_aedat4_reads_them_from_a_file(tmp_path, compression):
    """BGR, BGRA and 16-bit frames: RGB order, alpha dropped, high byte, as the file reader gives."""
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 256, (3, 4, 3), dtype=np.uint8),  # BGR
        rng.integers(0, 256, (3, 4, 4), dtype=np.uint8),  # BGRA
        rng.integers(0, 65536, (3, 4), dtype=np.uint16),  # 16-bit gray
        rng.integers(0, 256, (3, 4), dtype=np.uint8),
    ]
    expected = []  # read_aedat4 reads frames of one shape per file: one file per frame
    for k, image in enumerate(images):
        config = dv.io.MonoCameraWriter.Config("TEST")
        config.addFrameStream((4, 3))
        config.addEventStream((4, 3))
        writer = dv.io.MonoCameraWriter(str(tmp_path / f"{k}.aedat4"), config)
        writer.writeFrame(dv.Frame(1000 * (k + 1), image))
        del writer  # closes the file
        recording = read_aedat4(tmp_path / f"{k}.aedat4")
        expected.append((recording.aps_frames[0], int(recording.frame_timestamps_us[0])))

    stream = dv.io.Stream.FrameStream(0, "frames", "TEST", (4, 3))
    stream.setCompression(getattr(dv.CompressionType, compression))
    port = free_port()
    server = dv.io.NetworkWriter("127.0.0.1", port, stream)
    connection = Connection(socket.create_connection(("127.0.0.1", port)), "frames")
    try:
        wait_until(lambda: server.getClientCount() == 1)
        for k, image in enumerate(images):
            server.writeFrame(dv.Frame(1000 * (k + 1), image))
        frames = read_until(connection, lambda got: len(got) == len(images))
    finally:
        connection.close()
        wait_until(lambda: server.getClientCount() == 0)
    assert len(frames) == 4
    for got, (image, timestamp) in zip(frames, expected):
        assert got.image.dtype == np.uint8
        np.testing.assert_array_equal(got.image, image)
        assert got.timestamp_us == timestamp
    assert frames[0].image[0, 0].tolist() == images[0][0, 0, ::-1].tolist()  # BGR on the wire, RGB out


@pytest.fixture(scope="module")
def network_bytes(real_data_dir) -> bytes:
    """The bytes a NetworkWriter sends for the street recording's events."""
    with DvServers(real_data_dir / STREET, frames=False) as servers:
        return capture(servers.writers["events"], servers.ports["events"], servers.send_recording)


def test_the_stream_is_an_aedat4_file_without_magic_and_data_table(network_bytes):
    data = network_bytes
    (size,) = struct.unpack_from("<i", data)
    header = parse_header(data[: 4 + size])
    assert header.compression_name == "NONE" and header.streams[0].type_id == "EVTS"
    position, count = 4 + size, 0
    while position < len(data):  # packets tile the rest exactly: int32 stream id, uint32 size, content
        stream_id, length = struct.unpack_from("<iI", data, position)
        assert stream_id == 0 and data[position + 16 : position + 20] == b"EVTS"
        position += 8 + length
        count += 1
    assert position == len(data) and count > 1


def test_a_clean_close_between_packets_ends_a_cut_inside_one_is_an_error(network_bytes):
    data = network_bytes
    whole = BytesServer(data)
    connection = Connection(socket.create_connection(("127.0.0.1", whole.port), timeout=5), "whole")
    packets = 0
    with pytest.raises(EOFError):
        while True:
            connection.read_packet()
            packets += 1
    assert packets > 1
    cut = BytesServer(data[:-5])
    connection = Connection(socket.create_connection(("127.0.0.1", cut.port), timeout=5), "cut")
    with pytest.raises(ProtocolError, match="closed the connection inside a packet"):
        while True:
            connection.read_packet()
    whole.close(), cut.close()


@pytest.mark.parametrize(
    "data, message",
    [
        (b"HTTP/1.1 200 OK\r\n\r\n", "not a DV IOHeader"),
        (struct.pack("<i", 16) + b"\x00" * 4 + b"XXXX" + b"\x00" * 8, "not a DV IOHeader"),
        (b"", "closed the connection inside the header"),
    ],
)
def test_a_server_speaking_another_protocol_is_named(data, message):
    server = BytesServer(data)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    with pytest.raises(ProtocolError, match=message):
        Connection(sock, "other")
    sock.close()
    server.close()


def test_a_corrupt_packet_is_a_protocol_error_not_a_crash(network_bytes):
    data = bytearray(network_bytes)
    (size,) = struct.unpack_from("<i", data)
    first = 4 + size
    struct.pack_into("<I", data, first + 8 + 4, 10**6)  # the root offset of the first packet's flatbuffer
    server = BytesServer(bytes(data))
    connection = Connection(socket.create_connection(("127.0.0.1", server.port), timeout=5), "corrupt")
    with pytest.raises(ProtocolError, match="outside"):
        connection.read_packet()
    server.close()


def test_a_timeout_inside_a_packet_keeps_the_framing(network_bytes):
    """The reader wakes up every 0.2 s to see a stop request: a packet split across the wake-up
    must still decode, and the next packet after it."""
    data = network_bytes
    (size,) = struct.unpack_from("<i", data)
    first = 4 + size
    (length,) = struct.unpack_from("<I", data, first + 4)
    server = BytesServer(data, pause_at=first + 8 + length // 2)
    connection = Connection(socket.create_connection(("127.0.0.1", server.port), timeout=5), "split")
    connection.sock.settimeout(0.05)
    with pytest.raises(TimeoutError):
        connection.read_packet()
    server.resume()
    connection.sock.settimeout(5)
    batches = [connection.read_packet()[0] for _ in range(2)]
    assert all(len(batch.t) > 0 for batch in batches) and batches[0].t[-1] <= batches[1].t[0]
    server.close()
