"""The event container of the package and the event image of PokerEvent / HARDVS.

`EventStream` is the one way events travel between modules: four flat arrays in the
order of time, like the (t, x, y, p) tables of tonic and the DAVIS readers.

`event_image` draws a window of events the way the published RGB-Event datasets
(PokerEvent, HARDVS) store them as PNG frames: a white canvas, ON events red, OFF events
blue (see `reference/figures/hardvs-prediction-panel.jpg`). Where a pixel received events
of both polarities it shows the sign of its net count (ON count - OFF count); a tie goes
to the polarity of the pixel's last event in the given order (the order of time for an
`EventStream`). This is our documented choice: the released code does not show how the
datasets' images were drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WHITE = (255, 255, 255)
ON_COLOUR = (255, 0, 0)  # red
OFF_COLOUR = (0, 0, 255)  # blue


@dataclass(frozen=True, eq=False)
class EventStream:
    """Events of one sensor, sorted by time.

    Fields (all arrays of shape (N,)):
        t: timestamps, int64, microseconds, non-decreasing.
        x: column, int16, pixels from the left, in [0, width).
        y: row, int16, pixels from the top, in [0, height).
        p: polarity, int8, +1 for ON (log intensity went up), -1 for OFF.
        width, height: sensor size in pixels.

    The constructor casts the arrays to these dtypes and checks the contract, so a
    stream that exists is valid. Convert 0/1 or bool polarity with
    `np.where(p > 0, 1, -1)` before building one.
    """

    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    p: np.ndarray
    width: int
    height: int

    def __post_init__(self) -> None:
        # frozen dataclass: casting in place needs object.__setattr__
        for name, dtype in (("t", np.int64), ("x", np.int16), ("y", np.int16), ("p", np.int8)):
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name), dtype=dtype))
        sizes = {name: getattr(self, name).shape for name in ("t", "x", "y", "p")}
        if any(len(shape) != 1 for shape in sizes.values()) or len(set(sizes.values())) != 1:
            raise ValueError(f"EventStream needs four 1-D arrays t, x, y, p of one length; got shapes {sizes}.")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"EventStream size must be positive; got width={self.width}, height={self.height}.")
        if len(self.t) == 0:
            return
        if np.any(self.t[1:] < self.t[:-1]):  # not np.diff, which can overflow int64
            raise ValueError(
                "EventStream timestamps t must be sorted; sort all four arrays with np.argsort(t, kind='stable')."
            )
        if not np.all((self.p == 1) | (self.p == -1)):
            raise ValueError(
                "EventStream polarity p must be +1 or -1; convert 0/1 or bool with np.where(p > 0, 1, -1)."
            )
        if self.x.min() < 0 or self.x.max() >= self.width or self.y.min() < 0 or self.y.max() >= self.height:
            raise ValueError(
                f"EventStream coordinates fall outside the {self.width} x {self.height} sensor "
                f"(x in [{self.x.min()}, {self.x.max()}], y in [{self.y.min()}, {self.y.max()}]); "
                "check width/height or the coordinate columns."
            )

    def __len__(self) -> int:
        return len(self.t)

    @property
    def duration_us(self) -> int:
        """Time from the first to the last event in microseconds (0 when empty)."""
        return int(self.t[-1] - self.t[0]) if len(self.t) else 0

    def window(self, t_start_us: int, t_end_us: int) -> EventStream:
        """The events with t_start_us <= t < t_end_us (half-open, microseconds)."""
        start, end = np.searchsorted(self.t, [t_start_us, t_end_us], side="left")
        return EventStream(
            self.t[start:end], self.x[start:end], self.y[start:end], self.p[start:end], self.width, self.height
        )


def event_image(x: np.ndarray, y: np.ndarray, polarity: np.ndarray, height: int, width: int) -> np.ndarray:
    """Draw events as the red/blue-on-white image of PokerEvent and HARDVS.

    Args:
        x, y: pixel coordinates, shape (N,), integers with 0 <= x < width, 0 <= y < height.
        polarity: shape (N,); bool, 0/1 or -1/+1 all work: a value > 0 is ON, anything else OFF.
        height, width: image size in pixels.

    Returns:
        uint8 image, shape (height, width, 3): white where no event fell, red (255, 0, 0)
        where the net count ON - OFF is positive, blue (0, 0, 255) where it is negative; a
        pixel whose counts tie takes the polarity of its last event in the given order.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    is_on = np.asarray(polarity) > 0
    if not (x.shape == y.shape == is_on.shape) or x.ndim != 1:
        raise ValueError(
            f"event_image needs 1-D x, y, polarity of one length; got shapes {x.shape}, {y.shape}, {is_on.shape}."
        )
    image = np.full((height, width, 3), 255, dtype=np.uint8)
    if x.size == 0:
        return image
    if x.min() < 0 or x.max() >= width or y.min() < 0 or y.max() >= height:
        raise ValueError(f"event coordinates fall outside the {width} x {height} image; check height/width.")

    pixel = y.astype(np.int64) * width + x.astype(np.int64)
    # The touched pixels (sorted), their event counts and ON counts: by sorting the events when
    # they are few, by counting over the whole image when they are many (no O(N log N) sort).
    if 4 * pixel.size < height * width:
        touched, inverse = np.unique(pixel, return_inverse=True)
        count = np.bincount(inverse)
        on = np.bincount(inverse, weights=is_on, minlength=touched.size)
    else:
        per_pixel = np.bincount(pixel, minlength=height * width)  # (H*W,)
        touched = np.flatnonzero(per_pixel)
        count = per_pixel[touched]
        on = np.bincount(pixel, weights=is_on, minlength=height * width)[touched]
    net = 2 * on - count  # ON - OFF
    shows_on = net > 0
    tie = net == 0
    if tie.any():
        # Only tied pixels need their last event: take the events that fell on them, and np.unique
        # on their reversed order finds each pixel's first hit there, i.e. its last event. Its
        # pixels come out sorted, as touched[tie] is.
        tied_pixel = np.zeros(height * width, dtype=bool)
        tied_pixel[touched[tie]] = True
        events_at_tie = np.flatnonzero(tied_pixel[pixel])
        _, last_from_end = np.unique(pixel[events_at_tie][::-1], return_index=True)
        shows_on[tie] = is_on[events_at_tie][::-1][last_from_end]

    flat = image.reshape(-1, 3)
    flat[touched[shows_on]] = ON_COLOUR
    flat[touched[~shows_on]] = OFF_COLOUR
    return image
