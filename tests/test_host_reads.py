"""A training step never reads a tensor back to the host, except at log steps and checkpoints.

On a GPU each such read (`.item()`, `bool(t)`, `.tolist()`, ...) waits for every queued kernel, so
the host cannot run ahead of the device. The CPU build cannot see a sync, but it can see the reads:
a TorchFunctionMode counts them per training step in the real `velora train` loop (Lightning,
callbacks, progress bar). Reads inside the DataLoader are left out: on a GPU run they happen in
worker processes on CPU tensors.
"""

from __future__ import annotations

import traceback

import pytest
import torch
from torch.overrides import TorchFunctionMode

from conftest import PerStep, add_trainer_callback, make_tiny_config
from velora.training import run as run_module

READS = {
    torch.Tensor.item,
    torch.Tensor.__bool__,
    torch.Tensor.tolist,
    torch.Tensor.__float__,
    torch.Tensor.__int__,
    torch.Tensor.__index__,
    torch.Tensor.numpy,
    torch.Tensor.cpu,
}


class HostReads(TorchFunctionMode, PerStep):
    """Tensor reads per training step (see PerStep), with where each came from."""

    def __init__(self):
        TorchFunctionMode.__init__(self)
        PerStep.__init__(self)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in READS:
            stack = traceback.extract_stack(limit=12)[:-1]
            if not any("torch/utils/data" in frame.filename for frame in stack):
                where = " <- ".join(
                    f"{frame.name} ({frame.filename.rsplit('/', 1)[-1]}:{frame.lineno})" for frame in stack[-4:]
                )
                self.found.append(f"{func.__name__}: {where}")
        return func(*args, **(kwargs or {}))


@pytest.mark.slow
@pytest.mark.parametrize("progress", [False, True], ids=["quiet", "progress-bar"])
def test_training_steps_read_nothing_back_between_log_steps(tiny_dataset, tmp_path, monkeypatch, progress):
    counter = HostReads()
    add_trainer_callback(monkeypatch, counter)
    log_every = 3
    cfg = make_tiny_config(
        f"train.log_every={log_every}",
        "train.checkpoint_every_steps=0",
        f"train.progress={progress}",
        "lora.dropout=0.1",
        "model.modality_dropout=0.2",
        data={"root": str(tiny_dataset)},
        train={"epochs": 2, "output_dir": str(tmp_path / "run")},
    )
    with counter:
        result = run_module.train(cfg)
    assert len(counter.per_step) >= 10, "too few steps counted to show anything"
    for step, reads in counter.per_step.items():
        allowed = 1 if step % log_every == 0 else 0  # the log step's one read of its window's losses
        assert len(reads) <= allowed, f"step {step}: {len(reads)} host reads:\n" + "\n".join(reads)
    assert any(counter.per_step[s] for s in counter.per_step if s % log_every == 0), "log steps read their losses"
    logged = [s for s, _ in result.history["train/loss"]]
    assert logged == [s for s in range(logged[-1] + 1) if s % log_every == 0]
