"""`velora info`: what a config builds, where its weights come from, and what training would change."""

from __future__ import annotations

import dataclasses

from velora.config import RELEASE_MODEL, Config
from velora.model.velora import count_parameters, meta_model
from velora.model.weights_source import describe_source, resolve_source

PART_NAMES = {
    "lora_rgb": "RGB stream LoRA (low-level blocks)",
    "lora_event": "event stream LoRA (low-level blocks)",
    "lora_diff": "frame-difference stream LoRA (low-level blocks)",
    "lora_fusion": "modality-shared LoRA (fusion, high-level blocks)",
    "shared_rgb": "M-shared LoRA into the final RGB block",
    "shared_event": "M-shared LoRA into the final event block",
    "fusion_blocks": "trainable fusion blocks (fusion_block: random_trainable)",
    "project": "Linear from the CLIP projection back to the width",
    "stream_embed": "learned modality embeddings",
    "recon_decoder": "reconstruction decoder",
    "head": "classification head",
    "backbone": "backbone weights (model.finetune_backbone: full fine-tuning)",
    "absent_rgb": "missing-RGB embedding",
    "absent_event": "missing-event embedding",
}


def describe(cfg: Config) -> str:
    model = meta_model(cfg)
    total, trainable = count_parameters(model)
    groups = model.parameter_groups()
    mb = trainable * 4 / 1e6  # fp32 safetensors payload; the header adds a few kB
    backbone = sum(p.numel() for p in model.backbone.parameters() if not p.requires_grad)
    frozen_mb = backbone * 4 / 1e6
    m = cfg.model
    source = resolve_source(m.weights, m.backbone)
    lines = [
        f"backbone        {m.backbone} {m.backbone_args or ''}".rstrip(),
        f"weights         {describe_source(source)}",
        f"blocks          {model.num_low} low-level + {m.high_level_blocks} high-level, "
        f"dim {model.backbone.embed_dim}, image {m.image_size} px",
        f"structure       stream_path {m.stream_path}, fusion_block {m.fusion_block}, shared_lora {m.shared_lora}, "
        f"recon_decoder {m.recon_decoder}, head {m.head}",
        f"LoRA            rank {cfg.lora.rank}, alpha {cfg.lora.alpha}, targets {', '.join(cfg.lora.targets)}",
        f"classes         {m.num_classes}, modalities {'+'.join(m.modalities)}",
        *input_pipeline(cfg, model),
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
        f"adapter checkpoint size: {mb:.2f} MB (fp32 safetensors)",
    ]
    default = _trainable(
        cfg, {f.name: getattr(type(m)(), f.name) for f in dataclasses.fields(m) if f.name in RELEASE_MODEL}
    )
    release = _trainable(cfg, RELEASE_MODEL)
    lines += [
        f"the same task, trainable: velora's default model {default:,d}; the released code's model {release:,d}",
        '(the paper\'s "7.02 MB" is the peft LoRA of three whole CLIP models, text towers included: '
        "1,843,200 parameters; see docs/model.md)",
    ]
    return "\n".join(lines)


def input_pipeline(cfg: Config, model) -> list[str]:
    """How clips reach the model and what the optimizer decays: the choices where velora and the
    released code differ (docs/model.md, "The paper, the released code, velora")."""
    from velora.model.backbone import normalization

    d, t = cfg.data, cfg.train
    if cfg.model.normalization == "weights":
        mean, std = normalization(model.backbone)
        norm = (
            f"the weights' own (mean {', '.join(f'{v:.3f}' for v in mean)}; std {', '.join(f'{v:.3f}' for v in std)})"
        )
    else:
        norm = "mean = std = 0.5 (the released code)"
    sampling = {
        "segments": f"segments: {d.num_frames} frames in order, the same for RGB and events (random in training, "
        "centres in evaluation)",
        "release": f"release: {d.num_frames} unordered random frames, drawn for RGB and events on their own, in "
        "evaluation too",
    }[d.frame_sampling]
    if d.augmentation == "clip":
        flip = "with" if d.hflip else "no"
        augment = (
            f"clip: one random resized crop (area {d.crop_scale[0]:g}-{d.crop_scale[1]:g}), {flip} flip, for all frames"
        )
    else:
        augment = "release: every frame on its own: pad 10, random crop, flip with p 0.5"
    decay = "every trainable parameter" if t.weight_decay_all else "matrices only (not biases, norms, embeddings)"
    return [
        f"normalisation   {norm}",
        f"frame sampling  {sampling}",
        f"augmentation    {augment}",
        f"event resize    {d.event_resize}",
        f"weight decay    {t.weight_decay:g} on {decay}",
    ]


def _trainable(cfg: Config, model_fields: dict) -> int:
    raw = cfg.to_dict()
    raw["model"].update(model_fields)
    if model_fields.get("shared_lora") == "mlp_bottleneck":
        raw["lora"]["targets"] = sorted(set(raw["lora"]["targets"]) | {"fc1", "fc2"})
    return count_parameters(meta_model(Config.from_dict(raw)))[1]
