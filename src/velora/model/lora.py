"""Low-rank adapters (LoRA) with several named adapters on one frozen Linear layer.

VELoRA trains one adapter per stream (RGB, event, frame difference, fusion) on a single frozen
backbone. `LoRALinear` keeps `nn.Linear`'s own parameter names (`weight`, `bias`) so a plain
backbone checkpoint loads with only `adapters.*` keys missing, and holds its adapters in a
ModuleDict keyed by stream name. Exactly one adapter (or none) is active per call; the stream
code switches it with `use_adapter` around each batched backbone call.

Reference: Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", 2021.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F


class LoRAError(ValueError):
    """A LoRA target or adapter name does not exist in the model."""


class LoRAAdapter(nn.Module):
    """The low-rank update `(alpha / rank) * B A dropout(x)`.

    `lora_a` (rank, in_features) starts Kaiming-uniform and `lora_b` (out_features, rank) starts at
    zero, so a new adapter leaves its layer's output unchanged.
    """

    def __init__(self, in_features: int, out_features: int, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        self.lora_a = nn.Parameter(torch.empty(rank, in_features))
        self.lora_b = nn.Parameter(torch.zeros(out_features, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.scale = alpha / rank
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(self.dropout(x), self.lora_a), self.lora_b) * self.scale

    def delta_weight(self) -> torch.Tensor:
        """The dense update (out_features, in_features) this adapter adds to the weight."""
        return (self.lora_b @ self.lora_a) * self.scale


class LoRALinear(nn.Module):
    """A frozen `nn.Linear` plus named adapters, at most one active at a time."""

    def __init__(self, base: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.adapters = nn.ModuleDict()
        self.active: str | None = None
        self.merged: str | None = None

    def add_adapter(self, name: str, rank: int, alpha: float, dropout: float = 0.0) -> None:
        adapter = LoRAAdapter(self.in_features, self.out_features, rank, alpha, dropout)
        self.adapters[name] = adapter.to(device=self.weight.device, dtype=self.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)
        if self.active is not None and self.active != self.merged and self.active in self.adapters:
            out = out + self.adapters[self.active](x)
        return out

    @torch.no_grad()
    def merge(self, name: str) -> None:
        """Fold adapter `name` into `weight` (for export or inference with that adapter only)."""
        if self.merged is not None:
            raise LoRAError(f"adapter '{self.merged}' is already merged; unmerge it first")
        self.weight += self.adapters[name].delta_weight().to(self.weight.dtype)
        self.merged = name

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged is not None:
            self.weight -= self.adapters[self.merged].delta_weight().to(self.weight.dtype)
            self.merged = None

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, adapters={list(self.adapters)}"


def linear_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, LoRALinear))]


def inject_lora(
    blocks: nn.ModuleList | list[nn.Module],
    targets: list[str],
    adapter_names: list[str],
    rank: int,
    alpha: float,
    dropout: float = 0.0,
) -> list[LoRALinear]:
    """Wrap the Linear layers named `targets` inside each block and add `adapter_names` to them.

    A target matches a Linear whose dotted name ends with it ("fc1" matches "mlp.fc1"). Raises
    `LoRAError` listing the blocks' actual Linear names when a target matches nothing.
    """
    wrapped: list[LoRALinear] = []
    for target in targets:
        hits = 0
        for block in blocks:
            for name, module in list(block.named_modules()):
                if name.split(".")[-1] != target and name != target:
                    continue
                if isinstance(module, nn.Linear):
                    module = _replace(block, name, LoRALinear(module))
                if not isinstance(module, LoRALinear):
                    continue
                for adapter in adapter_names:
                    if adapter not in module.adapters:
                        module.add_adapter(adapter, rank, alpha, dropout)
                wrapped.append(module)
                hits += 1
        if hits == 0:
            available = sorted({n.split(".")[-1] for b in blocks for n in linear_names(b)})
            raise LoRAError(
                f"LoRA target '{target}' not found; the blocks' Linear layers are: {', '.join(available)}. "
                "Set lora.targets to some of these names."
            )
    return wrapped


def _replace(root: nn.Module, dotted: str, new: nn.Module) -> nn.Module:
    parent_name, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)
    return new


def lora_layers(model: nn.Module) -> list[LoRALinear]:
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


@contextmanager
def use_adapter(layers: list[LoRALinear], name: str | None) -> Iterator[None]:
    """Activate adapter `name` (None: the frozen base alone) on `layers` for the duration."""
    previous = [layer.active for layer in layers]
    for layer in layers:
        layer.active = name
    try:
        yield
    finally:
        for layer, prev in zip(layers, previous):
            layer.active = prev


def merge_adapter(model: nn.Module, name: str) -> None:
    """Merge adapter `name` into every LoRALinear of `model` that has it."""
    layers = [m for m in lora_layers(model) if name in m.adapters]
    if not layers:
        known = sorted({a for m in lora_layers(model) for a in m.adapters})
        raise LoRAError(f"adapter '{name}' not found; the model's adapters are: {', '.join(known) or 'none'}")
    for layer in layers:
        layer.merge(name)


def unmerge_all(model: nn.Module) -> None:
    for layer in lora_layers(model):
        layer.unmerge()


def base_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict without adapter tensors: loads into the plain (un-wrapped) model strictly."""
    return {k: v for k, v in model.state_dict().items() if ".adapters." not in k}
