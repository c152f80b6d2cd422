"""Event representations and event windows as pure numpy functions.

Each representation turns one window of events, given as flat (N,) arrays in the style of
tonic's `functional/` (t in microseconds, x and y in pixels, p the polarity), into a dense
float32 tensor of shape (C, H, W):

- `count_frame`: per-pixel event counts, channel 0 ON, channel 1 OFF.
- `voxel_grid`: polarity split bilinearly in time over `num_bins` bins (Zhu et al., "Unsupervised
  event-based learning of optical flow", CVPR 2019; tonic's `to_voxel_grid`).
- `time_surface`: exponential decay since the last event per pixel and polarity (Lagorce et al.,
  "HOTS", TPAMI 2017), channel 0 ON, channel 1 OFF.

The red/blue-on-white event image of PokerEvent and HARDVS lives in `render.event_image`.

Polarity may come as bool, 0/1 or -1/+1 (see `normalize_polarity`); every function gives the
same result for all three. Binning uses `np.bincount`, never a per-event Python loop.

The window helpers return `slice`s into arrays sorted by time (an `EventStream` is): events
between consecutive APS frames, in windows of a fixed duration, or of a fixed number of events.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def normalize_polarity(p: np.ndarray) -> np.ndarray:
    """Polarity as int8 +1 (ON) / -1 (OFF).

    Args:
        p: polarity, any shape; bool (True = ON), 0/1 (1 = ON) or -1/+1 (+1 = ON). An array
            holding both 0 and -1 mixes two conventions and is refused.

    Returns:
        int8 array of p's shape with values +1 and -1.

    Raises:
        ValueError: p holds a value other than 0, 1, -1 or True/False, or both 0 and -1.
    """
    p = np.asarray(p)
    if p.dtype == np.bool_:
        return np.where(p, 1, -1).astype(np.int8)
    is_on, is_zero, is_minus = p == 1, p == 0, p == -1
    if not np.all(is_on | is_zero | is_minus):
        bad = np.unique(p[~(is_on | is_zero | is_minus)])[:5]
        raise ValueError(f"polarity must be bool, 0/1 or -1/+1; found the values {bad.tolist()}.")
    if np.any(is_zero) and np.any(is_minus):
        raise ValueError("polarity mixes 0 and -1 as OFF; use one convention: bool, 0/1 or -1/+1.")
    return np.where(is_on, 1, -1).astype(np.int8)


def _pixel_index(x: np.ndarray, y: np.ndarray, height: int, width: int, *others: np.ndarray) -> np.ndarray:
    """Flat pixel index y * width + x, shape (N,) int64, after checking shapes and bounds."""
    x, y = np.asarray(x), np.asarray(y)
    shapes = [x.shape, y.shape] + [np.shape(a) for a in others]
    if x.ndim != 1 or len(set(shapes)) != 1:
        raise ValueError(f"events need 1-D arrays of one length; got shapes {shapes}.")
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive; got height={height}, width={width}.")
    if x.size and (x.min() < 0 or x.max() >= width or y.min() < 0 or y.max() >= height):
        raise ValueError(
            f"event coordinates fall outside the {width} x {height} sensor (x in [{x.min()}, {x.max()}], "
            f"y in [{y.min()}, {y.max()}]); check height/width or the coordinate columns."
        )
    return y.astype(np.int64) * width + x.astype(np.int64)


def count_frame(x: np.ndarray, y: np.ndarray, p: np.ndarray, height: int, width: int) -> np.ndarray:
    """Two-channel event-count frame.

    Args:
        x, y: pixel coordinates, shape (N,), integers with 0 <= x < width, 0 <= y < height.
        p: polarity, shape (N,); bool, 0/1 or -1/+1.
        height, width: sensor size in pixels.

    Returns:
        float32 array (2, height, width): [0] the number of ON events per pixel, [1] the number of
        OFF events. Sums to N; all zeros for an empty window.
    """
    pixel = _pixel_index(x, y, height, width, p)  # (N,)
    channel = (normalize_polarity(p) < 0).astype(np.int64)  # 0 ON, 1 OFF
    counts = np.bincount(channel * (height * width) + pixel, minlength=2 * height * width)
    return counts.reshape(2, height, width).astype(np.float32)


def voxel_grid(
    t: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray, num_bins: int, height: int, width: int
) -> np.ndarray:
    """Voxel grid: each event's polarity split bilinearly between its two nearest time bins.

    Timestamps are mapped linearly onto [0, num_bins - 1] over the events' own span: the earliest
    event lands on bin 0, the latest on bin num_bins - 1. An event at normalised time
    tau = b + f (0 <= f < 1) adds p * (1 - f) to bin b and p * f to bin b + 1. When all events
    share one timestamp (or N = 1, or num_bins = 1) everything lands in bin 0.

    Args:
        t: timestamps, shape (N,), integers in microseconds; need not be sorted.
        x, y: pixel coordinates, shape (N,), integers with 0 <= x < width, 0 <= y < height.
        p: polarity, shape (N,); bool, 0/1 or -1/+1 (OFF counts as -1 in every convention).
        num_bins: number of time bins, >= 1.
        height, width: sensor size in pixels.

    Returns:
        float32 array (num_bins, height, width) of signed, time-weighted event counts; it sums to
        sum(p) with p in -1/+1 (up to float rounding). All zeros for an empty window.
    """
    if num_bins < 1:
        raise ValueError(f"voxel_grid needs num_bins >= 1; got {num_bins}.")
    pixel = _pixel_index(x, y, height, width, t, p)  # (N,)
    plane = height * width
    if pixel.size == 0:
        return np.zeros((num_bins, height, width), np.float32)
    t = np.asarray(t, dtype=np.int64)
    polarity = normalize_polarity(p).astype(np.float64)  # (N,)
    t_first, span_us = t.min(), int(t.max() - t.min())
    if span_us == 0:
        position = np.zeros(t.shape, np.float64)  # one timestamp: no division by zero
    else:
        # integer numerator then one division, so the last event lands exactly on num_bins - 1
        position = ((t - t_first) * (num_bins - 1)).astype(np.float64) / span_us  # (N,) in bins
    left_bin = np.minimum(np.floor(position).astype(np.int64), num_bins - 1)
    right_weight = position - left_bin  # 0 for an event on the last bin
    right_bin = np.minimum(left_bin + 1, num_bins - 1)
    grid = np.bincount(left_bin * plane + pixel, weights=polarity * (1.0 - right_weight), minlength=num_bins * plane)
    grid += np.bincount(right_bin * plane + pixel, weights=polarity * right_weight, minlength=num_bins * plane)
    return grid.reshape(num_bins, height, width).astype(np.float32)


def time_surface(
    t: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    p: np.ndarray,
    height: int,
    width: int,
    t_ref_us: int,
    tau_us: float,
) -> np.ndarray:
    """Time surface: exp(-(t_ref - t_last) / tau) of the last event per pixel and polarity.

    Args:
        t: timestamps, shape (N,), integers in microseconds; need not be sorted.
        x, y: pixel coordinates, shape (N,), integers with 0 <= x < width, 0 <= y < height.
        p: polarity, shape (N,); bool, 0/1 or -1/+1.
        height, width: sensor size in pixels.
        t_ref_us: the time the surface is read at, microseconds; events with t > t_ref_us are
            ignored, an event at exactly t_ref_us gives 1.
        tau_us: decay constant in microseconds, > 0.

    Returns:
        float32 array (2, height, width) in [0, 1]: [0] from ON events, [1] from OFF events, 0 at a
        pixel with no event of that polarity up to t_ref_us. All zeros for an empty window.
    """
    if not tau_us > 0:
        raise ValueError(f"time_surface needs tau_us > 0 (microseconds); got {tau_us}.")
    pixel = _pixel_index(x, y, height, width, t, p)  # (N,)
    t = np.asarray(t, dtype=np.int64)
    channel = (normalize_polarity(p) < 0).astype(np.int64)  # 0 ON, 1 OFF
    seen = t <= t_ref_us
    never = np.iinfo(np.int64).min
    t_last = np.full(2 * height * width, never, dtype=np.int64)  # (2*H*W,) microseconds
    # the last event is the latest one, so no sort order is needed
    np.maximum.at(t_last, (channel * (height * width) + pixel)[seen], t[seen])
    surface = np.zeros(2 * height * width, np.float64)
    hit = t_last != never
    surface[hit] = np.exp(-(t_ref_us - t_last[hit]).astype(np.float64) / tau_us)
    return surface.reshape(2, height, width).astype(np.float32)


def _check_sorted(t: np.ndarray, what: str) -> np.ndarray:
    t = np.asarray(t, dtype=np.int64)
    if t.ndim != 1:
        raise ValueError(f"{what} must be a 1-D array; got shape {t.shape}.")
    if t.size > 1 and np.any(t[1:] < t[:-1]):
        raise ValueError(f"{what} must be sorted by time; sort the events with np.argsort(t, kind='stable').")
    return t


def _bounds_at(t: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Index of the first event at or after each time edge: window k is bounds[k]:bounds[k+1]."""
    return np.searchsorted(t, edges, side="left").astype(np.int64)


def _slices(bounds: np.ndarray) -> list[slice]:
    """Consecutive slices between the indices in bounds, shape (K + 1,) -> K slices."""
    return [slice(int(start), int(stop)) for start, stop in zip(bounds[:-1], bounds[1:])]


def frame_windows(t: np.ndarray, frame_timestamps_us: np.ndarray) -> list[slice]:
    """One window of events per APS frame: the events that arrived since the previous frame.

    Window k holds the events with frame[k-1] <= t < frame[k] (half-open like
    `EventStream.window`). Window 0 has no previous frame and holds every event before frame[0],
    starting at the first event. Events at or after the last frame timestamp fall in no window.

    Args:
        t: event timestamps, shape (N,), microseconds, sorted (non-decreasing).
        frame_timestamps_us: frame timestamps, shape (K,), microseconds, non-decreasing.

    Returns:
        K slices into the event arrays, empty slices for frames with no new events.
    """
    t = _check_sorted(t, "event timestamps t")
    frames = _check_sorted(frame_timestamps_us, "frame_timestamps_us")
    if frames.size == 0:
        return []
    return _slices(np.concatenate([[0], _bounds_at(t, frames)]))


def fixed_duration_windows(t: np.ndarray, duration_us: int, start_us: int | None = None) -> list[slice]:
    """Consecutive windows of equal duration covering the events from start_us on.

    Window k holds the events with start + k * duration <= t < start + (k + 1) * duration. The
    windows run up to the one holding the last event, so a gap in the stream gives empty windows;
    events before start_us fall in no window.

    Args:
        t: event timestamps, shape (N,), microseconds, sorted (non-decreasing).
        duration_us: window length in microseconds, > 0.
        start_us: start of the first window in microseconds; default the first event's timestamp.

    Returns:
        floor((t[-1] - start) / duration) + 1 slices into the event arrays; [] when there are no
        events at or after start_us.
    """
    if duration_us <= 0:
        raise ValueError(f"fixed_duration_windows needs duration_us > 0 (microseconds); got {duration_us}.")
    t = _check_sorted(t, "event timestamps t")
    if t.size == 0:
        return []
    start = int(t[0]) if start_us is None else int(start_us)
    if t[-1] < start:
        return []
    num_windows = (int(t[-1]) - start) // duration_us + 1
    edges = start + duration_us * np.arange(num_windows + 1, dtype=np.int64)  # (num_windows + 1,)
    return _slices(_bounds_at(t, edges))


def fixed_count_windows(n_events: int, count: int) -> list[slice]:
    """Consecutive windows of `count` events each; the last one holds the remainder.

    Every event falls in exactly one window, so per-window counts sum to n_events.

    Args:
        n_events: number of events, >= 0.
        count: events per window, > 0.

    Returns:
        ceil(n_events / count) slices; [] when n_events is 0.
    """
    if count <= 0:
        raise ValueError(f"fixed_count_windows needs count > 0 events; got {count}.")
    if n_events < 0:
        raise ValueError(f"fixed_count_windows needs n_events >= 0; got {n_events}.")
    return _slices(np.append(np.arange(0, n_events, count), n_events)) if n_events else []


WINDOWS = ("fixed_count", "fixed_duration", "uniform")


def window_bounds(
    t: np.ndarray,
    num_windows: int,
    window: str,
    *,
    window_us: int | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Cut a recording into ``num_windows`` consecutive windows; returns event-index bounds.

    t: event timestamps, shape (N,), microseconds, sorted.
    window:
        "fixed_count": equal event counts, window k = events [k N / T, (k+1) N / T) (floored);
            busy and quiet stretches get one image each alike, so every image is equally dense.
        "uniform": equal durations spanning the first to the last event.
        "fixed_duration": T windows of ``window_us`` microseconds each, their span placed at a
            random start (``rng`` given, training) or centred; a recording shorter than the span
            leaves the last windows empty (white images).

    Returns int64 array of shape (num_windows + 1,), non-decreasing: window k holds events
    ``bounds[k]:bounds[k+1]``. Every event lies in exactly one window, except with
    "fixed_duration" where events outside the span fall in none.
    """
    t = np.asarray(t, dtype=np.int64)
    n = len(t)
    k = np.arange(num_windows + 1, dtype=np.int64)
    if window == "fixed_count":
        return (k * n) // num_windows
    if n == 0:
        return np.zeros(num_windows + 1, dtype=np.int64)
    if window == "uniform":
        duration = int(t[-1] - t[0]) + 1  # + 1: the last event falls inside the last window
        edges = t[0] + (k * duration) // num_windows
    elif window == "fixed_duration":
        if window_us is None or window_us <= 0:
            raise ValueError(f"window 'fixed_duration' needs window_us > 0 (microseconds), got {window_us}")
        slack = max(0, int(t[-1] - t[0]) + 1 - num_windows * window_us)
        offset = int(rng.integers(0, slack + 1)) if rng is not None else slack // 2
        edges = t[0] + offset + k * window_us
    else:
        raise ValueError(f"window {window!r} is not one of {WINDOWS}")
    return _bounds_at(t, edges)


# The representations a model can be trained on, each drawn as a 3-channel uint8 image for the
# frozen RGB ViT (`as_rgb`).
# The ways a window of events becomes the 3-channel uint8 image the frozen ViT takes, by name
# (data.representation; the config's choices come from here). Each is a function
# (t, x, y, p, height, width) -> (H, W, 3) uint8; adding one is a function and its decorator line.
RGB_REPRESENTATIONS: dict[str, Callable[..., np.ndarray]] = {}


def rgb_representation(name: str) -> Callable[[Callable[..., np.ndarray]], Callable[..., np.ndarray]]:
    """Register a function (t, x, y, p, height, width) -> (H, W, 3) uint8 as representation `name`."""

    def register(function: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        RGB_REPRESENTATIONS[name] = function
        return function

    return register


def as_rgb(
    representation: str, t: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray, height: int, width: int
) -> np.ndarray:
    """One window of events as an (H, W, 3) uint8 image of `representation`, for the frozen ViT
    (the functions registered in RGB_REPRESENTATIONS, below)."""
    if representation not in RGB_REPRESENTATIONS:
        raise ValueError(f"representation {representation!r} is not one of {tuple(RGB_REPRESENTATIONS)}")
    return RGB_REPRESENTATIONS[representation](t, x, y, p, height, width)


@rgb_representation("event_image")
def event_image_rgb(t, x, y, p, height: int, width: int) -> np.ndarray:
    """The red/blue-on-white image of PokerEvent / HARDVS (`render.event_image`)."""
    from velora.events.render import event_image

    return event_image(x, y, p, height, width)


@rgb_representation("count")
def count_rgb(t, x, y, p, height: int, width: int) -> np.ndarray:
    """R = ON counts, B = OFF counts, G = 0, each count scaled by the window's 99th percentile of
    non-zero counts (at least 1) and clipped at 255: a busy window and a quiet one use the same
    range of colours."""
    counts = count_frame(x, y, p, height, width)  # (2, H, W)
    nonzero = counts[counts > 0]
    scale = max(1.0, float(np.percentile(nonzero, 99))) if nonzero.size else 1.0
    channels = (counts[0], np.zeros_like(counts[0]), counts[1])
    return np.clip(np.stack(channels, axis=-1) * (255.0 / scale), 0, 255).round().astype(np.uint8)


@rgb_representation("voxel_grid")
def voxel_grid_rgb(t, x, y, p, height: int, width: int) -> np.ndarray:
    """3 time bins of the signed, bilinearly binned polarity as R, G, B (earliest first), 128 for
    zero and 128 +- 127 at the window's largest magnitude."""
    grid = voxel_grid(t, x, y, p, 3, height, width)  # (3, H, W)
    peak = float(np.abs(grid).max()) or 1.0
    return np.clip(128.0 + 127.0 * grid.transpose(1, 2, 0) / peak, 0, 255).round().astype(np.uint8)


@rgb_representation("time_surface")
def time_surface_rgb(t, x, y, p, height: int, width: int) -> np.ndarray:
    """R = ON and B = OFF exponential decay read at the window's last event, with a decay constant
    of a quarter of the window's duration (at least 1 us), G = 0; 255 for an event at the last moment."""
    t = np.asarray(t, dtype=np.int64)
    if t.size == 0:
        return np.zeros((height, width, 3), np.uint8)
    tau = max(1.0, (int(t.max()) - int(t.min())) / 4)
    surface = time_surface(t, x, y, p, height, width, int(t.max()), tau)  # (2, H, W) in [0, 1]
    channels = (surface[0], np.zeros_like(surface[0]), surface[1])
    return (np.stack(channels, axis=-1) * 255.0).round().astype(np.uint8)
