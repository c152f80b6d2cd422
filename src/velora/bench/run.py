"""`velora bench`: throughput, latency, memory and MFU of VELoRA vs the original-style execution.

Each measurement runs in a fresh process so that its peak memory (CPU: peak resident set size;
CUDA: peak allocated bytes) belongs to it alone. Timed steps follow warmup steps (which also
absorb torch.compile's compilation); a training step is forward + backward + AdamW step on random
uint8 clips of the configured shape; inference is a forward pass under `no_grad`; latency is the
median time of an inference forward pass of one clip. On CUDA, training and inference steps are
queued back to back without a host sync, as `velora train` runs them; latency syncs every clip.

MFU = model FLOP per clip (`velora.bench.flops`) x clips/s / the card's dense bf16 peak.
"""

from __future__ import annotations

import multiprocessing as mp
import platform
import resource
import statistics
import subprocess
import time
from collections.abc import Callable
from contextlib import nullcontext
from datetime import date

import torch
import torch.nn.functional as F

from velora.config import Config, load_config

WARMUP_STEPS = 3
MODES = ("train", "infer", "latency")
STYLES = ("velora", "original_style")


def measure(config: dict, style: str, mode: str, device: str, batch_size: int, steps: int, precision: str) -> dict:
    """Time `steps` training steps, inference batches or one-clip forward passes; runs in a child process."""
    from velora.bench.flops import model_flops
    from velora.bench.reference import OriginalStyleVELoRA
    from velora.model.velora import VELoRA

    torch.manual_seed(0)
    baseline_rss = _rss_bytes()  # the interpreter and libraries, before the model exists
    cfg = Config.from_dict(config)
    model_cls = VELoRA if style == "velora" else OriginalStyleVELoRA
    model = model_cls.from_config(cfg).to(device)
    if mode == "latency":
        batch_size = 1
    # The original ran in fp32; bf16 autocast applies to our execution only.
    step = bench_step(model, cfg, mode, device, batch_size, precision if style == "velora" else "fp32")
    cuda = torch.device(device).type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    for _ in range(WARMUP_STEPS):
        step()
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    # Throughput modes queue step after step as training does (no host sync between steps; CUDA
    # events give each step's time on the device). Latency waits for each clip's result.
    pipelined = cuda and mode != "latency"
    marks = [torch.cuda.Event(enable_timing=True) for _ in range(steps + 1)] if pipelined else []
    times = []
    start, cpu_start = time.perf_counter(), time.process_time()
    for i in range(steps):
        if pipelined:
            marks[i].record()
            step()
            continue
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    if pipelined:
        marks[-1].record()
    sync()
    elapsed = time.perf_counter() - start
    if pipelined:
        times = [a.elapsed_time(b) / 1000 for a, b in zip(marks, marks[1:])]
    cpu_seconds = time.process_time() - cpu_start
    peak = torch.cuda.max_memory_allocated() if cuda else _peak_rss_bytes() - baseline_rss
    flops = model_flops(cfg)
    frozen = [p for n, p in model.named_parameters() if not p.requires_grad and not n.startswith("absent_")]
    return {
        "style": style,
        "mode": mode,
        "batch_size": batch_size,
        "clips_per_s": batch_size * steps / elapsed,
        "seconds_per_step": elapsed / steps,
        "median_ms_per_step": 1000 * statistics.median(times),
        # CPU time of this process (all threads): steadier than wall time on a shared CPU.
        "cpu_ms_per_step": 1000 * cpu_seconds / steps,
        "peak_memory_mb": peak / 2**20,
        "peak_memory_kind": "cuda max allocated" if cuda else "process peak RSS above the pre-model baseline",
        "flops_per_clip": flops["train_step"] if mode == "train" else flops["forward"],
        "frozen_weight_bytes": sum(p.numel() * p.element_size() for p in frozen),
    }


def bench_step(model, cfg: Config, mode: str, device: str, batch_size: int, precision: str) -> Callable[[], None]:
    """One step on fixed random uint8 clips of the config's shape: forward, backward and fused AdamW
    for mode "train" (as VELoRAModule trains), a forward pass under no_grad otherwise."""
    T, S = cfg.data.num_frames, cfg.model.image_size
    shape = (batch_size, T, 3, S, S)
    rgb = torch.randint(0, 256, shape, dtype=torch.uint8, device=device)
    events = torch.randint(0, 256, shape, dtype=torch.uint8, device=device)
    labels = torch.randint(0, cfg.model.num_classes, (batch_size,), device=device)
    autocast = (
        torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
        if precision == "bf16"
        else nullcontext()
    )
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, fused=torch.device(device).type in ("cuda", "cpu") or None)

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

    return step


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:  # not Linux: report the whole process peak
        return 0


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _child(queue, fn, *args) -> None:
    try:
        queue.put(fn(*args))
    except BaseException as exc:  # report, do not hang the parent
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def in_process(fn, *args) -> dict:
    """fn(*args) in a fresh spawned process; raises RuntimeError with the child's error."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, fn, *args))
    proc.start()
    result = queue.get()
    proc.join()
    if "error" in result:
        raise RuntimeError(f"benchmark child failed: {result['error']}")
    return result


def measure_in_process(*args) -> dict:
    return in_process(measure, *args)


def attention_report(config: dict, device: str, precision: str) -> dict:
    from velora.bench.sdpa import sdpa_report
    from velora.model.backbone import build_backbone

    return sdpa_report(build_backbone(Config.from_dict(config).model).to(device), device, precision)


def find_max_batch(
    raw: dict, device: str, start: int, steps: int, precision: str, first: dict | None = None, limit: int = 4096
) -> dict:
    """Double the training batch from `start` until it runs out of memory; the last one that fit.

    first: an already measured training row at `start` (not measured again).
    """
    tried, best = [], None
    batch = start
    while batch <= limit:
        try:
            row = (
                first
                if first and batch == start
                else measure_in_process(raw, "velora", "train", device, batch, steps, precision)
            )
        except RuntimeError as exc:
            if "out of memory" not in str(exc).lower():
                raise
            tried.append({"batch_size": batch, "result": "out of memory"})
            break
        tried.append({"batch_size": batch, "result": "fits", "clips_per_s": row["clips_per_s"]})
        best = row
        batch *= 2
    return {"largest": best, "tried": tried}


def run_bench(
    config: str,
    overrides: list[str] | None,
    *,
    device: str = "cpu",
    batch_size: int = 4,
    steps: int = 5,
    precision: str = "fp32",
    peak_tflops: float | None = None,
    compile: bool = False,
    checkpointing: bool = False,
    max_batch: bool = False,
    original: bool = True,
    original_batch_size: int | None = None,
    modes: tuple[str, ...] = MODES,
    print_table: bool = True,
) -> dict:
    """Measure `modes` for VELoRA and (original=True) the original-style execution, each in its own process.

    original_batch_size: the original style's batch (default: batch_size); its clips/s barely
    depends on it (one image per backbone call), so a small one keeps its slow steps short.
    """
    from velora.bench.flops import peak_bf16_tflops

    overrides = list(overrides or [])
    overrides += [f"model.compile={str(compile).lower()}", f"model.grad_checkpointing={str(checkpointing).lower()}"]
    cfg = load_config(config, overrides)
    raw = cfg.to_dict()
    name = _device_name(device)
    peak_source = "--peak-tflops" if peak_tflops else None
    if peak_tflops is None and torch.device(device).type == "cuda":
        peak_tflops = peak_bf16_tflops(name)
        peak_source = "dense bf16 table (velora.bench.flops)" if peak_tflops else None

    styles = STYLES if original else ("velora",)
    batch = {"velora": batch_size, "original_style": original_batch_size or batch_size}
    rows = [measure_in_process(raw, s, m, device, batch[s], steps, precision) for m in modes for s in styles]
    for r in rows:
        r["mfu"] = r["flops_per_clip"] * r["clips_per_s"] / (peak_tflops * 1e12) if peak_tflops else None
    by = {(r["style"], r["mode"]): r for r in rows}
    speedup = (
        {m: by[("velora", m)]["clips_per_s"] / by[("original_style", m)]["clips_per_s"] for m in modes}
        if original
        else {}
    )
    results = {
        "date": date.today().isoformat(),
        "config": config,
        "overrides": overrides,
        "device": name,
        "driver": _driver_version() if torch.device(device).type == "cuda" else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "threads": torch.get_num_threads(),
        "batch_size": batch_size,
        "num_frames": cfg.data.num_frames,
        "image_size": cfg.model.image_size,
        "precision": precision,
        "steps": steps,
        "compile": compile,
        "grad_checkpointing": checkpointing,
        "peak_tflops": peak_tflops,
        "peak_source": peak_source,
        "flop_accounting": "model FLOP (2 per multiply-add) of one clip, counted by torch's FlopCounterMode over "
        "the config's model: forward, and forward + backward of the training loss (velora.bench.flops)",
        "rows": rows,
        "speedup": speedup,
        "frozen_weight_bytes": {s: by[(s, modes[0])]["frozen_weight_bytes"] for s in styles},
        "sdpa": in_process(attention_report, raw, device, precision),
    }
    if max_batch:
        results["max_batch"] = find_max_batch(raw, device, batch_size, steps, precision, by.get(("velora", "train")))
    if print_table:
        print(format_table(results))
    return results


def format_table(results: dict) -> str:
    opts = [o for o in ("compile", "grad_checkpointing") if results.get(o)]
    lines = [
        f"device {results['device']}, torch {results['torch']}, batch {results['batch_size']} clips x "
        f"{results['num_frames']} frames x {results['image_size']} px, {results['precision']} (original-style: fp32), "
        f"{results['steps']} timed steps{', ' + ', '.join(opts) if opts else ''}",
        f"{'mode':8s} {'execution':16s} {'batch':>5s} {'clips/s':>9s} {'ms/step':>9s} {'peak MB':>9s} {'GFLOP/clip':>11s} {'MFU':>7s}",
    ]
    for r in results["rows"]:
        mfu = f"{100 * r['mfu']:6.1f}%" if r["mfu"] is not None else "      -"
        lines.append(
            f"{r['mode']:8s} {r['style']:16s} {r['batch_size']:5d} {r['clips_per_s']:9.2f} {r['median_ms_per_step']:9.1f} "
            f"{r['peak_memory_mb']:9.0f} {r['flops_per_clip'] / 1e9:11.1f} {mfu}"
        )
    if results["speedup"]:
        names = {"train": "train", "infer": "inference", "latency": "one-clip latency"}
        ratios = ", ".join(f"{names[m]} {v:.2f}x" for m, v in results["speedup"].items())
        lines.append(f"speed-up (velora / original-style): {ratios}")
    frozen = ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in results["frozen_weight_bytes"].items())
    lines.append(f"frozen weights held: {frozen}")
    if results["peak_tflops"]:
        lines.append(f"MFU against {results['peak_tflops']:g} TFLOP/s ({results['peak_source']})")
    sdpa = results["sdpa"]
    ok = [k for k, v in sdpa["available"].items() if v == "ok"]
    lines.append(
        f"attention: F.scaled_dot_product_attention -> {sdpa['used']} kernel ({', '.join(sdpa['ops'])}); "
        f"backends that run alone: {', '.join(ok)}"
    )
    if "max_batch" in results:
        mb = results["max_batch"]
        fits = ", ".join(f"{t['batch_size']}: {t['result']}" for t in mb["tried"])
        best = mb["largest"]
        lines.append(
            f"largest training batch: {best['batch_size'] if best else 'none'} ({fits})"
            + (f", {best['clips_per_s']:.1f} clips/s, peak {best['peak_memory_mb']:.0f} MB" if best else "")
        )
    return "\n".join(lines)


def _device_name(device: str) -> str:
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} CPU"


def _driver_version() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.TimeoutExpired):
        return None
