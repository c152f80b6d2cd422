"""The frozen vision Transformer shared by every stream.

One timm `VisionTransformer` (CLIP ViT-B/16 by default) is built once and frozen; the streams only
differ in which LoRA adapter is active while their frames pass through it.
"""

from __future__ import annotations

import os
from pathlib import Path

import timm
import torch
import torch.nn as nn
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

from velora.config import ModelConfig
from velora.model.weights import WeightsError, load_state_dict_any, resolve_weights, timm_model_kwargs


RANDOM_INIT_SEED = 0


class BackboneError(ValueError):
    """The backbone architecture or its weights cannot be loaded."""


def build_backbone(cfg: ModelConfig) -> VisionTransformer:
    """Create the timm ViT of `cfg`, load its weights, and freeze it."""
    if cfg.backbone not in timm.list_models(cfg.backbone):
        close = timm.list_models(f"*{cfg.backbone.split('_')[0]}*")[:8]
        raise BackboneError(
            f"model.backbone '{cfg.backbone}' is not a timm architecture; similar names: {', '.join(close)}"
        )
    hub = cfg.weights == "hub"
    state, meta = None, {}
    try:
        path = resolve_weights(cfg.weights)
    except WeightsError as exc:
        raise BackboneError(str(exc)) from None
    if path is not None:
        state, meta = read_weights(path)
    # The file's own architecture (width, depth, heads, patch size, activation), then the config's.
    arch = {k: v for k, v in timm_model_kwargs(meta).items() if k != "img_size"}
    kwargs = dict(num_classes=0, img_size=cfg.image_size, **{**arch, **cfg.backbone_args})
    try:
        # A fixed seed makes a random backbone (weights: none) the same in every process, so an
        # adapter checkpoint trained on it evaluates on the same frozen weights.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            model = timm.create_model(cfg.backbone, pretrained=hub, **kwargs)
    except TypeError as exc:
        raise BackboneError(f"model.backbone_args {cfg.backbone_args} not accepted by {cfg.backbone}: {exc}") from None
    except Exception as exc:  # the hub raises many kinds of network and cache errors
        if not hub:
            raise
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "")
        raise BackboneError(
            f"could not fetch pretrained weights for '{cfg.backbone}' from the hub"
            f"{' (HF_HUB_OFFLINE is set)' if offline else ''}: {exc}. Download them on a machine with "
            "network access and set model.weights to the local .safetensors file."
        ) from None
    if not isinstance(model, VisionTransformer):
        raise BackboneError(f"model.backbone '{cfg.backbone}' is not a plain VisionTransformer")
    if state is not None:
        load_backbone_weights(model, state, path)
        if meta.get("mean") and meta.get("std"):  # the weights' own normalisation
            model.pretrained_cfg = {**model.pretrained_cfg, "mean": tuple(meta["mean"]), "std": tuple(meta["std"])}
    model.requires_grad_(False)
    model.eval()
    return model


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Timm-named tensors and metadata from any supported weights file or folder (no code runs)."""
    if not path.exists():
        raise BackboneError(
            f"model.weights '{path}' does not exist; give a weights file or folder (timm .safetensors/.pth, "
            "OpenAI/open_clip state dict, Hugging Face CLIP folder), 'shipped:<name>', 'hub' or 'none'"
        )
    try:
        return load_state_dict_any(path, allow_torchscript=False)
    except WeightsError as exc:
        raise BackboneError(str(exc)) from None


def load_backbone_weights(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Load timm-named tensors into `model`, resampling the position embedding to its image size."""
    state = checkpoint_filter_fn({k: v for k, v in state.items() if not k.startswith("head.")}, model)
    state = {k: v.to(torch.float32) for k, v in state.items() if not k.startswith("head.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("head.")]
    if missing or unexpected:
        raise BackboneError(
            f"'{path}' does not match {type(model).__name__}: missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
            f"{'...' if len(unexpected) > 5 else ''}"
        )


def normalization(model: VisionTransformer) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The (mean, std) the weights were trained with, from the model's own pretrained config."""
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    return tuple(cfg.get("mean", (0.5, 0.5, 0.5))), tuple(cfg.get("std", (0.5, 0.5, 0.5)))


def embed(model: VisionTransformer, images: torch.Tensor) -> torch.Tensor:
    """Patch projection + class token + position embedding: (N, 3, H, W) -> (N, 1 + P, D)."""
    x = model.patch_embed(images)
    x = model._pos_embed(x)
    x = model.patch_drop(x)
    return model.norm_pre(x)
