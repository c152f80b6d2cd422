"""How many event pixels survive the resize to the model's size, and what each resize costs.

    PYTHONPATH=src .venv/bin/python benchmarks/event_resize.py [--size 224] [--window-ms 40]
        [--step-ms 10] [--repeats 200] [--json benchmarks/results/event_resize.json]

Event images are drawn from the real recordings the test suite carries (tests/data/real): the
DAVIS346 street recording (346 x 260, the sensor of PokerEvent and HARDVS), every --window-ms window
starting each --step-ms, and, for larger sensors, the first 10 ms windows of the Prophesee Gen3
(640 x 480) and EVK4 (1280 x 720) recordings. Each is the red / blue-on-white event image of the
datasets (velora.events.render.event_image) at the sensor's size, resized to --size x --size by
every data.event_resize method (velora.events.resize.resize_event_image).

Kept: the share of the sensor image's event pixels (non-white) whose output pixel (the one their
centre falls in) shows an event (is not white), pooled over all windows of a recording. Own colour:
the share whose output pixel shows exactly their colour (red or blue; a footprint holding both
shows one). Pure: the share of the output's event pixels that are exactly red or blue (blending
methods make pale ones).
Cost: median time of one resize of one image, over --repeats resizes of each window, on one thread.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
REAL = REPO / "tests" / "data" / "real"

from velora.events.readers import read_events  # noqa: E402
from velora.events.render import OFF_COLOUR, ON_COLOUR, event_image  # noqa: E402
from velora.events.resize import EVENT_RESIZE, resize_event_image, target_pixels  # noqa: E402

RECORDINGS = {
    "DAVIS346 street (346 x 260)": (REAL / "davis346" / "street_davis346.aedat4", None),
    "Prophesee Gen3 EVT 2.0 (640 x 480)": (REAL / "prophesee" / "gen3_evt2.raw", 10),
    "Prophesee EVK4 EVT 3.0 (1280 x 720)": (REAL / "prophesee" / "evk4_evt3_head.raw", 10),
}


def windows(path: Path, window_us: int, step_us: int, limit_ms: float | None) -> list[np.ndarray]:
    """Event images (H, W, 3) of every window of `window_us` starting each `step_us` (or the first
    `limit_ms` worth of windows of `limit_ms` each, for the dense Prophesee recordings)."""
    events = read_events(path)
    images = []
    if limit_ms is not None:
        window_us = step_us = int(limit_ms * 1000)
        stop = events.t[0] + 5 * window_us
    else:
        stop = events.t[-1] - window_us + 1
    for start in range(int(events.t[0]), int(stop), step_us):
        w = events.window(start, start + window_us)
        if len(w):
            images.append(event_image(w.x, w.y, w.p, events.height, events.width))
    return images


def measure(images: list[np.ndarray], size: int, method: str, repeats: int) -> dict:
    marked = kept = same = output_events = pure = 0
    seconds = []
    for image in images:
        out = resize_event_image(image, size, None, method)
        height, width = image.shape[:2]
        ys, xs = np.nonzero((image != 255).any(-1))
        oy, ox, _ = target_pixels(ys, xs, size, (0.0, 0.0, float(width), float(height)))
        shown = (out != 255).any(-1)
        marked += ys.size
        kept += int(shown[oy, ox].sum())
        same += int((out[oy, ox] == image[ys, xs]).all(-1).sum())
        colours = out[shown]
        output_events += len(colours)
        pure += int(((colours == ON_COLOUR).all(-1) | (colours == OFF_COLOUR).all(-1)).sum())
        start = time.perf_counter()
        for _ in range(repeats):
            resize_event_image(image, size, None, method)
        seconds.append((time.perf_counter() - start) / repeats)
    return {
        "event_pixels": marked,
        "kept": kept,
        "kept_share": kept / max(1, marked),
        "own_colour_share": same / max(1, marked),
        "pure_share": pure / max(1, output_events),
        "ms_per_image": 1000 * statistics.median(seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--window-ms", type=float, default=40.0)
    parser.add_argument("--step-ms", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    results: dict = {
        "command": " ".join(sys.argv),
        "date": datetime.date.today().isoformat(),
        "size": args.size,
        "window_ms": args.window_ms,
        "step_ms": args.step_ms,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "recordings": {},
    }
    for name, (path, limit_ms) in RECORDINGS.items():
        images = windows(path, int(args.window_ms * 1000), int(args.step_ms * 1000), limit_ms)
        per_method = {method: measure(images, args.size, method, args.repeats) for method in EVENT_RESIZE}
        results["recordings"][name] = {"windows": len(images), "methods": per_method}
        print(f"{name}: {len(images)} windows, {per_method['nearest']['event_pixels']:,} event pixels")
        print(f"  {'method':12s} {'kept':>8s} {'own colour':>11s} {'pure':>8s} {'ms/image':>9s}")
        for method, r in per_method.items():
            print(
                f"  {method:12s} {r['kept_share']:8.2%} {r['own_colour_share']:11.2%} {r['pure_share']:8.2%} "
                f"{r['ms_per_image']:9.3f}"
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
