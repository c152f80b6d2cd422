"""Event images brought to the model's size without losing events.

Event images are sparse: a 40 ms window of a DAVIS346 street recording marks about 560 of the
sensor's 89,960 pixels, most of them isolated. Resized from 346 x 260 to 224 x 224 by nearest
neighbour, an output pixel copies one of the ~1.8 source pixels that fall in it, so about a quarter
of the marked pixels are never copied and the model does not see them (`benchmarks/event_resize.py`
measures it). Sparse events are the signal; this module keeps them.

Methods (``data.event_resize``):

- ``keep_events`` (default, :func:`resize_event_image`): each output pixel shows the source pixel in
  its footprint that differs most from the image's background colour, so every event pixel lands on
  an output pixel that shows an event, in its own pure colour (red or blue, for the event images of
  PokerEvent and HARDVS; for a count or time-surface image, the brightest pixel: a max pool). Where
  no source pixel falls in a footprint (upsampling), the nearest one is taken.
- ``nearest``: PIL's nearest neighbour (velora's choice before ``data.event_resize`` existed).
- ``box``: PIL's area average; keeps every event's trace but blends it into pale colours.
- ``bilinear``: PIL's bilinear filter (antialiased when downsampling), as torchvision's
  ``Resize`` of the released code does it; blends too.

Events read from a recording (:func:`draw_events`) are drawn at the sensor's size and resized the
same way as a stored image, so a recording, its conversion to PNG folders, and the same events
arriving live give the model the same images.

Boxes are ``(left, top, right, bottom)`` in pixels of the source image, PIL's convention: the
region resized to the target (a training crop, or the whole image). A source pixel ``x`` belongs to
the output pixel ``floor((x + 0.5 - left) * size / (right - left))``: its centre decides.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from velora.events.representations import as_rgb

EVENT_RESIZE = ("keep_events", "nearest", "box", "bilinear")
PIL_FILTERS = {"nearest": Image.Resampling.NEAREST, "box": Image.Resampling.BOX, "bilinear": Image.Resampling.BILINEAR}

Box = tuple[float, float, float, float]

# Pixels sampled to find an image's background colour (its most common colour): every 29th, about
# 3,100 of a 346 x 260 image and 140 of a 64 x 64 one, enough for a colour that covers most of it.
_BACKGROUND_STRIDE = 29


def check_method(method: str) -> str:
    if method not in EVENT_RESIZE:
        raise ValueError(f"event resize method {method!r} is not one of {EVENT_RESIZE}")
    return method


def resize_event_image(image: np.ndarray, size: int, box: Box | None = None, method: str = "keep_events") -> np.ndarray:
    """Resize ``box`` of an event image (H, W, 3) uint8 to (size, size, 3) uint8 by ``method``.

    ``keep_events``: see the module docstring. The background is the image's most common colour
    (white for the red / blue-on-white images of PokerEvent and HARDVS, black or grey for other
    representations); among the source pixels of one output pixel the one farthest from it (sum of
    absolute channel differences) wins, a tie going to the last in row-major order.
    """
    image = np.ascontiguousarray(image)
    height, width = image.shape[:2]
    left, top, right, bottom = (0, 0, width, height) if box is None else box
    box = (float(left), float(top), float(right), float(bottom))
    if check_method(method) != "keep_events":
        return np.asarray(Image.fromarray(image).resize((size, size), PIL_FILTERS[method], box=box))
    out = np.array(Image.fromarray(image).resize((size, size), Image.Resampling.NEAREST, box=box))
    background = background_colour(image)
    # Channel by channel: numpy's any() over a last axis of 3 costs ten times as much here.
    marked = (image[..., 0] != background[0]) | (image[..., 1] != background[1]) | (image[..., 2] != background[2])
    ys, xs = np.nonzero(marked)  # row-major order
    if ys.size == 0:
        return out
    oy, ox, inside = target_pixels(ys, xs, size, box)
    ys, xs, oy, ox = ys[inside], xs[inside], oy[inside], ox[inside]
    colours = image[ys, xs]  # (n, 3)
    strength = np.abs(colours.astype(np.int16) - background).sum(axis=-1)
    order = np.argsort(strength, kind="stable")  # weakest first; ties stay in row-major order
    target = (oy * size + ox)[order]
    # The last source pixel of each output pixel in that order: the strongest, ties to the last.
    _, last_from_end = np.unique(target[::-1], return_index=True)
    chosen = order[::-1][last_from_end]
    out.reshape(-1, 3)[oy[chosen] * size + ox[chosen]] = colours[chosen]
    return out


def background_colour(image: np.ndarray) -> np.ndarray:
    """The most common colour of an (H, W, 3) uint8 image, from a sample of its pixels: (3,) int16."""
    pixels = image.reshape(-1, 3)[::_BACKGROUND_STRIDE].astype(np.int32)
    keys = (pixels[:, 0] << 16) | (pixels[:, 1] << 8) | pixels[:, 2]
    values, counts = np.unique(keys, return_counts=True)
    key = int(values[np.argmax(counts)])
    return np.array([(key >> 16) & 255, (key >> 8) & 255, key & 255], dtype=np.int16)  # (3,)


def target_pixels(ys: np.ndarray, xs: np.ndarray, size: int, box: Box) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The output pixel (row, column) of source pixels (ys, xs) when ``box`` is resized to size x size,
    and which of them fall inside the box: (oy, ox, inside), int64, int64, bool, each shaped like ys."""
    left, top, right, bottom = box
    oy = np.floor((ys + 0.5 - top) * (size / (bottom - top))).astype(np.int64)
    ox = np.floor((xs + 0.5 - left) * (size / (right - left))).astype(np.int64)
    inside = (oy >= 0) & (oy < size) & (ox >= 0) & (ox < size)
    return oy, ox, inside


def draw_events(
    representation: str,
    t: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    p: np.ndarray,
    height: int,
    width: int,
    size: int,
    box: Box | None = None,
    method: str = "keep_events",
) -> np.ndarray:
    """One window of events as a (size, size, 3) uint8 image of ``representation``: drawn at the
    sensor's size (as_rgb; t, x, y, p in microseconds, pixels of a height x width sensor, +1/-1),
    then ``box`` of it (pixels; default the whole sensor) resized by ``method``.

    Drawing at the sensor's size first, not at the target size, keeps a recording's images equal to
    those of its conversion to PNG folders (velora convert recordings) read back by ClipDataset.
    """
    return resize_event_image(as_rgb(representation, t, x, y, p, height, width), size, box, method)
