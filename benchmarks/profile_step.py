"""Where a training (or inference) step's time goes: the torch profiler, by kind of work.

If MFU falls short, this says why: the share of device time in matrix products (what MFU counts),
attention, dropout masks, norms, element-wise work, the optimizer; and how much of each step the
device sat idle waiting for the host. The step is `velora bench`'s (random uint8 clips, bf16
autocast, fused AdamW: velora.bench.run.bench_step); steps are queued back to back as in training.

Usage (GPU):  python benchmarks/profile_step.py --device cuda --batch-size 32 --json profile.json
Usage (CPU):  python benchmarks/profile_step.py --config demo --batch-size 4 --precision fp32
Extra `section.field=value` arguments override the config (default: pokerevent_vitb16, T = 8,
random weights).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

# First match wins; matched against aten op names (lower case).
KINDS = (
    ("matmul", r"aten::(mm|addmm|bmm|baddbmm|matmul|_scaled_mm)$"),
    ("attention", r"scaled_dot_product|flash|efficient_attention|cudnn_attention"),
    ("dropout", r"bernoulli|dropout"),
    ("norm", r"layer_norm|group_norm|batch_norm"),
    ("convolution", r"convolution"),
    ("optimizer", r"adam|_foreach|_amp_foreach"),
    ("copy/cast", r"aten::(copy_|_to_copy|to|contiguous|clone)$"),
)


def kind_of(name: str) -> str:
    for kind, pattern in KINDS:
        if re.search(pattern, name.lower()):
            return kind
    return "other (element-wise, reductions, indexing)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="pokerevent_vitb16")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--mode", choices=("train", "infer"), default="train")
    p.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    p.add_argument("--top", type=int, default=15, help="ops listed by their own device time")
    p.add_argument("--json", help="write the results here")
    p.add_argument("overrides", nargs="*", metavar="section.field=value")
    args = p.parse_args()

    from velora.bench.run import bench_step
    from velora.config import load_config
    from velora.model.velora import VELoRA

    cfg = load_config(args.config, ["model.weights=none", "data.num_frames=8", *args.overrides])
    cuda = args.device.startswith("cuda")
    torch.manual_seed(0)
    model = VELoRA.from_config(cfg).to(args.device)
    step = bench_step(model, cfg, args.mode, args.device, args.batch_size, args.precision)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    sync()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        sync()
        wall = (time.perf_counter() - start) / args.steps

    # Own time of each aten op: on CUDA the kernels it launched, on the CPU its own CPU time.
    def own(event) -> float:
        return (event.self_device_time_total if cuda else event.self_cpu_time_total) / 1e6 / args.steps

    ops = [e for e in prof.key_averages() if e.key.startswith("aten::") and own(e) > 0]
    by_kind: dict[str, float] = defaultdict(float)
    for e in ops:
        by_kind[kind_of(e.key)] += own(e)
    busy = sum(by_kind.values())
    results = {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__,
        "config": args.config,
        "overrides": args.overrides,
        "mode": args.mode,
        "precision": args.precision,
        "batch_size": args.batch_size,
        "step_ms": 1000 * wall,
        "busy_ms": 1000 * busy,
        # CPU: the time the ops themselves took; the rest is Python, dispatch and the profiler.
        "idle_share": max(0.0, 1 - busy / wall),
        "ms_by_kind": {k: 1000 * v for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
        "top_ops": [
            {"op": e.key, "ms": 1000 * own(e), "calls": e.count // args.steps}
            for e in sorted(ops, key=own, reverse=True)[: args.top]
        ],
    }
    where = "device" if cuda else "CPU"
    print(
        f"{results['device']}, {args.mode} step, batch {args.batch_size}, {args.precision}: "
        f"{results['step_ms']:.1f} ms per step, {where} busy {results['busy_ms']:.1f} ms "
        f"({100 * (1 - results['idle_share']):.0f} %)"
    )
    for kind, ms in results["ms_by_kind"].items():
        print(f"  {kind:<45} {ms:8.2f} ms  {100 * ms / results['busy_ms']:5.1f} %")
    print("ops by their own time:")
    for row in results["top_ops"]:
        print(f"  {row['op']:<60} {row['ms']:8.2f} ms  x{row['calls']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
