"""Learning-rate schedule and optimizer parameter groups (pure functions)."""

from __future__ import annotations

import math

import torch.nn as nn


def warmup_cosine(step: int, *, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Multiplier of the peak learning rate at optimizer step `step` (0-based).

    Linear warmup from 1/warmup_steps to 1 over `warmup_steps`, then cosine decay to `min_ratio`
    at `total_steps` (and flat after it). The original code's cosine schedule never moved; this
    one is tested to reach `min_ratio`.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def decay_groups(model: nn.Module, weight_decay: float, decay_all: bool = False) -> list[dict]:
    """AdamW groups: weight decay on matrices only (not on biases, norms, or embedding vectors), or
    with `decay_all` on every trainable parameter (the released code)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if decay_all or p.ndim >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
