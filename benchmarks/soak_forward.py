"""The soak's model alone: does its forward pass get slower over as many calls as an hour of soak
has windows (90,000), in one process, with no stream around it?

    .venv/bin/python benchmarks/soak_forward.py --calls 90000 --json benchmarks/results/soak_forward.json

The tiny model of benchmarks/soak.py, one thread, one fixed clip (T = 3, RGB and events, 32 px)
through `Recognizer.probabilities` as `velora stream` calls it; the loop thread's CPU time
(time.thread_time) per call, averaged over blocks of 2,000 calls. A forward pass that ages would
show a rising series; noise from the machine shows as blocks up and down.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from soak import tiny_recognizer  # noqa: E402 (a module beside this one, run as a script)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=90_000)
    parser.add_argument("--block", type=int, default=2_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    recognizer = tiny_recognizer(Path(tempfile.mkdtemp(prefix="velora-soak-forward-")), None)
    generator = torch.Generator().manual_seed(0)
    item = {
        key: torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=generator) for key in ("rgb", "events")
    }
    blocks = []
    before = time.thread_time()
    for call in range(1, args.calls + 1):
        recognizer.probabilities([item], expected=["rgb", "event"])
        if call % args.block == 0:
            now = time.thread_time()
            blocks.append((now - before) / args.block * 1e3)
            before = now
            print(f"{call:7d} calls: {blocks[-1]:.3f} ms of CPU per call", flush=True)
    tenth = max(1, len(blocks) // 10)
    figures = {
        "calls": args.calls,
        "cpu_ms_per_call_first_tenth": float(np.mean(blocks[:tenth])),
        "cpu_ms_per_call_last_tenth": float(np.mean(blocks[-tenth:])),
        "cpu_ms_per_call_block_min": min(blocks),
        "cpu_ms_per_call_block_max": max(blocks),
    }
    figures["change_pct"] = 100 * (figures["cpu_ms_per_call_last_tenth"] / figures["cpu_ms_per_call_first_tenth"] - 1)
    print(json.dumps(figures, indent=1))
    if args.json:
        result = {
            "command": "benchmarks/soak_forward.py " + " ".join(sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d"),
            "torch": torch.__version__,
            "figures": figures,
            f"cpu_ms_per_call_every_{args.block}": [round(b, 4) for b in blocks],
        }
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
