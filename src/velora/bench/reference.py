"""An execution in the style of the original VELoRA code, for `velora bench` to compare against.

Same model config and maths as `VELoRA`; what differs is how it runs, as the released code did:
three separate fp32 copies of the backbone (RGB, event, frame difference), and every frame
encoded by its own backbone call inside Python loops over clips and frames.
"""

from __future__ import annotations

import copy
import dataclasses

import torch

from velora.config import LoRAConfig, ModelConfig
from velora.model.backbone import embed
from velora.model.lora import lora_layers, use_adapter
from velora.model.velora import VELoRA


class OriginalStyleVELoRA(VELoRA):
    def __init__(self, model: ModelConfig, lora: LoRAConfig):
        # The original had neither compiled blocks nor activation checkpointing.
        model = dataclasses.replace(model, compile=False, grad_checkpointing=False)
        super().__init__(model, lora)
        # Two more full copies of the frozen backbone, as the original loaded CLIP three times.
        self.event_backbone = copy.deepcopy(self.backbone)
        self.diff_backbone = copy.deepcopy(self.backbone)

    def encode_low(self, streams: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {adapter: self.encode_stream(frames, adapter) for adapter, frames in streams.items()}

    def encode_stream(self, frames: torch.Tensor, adapter: str) -> torch.Tensor:
        """(B, T, 3, H, W) -> (B, N, D): one backbone call per image, this stream's own backbone copy."""
        backbone = {"rgb": self.backbone, "event": self.event_backbone, "diff": self.diff_backbone}[adapter]
        layers = [layer for b in backbone.blocks[: self.num_low] for layer in lora_layers(b)]
        B, T = frames.shape[:2]
        clips = []
        for b in range(B):
            per_frame = []
            for t in range(T):  # one image per backbone call
                x = embed(backbone, frames[b, t : t + 1])
                with use_adapter(layers, adapter if self.use_lora else None):
                    for block in backbone.blocks[: self.num_low]:
                        x = block(x)
                if self.project is not None:
                    x = self.project_frames(x)
                per_frame.append(x[0])
            clips.append(torch.stack(per_frame).mean(dim=0))
        return torch.stack(clips)  # (B, N, D)
