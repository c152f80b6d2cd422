"""Independent writers, from the published specifications, for the formats faery 0.7.1 cannot write.

faery is the reference decoder of the reader tests: where it can write a format, the tests write with
it. It cannot write EVT 2.1 (its encoder and decoder stop at `todo!`), AEDAT 2.0 or AEDAT 3.1; the
writers below follow the formats' documents instead, and share no code with velora's readers:

- EVT 2.1: https://docs.prophesee.ai/stable/data/encoding_formats/evt21.html, the word orders of
  OpenEB's decoder (`endianness=legacy` or a little-endian 64-bit word).
- AEDAT 2.0: jAER's format (https://docs.inivation.com/software/software-advanced-usage/file-formats/
  aedat-2.0.html): '#' header lines, then big-endian int32 address and int32 timestamp per event;
  the DAVIS and DVS128 address layouts and orientation of jAER's own extractors.
- AEDAT 3.1: libcaer's event packets (aedat-3.1.html): little-endian 28-byte packet headers, then
  polarity events of uint32 data and int32 timestamp.

All take events as arrays in the package's convention (t us, x, y from the top-left, p +1/-1).
"""

from __future__ import annotations

import numpy as np

EVT21_TIME_HIGH, EVT21_POS, EVT21_NEG = 0x8, 0x1, 0x0


def evt21_file(t, x, y, p, width: int, height: int, legacy: bool, extra_words: int = 0) -> bytes:
    """An EVT 2.1 .raw file: a TIME_HIGH word whenever t[33:6] changes, then one word per run of
    events with the same t, y, polarity and 32-column group (its validity mask holds their columns).
    Events must be sorted by t, unique, and no two consecutive TIME_HIGHs more than 2**33 us apart.
    extra_words: EXT_TRIGGER words inserted after the first TIME_HIGH (they carry no CD event)."""
    t, x, y, p = (np.asarray(column, dtype=np.int64) for column in (t, x, y, p))
    assert np.all(np.diff(t) >= 0) and np.all(np.diff(t >> 6) < 1 << 27)
    key = np.stack([t, y, p, x >> 5])
    starts = np.flatnonzero(np.concatenate(([True], np.any(key[:, 1:] != key[:, :-1], axis=0))))
    masks = np.bitwise_or.reduceat(np.left_shift(1, x & 31, dtype=np.int64), starts)
    gt, gy, gp, gx = t[starts], y[starts], p[starts], x[starts] & ~31
    heads = (np.where(gp > 0, EVT21_POS, EVT21_NEG) << 28) | ((gt & 0x3F) << 22) | (gx << 11) | gy
    highs = gt >> 6
    new_high = np.concatenate(([True], highs[1:] != highs[:-1]))
    # two slots per group, TIME_HIGH (when the high bits change) then the CD word
    head_slots = np.stack([(EVT21_TIME_HIGH << 28) | (highs & 0x0FFFFFFF), heads], axis=1).reshape(-1)
    mask_slots = np.stack([np.zeros_like(masks), masks], axis=1).reshape(-1)
    keep = np.stack([new_high, np.ones_like(new_high)], axis=1).reshape(-1)
    head_words, mask_words = head_slots[keep], mask_slots[keep]
    if extra_words:
        trigger = np.full(extra_words, 0xA << 28)
        head_words = np.concatenate((head_words[:1], trigger, head_words[1:]))
        mask_words = np.concatenate((mask_words[:1], np.zeros(extra_words, np.int64), mask_words[1:]))
    halves = np.stack([head_words, mask_words] if legacy else [mask_words, head_words], axis=1).astype("<u4")
    header = f"% evt 2.1\n% format EVT21;{'endianness=legacy;' if legacy else ''}height={height};width={width}\n% end\n"
    return header.encode() + halves.tobytes()


AEDAT2_HEADER = (
    b"#!AER-DAT2.0\r\n"
    b"# This is a raw AE data file - do not edit\r\n"
    b"# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each event\r\n"
    b"# Timestamps tick is 1 us\r\n"
)
AEDAT2_CHIPS = {  # jAER AEChip class names
    "DVS128": (b"# AEChip: ch.unizh.ini.jaer.chip.retina.DVS128\r\n", 128, 128),
    "DAVIS240": (b"# AEChip: eu.seebetter.ini.chips.davis.DAVIS240C\r\n", 240, 180),
    "DAVIS346": (b"# AEChip: eu.seebetter.ini.chips.davis.Davis346B\r\n", 346, 260),
}


def aedat2_file(t, x, y, p, chip: str | None, davis_size: tuple[int, int] = (346, 260), aps_samples: int = 0) -> bytes:
    """An AEDAT 2.0 file as jAER writes it. jAER's origin is the bottom-left corner and its DVS128
    and DAVIS extractors mirror x (x = width - 1 - raw x), so raw addresses hold the flipped
    coordinates. DVS128: x in bits 1-7, y in bits 8-14, bit 0 = 1 for OFF. DAVIS: y in bits 22-30,
    x in bits 12-21, bit 11 = 1 for ON, bit 31 = 0 (1 marks an APS sample). chip None: no AEChip line
    (v2e's header), DAVIS layout of `davis_size`. aps_samples: APS sample words appended (skipped)."""
    t, x, y, p = (np.asarray(column, dtype=np.int64) for column in (t, x, y, p))
    line, width, height = AEDAT2_CHIPS[chip] if chip else (b"", *davis_size)
    raw_x, raw_y = width - 1 - x, height - 1 - y
    if chip == "DVS128":
        address = (raw_y << 8) | (raw_x << 1) | (p < 0)
    else:
        address = (raw_y << 22) | (raw_x << 12) | ((p > 0) << 11)
    if aps_samples:
        address = np.concatenate((address, np.full(aps_samples, 1 << 31)))
        t = np.concatenate((t, np.full(aps_samples, t[-1] if len(t) else 0)))
    records = np.stack([address, t], axis=1).astype(">i4")
    return AEDAT2_HEADER + line + records.tobytes()


AEDAT31_HEADER = (
    b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: %s\r\n#Start-Time: 2017-04-26 14:04:52 (TZ-0400)\r\n#!END-HEADER\r\n"
)
POLARITY_EVENT, SPECIAL_EVENT = 1, 0


def aedat31_packet(
    event_type: int, payload: np.ndarray, ts_overflow: int, event_size: int, valid: int | None = None
) -> bytes:
    """One packet: the 28-byte header (int16 type, int16 source, int32 size, TS offset, TS overflow,
    capacity, number, valid) and the events' bytes."""
    number = payload.nbytes // event_size
    header = np.array(
        [event_type | 1 << 16, event_size, 4, ts_overflow, number, number, number if valid is None else valid],
        dtype="<i4",
    )
    return header.tobytes() + payload.tobytes()


def aedat31_file(
    t, x, y, p, source: str = "DVS128", packet_events: int = 4096, invalid_every: int = 0, special_packets: bool = True
) -> bytes:
    """An AEDAT 3.1 file of polarity packets as libcaer writes them: data = valid (bit 0) | polarity
    (bit 1, 1 = ON) | y << 2 | x << 17, timestamp = the low 31 bits, the packet's eventTSOverflow the
    rest. Origin at the top-left. invalid_every k: every k-th event is written with the valid bit
    cleared (readers must skip it) and not counted in eventValid. special_packets: a packet of
    special events (type 0) between polarity packets, which readers skip."""
    t, x, y, p = (np.asarray(column, dtype=np.int64) for column in (t, x, y, p))
    data = (x << 17) | (y << 2) | ((p > 0).astype(np.int64) << 1) | 1
    if invalid_every:
        data[::invalid_every] &= ~1
    chunks = [AEDAT31_HEADER % source.encode()]
    for start in range(0, len(t), packet_events):
        end = min(start + packet_events, len(t))
        overflow = t[start] >> 31
        assert np.all(t[start:end] >> 31 == overflow), "a packet must not straddle a timestamp overflow"
        events = np.stack([data[start:end], t[start:end] & 0x7FFFFFFF], axis=1).astype("<u4")
        valid = int(np.count_nonzero(events[:, 0] & 1))
        chunks.append(aedat31_packet(POLARITY_EVENT, events, int(overflow), 8, valid))
        if special_packets:
            special = np.array(
                [[0x00000003, t[start] & 0x7FFFFFFF]], dtype="<u4"
            )  # a timestamp-reset-like special event
            chunks.append(aedat31_packet(SPECIAL_EVENT, special, int(overflow), 8))
    return b"".join(chunks)
