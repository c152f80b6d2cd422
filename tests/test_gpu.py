"""The CUDA paths that the CPU suite cannot reach; skipped without a GPU.

benchmarks/gpu_issue5.sh runs these first, so a GPU session checks them before it measures.
"""

from __future__ import annotations

import warnings

import pytest
import timm
import torch

from conftest import PerStep, add_trainer_callback, make_tiny_config
from velora.bench.run import measure
from velora.training import run as run_module
from velora.training.module import VELoRAModule
from velora.training.nonfinite import StepStats, nonfinite_flag

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
    loss_parts = torch.tensor([1.0, 1.0, 0.0], device="cuda")
    stats = StepStats()
    stats.add(0, nonfinite_flag(loss_parts[0], params, optimizer), loss_parts)
    optimizer.step()
    assert all(torch.equal(p, old) for p, old in zip(params, before))
    ((_, (flag, _, _, _)),) = stats.drain()
    assert flag == 1.0


def test_training_steps_do_not_sync_on_cuda(tiny_dataset, tmp_path, monkeypatch):
    counter = PerStep()  # its `found`: the warnings recorded while training
    add_trainer_callback(monkeypatch, counter)
    log_every = 4
    cfg = make_tiny_config(
        "train.accelerator=gpu",
        "train.precision=bf16-mixed",
        f"train.log_every={log_every}",
        "train.checkpoint_every_steps=0",
        "train.progress=true",
        data={"root": str(tiny_dataset)},
        train={"epochs": 2, "output_dir": str(tmp_path / "run")},
    )
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        counter.found = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run_module.train(cfg)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = {
        step: [f"{w.filename}:{w.lineno}" for w in caught if "synchroniz" in str(w.message)]
        for step, caught in counter.per_step.items()
    }
    assert len(syncs) >= 6, "too few steps counted to show anything"
    between = {s: where for s, where in syncs.items() if s % log_every != 0 and where}
    assert not between, f"steps between log steps synced with the GPU: {between}"


@pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:FutureWarning")
def test_weights_saved_from_a_gpu_load_on_the_cpu(tmp_path):
    from velora.model.weights import load_state_dict_any

    # a TorchScript archive traced on the GPU, as OpenAI's ViT-B-16.pt was, and a state dict saved there
    vit = timm.create_model("vit_base_patch16_clip_quickgelu_224", img_size=32, embed_dim=32, depth=1, num_heads=2)
    scripted = tmp_path / "vit.pt"
    torch.jit.save(torch.jit.trace(vit.cuda().eval(), torch.zeros(1, 3, 32, 32, device="cuda")), str(scripted))
    pickled = tmp_path / "vit.pth"
    torch.save(vit.cuda().state_dict(), pickled)
    for path, allow in ((scripted, True), (pickled, False)):
        state, _ = load_state_dict_any(path, allow_torchscript=allow)
        assert {t.device.type for t in state.values()} == {"cpu"}, path
