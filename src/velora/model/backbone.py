"""The frozen vision Transformer shared by every stream.

One timm `VisionTransformer` (CLIP ViT-B/16 by default) is built once and frozen; the streams only
differ in which LoRA adapter is active while their frames pass through it. Its weights come from a
file in every case (velora.model.weights_source): the hub's file for `model.weights: hub`, a
local file or folder, the package's shipped weights, or none (random init). The built model
carries `weights_source`, the record a checkpoint keeps of exactly which file it was.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

from velora.config import ModelConfig
from velora.model.weights import WeightsError, load_state_dict_any, resolve_weights, timm_model_kwargs
from velora.model.weights_source import BackboneError, fetch_hub_file, hub_weights, split_backbone, weights_source

__all__ = ["BackboneError", "build_backbone", "embed", "normalization"]

RANDOM_INIT_SEED = 0


def build_backbone(cfg: ModelConfig, *, keep_projection: bool = False) -> VisionTransformer:
    """Create the timm ViT of `cfg`, load its weights, and freeze it.

    keep_projection: keep the weights' output projection as the model's `head` (CLIP's proj,
        D -> E; model.stream_path all_blocks_projected). Its width E is backbone_args.num_classes
        when given, else the weights' own; when the weights have none of that width (random init,
        non-CLIP weights) a frozen random projection (seeded) stands in, of width E, or 2D/3
        rounded (CLIP ViT-B/16: 768 -> 512) when nothing says.
    """
    arch, tag = split_backbone(cfg.backbone)
    hub = hub_weights(cfg.backbone) if cfg.weights == "hub" else None
    try:
        path = fetch_hub_file(hub) if hub else resolve_weights(cfg.weights)
    except WeightsError as exc:
        raise BackboneError(str(exc)) from None
    state, meta = read_weights(path) if path is not None else (None, {})
    # The file's own architecture (width, depth, heads, patch size, activation), then the config's.
    # A hub file is a pretrained tag of the architecture model.backbone names, so that architecture
    # and timm's config of the tag (its mean/std) hold whichever layout the repository has: what an
    # open_clip file's names leave open (heads, activation, mean/std) would otherwise be guessed.
    arch_kwargs = {} if hub else {k: v for k, v in timm_model_kwargs(meta).items() if k != "img_size"}
    kwargs = {**arch_kwargs, **cfg.backbone_args}
    head_width = 0
    if keep_projection:
        weights_head = state["head.weight"].shape[0] if state is not None and "head.weight" in state else None
        dim = kwargs.get("embed_dim") or meta.get("embed_dim") or 768
        head_width = kwargs.get("num_classes") or weights_head or round(dim * 2 / 3)
    kwargs.update(num_classes=head_width, img_size=cfg.image_size)
    if keep_projection and state is not None and "head.weight" in state and state["head.weight"].shape[0] != head_width:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}  # a stand-in projection instead
    try:
        # A fixed seed makes a random backbone (weights: none) the same in every process, so an
        # adapter checkpoint trained on it evaluates on the same frozen weights.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            model = timm.create_model(f"{arch}.{tag}" if tag else arch, pretrained=False, **kwargs)
    except TypeError as exc:
        raise BackboneError(f"model.backbone_args {cfg.backbone_args} not accepted by {cfg.backbone}: {exc}") from None
    if not isinstance(model, VisionTransformer):
        raise BackboneError(f"model.backbone '{cfg.backbone}' is not a plain VisionTransformer")
    # pretrained_cfg and weights_source are plain attributes; the ignores below are for torch's stubs,
    # which type every attribute a Module does not declare as Tensor | Module
    if state is not None:
        assert path is not None  # the state was read from it
        load_backbone_weights(model, state, path, keep_head=keep_projection)
        if not hub and meta.get("mean") and meta.get("std"):  # the weights' own normalisation
            normalisation = {"mean": tuple(meta["mean"]), "std": tuple(meta["std"])}
            model.pretrained_cfg = {**model.pretrained_cfg, **normalisation}  # type: ignore[assignment, dict-item]
    model.requires_grad_(False)
    model.eval()
    model.weights_source = weights_source(cfg.weights, cfg.backbone, path, hub)  # type: ignore[assignment]
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


def load_backbone_weights(
    model: VisionTransformer, state: dict[str, torch.Tensor], path: Path, keep_head: bool = False
) -> None:
    """Load timm-named tensors into `model`, resampling the position embedding to its image size.

    The head (a classifier or CLIP's projection) is dropped unless `keep_head`; then it loads when
    the weights have one, and the model's own (seeded) stays otherwise.
    """
    if not keep_head:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    state = checkpoint_filter_fn(state, model)
    state = {k: v.to(torch.float32) for k, v in state.items()}
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
