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
from timm.models.vision_transformer import VisionTransformer

from velora.config import ModelConfig


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
    kwargs = dict(num_classes=0, img_size=cfg.image_size, **cfg.backbone_args)
    hub = cfg.weights == "hub"
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
    if cfg.weights not in ("none", "hub"):
        load_backbone_weights(model, Path(cfg.weights))
    model.requires_grad_(False)
    model.eval()
    return model


def load_backbone_weights(model: nn.Module, path: Path) -> None:
    """Load timm-named weights from a .safetensors or .pth file (never runs pickled code)."""
    if not path.is_file():
        raise BackboneError(f"model.weights file '{path}' does not exist; give a .safetensors or .pth file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise BackboneError(f"cannot read '{path}' as a weights-only PyTorch file: {exc}") from None
        state = state.get("state_dict", state) if isinstance(state, dict) else state
    state = {k: v for k, v in state.items() if not k.startswith("head.")}
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
