"""The VELoRA forward pass, readable top to bottom against `reference/figures/velora-framework.jpg`.

    RGB frames ----> embed -> low-level blocks [LoRA "rgb"]   -> mean over T -> rgb tokens ----+
    event frames --> embed -> low-level blocks [LoRA "event"] -> mean over T -> event tokens --+
    |RGB diff| + |event diff| -> low-level blocks [LoRA "diff"] -> mean over T -> diff tokens -+
    reconstruction: decoder(event) ~ rgb and decoder(rgb) ~ event (MSE)                       |
                                                                                              v
    high-level blocks (velora.model.fusion), in lockstep:
                                     fused = block[LoRA "fusion"]([diff; rgb; event])
                                     rgb   = block(rgb)   + M-shared LoRA_rgb(fused's rgb part)
                                     event = block(event) + M-shared LoRA_event(fused's event part)
    head: Linear(concat(pool(norm(rgb)), pool(norm(event)))) -> class scores

`forward_features` runs everything up to the final RGB and event tokens, `forward_head` the head
(as in timm). One frozen backbone serves every stream; the frames of all streams go through it in
one batched call of B*(T + T + T-1) images, each image with its own stream's adapter
(`AdapterRows`). Shapes: B clips, T frames, N = 1 + patches tokens, D channels.

The model is built from the config's `model` and `lora` sections alone. Its structural choices are
fields, chosen once here (the released code's model is one set of them, configs/*_release.yaml):
`stream_path` (the low-level split of the figure, or all blocks + CLIP projection + a Linear +
modality embeddings as released), `fusion_block`, `shared_lora`, `recon_decoder`, `random_block`,
`head` and `head_pool`.

Speed options (config): `model.compile` compiles each low-level block; `model.grad_checkpointing`
recomputes the low-level blocks' activations in the backward pass instead of storing them.

A missing modality (`rgb=None` or `events=None`: event-only data such as N-MNIST, RGB-only data,
or a failed sensor) skips that stream; its place in the head is taken by a learned "absent"
embedding, the frame-difference stream uses the present modality's difference alone, and the
reconstruction loss is zero. Training with `model.modality_dropout > 0` teaches the head this case.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import cast

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Attention, Block
from torch.utils.checkpoint import checkpoint

from velora.config import Config, LoRAConfig, ModelConfig
from velora.model.backbone import build_backbone, embed, normalization
from velora.model.fusion import FUSION_ADAPTER, HighLevelFusion, StreamTokens
from velora.model.heads import RELEASE_HEAD_TOKENS, AttentionHead, LinearHead
from velora.model.lora import AdapterRows, LoRALinear, inject_lora, lora_layers, use_adapter


@dataclass
class VELoRAOutput:
    logits: torch.Tensor  # (B, classes)
    recon_loss: torch.Tensor  # scalar: sum of both reconstruction MSE terms (0 without both modalities)


@dataclass
class Loss:
    total: torch.Tensor  # scalar: what training minimises
    ce: torch.Tensor  # scalar: cross-entropy of the class scores
    recon: torch.Tensor  # scalar: the reconstruction loss, before its weight


@dataclass
class Features:
    """What `forward_features` gives `forward_head`: the final tokens of each present modality."""

    rgb: torch.Tensor | None  # (B, N, D)
    event: torch.Tensor | None  # (B, N, D)
    recon_loss: torch.Tensor  # scalar


class VELoRA(nn.Module):
    mean: torch.Tensor  # (1, 1, 3, 1, 1) buffers: the backbone's normalisation
    std: torch.Tensor

    def __init__(self, model: ModelConfig, lora: LoRAConfig):
        super().__init__()
        self.model_cfg, self.lora_cfg = m, lo = model, lora
        projected = m.stream_path == "all_blocks_projected"
        self.backbone = build_backbone(m, keep_projection=projected)
        if m.finetune_backbone:  # the full fine-tuning baseline; adapters below stay trainable too
            self.backbone.requires_grad_(True)
        depth = len(self.backbone.blocks)
        if m.high_level_blocks >= depth and not projected:
            raise ValueError(
                f"model.high_level_blocks = {m.high_level_blocks} leaves no low-level block in a "
                f"{depth}-block backbone; use at most {depth - 1}"
            )
        if m.high_level_blocks > depth:
            raise ValueError(f"model.high_level_blocks = {m.high_level_blocks}, but the backbone has {depth} blocks")
        # Low-level blocks: below the high-level ones (the figure), or all of them (the release).
        self.num_low = depth if projected else depth - m.high_level_blocks
        dim = self.backbone.embed_dim
        # The weights' own statistics, or mean = std = 0.5 as the released code normalised (model.normalization).
        mean, std = normalization(self.backbone) if m.normalization == "weights" else ((0.5,) * 3, (0.5,) * 3)
        self.register_buffer("mean", torch.tensor(mean).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 1, 3, 1, 1), persistent=False)
        self.grad_checkpointing = m.grad_checkpointing

        low_blocks = list(self.backbone.blocks[: self.num_low])
        high_blocks = list(self.backbone.blocks[depth - m.high_level_blocks :])
        # Only the model's modalities get adapters (an RGB-only model has no event adapters).
        self.modalities = tuple(m.modalities)
        self.low_adapters = [s for s in ("rgb", "event") if s in self.modalities] + (["diff"] if m.frame_diff else [])
        self.use_lora = lo.rank > 0
        if self.use_lora:
            inject_lora(low_blocks, lo.targets, self.low_adapters, lo.rank, lo.alpha, lo.dropout)
            if m.fusion_block == "backbone_lora":
                inject_lora(high_blocks, lo.targets, [FUSION_ADAPTER], lo.rank, lo.alpha, lo.dropout)
        self.low_lora = [layer for b in low_blocks for layer in lora_layers(b)]

        # (timm types a block's attention as any Module; its attention layers all keep num_heads)
        heads = cast(Attention, self.backbone.blocks[0].attn).num_heads
        make_block = partial(random_block, dim, heads, m.random_block)
        # The released path: the CLIP projection's output back to the width, shared by the streams,
        # plus a learned embedding per stream.
        self.project: nn.Linear | None = None
        if projected:
            assert isinstance(self.backbone.head, nn.Linear)  # build_backbone(keep_projection=True) keeps one
            self.project = nn.Linear(self.backbone.head.out_features, dim)
        self.stream_embed = (
            nn.ParameterDict({s: nn.Parameter(torch.zeros(1, 1, dim)) for s in self.low_adapters})
            if projected
            else None
        )
        self.fusion = HighLevelFusion(
            high_blocks,
            dim=dim,
            fusion_block=m.fusion_block,
            shared_lora=m.shared_lora,
            modalities=self.modalities,
            rank=lo.rank,
            alpha=lo.alpha,
            dropout=lo.dropout,
            final_adapters=projected,
            make_block=make_block,
        )

        both = len(self.modalities) == 2
        self.recon_decoder: nn.Sequential | None
        if m.recon_weight > 0 and self.use_lora and both:
            if m.recon_decoder == "block":
                eps = 1e-6 if m.random_block == "release" else 1e-5
                self.recon_decoder = nn.Sequential(make_block(), nn.LayerNorm(dim, eps=eps))
            else:
                self.recon_decoder = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim))
        else:
            self.recon_decoder = None

        # Stand-ins for a missing modality's head feature. Trained only when training sees that
        # modality missing (always, in a one-modality model; sometimes, with modality dropout).
        dropout = both and m.modality_dropout > 0
        self.absent_rgb = nn.Parameter(torch.zeros(dim), requires_grad=dropout or "rgb" not in self.modalities)
        self.absent_event = nn.Parameter(torch.zeros(dim), requires_grad=dropout or "event" not in self.modalities)
        self.head: AttentionHead | LinearHead
        if m.head == "attention_last_tokens":
            tokens = self.backbone.patch_embed.num_patches + self.backbone.num_prefix_tokens
            self.head = AttentionHead(dim, m.num_classes, min(RELEASE_HEAD_TOKENS, tokens), m.head_dropout)
        else:
            self.head = LinearHead(dim, m.num_classes, m.head_pool, m.head_dropout, self.backbone.norm)
        if m.compile:
            # The low-level blocks hold ~98 % of the FLOP. In place (nn.Module.compile): parameter
            # names and checkpoints stay those of eager mode.
            for block in low_blocks:
                block.compile()

    @property
    def weights_source(self) -> dict:
        """The record of the backbone's weights (hub id, tag, sha256 or path; velora.model.weights_source)."""
        return cast(dict, self.backbone.weights_source)  # a plain attribute build_backbone sets

    @classmethod
    def from_config(cls, cfg: Config) -> VELoRA:
        return cls(cfg.model, cfg.lora)

    # ------------------------------------------------------------------ streams
    def normalize(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 or [0, 1] float frames (B, T, 3, H, W) -> backbone-normalised float32.

        One pass on the device: x * scale + shift, with the 1/255 of uint8 folded into the scale,
        so the loader ships uint8 (a quarter of float32's bytes) and no float copy is made first.
        """
        scale = 1.0 / (self.std * 255.0) if frames.dtype == torch.uint8 else 1.0 / self.std
        return torch.addcmul(-self.mean / self.std, frames, scale)

    def encode_low(self, streams: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """{adapter: (B, T_s, 3, H, W) normalised frames} -> {adapter: (B, N, D) tokens averaged over T_s}.

        All streams' images go through the frozen low-level blocks in one batched call; every
        LoRALinear adds each stream's adapter to that stream's rows only.
        """
        images = self.encode_images({name: f.flatten(0, 1) for name, f in streams.items()})
        return {
            name: images[name].view(*f.shape[:2], *images[name].shape[1:]).mean(dim=1) for name, f in streams.items()
        }

    def encode_images(self, streams: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """{adapter: (n_s, 3, H, W) normalised images} -> {adapter: (n_s, N, D)}: each image's tokens
        after the low-level blocks (and, on the released path, the projection), in one batched call.
        Images are independent here, so a stream can reuse an image's tokens (velora stream does)."""
        sizes = [f.shape[0] for f in streams.values()]
        rows: AdapterRows = tuple((name if self.use_lora else None, n) for name, n in zip(streams, sizes))
        x = embed(self.backbone, torch.cat(list(streams.values())))  # (sum n_s, N, D)
        with use_adapter(self.low_lora, rows):
            for block in self.backbone.blocks[: self.num_low]:
                x = self.run_low_block(block, x, rows)
        if self.project is not None:  # the released path: ln_post and CLIP's projection, per frame
            x = self.project_frames(x)
        return dict(zip(streams, x.split(sizes)))

    def run_low_block(self, block: nn.Module, x: torch.Tensor, rows: AdapterRows) -> torch.Tensor:
        """One low-level block (adapters already set to `rows`); checkpointed when configured."""
        if not (self.grad_checkpointing and self.training and torch.is_grad_enabled()):
            return block(x)

        def run(x: torch.Tensor) -> torch.Tensor:
            # The recomputation runs in the backward pass, after encode_low has reset the
            # adapters: set them again for this block.
            with use_adapter(lora_layers(block), rows):
                return block(x)

        return checkpoint(run, x, use_reentrant=False)

    def project_frames(self, x: torch.Tensor) -> torch.Tensor:
        """The released path after all blocks, per frame: the final norm (ln_post) and the frozen
        CLIP projection, (images, N, D) -> (images, N, E)."""
        return self.backbone.head(self.backbone.norm(x))

    def project_streams(self, tokens: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The released path after the mean over frames: the trainable Linear E -> D (shared by
        the streams) plus the stream's learned embedding; (B, N, E) -> (B, N, D) each."""
        assert self.project is not None and self.stream_embed is not None  # built together, on the released path
        return {name: self.project(t) + self.stream_embed[name] for name, t in tokens.items()}

    @staticmethod
    def frame_difference(frames: torch.Tensor) -> torch.Tensor:
        """|f(t) - f(t-1)| for t = 1..T-1: (B, T, C, H, W) -> (B, T-1, C, H, W)."""
        return (frames[:, 1:] - frames[:, :-1]).abs()

    # ------------------------------------------------------------------ forward
    def forward(self, rgb: torch.Tensor | None = None, events: torch.Tensor | None = None) -> VELoRAOutput:
        """rgb, events: (B, T, 3, H, W) uint8 (or float in [0, 1]); either may be None."""
        features = self.forward_features(rgb, events)
        return VELoRAOutput(logits=self.forward_head(features), recon_loss=features.recon_loss)

    def forward_features(self, rgb: torch.Tensor | None = None, events: torch.Tensor | None = None) -> Features:
        """The final RGB and event tokens, and the reconstruction loss (see the module docstring)."""
        if rgb is None and events is None:
            raise ValueError("VELoRA needs at least one modality: pass rgb, events or both")
        for name, given in (("rgb", rgb), ("event", events)):
            if given is not None and name not in self.modalities:
                raise ValueError(
                    f"this model was trained on {'+'.join(self.modalities)} only and has no {name} "
                    f"adapters; leave {name} out (model.modalities)"
                )
        rgb = self.normalize(rgb) if rgb is not None else None
        events = self.normalize(events) if events is not None else None

        # Modality-specific LoRA tuning (low-level blocks), every stream in one backbone call.
        streams = {name: f for name, f in (("rgb", rgb), ("event", events)) if f is not None}
        present = list(streams.values())
        if self.uses_frame_difference(present[0].shape[1]):
            diffs = [self.frame_difference(f) for f in present]
            streams["diff"] = sum(diffs[1:], start=diffs[0])  # RGB diff (+) event diff
        return self.features_from_low(self.encode_low(streams))

    def uses_frame_difference(self, num_frames: int) -> bool:
        """Whether clips of `num_frames` get the frame-difference stream. Without adapters (linear
        probe) the fused tokens cannot reach the head, so that work is skipped."""
        return self.use_lora and self.model_cfg.frame_diff and num_frames > 1

    def features_from_low(self, tokens: dict[str, torch.Tensor]) -> Features:
        """From each stream's low-level tokens averaged over its frames ({"rgb"?, "event"?, "diff"?:
        (B, N, D)}) to the final tokens and the reconstruction loss."""
        if self.project is not None:
            tokens = self.project_streams(tokens)
        rgb_tok, event_tok = tokens.get("rgb"), tokens.get("event")

        recon_loss = self.reconstruction_loss(rgb_tok, event_tok)

        # Modality-shared LoRA tuning (high-level blocks, velora.model.fusion).
        final = self.fusion(StreamTokens(diff=tokens.get("diff"), rgb=rgb_tok, event=event_tok))
        return Features(rgb=final.rgb, event=final.event, recon_loss=recon_loss)

    def forward_head(self, features: Features) -> torch.Tensor:
        """Class scores (B, classes) from the final tokens (velora.model.heads); a missing modality's
        place is its learned "absent" embedding."""
        return self.head(features.rgb, features.event, self.absent_rgb, self.absent_event)

    def loss(self, out: VELoRAOutput, labels: torch.Tensor) -> Loss:
        """The training objective: cross-entropy of the class scores plus model.recon_weight times the
        reconstruction loss (both MSE directions, computed by forward_features)."""
        ce = F.cross_entropy(out.logits, labels)
        return Loss(total=ce + self.model_cfg.recon_weight * out.recon_loss, ce=ce, recon=out.recon_loss)

    def reconstruction_loss(self, rgb_tok: torch.Tensor | None, event_tok: torch.Tensor | None) -> torch.Tensor:
        """MSE(decoder(event) -> rgb) + MSE(decoder(rgb) -> event), each modality reconstructing the other."""
        if self.recon_decoder is None or rgb_tok is None or event_tok is None:
            ref = rgb_tok if rgb_tok is not None else event_tok
            assert ref is not None  # forward_features needs at least one modality
            return ref.new_zeros(())
        rgb_target, event_target = rgb_tok, event_tok
        if self.model_cfg.recon_detach_target:
            rgb_target, event_target = rgb_tok.detach(), event_tok.detach()
        return F.mse_loss(self.recon_decoder(event_tok), rgb_target) + F.mse_loss(
            self.recon_decoder(rgb_tok), event_target
        )

    # ------------------------------------------------------------------ parameters
    def train(self, mode: bool = True) -> VELoRA:
        super().train(mode)
        # The frozen backbone stays in eval mode (no dropout / drop-path in the frozen weights);
        # the adapters inside it follow `mode`.
        self.backbone.eval()
        for layer in lora_layers(self.backbone):
            layer.adapters.train(mode)
        return self

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Only what training changes: adapters, fusion/reconstruction modules, head, embeddings."""
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.state_dict().items() if k in names}

    def parameter_groups(self) -> dict[str, int]:
        """Trainable parameter counts per part, for `velora info` and reports."""
        groups: dict[str, int] = {}
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            if ".adapters." in name:
                part = "lora_" + name.split(".adapters.")[1].split(".")[0]
            elif name.startswith("fusion."):
                part = name.split(".")[1]  # fusion.shared_rgb.* -> shared_rgb, fusion.blocks.* -> blocks
                part = "fusion_blocks" if part == "blocks" else part
            else:
                part = name.split(".")[0]
            groups[part] = groups.get(part, 0) + p.numel()
        return groups


def random_block(dim: int, heads: int, style: str) -> Block:
    """A randomly initialised, trainable ViT block: timm's defaults, or as the released code built
    them (qkv bias, drop path 0.1, LayerNorm eps 1e-6, truncated-normal(0.02) Linear weights)."""
    if style == "timm":
        return Block(dim, heads, mlp_ratio=4.0)
    # timm annotates norm_layer as a class, but calls it: a partial works (timm's own models pass one)
    norm = partial(nn.LayerNorm, eps=1e-6)
    block = Block(dim, heads, mlp_ratio=4.0, qkv_bias=True, drop_path=0.1, norm_layer=norm)  # type: ignore[arg-type]
    for module in block.modules():
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
    return block


def meta_model(cfg: Config) -> VELoRA:
    """The model of `cfg` on the meta device, for parameter counts: shapes only, no memory, no
    weights read (the architecture is the config's)."""
    raw = cfg.to_dict()
    raw["model"]["weights"] = "none"
    with torch.device("meta"):
        return VELoRA.from_config(Config.from_dict(raw))


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


__all__ = ["VELoRA", "VELoRAOutput", "Features", "Loss", "LoRALinear", "count_parameters", "meta_model"]
