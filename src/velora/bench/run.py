"""`velora bench`: throughput and peak memory of VELoRA vs the original-style execution.

Each measurement runs in a fresh process so that its peak memory (CPU: peak resident set size;
CUDA: peak allocated bytes) belongs to it alone. Timed steps follow warmup steps; a training step
is forward + backward + AdamW step on random uint8 clips of the configured shape.
"""

from __future__ import annotations

import multiprocessing as mp
import platform
import resource
import time
from contextlib import nullcontext
from datetime import date

import torch
import torch.nn.functional as F

from velora.config import Config, load_config

WARMUP_STEPS = 3


def measure(config: dict, style: str, mode: str, device: str, batch_size: int, steps: int, precision: str) -> dict:
    """Time `steps` training steps or inference batches of one execution style; runs in a child process."""
    from velora.bench.reference import OriginalStyleVELoRA
    from velora.model.velora import VELoRA

    torch.manual_seed(0)
    baseline_rss = _rss_bytes()  # the interpreter and libraries, before the model exists
    cfg = Config.from_dict(config)
    model_cls = VELoRA if style == "velora" else OriginalStyleVELoRA
    model = model_cls(cfg).to(device)
    T, S = cfg.data.num_frames, cfg.model.image_size
    shape = (batch_size, T, 3, S, S)
    rgb = torch.randint(0, 256, shape, dtype=torch.uint8, device=device)
    events = torch.randint(0, 256, shape, dtype=torch.uint8, device=device)
    labels = torch.randint(0, cfg.model.num_classes, (batch_size,), device=device)
    # The original ran in fp32; bf16 autocast applies to our execution only.
    autocast = (
        torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
        if precision == "bf16" and style == "velora"
        else nullcontext()
    )
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    cuda = torch.device(device).type == "cuda"

    def step() -> None:
        if mode == "train":
            model.train()
            with autocast:
                out = model(rgb, events)
                loss = F.cross_entropy(out.logits.float(), labels) + out.recon_loss.float()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        else:
            model.eval()
            with torch.no_grad(), autocast:
                model(rgb, events)

    for _ in range(WARMUP_STEPS):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() if cuda else _peak_rss_bytes() - baseline_rss
    return {
        "style": style,
        "mode": mode,
        "clips_per_s": batch_size * steps / elapsed,
        "seconds_per_step": elapsed / steps,
        "peak_memory_mb": peak / 2**20,
        "peak_memory_kind": "cuda max allocated" if cuda else "process peak RSS above the pre-model baseline",
    }


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:  # not Linux: report the whole process peak
        return 0


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _child(queue, *args) -> None:
    try:
        queue.put(measure(*args))
    except BaseException as exc:  # report, do not hang the parent
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def measure_in_process(*args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, *args))
    proc.start()
    result = queue.get()
    proc.join()
    if "error" in result:
        raise RuntimeError(f"benchmark child failed: {result['error']}")
    return result


def run_bench(
    config: str, overrides: list[str] | None, *, device: str = "cpu", batch_size: int = 4, steps: int = 5,
    precision: str = "fp32", print_table: bool = True,
) -> dict:
    cfg = load_config(config, overrides)
    raw = cfg.to_dict()
    rows = []
    for mode in ("train", "infer"):
        for style in ("velora", "original_style"):
            rows.append(measure_in_process(raw, style, mode, device, batch_size, steps, precision))
    by = {(r["style"], r["mode"]): r for r in rows}
    ratios = {m: by[("velora", m)]["clips_per_s"] / by[("original_style", m)]["clips_per_s"] for m in ("train", "infer")}
    results = {
        "date": date.today().isoformat(),
        "config": config,
        "overrides": overrides or [],
        "device": _device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch_size": batch_size,
        "num_frames": cfg.data.num_frames,
        "image_size": cfg.model.image_size,
        "precision": precision,
        "steps": steps,
        "rows": rows,
        "speedup": ratios,
    }
    if print_table:
        print(format_table(results))
    return results


def format_table(results: dict) -> str:
    lines = [
        f"device {results['device']}, torch {results['torch']}, batch {results['batch_size']} clips x "
        f"{results['num_frames']} frames x {results['image_size']} px, {results['precision']}, {results['steps']} timed steps",
        f"{'mode':6s} {'execution':16s} {'clips/s':>10s} {'s/step':>9s} {'peak MB':>9s}",
    ]
    for r in results["rows"]:
        lines.append(
            f"{r['mode']:6s} {r['style']:16s} {r['clips_per_s']:10.2f} {r['seconds_per_step']:9.3f} {r['peak_memory_mb']:9.0f}"
        )
    lines.append(
        f"speed-up (velora / original-style): train {results['speedup']['train']:.2f}x, "
        f"inference {results['speedup']['infer']:.2f}x"
    )
    return "\n".join(lines)


def _device_name(device: str) -> str:
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} CPU"
