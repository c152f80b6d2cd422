"""Modality-shared LoRA tuning: the high-level blocks of the framework figure.

    fused = [diff; rgb; event] tokens, concatenated along the token axis    (B, k*N, D)
    for each high-level block, in lockstep:
        fused = fusion block(fused)                 frozen block + LoRA "fusion", or a trainable block
        rgb   = final block(rgb)   + M-shared_rgb(fused[rgb slice])
        event = final block(event) + M-shared_event(fused[event slice])

The final RGB and event blocks are the backbone's top blocks. With `model.stream_path:
low_blocks` (the paper's split) they are frozen and run without an adapter; with
`all_blocks_projected` (the released code) they run again, with the stream's own adapter, on the
projected tokens. The M-shared path (`model.shared_lora`) is either one rank-r adapter D -> D
per modality and block (`linear`, velora's reading of the figure), or the released code's: the
fused slice added back (an identity term) plus the final block's own fc1/fc2 adapter pair of that
stream used as a bottleneck, fc1's A B, the block's activation, fc2's A B, unscaled, as the release
calls peft's lora_A and lora_B modules directly (`mlp_bottleneck`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from velora.model.lora import LoRAAdapter, LoRALinear, use_adapter

FUSION_ADAPTER = "fusion"


@dataclass
class StreamTokens:
    """Each stream's tokens (B, N, D); None for a stream that is absent (a missing modality, or no
    frame difference)."""

    diff: torch.Tensor | None
    rgb: torch.Tensor | None
    event: torch.Tensor | None

    def fused(self) -> tuple[torch.Tensor, dict[str, slice]]:
        """[diff; rgb; event] along the token axis, and where each present stream sits in it."""
        present = [
            (name, t) for name, t in (("diff", self.diff), ("rgb", self.rgb), ("event", self.event)) if t is not None
        ]
        slices, start = {}, 0
        for name, tokens in present:
            slices[name] = slice(start, start + tokens.shape[1])
            start += tokens.shape[1]
        return torch.cat([t for _, t in present], dim=1), slices


class HighLevelFusion(nn.Module):
    """The fusion blocks and the M-shared LoRA of the high-level blocks (see the module docstring).

    blocks: the backbone's top blocks (frozen; they are not registered here, the backbone owns them).
    fusion_block: "backbone_lora" (each top block with the "fusion" adapter) or "random_trainable"
        (new trainable blocks, built by `make_block`, the released code's fusion).
    shared_lora: "linear" or "mlp_bottleneck" (see the module docstring).
    modalities: the streams with an M-shared path ("rgb", "event").
    final_adapters: whether the final blocks run with their stream's adapter (stream_path
        all_blocks_projected) or with none (low_blocks).
    """

    def __init__(
        self,
        blocks: list[nn.Module],
        *,
        dim: int,
        fusion_block: str,
        shared_lora: str,
        modalities: tuple[str, ...],
        rank: int,
        alpha: float,
        dropout: float,
        final_adapters: bool,
        make_block,
    ):
        super().__init__()
        self.final_blocks = blocks  # a plain list: the backbone holds and saves these weights
        self.lora_layers = [m for b in blocks for m in b.modules() if isinstance(m, LoRALinear)]
        self.final_adapters = final_adapters
        self.use_lora = rank > 0
        self.blocks = (
            nn.ModuleList(make_block() for _ in blocks)
            if fusion_block == "random_trainable" and self.use_lora
            else None
        )

        def linear_shared() -> nn.ModuleList:
            return nn.ModuleList(LoRAAdapter(dim, dim, rank, alpha, dropout) for _ in blocks)

        linear = self.use_lora and shared_lora == "linear"
        self.shared_rgb = linear_shared() if linear and "rgb" in modalities else None
        self.shared_event = linear_shared() if linear and "event" in modalities else None
        # The variants, chosen once: how the fused tokens pass a high-level block, and what the
        # M-shared path adds to a final block's output. Without adapters (linear probe) nothing
        # carries the fused tokens to the head, so they are not computed.
        self.fuse: Callable[[int, nn.Module, torch.Tensor], torch.Tensor]
        self.shared: Callable[[int, nn.Module, str, torch.Tensor], torch.Tensor | float]
        if not self.use_lora:
            self.fuse, self.shared = self.skip_fusion, self.no_shared
        else:
            self.fuse = self.random_fusion if self.blocks is not None else self.backbone_fusion
            self.shared = self.bottleneck_shared if shared_lora == "mlp_bottleneck" else self.linear_shared

    def forward(self, streams: StreamTokens) -> StreamTokens:
        """The final RGB and event tokens (B, N, D) after the high-level blocks (diff: None)."""
        fused, where = streams.fused()  # (B, k*N, D)
        rgb, event = streams.rgb, streams.event
        for i, block in enumerate(self.final_blocks):
            fused = self.fuse(i, block, fused)
            if rgb is not None:
                rgb = self.final_block(block, "rgb", rgb) + self.shared(i, block, "rgb", fused[:, where["rgb"]])
            if event is not None:
                event = self.final_block(block, "event", event) + self.shared(
                    i, block, "event", fused[:, where["event"]]
                )
        return StreamTokens(diff=None, rgb=rgb, event=event)

    def final_block(self, block: nn.Module, stream: str, tokens: torch.Tensor) -> torch.Tensor:
        """A high-level block on `stream`'s own tokens, with the stream's adapter when configured."""
        with use_adapter(self.lora_layers, stream if self.final_adapters and self.use_lora else None):
            return block(tokens)

    # ---- how the fused tokens pass high-level block i (model.fusion_block)
    def backbone_fusion(self, i: int, block: nn.Module, fused: torch.Tensor) -> torch.Tensor:
        """The backbone's own frozen block with the modality-shared "fusion" adapter (the figure)."""
        with use_adapter(self.lora_layers, FUSION_ADAPTER):
            return block(fused)

    def random_fusion(self, i: int, block: nn.Module, fused: torch.Tensor) -> torch.Tensor:
        """A random, fully trainable block of its own (the released code)."""
        assert self.blocks is not None  # chosen only when the blocks are built
        return self.blocks[i](fused)

    def skip_fusion(self, i: int, block: nn.Module, fused: torch.Tensor) -> torch.Tensor:
        return fused

    # ---- what the M-shared path adds to a final block's output (model.shared_lora)
    def linear_shared(self, i: int, block: nn.Module, stream: str, fused_part: torch.Tensor) -> torch.Tensor:
        """One rank-r adapter D -> D per modality and block, fed by the stream's fused tokens."""
        adapters = self.shared_rgb if stream == "rgb" else self.shared_event
        assert adapters is not None, f"a {stream} stream reached the fusion of a model without {stream} adapters"
        return adapters[i](fused_part)

    def bottleneck_shared(self, i: int, block: nn.Module, stream: str, fused_part: torch.Tensor) -> torch.Tensor:
        """The released code's: the fused tokens added back, plus the block's fc1/fc2 adapters as a bottleneck."""
        return fused_part + bottleneck(block, stream, fused_part)

    def no_shared(self, i: int, block: nn.Module, stream: str, fused_part: torch.Tensor) -> float:
        return 0.0


def bottleneck(block: nn.Module, stream: str, x: torch.Tensor) -> torch.Tensor:
    """The released M-shared path: `block`'s fc1 then fc2 adapters of `stream`, with the block's
    activation between them, unscaled: fc2.B fc2.A act(fc1.B fc1.A x), (B, N, D) -> (B, N, D)."""
    fc1_layer, fc2_layer = block.get_submodule("mlp.fc1"), block.get_submodule("mlp.fc2")
    assert isinstance(fc1_layer, LoRALinear) and isinstance(
        fc2_layer, LoRALinear
    )  # config validation: both are targets
    fc1, fc2 = fc1_layer.adapter(stream), fc2_layer.adapter(stream)
    h = F.linear(F.linear(fc1.dropout(x), fc1.lora_a), fc1.lora_b)  # (B, N, 4D)
    h = block.get_submodule("mlp.act")(h)
    return F.linear(F.linear(fc2.dropout(h), fc2.lora_a), fc2.lora_b)
