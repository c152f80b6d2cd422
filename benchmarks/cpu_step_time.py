"""CPU time per training step and per inference batch, for before/after comparisons on a shared CPU,
and the bytes autograd keeps for the backward pass of one training forward (activation memory).

Wall-clock throughput on a machine shared with other jobs swings by 2x from run to run; the CPU
time a single-threaded process spends per step swings far less. Same step as `velora bench`
(forward + backward + AdamW on random uint8 clips; inference under no_grad), in this process.

    OMP_NUM_THREADS=1 python benchmarks/cpu_step_time.py --config demo --batch-size 4 --steps 20
Point PYTHONPATH at another checkout's src/ to time that version of the model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from random_inputs import random_clips  # benchmarks/, beside this script


def saved_bytes(model, rgb, events) -> int:
    """Bytes of the distinct tensors autograd saves in one training forward."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(rgb, events)
    return sum(storages.values())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="demo")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("overrides", nargs="*", default=["model.weights=none"])
    args = p.parse_args()
    torch.set_num_threads(1)

    import velora
    from velora.config import load_config
    from velora.model.velora import VELoRA

    cfg = load_config(args.config, args.overrides)
    torch.manual_seed(0)
    model = VELoRA.from_config(cfg)
    rgb, events, labels = random_clips(cfg, args.batch_size)
    optimizer = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-4)

    def train_step() -> None:
        model.train()
        out = model(rgb, events)
        (F.cross_entropy(out.logits, labels) + out.recon_loss).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def infer_step() -> None:
        model.eval()
        with torch.no_grad():
            model(rgb, events)

    result = {"velora": velora.__file__, "batch_size": args.batch_size, "overrides": args.overrides}
    result["saved_activation_mb"] = saved_bytes(model, rgb, events) / 2**20
    for name, step in (("train", train_step), ("infer", infer_step)):
        for _ in range(args.warmup):
            step()
        cpu = []
        for _ in range(args.steps):
            t0 = time.process_time()
            step()
            cpu.append(time.process_time() - t0)
        result[f"{name}_cpu_ms_median"] = 1000 * statistics.median(cpu)
        result[f"{name}_cpu_ms_min"] = 1000 * min(cpu)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
