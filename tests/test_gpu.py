"""The CUDA paths that the CPU suite cannot reach; skipped without a GPU.

benchmarks/gpu_issue5.sh runs these first, so a GPU session checks them before it measures.
"""

from __future__ import annotations

import warnings

import lightning as L
import pytest
import torch

from conftest import make_tiny_config
from velora.bench.run import measure
from velora.training import run as run_module
from velora.training.module import VELoRAModule

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("mode", ["train", "infer", "latency"])
def test_bench_measures_on_cuda(mode):
    result = measure(make_tiny_config().to_dict(), "velora", mode, "cuda", 4, 3, "bf16")
    assert result["clips_per_s"] > 0 and result["median_ms_per_step"] > 0
    assert result["peak_memory_kind"] == "cuda max allocated" and result["peak_memory_mb"] > 0


def test_a_non_finite_step_is_skipped_by_fused_adamw_on_cuda(tiny_config):
    module = VELoRAModule(tiny_config(), [str(i) for i in range(8)]).cuda()
    params = [p for p in module.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=0.1, weight_decay=0.1, fused=True)
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()
    before = [p.detach().clone() for p in params]
    params[0].grad = torch.full_like(params[0], float("inf"))
    module._loss_parts = torch.tensor([1.0, 1.0, 0.0], device="cuda")
    module._skips_nonfinite = lambda optimizer: True
    module.on_before_optimizer_step(optimizer)
    optimizer.step()
    assert all(torch.equal(p, old) for p, old in zip(params, before))
    (_, (flag, _, _, _)), = module.stats.drain()
    assert flag == 1.0


class SyncsPerStep(L.Callback):
    """Sync warnings (torch.cuda.set_sync_debug_mode) per training step: from a batch's start to the
    next batch's start in the same epoch; an epoch's last step (validation, checkpoints) is left out."""

    def __init__(self):
        self.caught: list = []  # set to catch_warnings' record list before training
        self.step: int | None = None
        self.start = 0
        self.batch_idx = -1
        self.syncs: dict[int, list[str]] = {}

    def close(self) -> None:
        if self.step is not None:
            self.syncs[self.step] = [
                f"{w.filename}:{w.lineno}" for w in self.caught[self.start :] if "synchroniz" in str(w.message)
            ]
        self.step = None

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if batch_idx == self.batch_idx + 1:
            self.close()
        self.step, self.start, self.batch_idx = trainer.global_step, len(self.caught), batch_idx

    def on_train_epoch_end(self, trainer, module) -> None:
        self.step, self.batch_idx = None, -1


def test_training_steps_do_not_sync_on_cuda(tiny_dataset, tmp_path, monkeypatch):
    counter = SyncsPerStep()
    trainer_init = L.Trainer.__init__
    monkeypatch.setattr(
        L.Trainer, "__init__", lambda self, *a, callbacks=(), **k: trainer_init(self, *a, callbacks=[*callbacks, counter], **k)
    )
    log_every = 4
    cfg = make_tiny_config(
        "train.accelerator=gpu", "train.precision=bf16-mixed", f"train.log_every={log_every}",
        "train.checkpoint_every_steps=0", "train.progress=true",
        data={"root": str(tiny_dataset)}, train={"epochs": 2, "output_dir": str(tmp_path / "run")},
    )
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        counter.caught = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run_module.train(cfg)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert len(counter.syncs) >= 6, "too few steps counted to show anything"
    between = {s: where for s, where in counter.syncs.items() if s % log_every != 0 and where}
    assert not between, f"steps between log steps synced with the GPU: {between}"
