"""The VELoRA forward pass, readable top to bottom against `reference/figures/velora-framework.jpg`.

    RGB frames ----> embed -> low-level blocks [LoRA "rgb"]   -> mean over T -> rgb tokens ----+
    event frames --> embed -> low-level blocks [LoRA "event"] -> mean over T -> event tokens --+
    |RGB diff| + |event diff| -> low-level blocks [LoRA "diff"] -> mean over T -> diff tokens -+
    reconstruction: decoder(event) ~ rgb and decoder(rgb) ~ event (MSE)                       |
                                                                                              v
    high-level blocks, in lockstep:  fused = block[LoRA "fusion"]([diff; rgb; event])
                                     rgb   = block(rgb)   + M-shared LoRA_rgb(fused's rgb part)
                                     event = block(event) + M-shared LoRA_event(fused's event part)
    head: Linear(concat(pool(norm(rgb)), pool(norm(event)))) -> class scores

One frozen backbone serves every stream; the frames of all streams go through it in one batched
call of B*(T + T + T-1) images, each image with its own stream's adapter (`AdapterRows`).
Shapes: B clips, T frames, N = 1 + patches tokens, D channels.

Speed options (config): `model.compile` compiles each low-level block; `model.grad_checkpointing`
recomputes the low-level blocks' activations in the backward pass instead of storing them.

A missing modality (`rgb=None` or `events=None`: event-only data such as N-MNIST, RGB-only data,
or a failed sensor) skips that stream; its place in the head is taken by a learned "absent"
embedding, the frame-difference stream uses the present modality's difference alone, and the
reconstruction loss is zero. Training with `model.modality_dropout > 0` teaches the head this case.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch.utils.checkpoint import checkpoint

from velora.config import Config
from velora.model.backbone import build_backbone, embed, normalization
from velora.model.lora import AdapterRows, LoRAAdapter, LoRALinear, inject_lora, lora_layers, use_adapter

FUSION_ADAPTER = "fusion"


@dataclass
class VELoRAOutput:
    logits: torch.Tensor  # (B, classes)
    recon_loss: torch.Tensor  # scalar: sum of both reconstruction MSE terms (0 without both modalities)


class VELoRA(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        m, lo = cfg.model, cfg.lora
        self.backbone = build_backbone(m)
        if m.finetune_backbone:  # the full fine-tuning baseline; adapters below stay trainable too
            self.backbone.requires_grad_(True)
        depth = len(self.backbone.blocks)
        if m.high_level_blocks >= depth:
            raise ValueError(
                f"model.high_level_blocks = {m.high_level_blocks} leaves no low-level block in a "
                f"{depth}-block backbone; use at most {depth - 1}"
            )
        self.num_low = depth - m.high_level_blocks
        dim = self.backbone.embed_dim
        mean, std = normalization(self.backbone)
        self.register_buffer("mean", torch.tensor(mean).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 1, 3, 1, 1), persistent=False)
        self.grad_checkpointing = m.grad_checkpointing

        low_blocks = list(self.backbone.blocks[: self.num_low])
        high_blocks = list(self.backbone.blocks[self.num_low :])
        # Only the streams of the configured modalities get adapters (an RGB-only model has no
        # event adapters); data.modalities at training time decides.
        self.modalities = tuple(cfg.data.modalities)
        self.low_adapters = [s for s in ("rgb", "event") if s in self.modalities] + (["diff"] if m.frame_diff else [])
        self.use_lora = lo.rank > 0
        if self.use_lora:
            inject_lora(low_blocks, lo.targets, self.low_adapters, lo.rank, lo.alpha, lo.dropout)
            if m.fusion_block == "backbone_lora":
                inject_lora(high_blocks, lo.targets, [FUSION_ADAPTER], lo.rank, lo.alpha, lo.dropout)
        self.low_lora = [layer for b in low_blocks for layer in lora_layers(b)]
        self.high_lora = [layer for b in high_blocks for layer in lora_layers(b)]
        if m.fusion_block == "random_trainable" and self.use_lora:
            # The original code's fusion: fresh, fully trained blocks in place of the frozen ones.
            heads = self.backbone.blocks[0].attn.num_heads
            self.fusion_blocks = nn.ModuleList(Block(dim, heads, mlp_ratio=4.0) for _ in high_blocks)
        else:
            self.fusion_blocks = None

        # M-shared LoRA: one per modality and high-level block, fed by the fused tokens.
        def shared() -> nn.ModuleList:
            return nn.ModuleList(LoRAAdapter(dim, dim, lo.rank, lo.alpha, lo.dropout) for _ in high_blocks)

        self.shared_rgb = shared() if self.use_lora and "rgb" in self.modalities else None
        self.shared_event = shared() if self.use_lora and "event" in self.modalities else None

        both = len(self.modalities) == 2
        if m.recon_weight > 0 and self.use_lora and both:
            if m.recon_decoder == "block":
                heads = self.backbone.blocks[0].attn.num_heads
                self.recon_decoder = nn.Sequential(Block(dim, heads, mlp_ratio=4.0), nn.LayerNorm(dim))
            else:
                self.recon_decoder = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim))
        else:
            self.recon_decoder = None

        # Stand-ins for a missing modality's head feature. Trained only when training sees that
        # modality missing (always, in a one-modality model; sometimes, with modality dropout).
        dropout = both and m.modality_dropout > 0
        self.absent_rgb = nn.Parameter(torch.zeros(dim), requires_grad=dropout or "rgb" not in self.modalities)
        self.absent_event = nn.Parameter(torch.zeros(dim), requires_grad=dropout or "event" not in self.modalities)
        self.head_drop = nn.Dropout(m.head_dropout)
        self.head = nn.Linear(2 * dim, m.num_classes)
        if m.compile:
            # The low-level blocks hold ~98 % of the FLOP. In place (nn.Module.compile): parameter
            # names and checkpoints stay those of eager mode.
            for block in self.backbone.blocks[: self.num_low]:
                block.compile()

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
        sizes = [f.shape[0] * f.shape[1] for f in streams.values()]
        rows: AdapterRows = tuple((name if self.use_lora else None, n) for name, n in zip(streams, sizes))
        x = embed(self.backbone, torch.cat([f.flatten(0, 1) for f in streams.values()]))  # (sum B*T_s, N, D)
        with use_adapter(self.low_lora, rows):
            for block in self.backbone.blocks[: self.num_low]:
                x = self.run_low_block(block, x, rows)
        return {
            name: part.view(*f.shape[:2], *part.shape[1:]).mean(dim=1)
            for (name, f), part in zip(streams.items(), x.split(sizes))
        }

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

    @staticmethod
    def frame_difference(frames: torch.Tensor) -> torch.Tensor:
        """|f(t) - f(t-1)| for t = 1..T-1: (B, T, C, H, W) -> (B, T-1, C, H, W)."""
        return (frames[:, 1:] - frames[:, :-1]).abs()

    # ------------------------------------------------------------------ forward
    def forward(self, rgb: torch.Tensor | None = None, events: torch.Tensor | None = None) -> VELoRAOutput:
        """rgb, events: (B, T, 3, H, W) uint8 (or float in [0, 1]); either may be None."""
        if rgb is None and events is None:
            raise ValueError("VELoRA needs at least one modality: pass rgb, events or both")
        for name, given in (("rgb", rgb), ("event", events)):
            if given is not None and name not in self.modalities:
                raise ValueError(
                    f"this model was trained on {'+'.join(self.modalities)} only and has no {name} "
                    f"adapters; leave {name} out (data.modalities)"
                )
        rgb = self.normalize(rgb) if rgb is not None else None
        events = self.normalize(events) if events is not None else None

        # Modality-specific LoRA tuning (low-level blocks), every stream in one backbone call.
        streams = {name: f for name, f in (("rgb", rgb), ("event", events)) if f is not None}
        present = list(streams.values())
        # Without adapters (linear probe) the fused tokens cannot reach the head: skip that work.
        if self.use_lora and self.cfg.model.frame_diff and present[0].shape[1] > 1:
            streams["diff"] = sum(self.frame_difference(f) for f in present)  # RGB diff (+) event diff
        tokens = self.encode_low(streams)  # each (B, N, D)
        rgb_tok, event_tok, diff_tok = tokens.get("rgb"), tokens.get("event"), tokens.get("diff")

        recon_loss = self.reconstruction_loss(rgb_tok, event_tok)

        # Modality-shared LoRA tuning (high-level blocks), fusion and final blocks in lockstep.
        parts = [t for t in (diff_tok, rgb_tok, event_tok) if t is not None]
        fused = torch.cat(parts, dim=1)  # (B, k*N, D)
        N = parts[0].shape[1]
        rgb_part = slice((diff_tok is not None) * N, (diff_tok is not None) * N + N)
        event_part = slice(fused.shape[1] - N, fused.shape[1])
        for i, block in enumerate(self.backbone.blocks[self.num_low :]):
            # Without adapters (linear probe) nothing carries the fused tokens to the head.
            if self.use_lora and self.fusion_blocks is not None:
                fused = self.fusion_blocks[i](fused)
            elif self.use_lora:
                with use_adapter(self.high_lora, FUSION_ADAPTER):
                    fused = block(fused)
            with use_adapter(self.high_lora, None):
                if rgb_tok is not None:
                    rgb_tok = block(rgb_tok)
                    if self.shared_rgb is not None:
                        rgb_tok = rgb_tok + self.shared_rgb[i](fused[:, rgb_part])
                if event_tok is not None:
                    event_tok = block(event_tok)
                    if self.shared_event is not None:
                        event_tok = event_tok + self.shared_event[i](fused[:, event_part])

        # Prediction head over the concatenated RGB and event features.
        B = fused.shape[0]
        rgb_feat = self.pool(rgb_tok) if rgb_tok is not None else self.absent_rgb.expand(B, -1)
        event_feat = self.pool(event_tok) if event_tok is not None else self.absent_event.expand(B, -1)
        logits = self.head(self.head_drop(torch.cat([rgb_feat, event_feat], dim=-1)))
        return VELoRAOutput(logits=logits, recon_loss=recon_loss)

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, D): the backbone's final norm, then class token or mean of tokens."""
        tokens = self.backbone.norm(tokens)
        return tokens[:, 0] if self.cfg.model.head_pool == "cls" else tokens.mean(dim=1)

    def reconstruction_loss(self, rgb_tok: torch.Tensor | None, event_tok: torch.Tensor | None) -> torch.Tensor:
        """MSE(decoder(event) -> rgb) + MSE(decoder(rgb) -> event), each modality reconstructing the other."""
        if self.recon_decoder is None or rgb_tok is None or event_tok is None:
            ref = rgb_tok if rgb_tok is not None else event_tok
            return ref.new_zeros(())
        rgb_target, event_target = rgb_tok, event_tok
        if self.cfg.model.recon_detach_target:
            rgb_target, event_target = rgb_tok.detach(), event_tok.detach()
        return F.mse_loss(self.recon_decoder(event_tok), rgb_target) + F.mse_loss(
            self.recon_decoder(rgb_tok), event_target
        )

    # ------------------------------------------------------------------ parameters
    def train(self, mode: bool = True) -> "VELoRA":
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
            else:
                part = name.split(".")[0]
            groups[part] = groups.get(part, 0) + p.numel()
        return groups


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


__all__ = ["VELoRA", "VELoRAOutput", "LoRALinear", "count_parameters"]
