"""`velora info`: what a config builds, and what training it would change."""

from __future__ import annotations

import torch

from velora.config import Config
from velora.model.velora import VELoRA, count_parameters
from velora.model.weights import describe_weights_source

PART_NAMES = {
    "lora_rgb": "RGB stream LoRA (low-level blocks)",
    "lora_event": "event stream LoRA (low-level blocks)",
    "lora_diff": "frame-difference stream LoRA (low-level blocks)",
    "lora_fusion": "modality-shared LoRA (fusion, high-level blocks)",
    "shared_rgb": "M-shared LoRA into the final RGB block",
    "shared_event": "M-shared LoRA into the final event block",
    "fusion_blocks": "trainable fusion blocks (fusion_block: random_trainable)",
    "recon_decoder": "reconstruction decoder",
    "head": "classification head",
    "backbone": "backbone weights (model.finetune_backbone: full fine-tuning)",
    "absent_rgb": "missing-RGB embedding",
    "absent_event": "missing-event embedding",
}


def describe(cfg: Config) -> str:
    with torch.device("meta"):  # counts only: no memory, no weights loaded
        model = VELoRA.from_config(_without_weights(cfg))
    total, trainable = count_parameters(model)
    groups = model.parameter_groups()
    mb = trainable * 4 / 1e6  # fp32 safetensors payload; the header adds a few kB
    backbone = sum(p.numel() for p in model.backbone.parameters() if not p.requires_grad)
    frozen_mb = backbone * 4 / 1e6
    lines = [
        f"backbone        {cfg.model.backbone} {cfg.model.backbone_args or ''}".rstrip(),
        f"weights         {cfg.model.weights}: {describe_weights_source(cfg.model.weights, cfg.model.backbone)}",
        f"blocks          {model.num_low} low-level + {cfg.model.high_level_blocks} high-level, "
        f"dim {model.backbone.embed_dim}, image {cfg.model.image_size} px",
        f"LoRA            rank {cfg.lora.rank}, alpha {cfg.lora.alpha}, targets {', '.join(cfg.lora.targets)}",
        f"classes         {cfg.model.num_classes}",
        "",
        f"{'part':58s} {'parameters':>12s}",
    ]
    for key, count in groups.items():
        lines.append(f"{PART_NAMES.get(key, key):58s} {count:12,d}")
    lines += [
        f"{'trainable':58s} {trainable:12,d}  ({trainable / total:.2%} of all)",
        f"{'frozen backbone (held once, shared by all streams)':58s} {backbone:12,d}  ({frozen_mb:.0f} MB fp32)",
        f"{'total':58s} {total:12,d}",
        "",
        f"adapter checkpoint size: {mb:.2f} MB (fp32 safetensors; the paper reports 7.02 MB trainable, "
        "the original checkpoint was 1.88 GB)",
    ]
    return "\n".join(lines)


def _without_weights(cfg: Config) -> Config:
    raw = cfg.to_dict()
    raw["model"]["weights"] = "none"
    return Config.from_dict(raw)
