"""The DV network protocol: what a dv-processing NetworkWriter sends decodes, without
dv-processing, to exactly what read_aedat4 reads from the recording it serves."""

from __future__ import annotations

import socket
import struct

import dv_processing as dv
import numpy as np
import pytest

from dv_servers import (
    BytesServer,
    DvServers,
    capture,
    free_port,
    network_header,
    wait_until,
)
from velora.events.readers import read_aedat4
from velora.stream.dvnet import (
    CompressedPackets,
    Connection,
    ProtocolError,
    StreamHeader,
    StreamInfo,
    decompressed_bound,
    packet_limit,
    parse_header,
)

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


def packets_of(data: bytes):
    """(stream id, payload) of every packet after the header of a captured stream."""
    position = 4 + struct.unpack_from("<i", data)[0]
    while position < len(data):
        stream_id, size = struct.unpack_from("<iI", data, position)
        yield stream_id, data[position + 8 : position + 8 + size]
        position += 8 + size


@pytest.mark.parametrize("compression", ["LZ4", "LZ4_HIGH", "ZSTD", "ZSTD_HIGH"])
def test_the_decompressed_bound_holds_for_real_packets(real_data_dir, network_bytes, compression):
    """The bound read off the block headers is never below the packet's uncompressed size (the same
    packet sent uncompressed), and not far above it: whole 64 KiB LZ4 or 128 KiB zstd blocks."""
    with DvServers(real_data_dir / STREET, frames=False, compression=compression) as servers:
        data = capture(servers.writers["events"], servers.ports["events"], servers.send_recording)
    compressed, plain = list(packets_of(data)), list(packets_of(network_bytes))
    assert len(compressed) == len(plain) > 1
    for (_, payload), (_, uncompressed) in zip(compressed, plain):
        assert len(uncompressed) <= decompressed_bound(payload, compression) <= len(uncompressed) + (1 << 17)


def lz4_bomb(blocks: int) -> bytes:
    """An LZ4 frame of `blocks` blocks of 4 MiB, each declared in 8 bytes: a decompression bomb
    (the blocks' content does not matter, the bound is read off their headers)."""
    descriptor = bytes([0x60, 0x70, 0x00])  # version 1, independent blocks; 4 MiB blocks; header checksum
    return struct.pack("<I", 0x184D2204) + descriptor + (struct.pack("<I", 4) + b"\x1f\x00\x01\x00") * blocks + bytes(4)


def test_a_compressed_packet_that_would_decompress_past_its_limit_is_refused_undecompressed():
    bomb = lz4_bomb(100)  # 400 MiB from 807 bytes
    assert len(bomb) == 811 and decompressed_bound(bomb, "LZ4") == 100 << 22
    header = StreamHeader(1, {0: StreamInfo(0, "EVTS", 346, 260, "")}, b"")
    packets = CompressedPackets(header)
    with pytest.raises(ProtocolError, match=r"may decompress to 419,430,400 bytes, more than the 67,112,960 bytes"):
        packets.decode(0, bomb)
    packets.close()
    zstd_rle = (
        struct.pack("<I", 0xFD2FB528)
        + b"\x20\x00"
        + b"".join(  # single segment; RLE blocks of 2 MiB - 1
            ((((1 << 21) - 1) << 3) | 2 | (k == 999)).to_bytes(3, "little") + b"\x00" for k in range(1000)
        )
    )
    assert decompressed_bound(zstd_rle, "ZSTD") == 1000 * ((1 << 21) - 1)
    for broken, compression in (
        (b"\x04\x22\x4d\x18", "LZ4"),
        (bomb[:-3], "LZ4"),
        (zstd_rle[:-2], "ZSTD"),
        (b"not a frame", "ZSTD"),
        (bomb, "ZSTD"),
    ):
        with pytest.raises(ProtocolError, match=f"a {compression} packet"):
            decompressed_bound(broken, compression)


def test_events_off_the_declared_sensor_and_frames_of_another_size_are_protocol_errors(network_bytes):
    data = network_bytes
    header = 4 + struct.unpack_from("<i", data)[0]
    small = network_header("EVTS", 100, 100)  # the street's events, declared on a 100 x 100 sensor
    server = BytesServer(small + data[header:])
    connection = Connection(socket.create_connection(("127.0.0.1", server.port), timeout=5), "small")
    with pytest.raises(ProtocolError, match=r"outside the 100 x 100 sensor the header declares"):
        while True:
            connection.read_packet()
    server.close()
    image = np.zeros((3, 4), np.uint8)
    frame_stream = dv.io.Stream.FrameStream(0, "frames", "TEST", (4, 3))
    port = free_port()
    writer = dv.io.NetworkWriter("127.0.0.1", port, frame_stream)
    frames = Connection(socket.create_connection(("127.0.0.1", port), timeout=5), "frames")
    try:
        wait_until(lambda: writer.getClientCount() == 1)
        writer.writeFrame(dv.Frame(1000, np.zeros((6, 8), np.uint8)))  # not the declared 4 x 3
        writer.writeFrame(dv.Frame(2000, image))
        frames.sock.settimeout(5)
        with pytest.raises(ProtocolError, match="a frame of 8 x 6 pixels in a stream that declares 4 x 3"):
            frames.read_packet()
    finally:
        frames.close()
        wait_until(lambda: writer.getClientCount() == 0)


def test_a_packet_length_past_its_streams_limit_is_refused_before_it_is_received(network_bytes):
    data = network_bytes
    header = 4 + struct.unpack_from("<i", data)[0]
    limits = {"EVTS": 4_194_304 * 16 + 4096, "FRME": 346 * 260 * 8 + 4096, "IMUS": 1 << 24}
    for type_id, limit in limits.items():
        info = StreamInfo(0, type_id, 346, 260, "")
        assert packet_limit(info)[0] == limit
    server = BytesServer(data[:header] + struct.pack("<iI", 0, limits["EVTS"] + 1), close=False)
    connection = Connection(socket.create_connection(("127.0.0.1", server.port), timeout=5), "huge")
    with pytest.raises(
        ProtocolError,
        match=r"declares 67,112,961 bytes, more than the 67,112,960 bytes of 4,194,304 "
        "events",
    ):
        connection.read_packet()
    connection.close()
    server.close()
