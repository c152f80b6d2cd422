"""faery 0.7.1 as the reference decoder and writer of the reader tests (a test-only dependency).

faery (https://github.com/aestream/faery, LGPL-3.0) reads and writes Prophesee RAW (EVT 2.0, 3.0) and
DAT, Event Stream, CSV and AEDAT 4 with its own Rust decoders, independent of velora's.
"""

from __future__ import annotations

from pathlib import Path

import faery
import numpy as np


def faery_decode(path: Path) -> np.ndarray:
    """Every event faery decodes from `path`, as one structured array (t, x, y, on)."""
    return np.concatenate(list(faery.events_stream_from_file(path)))


def assert_same_events(events, reference: np.ndarray) -> None:
    assert len(events) == len(reference)
    assert np.array_equal(events.t, reference["t"].astype(np.int64)), "t differs"
    assert np.array_equal(events.x, reference["x"]) and np.array_equal(events.y, reference["y"]), "x or y differs"
    assert np.array_equal(events.p > 0, reference["on"]), "polarity differs"


def random_events(n: int, width: int, height: int, duration_us: int, seed: int = 0, t0: int = 0) -> np.ndarray:
    """n distinct events in faery's dtype, sorted by t (ties in a random order)."""
    rng = np.random.default_rng(seed)
    events = np.zeros(n, dtype=faery.EVENTS_DTYPE)
    events["t"] = t0 + np.sort(rng.integers(0, duration_us, n))
    events["x"], events["y"] = rng.integers(0, width, n), rng.integers(0, height, n)
    events["on"] = rng.random(n) < 0.5
    _, first = np.unique(np.stack([events["t"], events["x"], events["y"]]), axis=1, return_index=True)
    return events[np.sort(first)]


def write_with_faery(path: Path, events: np.ndarray, size: tuple[int, int], **options) -> Path:
    faery.events_stream_from_array(events, dimensions=size).to_file(path, **options)
    return path
