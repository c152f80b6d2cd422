"""Adapter files written by an earlier velora still load and predict bit-identically."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from velora.model.adapter_file import load_model

SAVED = Path(__file__).resolve().parent / "data" / "checkpoints"


@pytest.mark.parametrize("name", ["velora_default", "event_only", "release_like"])
def test_an_adapter_file_saved_before_the_refactor_gives_bit_identical_outputs(name):
    expected = load_file(str(SAVED / "expected_outputs.safetensors"))
    model, ckpt = load_model(SAVED / f"{name}.safetensors")
    rgb = expected["rgb"] if "rgb" in ckpt.config.data.modalities else None
    events = expected["events"] if "event" in ckpt.config.data.modalities else None
    with torch.no_grad():
        out = model(rgb, events)
    assert torch.equal(out.logits, expected[f"{name}.logits"])
    assert torch.equal(out.recon_loss.reshape(1), expected[f"{name}.recon_loss"])
