"""Decoders of Prophesee's EVT 2.0, EVT 2.1 and EVT 3.0 word streams (the binary part of a .raw file).

The formats (https://docs.prophesee.ai/stable/data/encoding_formats/), word type in the top 4 bits:

    EVT 2.0, 32-bit words                     EVT 2.1, 64-bit words
    0x0 CD_OFF / 0x1 CD_ON:                   0x0 EVT_NEG / 0x1 EVT_POS: as EVT 2.0, plus a
        t[5:0] 27..22, x 21..11, y 10..0          32-bit validity mask: one event at x + i for
    0x8 EVT_TIME_HIGH: t[33:6] in 27..0           each set bit i (x is 32-aligned)
    0xA EXT_TRIGGER, 0xE OTHERS, 0xF CONTINUED    0x8, 0xA, 0xE, 0xF as EVT 2.0

    EVT 3.0, 16-bit words, a state machine
    0x0 EVT_ADDR_Y   y 10..0 (bit 11: master/slave)     0x6 EVT_TIME_LOW  t[11:0]
    0x2 EVT_ADDR_X   polarity 11, x 10..0: one event    0x8 EVT_TIME_HIGH t[23:12]
    0x3 VECT_BASE_X  polarity 11, x 10..0               0xA EXT_TRIGGER
    0x4 VECT_12      mask 11..0: events at base + i,    0xE OTHERS (then CONTINUED words)
                     then base += 12                    0x7 CONTINUED_4, 0xF CONTINUED_12
    0x5 VECT_8       mask 7..0, then base += 8

EVT 2.1 has two word orders, chosen by the header: `endianness=legacy` (IMX636, and files whose header
only says `% evt 2.1`) stores the type/time/x/y half first and the mask second; otherwise the word is
one little-endian 64-bit integer (mask in the low half, as the GenX320 writes it). Both as in OpenEB.

Every format is a state machine over the time base (and, in EVT 3.0, the row and the vector base), so
each is decoded by one loop over the words, compiled by numba (velora.events.jit): a counting pass
sizes the outputs, a decoding pass fills them. The loops are plain Python and run uncompiled too.

Decisions where the formats leave room:
- TIME_HIGH wraps around (2**34 us in EVT 2.x, 2**24 us in EVT 3.0). A TIME_HIGH smaller than the one
  before by at least half its range counts as a wrap-around (+ one full range); a smaller step back is
  kept as written and the reader sorts the events. Timestamps are therefore monotonic across wraps.
- EVT 3.0: a TIME_HIGH that changes the high bits resets the low bits to 0 until the next TIME_LOW
  (as OpenEB and faery); a repeated TIME_HIGH keeps them.
- CD events that arrive before the state they need (the first TIME_HIGH; in EVT 3.0 also the first
  EVT_ADDR_Y, and VECT_BASE_X for vectors) have no defined time or address: they are dropped and
  counted, as OpenEB drops words before the first TIME_HIGH. (faery gives them time 0 and row 0.)
- A reserved word type, or an event outside the sensor, is corruption: `CorruptWord` names the word.
  (OpenEB skips events outside the sensor; faery raises, as here.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from velora.events.jit import compiled

__all__ = ["CorruptWord", "Decoded", "decode_evt2", "decode_evt3", "decode_evt21", "evt3_cut_vector_group"]

EVT3_GROUP_COLUMNS = 32  # a vector group (VECT_BASE_X, VECT_12, VECT_12, VECT_8) covers 32 columns
ADDRESS_RANGE = 2048  # 11-bit x and y: the largest sensor the EVT formats address
RESERVED_TYPE, OUTSIDE_SENSOR = 1, 2  # error codes of the decoding loops


class CorruptWord(Exception):
    """A word that no valid stream holds: its index among the words and what is wrong with it."""

    def __init__(self, index: int, problem: str):
        super().__init__(problem)
        self.index = index
        self.problem = problem


@dataclass(frozen=True)
class Decoded:
    """Events in file order, typed as EventStream wants them (t int64 us, x/y int16, p int8 +1/-1),
    and the words read but not turned into events."""

    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    p: np.ndarray
    triggers: int  # EXT_TRIGGER words
    others: int  # OTHERS words (system and monitoring data)
    continued: int  # CONTINUED words, the payload of the OTHERS words before them
    dropped: int  # CD events before the state they need (see the module docstring)
    in_order: bool  # no event's t is below the one before it


def decode_evt2(words: np.ndarray, width: int | None, height: int | None, t0: int = 0) -> Decoded:
    """Decode '<u4' EVT 2.0 words. width/height None (size unknown): events must fit 2048 x 2048.
    t0: microseconds added to every timestamp (the header's `% t0`)."""
    return _run(_decode_evt2, len(words), (words,), width, height, t0, "EVT 2.0", lambda index: int(words[index]) >> 28)


def decode_evt21(words: np.ndarray, legacy: bool, width: int | None, height: int | None, t0: int = 0) -> Decoded:
    """Decode EVT 2.1 words given as (N, 2) '<u4' halves in file order (see the module docstring)."""
    head = 0 if legacy else 1
    capacity = compiled(_count_evt21)(words, head)
    return _run(
        _decode_evt21,
        capacity,
        (words, head),
        width,
        height,
        t0,
        "EVT 2.1",
        lambda index: int(words[index, head]) >> 28,
    )


def decode_evt3(words: np.ndarray, width: int | None, height: int | None, t0: int = 0) -> Decoded:
    """Decode '<u2' EVT 3.0 words."""
    capacity = compiled(_count_evt3)(words)
    return _run(_decode_evt3, capacity, (words,), width, height, t0, "EVT 3.0", lambda index: int(words[index]) >> 12)


def evt3_cut_vector_group(words: np.ndarray) -> int:
    """How many of the 32 columns of a vector group the last words of an EVT 3.0 stream cover when
    the stream ends inside one (VECT_BASE_X and vectors covering fewer than 32), else 0."""
    kinds = [int(word) >> 12 for word in words[-4:]]
    if not kinds or kinds[-1] not in (0x3, 0x4, 0x5) or 0x3 not in kinds:
        return 0
    tail = kinds[len(kinds) - kinds[::-1].index(0x3) :]  # the words after the last VECT_BASE_X
    if any(kind not in (0x4, 0x5) for kind in tail):
        return 0
    covered = 12 * tail.count(0x4) + 8 * tail.count(0x5)
    return covered if covered < EVT3_GROUP_COLUMNS else 0


def _run(
    loop, capacity: int, words: tuple, width: int | None, height: int | None, t0: int, name: str, kind_at
) -> Decoded:
    """Allocate the outputs, run a compiled decoding loop, turn its error code into CorruptWord."""
    t = np.empty(capacity, dtype=np.int64)
    x = np.empty(capacity, dtype=np.int16)
    y = np.empty(capacity, dtype=np.int16)
    p = np.empty(capacity, dtype=np.int8)
    limits = (width, height) if width is not None and height is not None else (ADDRESS_RANGE, ADDRESS_RANGE)
    n, error, index, triggers, others, continued, dropped, in_order = compiled(loop)(*words, *limits, t0, t, x, y, p)
    if error == RESERVED_TYPE:
        raise CorruptWord(index, f"a word of reserved type {kind_at(index):#x}, which no {name} stream holds")
    if error == OUTSIDE_SENSOR:  # the loop wrote the offending event at [n]
        where = (
            f"the {width} x {height} sensor"
            if width is not None
            else f"the {ADDRESS_RANGE} x {ADDRESS_RANGE} addresses of {name}"
        )
        raise CorruptWord(index, f"an event at x={x[n]}, y={y[n]}, outside {where}")
    return Decoded(t[:n], x[:n], y[:n], p[:n], triggers, others, continued, dropped, bool(in_order))


# --- the loops, compiled by numba ---------------------------------------------------------------------
# Each decoding loop returns (events, error, word index, triggers, others, continued, dropped, in order)
# and writes events at [0, events), their times offset by t0. An event outside [0, width) x [0, height)
# is written at [events] before the loop returns OUTSIDE_SENSOR, so that the message can show it.


def _decode_evt2(words, width, height, t0, t, x, y, p):
    raw_high, loops = -1, 0
    n = triggers = others = continued = dropped = 0
    in_order, last_time = True, -1
    for i in range(words.shape[0]):
        word = int(words[i])
        kind = word >> 28
        if kind <= 0x1:  # CD_OFF, CD_ON
            if raw_high < 0:
                dropped += 1
                continue
            column, row = (word >> 11) & 0x7FF, word & 0x7FF
            x[n], y[n] = column, row
            if column >= width or row >= height:
                return n, OUTSIDE_SENSOR, i, triggers, others, continued, dropped, in_order
            time = (loops << 34) | (raw_high << 6) | ((word >> 22) & 0x3F)
            in_order &= time >= last_time
            t[n], p[n], last_time = time + t0, 1 if kind else -1, time
            n += 1
        elif kind == 0x8:  # EVT_TIME_HIGH
            high = word & 0x0FFFFFFF
            if raw_high >= 0 and raw_high - high >= 1 << 27:  # a drop of half the range: wrap-around
                loops += 1
            raw_high = high
        elif kind == 0xA:
            triggers += 1
        elif kind == 0xE:
            others += 1
        elif kind == 0xF:
            continued += 1
        else:
            return n, RESERVED_TYPE, i, triggers, others, continued, dropped, in_order
    return n, 0, 0, triggers, others, continued, dropped, in_order


def _count_evt21(words, head):
    """Events the CD words hold: the set bits of their masks."""
    total = 0
    for i in range(words.shape[0]):
        if int(words[i, head]) >> 28 <= 0x1:
            mask = int(words[i, 1 - head])
            while mask:
                mask &= mask - 1
                total += 1
    return total


def _decode_evt21(words, head, width, height, t0, t, x, y, p):
    raw_high, loops = -1, 0
    n = triggers = others = continued = dropped = 0
    in_order, last_time = True, -1
    for i in range(words.shape[0]):
        word, mask = int(words[i, head]), int(words[i, 1 - head])
        kind = word >> 28
        if kind <= 0x1:  # EVT_NEG, EVT_POS: an event at x + i for each set bit i of the mask
            if raw_high < 0:
                while mask:
                    mask &= mask - 1
                    dropped += 1
                continue
            time = (loops << 34) | (raw_high << 6) | ((word >> 22) & 0x3F)
            in_order &= time >= last_time
            last_time = time
            column, row = (word >> 11) & 0x7FF, word & 0x7FF
            while mask:
                if not mask & 0xFF:  # a byte without events: skip its 8 columns at once
                    mask >>= 8
                    column += 8
                    continue
                if mask & 1:
                    x[n], y[n] = column, row
                    if column >= width or row >= height:
                        return n, OUTSIDE_SENSOR, i, triggers, others, continued, dropped, in_order
                    t[n], p[n] = time + t0, 1 if kind else -1
                    n += 1
                mask >>= 1
                column += 1
        elif kind == 0x8:  # EVT_TIME_HIGH
            high = word & 0x0FFFFFFF
            if raw_high >= 0 and raw_high - high >= 1 << 27:
                loops += 1
            raw_high = high
        elif kind == 0xA:
            triggers += 1
        elif kind == 0xE:
            others += 1
        elif kind == 0xF:
            continued += 1
        else:
            return n, RESERVED_TYPE, i, triggers, others, continued, dropped, in_order
    return n, 0, 0, triggers, others, continued, dropped, in_order


def _count_evt3(words):
    """Events the event words hold (EVT_ADDR_X: 1, vectors: their set bits)."""
    total = 0
    for i in range(words.shape[0]):
        word = int(words[i])
        kind = word >> 12
        if kind == 0x2:
            total += 1
        elif kind == 0x4 or kind == 0x5:
            mask = word & (0xFFF if kind == 0x4 else 0xFF)
            while mask:
                mask &= mask - 1
                total += 1
    return total


def _decode_evt3(words, width, height, t0, t, x, y, p):
    raw_high, loops, low = -1, 0, 0
    row, base_x, base_on = -1, -1, 0
    n = triggers = others = continued = dropped = 0
    in_order, last_time = True, -1
    for i in range(words.shape[0]):
        word = int(words[i])
        kind, payload = word >> 12, word & 0xFFF
        if kind == 0x0:  # EVT_ADDR_Y
            row = payload & 0x7FF
        elif kind == 0x2 or kind == 0x4 or kind == 0x5:  # EVT_ADDR_X, VECT_12, VECT_8
            if kind == 0x2:
                column, on, mask = payload & 0x7FF, payload >> 11, 1
            else:
                column, on, mask = base_x, base_on, payload if kind == 0x4 else payload & 0xFF
                if base_x >= 0:
                    base_x += 12 if kind == 0x4 else 8
            if raw_high < 0 or row < 0 or column < 0:  # no time, row or vector base yet
                while mask:
                    mask &= mask - 1
                    dropped += 1
                continue
            time = (loops << 24) | (raw_high << 12) | low
            in_order &= time >= last_time
            last_time = time
            while mask:
                if mask & 1:
                    x[n], y[n] = column, row
                    if column >= width or row >= height:
                        return n, OUTSIDE_SENSOR, i, triggers, others, continued, dropped, in_order
                    t[n], p[n] = time + t0, 1 if on else -1
                    n += 1
                mask >>= 1
                column += 1
        elif kind == 0x3:  # VECT_BASE_X
            base_x, base_on = payload & 0x7FF, payload >> 11
        elif kind == 0x6:  # EVT_TIME_LOW
            low = payload
        elif kind == 0x8:  # EVT_TIME_HIGH
            if raw_high >= 0 and raw_high - payload >= 1 << 11:  # a drop of half the range: wrap-around
                loops += 1
            if payload != raw_high:
                low = 0
            raw_high = payload
        elif kind == 0xA:
            triggers += 1
        elif kind == 0xE:
            others += 1
        elif kind == 0x7 or kind == 0xF:  # CONTINUED_4, CONTINUED_12
            continued += 1
        else:
            return n, RESERVED_TYPE, i, triggers, others, continued, dropped, in_order
    return n, 0, 0, triggers, others, continued, dropped, in_order
