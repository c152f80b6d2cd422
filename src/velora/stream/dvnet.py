"""The DV network stream: AEDAT 4.0 over TCP, as iniVation's DV software and dv-processing's
`NetworkWriter` serve it, decoded without dv-processing.

What a server sends on each connection (read off the socket of a dv-processing 2.0.4
`NetworkWriter` on loopback; the framing is the AEDAT 4.0 file's without its magic and its data
table, https://docs.inivation.com/software/software-advanced-usage/file-formats/aedat-4.0.html)::

    int32 n, IOHeader flatbuffer (n bytes, identifier "IOHE")   sent once, on connect
        compression (NONE, LZ4, LZ4_HIGH, ZSTD, ZSTD_HIGH), dataTablePosition = -1,
        description: XML <dv><node name="outInfo"><node name="<stream id>"> with attributes
        typeIdentifier (EVTS, FRME, ...), compression, and <node name="info"> sizeX, sizeY, source
    then packets, each: int32 stream id, uint32 size, `size` bytes
        the content: a size-prefixed flatbuffer (identifier EVTS or FRME), compressed as one LZ4
        or zstd frame when the header says so

One server carries one stream: a `NetworkWriter` is built for one `dv.io.Stream`, and DV's TCP
output module has one input. Events and APS frames of a DAVIS therefore come from two servers,
two ports, and a client opens one connection to each (`velora stream tcp://host:7777,7778`).

Flatbuffers read here (dv-processing's schema; fields by index, absent fields take defaults):

    EventPacket (EVTS): 0 elements: [Event], Event a 16-byte struct
        {int64 timestamp; int16 x; int16 y; bool polarity; 3 bytes padding}
    Frame (FRME): 0 timestamp, 1 start of frame, 2 end of frame, 3 start of exposure,
        4 end of exposure (int64 microseconds), 5 format (int8, an OpenCV type: 0 8-bit gray,
        2 16-bit gray, 16 8-bit BGR, 18 16-bit BGR, 24 8-bit BGRA, 26 16-bit BGRA),
        6 sizeX, 7 sizeY, 8 positionX, 9 positionY (int16), 10 pixels ([uint8], row-major),
        11 exposure (int64)

Frames become what `velora.events.aedat4.read_aedat4` makes of the same frame in a file: uint8,
colour in RGB order, alpha dropped, 16-bit frames keep their high byte, and the frame's time is
its start of exposure. Uncompressed packets (a `NetworkWriter`'s default) are decoded here with
numpy; compressed ones go through the `aedat` package (one small AEDAT 4.0 file per packet in a
temporary folder), as the Python standard library has no LZ4 or zstd.

Limits. Nothing read off the socket is trusted before it is checked: the header is at most
MAX_HEADER_BYTES and must arrive within the connect timeout; a packet's declared size is checked
against the limit of its stream (`packet_limit`: MAX_EVENTS_PER_PACKET events, one frame of the
declared size, MAX_OTHER_PACKET_BYTES for streams velora drops) before its bytes are received; a
compressed packet's decompressed size, bounded by walking its LZ4 or zstd block headers
(`decompressed_bound`), is checked against the same limit (at least 4 MiB) before it is
decompressed. Decoded
events must lie on the declared sensor and frames have its size. Anything else is a
ProtocolError whose message says which limit and why.
"""

from __future__ import annotations

import socket
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import aedat
import numpy as np

from velora.events.aedat4 import MAGIC as AEDAT4_MAGIC
from velora.events.aedat4 import decoder_failed, frame_uint8

IOHEADER_ID = b"IOHE"
EVENTS_ID, FRAME_ID = "EVTS", "FRME"
COMPRESSION_NAMES = ("NONE", "LZ4", "LZ4_HIGH", "ZSTD", "ZSTD_HIGH")
MAX_HEADER_BYTES = 1 << 20  # an IOHeader is a few hundred bytes of XML; more means another protocol
# 4,194,304 events (64 MiB) in one packet: DV packs a DAVIS346's events every 10 ms, so this is
# 0.4 s of a 10 Mev/s sensor in one packet.
MAX_EVENTS_PER_PACKET = 1 << 22
MAX_FRAME_PIXELS = 1 << 24  # a frame stream that does not declare its size: up to 4096 x 4096
MAX_OTHER_PACKET_BYTES = 1 << 24  # IMU, triggers, ...: packets velora receives and drops
FLATBUFFER_BYTES = 4096  # a packet's bytes besides its events or pixels (tables, offsets, padding)
# dv-processing's Event struct: int64 t, int16 x, int16 y, bool polarity, padded to 16 bytes.
EVENT_DTYPE = np.dtype(
    {"names": ["t", "x", "y", "on"], "formats": ["<i8", "<i2", "<i2", "u1"], "offsets": [0, 8, 10, 12], "itemsize": 16}
)


class ProtocolError(ValueError):
    """The bytes on a connection are not a DV AEDAT 4.0 network stream (or are cut or corrupt)."""


class ConnectionLost(ProtocolError):
    """The server closed the connection inside the header or a packet (a restart, a crash, a cut
    cable): the stream was valid up to there, so a live source may reconnect."""


@dataclass(frozen=True)
class StreamInfo:
    """One stream a server declares: its id, type identifier (EVTS, FRME, ...), size and camera."""

    stream_id: int
    type_id: str
    width: int | None
    height: int | None
    source: str


def packet_limit(stream: StreamInfo) -> tuple[int, str]:
    """The most bytes a packet of `stream` may hold (received, and once decompressed), and why."""
    if stream.type_id == EVENTS_ID:
        return MAX_EVENTS_PER_PACKET * EVENT_DTYPE.itemsize + FLATBUFFER_BYTES, f"{MAX_EVENTS_PER_PACKET:,} events"
    if stream.type_id == FRAME_ID:
        if stream.width and stream.height and stream.width * stream.height <= MAX_FRAME_PIXELS:
            return stream.width * stream.height * 8 + FLATBUFFER_BYTES, (
                f"one {stream.width} x {stream.height} frame of 16-bit BGRA, its declared size"
            )
        return MAX_FRAME_PIXELS * 8 + FLATBUFFER_BYTES, "one 4096 x 4096 frame of 16-bit BGRA"
    return MAX_OTHER_PACKET_BYTES, f"a {stream.type_id or 'untyped'} packet, which velora drops"


@dataclass(frozen=True)
class StreamHeader:
    """A connection's IOHeader: the compression of its packets and the streams it carries."""

    compression: int
    streams: dict[int, StreamInfo]
    raw: bytes  # the IOHeader flatbuffer with its int32 size prefix, as received

    @property
    def compression_name(self) -> str:
        return COMPRESSION_NAMES[self.compression]


@dataclass(frozen=True)
class EventBatch:
    """Events of one packet: t int64 microseconds, x, y int16, p int8 +1/-1 (sorted as sent)."""

    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    p: np.ndarray


@dataclass(frozen=True)
class Frame:
    """One APS frame: uint8 (H, W) or (H, W, 3) RGB; its start of exposure and exposure, microseconds."""

    image: np.ndarray
    timestamp_us: int
    exposure_us: int


# ---------------------------------------------------------------------------------- flatbuffers
class _Table:
    """A flatbuffer table at `position` of `buffer`: scalar fields, vectors and strings by index.

    Raises ProtocolError when an offset points outside the buffer (a corrupt packet)."""

    def __init__(self, buffer: memoryview, position: int):
        self.buffer, self.position = buffer, position
        vtable = position - self._read("<i", position)
        self.vtable, self.vtable_size = vtable, self._read("<H", vtable)

    def _read(self, fmt: str, offset: int):
        if offset < 0 or offset + struct.calcsize(fmt) > len(self.buffer):
            raise ProtocolError(f"a flatbuffer offset ({offset}) points outside its {len(self.buffer)}-byte packet")
        return struct.unpack_from(fmt, self.buffer, offset)[0]

    def _field(self, index: int) -> int:
        """The field's position in the buffer, or 0 when the field is absent."""
        slot = 4 + 2 * index
        offset = self._read("<H", self.vtable + slot) if slot + 2 <= self.vtable_size else 0
        return self.position + offset if offset else 0

    def scalar(self, index: int, fmt: str, default: int = 0) -> int:
        field = self._field(index)
        return self._read(fmt, field) if field else default

    def vector(self, index: int, itemsize: int) -> memoryview:
        """The bytes of a vector field (count * itemsize), empty when absent."""
        field = self._field(index)
        if not field:
            return self.buffer[0:0]
        start = field + self._read("<I", field)
        count = self._read("<I", start)
        end = start + 4 + count * itemsize
        if end > len(self.buffer):
            raise ProtocolError(f"a vector of {count} items runs past the end of its {len(self.buffer)}-byte packet")
        return self.buffer[start + 4 : end]


def _root(content: memoryview, identifier: str) -> _Table:
    """The root table of a size-prefixed flatbuffer with a 4-character file identifier."""
    if len(content) < 12 or bytes(content[8:12]) != identifier.encode():
        found = bytes(content[8:12]) if len(content) >= 12 else bytes(content)
        raise ProtocolError(f"a packet of a {identifier} stream holds {found!r}, not a {identifier} flatbuffer")
    return _Table(content, 4 + struct.unpack_from("<I", content, 4)[0])


def parse_header(raw: bytes) -> StreamHeader:
    """A connection's IOHeader (`raw`: int32 size + flatbuffer) -> compression and streams.

    Raises ProtocolError when it is not an IOHeader or its stream description is not DV's XML."""
    body = memoryview(raw)[4:]
    if len(body) < 8 or bytes(body[4:8]) != IOHEADER_ID:
        raise ProtocolError(f"the first bytes are not a DV IOHeader ({bytes(raw[:12])!r})")
    table = _Table(body, struct.unpack_from("<I", body, 0)[0])
    compression = table.scalar(0, "<i", 0)
    if not 0 <= compression < len(COMPRESSION_NAMES):
        raise ProtocolError(f"the IOHeader names unknown compression {compression}")
    description = bytes(table.vector(2, 1))
    try:
        root = ElementTree.fromstring(description.decode("utf-8"))
    except (UnicodeDecodeError, ElementTree.ParseError) as error:
        raise ProtocolError(f"the IOHeader's stream description is not DV's XML ({error})") from None
    streams = {}
    for node in root.findall("./node[@name='outInfo']/node"):
        attributes = {a.get("key"): (a.text or "") for a in node.findall("attr")}
        info = {a.get("key"): (a.text or "") for a in node.findall("./node[@name='info']/attr")}
        try:
            stream_id = int(node.get("name", ""))
            width = int(info["sizeX"]) if "sizeX" in info else None
            height = int(info["sizeY"]) if "sizeY" in info else None
        except ValueError:
            raise ProtocolError(f"the IOHeader's stream description has a malformed node {node.attrib}") from None
        type_id, source = attributes.get("typeIdentifier", ""), info.get("source", "")
        streams[stream_id] = StreamInfo(stream_id, type_id, width, height, source)
    if not streams:
        raise ProtocolError("the IOHeader's stream description declares no stream")
    return StreamHeader(compression, streams, bytes(raw))


def decode_events(content: memoryview, sensor_size: tuple[int, int] | None = None) -> EventBatch:
    """An uncompressed EVTS packet -> EventBatch (a copy of its columns); its events must lie on the
    sensor of `sensor_size` (width, height) when given."""
    elements = np.frombuffer(_root(content, EVENTS_ID).vector(0, EVENT_DTYPE.itemsize), dtype=EVENT_DTYPE)
    return _batch(elements, sensor_size)


def _batch(elements: np.ndarray, sensor_size: tuple[int, int] | None) -> EventBatch:
    """EventBatch from event records with aedat's field names (t, x, y, on), as EVENT_DTYPE has."""
    batch = EventBatch(
        elements["t"].astype(np.int64),
        elements["x"].astype(np.int16),
        elements["y"].astype(np.int16),
        np.where(elements["on"] != 0, 1, -1).astype(np.int8),
    )
    if sensor_size is not None and len(batch.t):
        width, height = sensor_size
        if batch.x.min() < 0 or batch.x.max() >= width or batch.y.min() < 0 or batch.y.max() >= height:
            raise ProtocolError(
                f"a packet of events at x in [{batch.x.min()}, {batch.x.max()}], y in [{batch.y.min()}, "
                f"{batch.y.max()}], outside the {width} x {height} sensor the header declares"
            )
    return batch


def _check_frame_size(frame: Frame, frame_size: tuple[int, int] | None) -> Frame:
    height, width = frame.image.shape[:2]
    if frame_size is not None and (width, height) != tuple(frame_size):
        raise ProtocolError(
            f"a frame of {width} x {height} pixels in a stream that declares {frame_size[0]} x {frame_size[1]}"
        )
    return frame


def decode_frame(content: memoryview, frame_size: tuple[int, int] | None = None) -> Frame:
    """An uncompressed FRME packet -> Frame (uint8, RGB, as read_aedat4 reads frames); it must be
    `frame_size` (width, height) when given."""
    table = _root(content, FRAME_ID)
    timestamp = table.scalar(0, "<q")
    start, end = table.scalar(3, "<q", timestamp), table.scalar(4, "<q", timestamp)
    opencv_type = table.scalar(5, "<b", 0)
    width, height = table.scalar(6, "<h"), table.scalar(7, "<h")
    depth, channels = opencv_type & 7, (opencv_type >> 3) + 1
    if depth not in (0, 2) or channels not in (1, 3, 4) or width <= 0 or height <= 0:
        raise ProtocolError(
            f"a frame of {width} x {height} pixels in OpenCV type {opencv_type}: only 8- and 16-bit "
            "gray, BGR and BGRA frames are read"
        )
    dtype = np.dtype("<u2") if depth == 2 else np.dtype(np.uint8)
    pixels = table.vector(10, 1)
    if len(pixels) != width * height * channels * dtype.itemsize:
        raise ProtocolError(f"a {width} x {height} frame of type {opencv_type} holds {len(pixels)} bytes of pixels")
    image = np.frombuffer(pixels, dtype=dtype).reshape((height, width, channels) if channels > 1 else (height, width))
    return _check_frame_size(Frame(frame_uint8(image, bgr=True), start, end - start), frame_size)


# ---------------------------------------------------------------------------------- compressed sizes
LZ4_MAGIC, ZSTD_MAGIC = 0x184D2204, 0xFD2FB528
LZ4_BLOCK_BYTES = {4: 1 << 16, 5: 1 << 18, 6: 1 << 20, 7: 1 << 22}  # BD byte's block maximum size code
ZSTD_BLOCK_BYTES = 1 << 17  # a zstd block never decompresses to more than 128 KiB
# The bound counts whole blocks, so a compressed packet may always decompress to 4 MiB (an LZ4
# block's largest size), even where its stream's limit is smaller (a sensor of a few pixels).
MIN_DECOMPRESSED_LIMIT = 1 << 22


def decompressed_bound(payload: bytes | memoryview, compression: str) -> int:
    """An upper bound on the bytes an LZ4 or zstd packet decompresses to, from its frame and block
    headers alone (nothing is decompressed; the frames' own content sizes are not trusted).

    LZ4 frames: every block decompresses to at most the frame's block maximum size. zstd frames:
    a raw block to its size, an RLE block to its declared size, a compressed block to at most
    128 KiB. Raises ProtocolError for bytes that are not such frames, or are cut.
    """
    data, position, bound = memoryview(payload), 0, 0

    def read(fmt: str, at: int) -> int:
        if at + struct.calcsize(fmt) > len(data):
            raise ProtocolError(f"a {compression} packet is cut inside its frame ({len(data)} bytes)")
        return struct.unpack_from(fmt, data, at)[0]

    while position < len(data):
        magic = read("<I", position)
        if 0x184D2A50 <= magic <= 0x184D2A5F:  # a skippable frame (both formats): no output
            position += 8 + read("<I", position + 4)
            continue
        if compression.startswith("LZ4") and magic == LZ4_MAGIC:
            flags, block_code = read("<B", position + 4), (read("<B", position + 5) >> 4) & 7
            if flags >> 6 != 1 or block_code not in LZ4_BLOCK_BYTES:
                raise ProtocolError(f"an LZ4 packet with an invalid frame descriptor ({flags:#x}, {block_code})")
            block_checksum, content_checksum = flags >> 4 & 1, flags >> 2 & 1
            position += 4 + 2 + 8 * (flags >> 3 & 1) + 4 * (flags & 1) + 1
            while (block := read("<I", position)) != 0:
                position += 4 + (block & 0x7FFFFFFF) + 4 * block_checksum
                bound += LZ4_BLOCK_BYTES[block_code]
            position += 4 + 4 * content_checksum
        elif compression.startswith("ZSTD") and magic == ZSTD_MAGIC:
            descriptor = read("<B", position + 4)
            single_segment, size_flag = descriptor >> 5 & 1, descriptor >> 6
            size_bytes = (1 if single_segment else 0, 2, 4, 8)[size_flag]
            position += 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[descriptor & 3] + size_bytes
            while True:
                header = read("<H", position) | read("<B", position + 2) << 16
                last, kind, size = header & 1, header >> 1 & 3, header >> 3
                if kind == 3:
                    raise ProtocolError(f"a {compression} packet holds a zstd block of the reserved type")
                bound += size if kind in (0, 1) else ZSTD_BLOCK_BYTES
                position += 3 + (1 if kind == 1 else size)
                if last:
                    break
            position += 4 * (descriptor >> 2 & 1)
        else:
            raise ProtocolError(
                f"a {compression} packet does not start with a {compression.split('_')[0]} frame (magic {magic:#010x})"
            )
    if position > len(data):
        raise ProtocolError(f"a {compression} packet is cut inside its frame ({len(data)} bytes)")
    return bound


class CompressedPackets:
    """Decodes LZ4/zstd packets with the `aedat` package: each packet is written, after the
    connection's IOHeader, as a one-packet AEDAT 4.0 file in a temporary folder and decoded."""

    def __init__(self, header: StreamHeader):
        self.header = header
        self._folder = tempfile.TemporaryDirectory(prefix="velora-stream-")
        self._path = Path(self._folder.name) / "packet.aedat4"

    def decode(self, stream_id: int, payload: bytes | memoryview) -> EventBatch | Frame | None:
        stream = self.header.streams[stream_id]
        limit, why = packet_limit(stream)
        limit = max(limit, MIN_DECOMPRESSED_LIMIT)
        bound = decompressed_bound(payload, self.header.compression_name)
        if bound > limit:
            raise ProtocolError(
                f"a {self.header.compression_name} packet of stream {stream_id} ({stream.type_id}) "
                f"may decompress to {bound:,} bytes, more than the {limit:,} bytes of {why}"
            )
        self._path.write_bytes(AEDAT4_MAGIC + self.header.raw + struct.pack("<iI", stream_id, len(payload)) + payload)
        try:
            packets = list(aedat.Decoder(str(self._path)))
        except BaseException as error:  # aedat raises RuntimeError, or a PanicException (a BaseException)
            if not decoder_failed(error):
                raise
            raise ProtocolError(f"a {self.header.compression_name} packet could not be decoded ({error})") from None
        for packet in packets:
            if "events" in packet:
                return _batch(packet["events"], _size(stream))
            if "frame" in packet:
                frame = packet["frame"]
                image = frame_uint8(frame["pixels"])  # aedat already gives RGB order
                start = frame["exposure_begin_t"]
                return _check_frame_size(Frame(image, int(start), int(frame["exposure_end_t"] - start)), _size(stream))
        return None

    def close(self) -> None:
        self._folder.cleanup()


def _size(stream: StreamInfo) -> tuple[int, int] | None:
    return (stream.width, stream.height) if stream.width and stream.height else None


# ---------------------------------------------------------------------------------- the socket
class Connection:
    """One TCP connection to a DV network server: its header, then its packets one by one.

    `read_packet()` blocks until a whole packet is in (the socket's timeout applies to each
    receive) and returns (EventBatch, Frame, or None for another stream type such as IMU or
    triggers; its receive time, `time.perf_counter()` when its last byte was in), or raises
    EOFError when the server closed the connection between packets.
    Raises ConnectionLost for a connection closed inside a packet, ProtocolError for bytes that
    are not this protocol or break its limits, and OSError (socket.timeout included) from the
    socket. `header_timeout`: seconds the whole header may take (a server that trickles it is cut
    off), None for the socket's timeout per receive only.
    """

    def __init__(self, sock: socket.socket, address: str, *, header_timeout: float | None = None):
        self.sock, self.address = sock, address
        self.what = f"tcp://{address}"  # how messages name the connection
        self._buffer = bytearray()
        self.bytes_received = 0  # all bytes so far: tells a sender that trickles from a silent one
        self._packet_bytes = 0  # the size of the packet being received, 0 between packets
        deadline = None if header_timeout is None else time.monotonic() + header_timeout
        self._fill(4, "the header", deadline)
        size_bytes = self._take(4)
        (size,) = struct.unpack("<i", size_bytes)
        if not 8 <= size <= MAX_HEADER_BYTES:
            raise ProtocolError(
                f"the first bytes ({size_bytes!r}) are not a DV IOHeader: is this a DV network server "
                "(dv-processing NetworkWriter, DV's TCP output)?"
            )
        self._fill(size, "the header", deadline)
        self.header = parse_header(size_bytes + self._take(size))
        self._compressed = CompressedPackets(self.header) if self.header.compression else None

    def _fill(self, count: int, what: str, deadline: float | None = None) -> None:
        """Receive until the buffer holds `count` bytes. A socket timeout leaves what came in the
        buffer, so the next call goes on where this one stopped and the framing is kept."""
        while len(self._buffer) < count:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{what} is incomplete ({len(self._buffer)} of {count} bytes)")
                self.sock.settimeout(left)
            chunk = self.sock.recv(min(max(1 << 16, count - len(self._buffer)), 1 << 22))
            if not chunk:
                if self._buffer or what != "a packet":
                    raise ConnectionLost(
                        f"the server closed the connection inside {what} "
                        f"({len(self._buffer)} of {count} bytes received)"
                    )
                raise EOFError
            self.bytes_received += len(chunk)
            self._buffer += chunk

    def _take(self, count: int) -> bytes:
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    def partial_packet(self) -> tuple[int, int] | None:
        """(bytes received, bytes expected) of a packet that is partly in, None between packets."""
        return (len(self._buffer), self._packet_bytes) if self._packet_bytes else None

    def read_packet(self) -> tuple[EventBatch | Frame | None, float]:
        self._fill(8, "a packet")
        stream_id, size = struct.unpack_from("<iI", self._buffer, 0)
        stream = self.header.streams.get(stream_id)
        if stream is None:
            raise ProtocolError(
                f"a packet of stream {stream_id}, which the header does not declare ({sorted(self.header.streams)})"
            )
        limit, why = packet_limit(stream)
        if self._compressed is not None:
            limit += limit // 1024 + 1024  # incompressible data grows a little when compressed
        if size > limit:
            raise ProtocolError(
                f"a packet of stream {stream_id} ({stream.type_id}) declares {size:,} bytes, more than "
                f"the {limit:,} bytes of {why}; the stream is corrupt or not DV's"
            )
        self._packet_bytes = 8 + size
        self._fill(8 + size, f"a packet ({size} bytes)")
        self._packet_bytes = 0
        received = time.perf_counter()
        payload = memoryview(self._take(8 + size))[8:]  # no copy of the packet's bytes
        if stream.type_id not in (EVENTS_ID, FRAME_ID):
            return None, received
        if self._compressed is not None:
            return self._compressed.decode(stream_id, payload), received
        if stream.type_id == EVENTS_ID:
            return decode_events(payload, _size(stream)), received
        return decode_frame(payload, _size(stream)), received

    def close(self) -> None:
        for close in (lambda: self.sock.shutdown(socket.SHUT_RDWR), self.sock.close):
            try:
                close()
            except OSError:
                pass
        if self._compressed is not None:
            self._compressed.close()
