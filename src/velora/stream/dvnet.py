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
MAX_PACKET_BYTES = 1 << 30
# dv-processing's Event struct: int64 t, int16 x, int16 y, bool polarity, padded to 16 bytes.
EVENT_DTYPE = np.dtype({"names": ["t", "x", "y", "on"], "formats": ["<i8", "<i2", "<i2", "u1"],
                        "offsets": [0, 8, 10, 12], "itemsize": 16})


class ProtocolError(ValueError):
    """The bytes on a connection are not a DV AEDAT 4.0 network stream (or are cut or corrupt)."""


@dataclass(frozen=True)
class StreamInfo:
    """One stream a server declares: its id, type identifier (EVTS, FRME, ...), size and camera."""

    stream_id: int
    type_id: str
    width: int | None
    height: int | None
    source: str


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


def decode_events(content: memoryview) -> EventBatch:
    """An uncompressed EVTS packet -> EventBatch (a copy of its columns)."""
    return _batch(np.frombuffer(_root(content, EVENTS_ID).vector(0, EVENT_DTYPE.itemsize), dtype=EVENT_DTYPE))


def _batch(elements: np.ndarray) -> EventBatch:
    """EventBatch from event records with aedat's field names (t, x, y, on), as EVENT_DTYPE has."""
    return EventBatch(elements["t"].astype(np.int64), elements["x"].astype(np.int16), elements["y"].astype(np.int16),
                      elements["on"].astype(np.int8) * 2 - 1)


def decode_frame(content: memoryview) -> Frame:
    """An uncompressed FRME packet -> Frame (uint8, RGB, as read_aedat4 reads frames)."""
    table = _root(content, FRAME_ID)
    timestamp = table.scalar(0, "<q")
    start, end = table.scalar(3, "<q", timestamp), table.scalar(4, "<q", timestamp)
    opencv_type = table.scalar(5, "<b", 0)
    width, height = table.scalar(6, "<h"), table.scalar(7, "<h")
    depth, channels = opencv_type & 7, (opencv_type >> 3) + 1
    if depth not in (0, 2) or channels not in (1, 3, 4) or width <= 0 or height <= 0:
        raise ProtocolError(f"a frame of {width} x {height} pixels in OpenCV type {opencv_type}: only 8- and 16-bit "
                            "gray, BGR and BGRA frames are read")
    dtype = np.dtype("<u2") if depth == 2 else np.dtype(np.uint8)
    pixels = table.vector(10, 1)
    if len(pixels) != width * height * channels * dtype.itemsize:
        raise ProtocolError(f"a {width} x {height} frame of type {opencv_type} holds {len(pixels)} bytes of pixels")
    image = np.frombuffer(pixels, dtype=dtype).reshape((height, width, channels) if channels > 1 else (height, width))
    return Frame(frame_uint8(image, bgr=True), start, end - start)


class CompressedPackets:
    """Decodes LZ4/zstd packets with the `aedat` package: each packet is written, after the
    connection's IOHeader, as a one-packet AEDAT 4.0 file in a temporary folder and decoded."""

    def __init__(self, header: StreamHeader):
        self.header = header
        self._folder = tempfile.TemporaryDirectory(prefix="velora-stream-")
        self._path = Path(self._folder.name) / "packet.aedat4"

    def decode(self, stream_id: int, payload: bytes | memoryview) -> EventBatch | Frame | None:
        self._path.write_bytes(AEDAT4_MAGIC + self.header.raw + struct.pack("<iI", stream_id, len(payload)) + payload)
        try:
            packets = list(aedat.Decoder(str(self._path)))
        except BaseException as error:  # aedat raises RuntimeError, or a PanicException (a BaseException)
            if not decoder_failed(error):
                raise
            raise ProtocolError(f"a {self.header.compression_name} packet could not be decoded ({error})") from None
        for packet in packets:
            if "events" in packet:
                return _batch(packet["events"])
            if "frame" in packet:
                frame = packet["frame"]
                image = frame_uint8(frame["pixels"])  # aedat already gives RGB order
                start = frame["exposure_begin_t"]
                return Frame(image, int(start), int(frame["exposure_end_t"] - start))
        return None

    def close(self) -> None:
        self._folder.cleanup()


# ---------------------------------------------------------------------------------- the socket
class Connection:
    """One TCP connection to a DV network server: its header, then its packets one by one.

    `read_packet()` blocks until a whole packet is in (the socket's timeout applies to each
    receive) and returns (EventBatch, Frame, or None for another stream type such as IMU or
    triggers; its receive time, `time.perf_counter()` when its last byte was in), or raises
    EOFError when the server closed the connection between packets.
    Raises ProtocolError for bytes that are not this protocol or a connection cut inside a packet,
    and OSError (socket.timeout included) from the socket.
    """

    def __init__(self, sock: socket.socket, address: str):
        self.sock, self.address = sock, address
        self.what = f"tcp://{address}"  # how messages name the connection
        self._buffer = bytearray()
        self._fill(4, "the header")
        size_bytes = self._take(4)
        (size,) = struct.unpack("<i", size_bytes)
        if not 8 <= size <= MAX_HEADER_BYTES:
            raise ProtocolError(
                f"the first bytes ({size_bytes!r}) are not a DV IOHeader: is this a DV network server "
                "(dv-processing NetworkWriter, DV's TCP output)?"
            )
        self._fill(size, "the header")
        self.header = parse_header(size_bytes + self._take(size))
        self._compressed = CompressedPackets(self.header) if self.header.compression else None

    def _fill(self, count: int, what: str) -> None:
        """Receive until the buffer holds `count` bytes. A socket timeout leaves what came in the
        buffer, so the next call goes on where this one stopped and the framing is kept."""
        while len(self._buffer) < count:
            chunk = self.sock.recv(max(1 << 16, count - len(self._buffer)))
            if not chunk:
                if self._buffer or what != "a packet":
                    raise ProtocolError(f"the server closed the connection inside {what} "
                                        f"({len(self._buffer)} of {count} bytes received)")
                raise EOFError
            self._buffer += chunk

    def _take(self, count: int) -> bytes:
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    def read_packet(self) -> tuple[EventBatch | Frame | None, float]:
        self._fill(8, "a packet")
        stream_id, size = struct.unpack_from("<iI", self._buffer, 0)
        stream = self.header.streams.get(stream_id)
        if stream is None:
            raise ProtocolError(f"a packet of stream {stream_id}, which the header does not declare "
                                f"({sorted(self.header.streams)})")
        if size > MAX_PACKET_BYTES:
            raise ProtocolError(f"a packet declares {size} bytes; the stream is corrupt")
        self._fill(8 + size, f"a packet ({size} bytes)")
        received = time.perf_counter()
        payload = memoryview(self._take(8 + size))[8:]  # no copy of the packet's bytes
        if stream.type_id not in (EVENTS_ID, FRAME_ID):
            return None, received
        if self._compressed is not None:
            return self._compressed.decode(stream_id, payload), received
        content = memoryview(payload)
        return (decode_events(content) if stream.type_id == EVENTS_ID else decode_frame(content)), received

    def close(self) -> None:
        for close in (lambda: self.sock.shutdown(socket.SHUT_RDWR), self.sock.close):
            try:
                close()
            except OSError:
                pass
        if self._compressed is not None:
            self._compressed.close()
