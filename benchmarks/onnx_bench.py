"""Inference latency of an exported ONNX file in onnxruntime against the PyTorch model it came from.

    PYTHONPATH=src .venv/bin/python benchmarks/onnx_bench.py [--config demo] [--batches 1,8]
        [--threads 2] [--rounds 7] [--calls 20] [--json benchmarks/results/onnx_bench_demo.json]

The model is the config's (demo: the 128-wide, 4-block ViT at 64 px, T = 4, shipped fractal weights;
timing does not depend on the weights) with random adapters, saved as an adapter file and exported
twice by `velora export`: with its LoRA branches and with --merge. Timed, on random uint8 clips of
both modalities, each a full forward pass from uint8 frames to logits:

- PyTorch eager: `model(rgb, events)` under torch.inference_mode, as velora.load's Recognizer runs it;
- PyTorch eager, folded: the same with each stream's LoRA folded into its own weights;
- onnxruntime (CPU provider, all graph optimisations), on the exported file and on the merged one.

torch and onnxruntime get the same number of intra-op threads (--threads), and neither engine's
threads busy-wait between parallel regions (OMP_WAIT_POLICY=PASSIVE, onnxruntime's
allow_spinning 0; see below). Each round makes --calls calls of every engine,
interleaved one call at a time in a rotating order (after warmup), so load from other processes
hits all of them alike; reported per engine and batch: the median over rounds of the per-round
median latency, the range of the round medians, and the speed-up against PyTorch eager. The
machine's load average is recorded before and after: on a shared machine, read the figures with it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Both engines' pool threads block between parallel regions instead of spinning: on a busy machine,
# torch's OpenMP threads spinning at a barrier while another thread of theirs waits for a core made
# a 2-thread forward pass 10-100x slower (16 ms -> 0.1-1.2 s here), which is not what this measures.
# Set before torch loads OpenMP; an OMP_WAIT_POLICY given in the environment is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from conftest import fill_adapters  # noqa: E402
from velora.config import load_config  # noqa: E402
from velora.evaluation.onnx_recognizer import import_onnxruntime  # noqa: E402
from velora.export.onnx import export_onnx  # noqa: E402
from velora.model.adapter_file import load_model, save_adapters  # noqa: E402
from velora.model.lora import fold_adapters  # noqa: E402
from velora.model.velora import VELoRA  # noqa: E402


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def torch_engine(model, rgb: torch.Tensor, events: torch.Tensor):
    """One forward pass of the PyTorch model, as a call returning the logits (numpy)."""

    def call() -> np.ndarray:
        with torch.inference_mode():
            return model(rgb, events).logits.numpy()

    return call


def onnx_engine(session, rgb: torch.Tensor, events: torch.Tensor):
    """One run of the onnxruntime session, as a call returning the logits."""
    feeds = {"rgb": rgb.numpy(), "events": events.numpy()}
    return lambda: session.run(["logits"], feeds)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="demo")
    parser.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for torch and onnxruntime")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20, help="timed calls per engine and round")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    torch.set_num_threads(args.threads)
    ort = import_onnxruntime()
    load_before = load_average()

    cfg = load_config(args.config)
    torch.manual_seed(0)
    model = VELoRA.from_config(cfg)
    fill_adapters(model, scale=0.1)
    work = Path(tempfile.mkdtemp(prefix="onnx_bench_"))
    names = [f"class {i}" for i in range(cfg.model.num_classes)]
    checkpoint = save_adapters(work / "bench.safetensors", model, cfg, names)
    exports = {
        merge: export_onnx(checkpoint, work / f"bench_{'merged' if merge else 'lora'}.onnx", merge=merge)
        for merge in (False, True)
    }
    eager, _ = load_model(checkpoint)
    folded, _ = load_model(checkpoint)
    fold_adapters(folded)

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    # onnxruntime's pool threads busy-wait after each call by default; on a small machine that
    # would take the cores from the PyTorch calls timed next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sessions = {
        merge: ort.InferenceSession(str(report.path), options, providers=["CPUExecutionProvider"])
        for merge, report in exports.items()
    }
    T, S = cfg.data.num_frames, cfg.model.image_size
    results = []
    for batch in batches:
        g = torch.Generator().manual_seed(batch)
        rgb = torch.randint(0, 256, (batch, T, 3, S, S), dtype=torch.uint8, generator=g)
        events = torch.randint(0, 256, (batch, T, 3, S, S), dtype=torch.uint8, generator=g)
        engines = {
            "PyTorch eager": torch_engine(eager, rgb, events),
            "PyTorch eager, folded": torch_engine(folded, rgb, events),
            "onnxruntime": onnx_engine(sessions[False], rgb, events),
            "onnxruntime, merged": onnx_engine(sessions[True], rgb, events),
        }
        reference = engines["PyTorch eager"]()
        diffs = {name: float(np.abs(call() - reference).max()) for name, call in engines.items()}
        for call in engines.values():
            for _ in range(3):
                call()
        rounds: dict[str, list[float]] = {name: [] for name in engines}
        names = list(engines)
        for _ in range(args.rounds):
            times: dict[str, list[float]] = {name: [] for name in engines}
            for i in range(args.calls):
                for name in names[i % len(names) :] + names[: i % len(names)]:  # one call each, order rotated
                    start = time.perf_counter()
                    engines[name]()
                    times[name].append(time.perf_counter() - start)
            for name in engines:
                rounds[name].append(statistics.median(times[name]) * 1e3)
        base = statistics.median(rounds["PyTorch eager"])
        for name, per_round in rounds.items():
            median = statistics.median(per_round)
            results.append(
                {
                    "batch": batch,
                    "engine": name,
                    "median_ms": round(median, 3),
                    "min_round_ms": round(min(per_round), 3),
                    "max_round_ms": round(max(per_round), 3),
                    "speedup_vs_eager": round(base / median, 2),
                    "max_abs_logit_diff_vs_eager": diffs[name],
                }
            )
            print(
                f"batch {batch:3d}  {name:24s} {median:8.2f} ms  ({min(per_round):.2f}-{max(per_round):.2f})  "
                f"{base / median:5.2f}x  |diff| {diffs[name]:.1e}",
                flush=True,
            )

    record = {
        "command": "PYTHONPATH=src .venv/bin/python benchmarks/onnx_bench.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "load_average_before": load_before,
            "load_average_after": load_average(),
        },
        "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__, "python": platform.python_version()},
        "config": args.config,
        "threads": args.threads,
        "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
        "rounds": args.rounds,
        "calls": args.calls,
        "frames": T,
        "image_size": S,
        "export": {
            ("merged" if m else "lora"): {
                "bytes": r.bytes,
                "opset": r.opset,
                "seconds": round(r.seconds, 1),
                "max_abs_diff": r.max_abs_diff,
            }
            for m, r in exports.items()
        },
        "results": results,
    }
    print(f"load average before {load_before}, after {record['machine']['load_average_after']}")
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
