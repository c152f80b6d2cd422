"""Write tests/data/checkpoints/*: adapter files saved by velora before the model refactor of
issue #11 (commit ac63fd9), with inputs and the logits that code computed, so the refactored
model must load them and reproduce the logits bit for bit."""

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, "tests")
from conftest import fill_adapters, make_tiny_config, random_clip  # noqa: E402
from velora.model.velora import VELoRA  # noqa: E402
from velora.training.checkpoint import save_adapters  # noqa: E402

out = Path("tests/data/checkpoints")
variants = {
    "velora_default": {},
    "event_only": {"data": {"modalities": ["event"]}},
    "release_like": {
        "model": {
            "fusion_block": "random_trainable",
            "recon_decoder": "block",
            "head_pool": "cls",
            "high_level_blocks": 2,
        }
    },
}
torch.manual_seed(0)
tensors = {"rgb": random_clip(2, 3, 32, seed=1), "events": random_clip(2, 3, 32, seed=2)}
for name, sections in variants.items():
    cfg = make_tiny_config(**sections)
    model = VELoRA(cfg).eval()
    fill_adapters(model, seed=3)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.requires_grad and not (n.endswith("lora_a") or n.endswith("lora_b")):
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(len(n))) * 0.05)
        rgb = tensors["rgb"] if "rgb" in cfg.data.modalities else None
        events = tensors["events"] if "event" in cfg.data.modalities else None
        out_ = model(rgb, events)
    save_adapters(out / f"{name}.safetensors", model, cfg, [f"c{i}" for i in range(8)], {"epoch": 0})
    tensors[f"{name}.logits"] = out_.logits.contiguous()
    tensors[f"{name}.recon_loss"] = out_.recon_loss.reshape(1).contiguous()
save_file(tensors, str(out / "expected_outputs.safetensors"))
print({k: tuple(v.shape) for k, v in tensors.items()})
