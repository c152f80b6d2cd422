"""The classification heads (``model.head``): the final RGB and event tokens -> class scores.

Both take the same arguments, so the model calls whichever it was built with:
``head(rgb, event, absent_rgb, absent_event)``, with rgb and event the final tokens (B, N, D) or
None for a missing modality, and absent_rgb / absent_event the learned (D,) embeddings that stand
in for a missing one. Returns (B, classes).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

RELEASE_HEAD_TOKENS = 10  # the released head flattens the last 10 tokens


class LinearHead(nn.Linear):
    """velora's head: each modality's final tokens normed (the backbone's final norm) and pooled
    (class token or mean of tokens, model.head_pool), concatenated, dropout, a Linear(2D, classes).
    A missing modality's pooled feature is its absent embedding.

    A Linear itself, so its weights keep the names `head.weight` and `head.bias` adapter files store.
    """

    norm: nn.Module  # the backbone's, set without registering it

    def __init__(self, dim: int, num_classes: int, pool: str, dropout: float, norm: nn.Module):
        super().__init__(2 * dim, num_classes)
        self.pool_kind = pool
        self.drop = nn.Dropout(dropout)
        # The backbone's final norm, used but not owned: its frozen weights stay the backbone's.
        object.__setattr__(self, "norm", norm)

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, D): the final norm, then the class token or the mean of tokens."""
        tokens = self.norm(tokens)
        return tokens[:, 0] if self.pool_kind == "cls" else tokens.mean(dim=1)

    # a Linear for its parameter names, not for its call: it takes the heads' arguments
    def forward(self, rgb, event, absent_rgb: torch.Tensor, absent_event: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        B = (rgb if rgb is not None else event).shape[0]
        rgb_feat = self.pool(rgb) if rgb is not None else absent_rgb.expand(B, -1)
        event_feat = self.pool(event) if event is not None else absent_event.expand(B, -1)
        return super().forward(self.drop(torch.cat([rgb_feat, event_feat], dim=-1)))


class AttentionHead(nn.Module):
    """The released head: single-head self-attention over [rgb; event] tokens (B, 2N, D), the rgb
    and event halves of its output summed, the last `tokens` tokens flattened, a Linear. A missing
    modality's tokens are its absent embedding repeated; dropout on the tokens first."""

    def __init__(self, dim: int, num_classes: int, tokens: int, dropout: float = 0.0):
        super().__init__()
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.tokens = tokens
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(dim * tokens, num_classes)

    def forward(self, rgb, event, absent_rgb: torch.Tensor, absent_event: torch.Tensor) -> torch.Tensor:
        present = rgb if rgb is not None else event
        B, N = present.shape[:2]
        rgb = self.drop(rgb if rgb is not None else absent_rgb.expand(B, N, -1))
        event = self.drop(event if event is not None else absent_event.expand(B, N, -1))
        x = torch.cat([rgb, event], dim=1)  # (B, 2N, D)
        scores = self.query(x) @ self.key(x).transpose(-2, -1) / math.sqrt(x.shape[-1])  # (B, 2N, 2N)
        attended = scores.softmax(dim=-1) @ self.value(x)  # (B, 2N, D)
        summed = attended[:, :N] + attended[:, N:]  # (B, N, D)
        return self.fc(summed[:, -self.tokens :].flatten(1))
