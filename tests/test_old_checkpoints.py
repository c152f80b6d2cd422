"""Adapter files written by an earlier velora still load and predict what they predicted then.

The expected outputs were computed on another machine. Float32 kernels differ between CPUs (AVX-512
or AVX2, Intel or AMD: torch picks them at run time), so the logits are compared with a tolerance
fitted to float32 rounding, and the class decisions exactly. A refactor that changes what a saved
model computes (a key not migrated, an adapter on the wrong rows, another head) moves the logits by
orders of magnitude more than the tolerance.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from velora.model.adapter_file import load_model

SAVED = Path(__file__).resolve().parent / "data" / "checkpoints"
# Seen across machines: up to 2.4e-7 on logits of magnitude ~1 (AMD EPYC against the Intel machine
# that wrote them). Forty times that still fails on any change to the model's computation.
FLOAT32_TOLERANCE = 1e-5


@pytest.mark.parametrize("name", ["velora_default", "event_only", "release_like"])
def test_an_adapter_file_saved_before_the_refactor_gives_the_same_outputs(name):
    expected = load_file(str(SAVED / "expected_outputs.safetensors"))
    model, ckpt = load_model(SAVED / f"{name}.safetensors")
    rgb = expected["rgb"] if "rgb" in ckpt.config.data.modalities else None
    events = expected["events"] if "event" in ckpt.config.data.modalities else None
    with torch.no_grad():
        out = model(rgb, events)
    logits = expected[f"{name}.logits"]
    torch.testing.assert_close(out.logits, logits, rtol=FLOAT32_TOLERANCE, atol=FLOAT32_TOLERANCE)
    assert torch.equal(out.logits.argmax(-1), logits.argmax(-1))
    torch.testing.assert_close(
        out.recon_loss.reshape(1), expected[f"{name}.recon_loss"], rtol=FLOAT32_TOLERANCE, atol=FLOAT32_TOLERANCE
    )


@pytest.mark.parametrize("name", ["velora_default", "release_like"])
def test_an_old_adapter_file_loaded_twice_in_one_process_gives_bit_identical_outputs(name):
    expected = load_file(str(SAVED / "expected_outputs.safetensors"))
    outputs = []
    for _ in range(2):
        model, _ = load_model(SAVED / f"{name}.safetensors")
        with torch.no_grad():
            outputs.append(model(expected["rgb"], expected["events"]).logits)
    assert torch.equal(outputs[0], outputs[1])
