"""Training-step time of the demo model with 1 or 2 torch threads, alone or next to a busy process.

Why `velora demo` trains with one thread per process (issue #12): the demo model is tiny (128-wide,
4 blocks, 17 tokens per image), so two intra-op threads share little work, and when another process
wants the same cores (the DataLoader's workers, a second training, anything else on the machine)
the threads' spin-waiting at every parallel region makes each step several times slower.

    python benchmarks/demo_threads.py --json benchmarks/results/issue12/demo_threads.json

Each setting runs in a fresh process: VELoRA's real training step (forward, cross-entropy +
reconstruction, backward, fused AdamW) on random uint8 clips of the demo config (T = 4, 64 px,
batch 8). "busy" starts one single-threaded process spinning on the CPU next to it, which is what a
second training or a DataLoader worker does to a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path


def spin(stop_after_s: float) -> None:
    end = time.monotonic() + stop_after_s
    x = 0
    while time.monotonic() < end:
        x += 1


def measure(threads: int, modalities: str, steps: int, warmup: int) -> dict:
    import torch
    import torch.nn.functional as F

    from velora.config import Config, load_config, merge
    from velora.model.velora import VELoRA

    torch.set_num_threads(threads)
    raw = merge(load_config("demo").to_dict(), {"data": {"modalities": modalities.split(",")}})
    cfg = Config.from_dict(raw)
    torch.manual_seed(0)
    model = VELoRA.from_config(cfg).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, fused=True)
    B, T, S = cfg.train.batch_size, cfg.data.num_frames, cfg.model.image_size
    generator = torch.Generator().manual_seed(0)
    rgb = torch.randint(0, 256, (B, T, 3, S, S), dtype=torch.uint8, generator=generator)
    events = torch.randint(0, 256, (B, T, 3, S, S), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, cfg.model.num_classes, (B,), generator=generator)

    def step() -> None:
        out = model(rgb if "rgb" in modalities else None, events if "event" in modalities else None)
        loss = F.cross_entropy(out.logits, labels) + out.recon_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    return {
        "ms_per_step_wall": round(1000 * (time.perf_counter() - wall) / steps, 1),
        "ms_per_step_cpu": round(1000 * (time.process_time() - cpu) / steps, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--modalities", default="rgb,event")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--one", nargs=2, metavar=("THREADS", "BUSY"), help=argparse.SUPPRESS)  # a child run
    args = p.parse_args()
    if args.one:
        threads, busy = int(args.one[0]), args.one[1] == "busy"
        spinner = None
        if busy:
            spinner = multiprocessing.get_context("spawn").Process(target=spin, args=(600,), daemon=True)
            spinner.start()
        try:
            print(json.dumps(measure(threads, args.modalities, args.steps, args.warmup)))
        finally:
            if spinner is not None:
                spinner.terminate()
        return 0

    rows = []
    for busy in ("alone", "busy"):
        for threads in (1, 2):
            command = [
                sys.executable,
                __file__,
                "--one",
                str(threads),
                busy,
                "--steps",
                str(args.steps),
                "--warmup",
                str(args.warmup),
                "--modalities",
                args.modalities,
            ]
            result = json.loads(
                subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1]
            )
            rows.append({"threads": threads, "neighbour": busy, **result})
            print(
                f"{threads} thread(s), {busy:5s}: {result['ms_per_step_wall']:7.1f} ms/step wall, "
                f"{result['ms_per_step_cpu']:7.1f} ms CPU",
                flush=True,
            )
    if args.json:
        import torch

        out = {
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "modalities": args.modalities,
            "load_average_before": os.getloadavg(),
            "rows": rows,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
