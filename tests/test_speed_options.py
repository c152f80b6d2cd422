"""model.grad_checkpointing and model.compile change speed and memory, never the maths."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch._dynamo.utils import counters

from conftest import fill_adapters, random_clip
from velora.model.velora import VELoRA


def loss_and_grads(model: VELoRA, seed: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    rgb, events = random_clip(2, 3, seed=1), random_clip(2, 3, seed=2)
    torch.manual_seed(seed)  # the same LoRA dropout masks in both models
    out = model(rgb, events)
    loss = F.cross_entropy(out.logits, torch.tensor([1, 5])) + out.recon_loss
    model.zero_grad(set_to_none=True)
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


def saved_bytes(model: VELoRA) -> int:
    """Bytes autograd keeps for the backward pass of one training forward."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(random_clip(2, 3, seed=1), random_clip(2, 3, seed=2))
    return total


def build(cfg) -> VELoRA:
    torch.manual_seed(0)
    model = VELoRA.from_config(cfg).train()
    fill_adapters(model, seed=3)
    return model


@pytest.mark.parametrize(
    "dropout", [0.0, pytest.param(0.3, marks=pytest.mark.slow)], ids=["no-dropout", "lora-dropout"]
)
def test_checkpointing_gives_the_same_loss_and_gradients(tiny_config, dropout):
    plain = build(tiny_config(lora={"dropout": dropout}))
    ckpt = build(tiny_config(lora={"dropout": dropout}, model={"grad_checkpointing": True}))
    loss, grads = loss_and_grads(plain)
    loss_ckpt, grads_ckpt = loss_and_grads(ckpt)
    torch.testing.assert_close(loss_ckpt, loss, atol=1e-6, rtol=1e-6)
    assert grads.keys() == grads_ckpt.keys()
    for name in grads:
        # The recomputation replays the adapters and the dropout masks of the forward pass.
        torch.testing.assert_close(grads_ckpt[name], grads[name], atol=1e-6, rtol=1e-5, msg=name)


def test_checkpointing_stores_less_for_the_backward_pass(tiny_config):
    plain = saved_bytes(build(tiny_config()))
    ckpt = saved_bytes(build(tiny_config(model={"grad_checkpointing": True})))
    assert ckpt < 0.7 * plain


@pytest.mark.parametrize(
    "checkpointing, mode, grad, calls",
    [
        (True, "train", True, 2),  # one call per low-level block (the tiny model has 2)
        (True, "eval", True, 0),  # evaluation with gradients on (e.g. saliency): nothing to recompute for
        (True, "train", False, 0),  # no backward pass under no_grad
        (False, "train", True, 0),
    ],
)
def test_checkpointing_runs_only_in_training_with_gradients(tiny_config, monkeypatch, checkpointing, mode, grad, calls):
    import velora.model.velora as velora_module

    counted = []
    real = velora_module.checkpoint

    def counting(*args, **kwargs):
        counted.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(velora_module, "checkpoint", counting)
    model = build(tiny_config(model={"grad_checkpointing": checkpointing}))
    model.train(mode == "train")
    with torch.set_grad_enabled(grad), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = model(random_clip(2, 3), random_clip(2, 3))
    assert len(counted) == calls
    assert not [w for w in caught if "checkpoint" in str(w.message)], "a warning on every training step"
    assert out.logits.requires_grad == grad


@pytest.mark.slow
def test_compiled_blocks_give_the_same_outputs_gradients_and_state_dict(tiny_config):
    # Runs torch.compile's CPU backend (inductor, C++ codegen): needs the system C++ compiler. One
    # low-level block keeps the compile short (a minute or two with a cold inductor cache, seconds
    # with a warm one); every low-level block is the same code.
    eager = build(tiny_config(model={"high_level_blocks": 2}))
    compiled = build(tiny_config(model={"high_level_blocks": 2, "compile": True}))
    assert compiled.state_dict().keys() == eager.state_dict().keys()
    counters.clear()
    loss, grads = loss_and_grads(eager)
    loss_c, grads_c = loss_and_grads(compiled)
    assert counters["stats"]["unique_graphs"] >= 1, "the blocks ran eagerly, not compiled"
    torch.testing.assert_close(loss_c, loss, atol=1e-5, rtol=1e-5)
    for name in grads:
        torch.testing.assert_close(grads_c[name], grads[name], atol=1e-5, rtol=1e-4, msg=name)
    compiled.eval()
    eager.eval()
    rgb, events = random_clip(2, 3, seed=4), random_clip(2, 3, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(compiled(rgb, events).logits, eager(rgb, events).logits, atol=1e-5, rtol=1e-5)
