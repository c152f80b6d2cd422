"""Where `velora demo`'s time goes: data generation, training (steps, data loading, validation,
set-up), evaluation and the report, in wall-clock and CPU seconds.

Runs the real command in this process (`velora.cli.main(["demo", ...])`) with timers wrapped around
the demo pipeline's phases and the LightningModule's hooks, so the same script measures any version
of the demo code. CPU seconds count this process's threads and its reaped child processes (data
generation pool, DataLoader workers); on a shared machine compare CPU seconds and shares, and take
wall-clock figures only from a quiet machine.

Since issue #12 the demo trains in worker processes, out of these timers' reach: pass
`--workers 1` to `velora demo` to run every training in this process for the breakdown (the
trainings then run one after the other: the total is not the demo's wall time).

    python benchmarks/demo_profile.py --json benchmarks/results/demo_profile_after.json -- --output /tmp/d
    python benchmarks/demo_profile.py -- --compare --output /tmp/d     # anything after -- goes to `velora demo`

Inside training: "steps" is on_train_batch_start -> on_train_batch_end (forward, backward,
optimizer), "validation" is on_validation_start -> on_validation_end, "epochs" is the whole of each
training epoch; "loading and loop overhead" is epochs minus steps minus validation (DataLoader
workers started each epoch, batches, Lightning's loop), and "set-up" is train() minus the epochs
(dataset checks, model build, Trainer start-up, checkpoints written after the last epoch).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from datetime import date
from pathlib import Path


class Clock:
    """Accumulates wall and CPU seconds (own threads + reaped children) per named phase."""

    def __init__(self):
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.open: dict[str, tuple[float, float]] = {}

    @staticmethod
    def now() -> tuple[float, float]:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.perf_counter(), time.process_time() + children.ru_utime + children.ru_stime

    def start(self, name: str) -> None:
        self.open[name] = self.now()

    def stop(self, name: str) -> None:
        if name not in self.open:
            return
        wall0, cpu0 = self.open.pop(name)
        wall1, cpu1 = self.now()
        self.wall[name] += wall1 - wall0
        self.cpu[name] += cpu1 - cpu0
        self.calls[name] += 1

    @contextmanager
    def phase(self, name: str):
        self.start(name)
        try:
            yield
        finally:
            self.stop(name)


CLOCK = Clock()


def wrap_function(module, attribute: str, phase: str) -> None:
    """Time every call of module.attribute as `phase` (skipped if this version has no such name)."""
    original = getattr(module, attribute, None)
    if original is None:
        return

    def timed(*args, **kwargs):
        with CLOCK.phase(phase):
            return original(*args, **kwargs)

    setattr(module, attribute, timed)


def wrap_hooks() -> None:
    """Start/stop timers in the LightningModule's hooks (each still runs its own code)."""
    from velora.training.module import VELoRAModule

    pairs = {
        "on_train_batch_start": ("start", "steps"),
        "on_train_batch_end": ("stop", "steps"),
        "on_train_epoch_start": ("start", "epochs"),
        "on_train_epoch_end": ("stop", "epochs"),
        "on_validation_start": ("start", "validation"),
        "on_validation_end": ("stop", "validation"),
    }
    for hook, (action, phase) in pairs.items():
        original = getattr(VELoRAModule, hook)

        def timed(self, *args, _original=original, _action=action, _phase=phase, **kwargs):
            if _action == "start":
                CLOCK.start(_phase)
                return _original(self, *args, **kwargs)
            result = _original(self, *args, **kwargs)
            CLOCK.stop(_phase)
            return result

        setattr(VELoRAModule, hook, timed)


def main() -> int:
    argv = sys.argv[1:]
    demo_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", help="write the phase table here")
    p.add_argument("--note", default="", help="free text stored with the results (e.g. 'machine quiet')")
    args = p.parse_args(own)

    import importlib

    from velora.cli import main as cli_main

    # Where each version of the demo code keeps its phases (a name missing in a version is skipped).
    for module_name, attribute, phase in (
        ("velora.demo.run", "generate_demo_dataset", "data generation"),
        ("velora.demo.run", "pack", "data packing"),
        ("velora.demo.run", "train", "training"),
        ("velora.demo.jobs", "train", "training"),
        ("velora.demo.run", "evaluate", "evaluation"),
        ("velora.demo.jobs", "evaluate_checkpoint", "evaluation"),
        ("velora.demo.run", "write_report", "report"),
    ):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        wrap_function(module, attribute, phase)
    wrap_hooks()

    with CLOCK.phase("total"):
        code = cli_main(["demo", *demo_args])
    # The epoch hooks also fire while the training-phase clock runs: split training into parts.
    wall, cpu = CLOCK.wall, CLOCK.cpu
    epochs_wall, epochs_cpu = wall["epochs"], cpu["epochs"]
    rows = [
        ("data generation", wall["data generation"], cpu["data generation"]),
        ("data packing", wall["data packing"], cpu["data packing"]),
        ("training: optimizer steps", wall["steps"], cpu["steps"]),
        ("training: validation", wall["validation"], cpu["validation"]),
        (
            "training: loading and loop overhead",
            epochs_wall - wall["steps"] - wall["validation"],
            epochs_cpu - cpu["steps"] - cpu["validation"],
        ),
        ("training: set-up and checkpoints", wall["training"] - epochs_wall, cpu["training"] - epochs_cpu),
        ("evaluation", wall["evaluation"], cpu["evaluation"]),
        ("report", wall["report"], cpu["report"]),
    ]
    accounted_wall = sum(r[1] for r in rows)
    accounted_cpu = sum(r[2] for r in rows)
    rows.append(("other (imports, printing)", wall["total"] - accounted_wall, cpu["total"] - accounted_cpu))
    rows.append(("total", wall["total"], cpu["total"]))

    print(f"\n{'phase':40s} {'wall s':>8s} {'share':>6s} {'CPU s':>8s} {'share':>6s}")
    for name, w, c in rows:
        print(f"{name:40s} {w:8.1f} {w / wall['total']:6.1%} {c:8.1f} {c / cpu['total']:6.1%}")
    print(
        f"training steps: {CLOCK.calls['steps']}, epochs: {CLOCK.calls['epochs']}, validations: {CLOCK.calls['validation']}"
    )
    if args.json:
        result = {
            "date": date.today().isoformat(),
            "command": "velora demo " + " ".join(demo_args),
            "note": args.note,
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "load_average_at_end": os.getloadavg(),
            },
            "phases": [{"phase": n, "wall_s": round(w, 2), "cpu_s": round(c, 2)} for n, w, c in rows],
            "training_steps": CLOCK.calls["steps"],
            "epochs": CLOCK.calls["epochs"],
        }
        try:
            import torch

            result["machine"]["torch"] = torch.__version__
            result["machine"]["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
            result["machine"]["torch_threads"] = torch.get_num_threads()
        except ImportError:
            pass
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
