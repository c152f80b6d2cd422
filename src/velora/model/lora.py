"""Low-rank adapters (LoRA) with several named adapters on one frozen Linear layer.

VELoRA trains one adapter per stream (RGB, event, frame difference, fusion) on a single frozen
backbone. `LoRALinear` keeps `nn.Linear`'s own parameter names (`weight`, `bias`) so a plain
backbone checkpoint loads with only `adapters.*` keys missing, and holds its adapters in a
ModuleDict keyed by stream name. The stream code sets what is active with `use_adapter` around
each batched backbone call: one adapter (or none) for the whole batch, or `AdapterRows`, one adapter
per consecutive group of images, so that several streams share one call of the frozen weights.
All adapters of a layer run as one pair of thin products (their A and B matrices stacked), and a
boolean row x column selection keeps each row's own adapter: the choice is tensor data, not Python
state, so `torch.compile` traces a block once for every mix of streams and batch size.

For inference without low-rank branches, `fold_adapters` gives every adapter its own copy of the
weight, W + (alpha / rank) B A: a call with one adapter is one product with its copy, and a call
with one adapter per row group becomes one product per group (`velora export --merge`).

Reference: Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", 2021.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from velora.errors import VeloraError

# One adapter per consecutive group of rows along the batch axis: (("rgb", 16), ("event", 16), ...).
AdapterRows = tuple[tuple[str | None, int], ...]


class LoRAError(VeloraError, ValueError):
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
    """A frozen `nn.Linear` plus named adapters: one active for all rows, or one per row group."""

    def __init__(self, base: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.adapters = nn.ModuleDict()
        self.merged: str | None = None
        self.folded: nn.ParameterDict | None = None  # adapter name -> its own merged weight (fold)
        self._active: str | AdapterRows | None = None
        self.selection: torch.Tensor | None = None  # (rows or 1, adapter columns) bool

    @property
    def active(self) -> str | AdapterRows | None:
        """One adapter for every row, one per row group (AdapterRows), or none (None)."""
        return self._active

    @active.setter
    def active(self, active: str | AdapterRows | None) -> None:
        self._active, self.selection = active, adapter_selection(self, active)

    def add_adapter(self, name: str, rank: int, alpha: float, dropout: float = 0.0) -> None:
        adapter = LoRAAdapter(self.in_features, self.out_features, rank, alpha, dropout)
        self.adapters[name] = adapter.to(device=self.weight.device, dtype=self.weight.dtype)

    def adapter(self, name: str) -> LoRAAdapter:
        """Adapter `name`. (`adapters` is a ModuleDict, typed as holding any Module; add_adapter puts
        only LoRAAdapters there.)"""
        return cast(LoRAAdapter, self.adapters[name])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (rows, ..., in_features); the selection's rows index x's first axis."""
        if self.folded is not None:
            return self.forward_folded(x)
        out = F.linear(x, self.weight, self.bias)  # the frozen product, once for every row
        if self.selection is None:
            return out
        adapters = [self.adapter(name) for name in self.adapters]
        lora_a = torch.cat([a.lora_a for a in adapters])  # (C, in): C = the adapters' ranks summed
        lora_b = torch.cat([a.lora_b * a.scale for a in adapters], dim=1)  # (out, C)
        keep = self.selection.view(-1, *[1] * (x.dim() - 2), lora_a.shape[0])
        # One dropout for all adapters (inject_lora gives them the same): each row uses one adapter.
        h = F.linear(adapters[0].dropout(x), lora_a) * keep  # (rows, ..., C), other adapters' columns zero
        out += F.linear(h, lora_b)  # in place: the frozen product's output is not kept for backward
        return out

    def forward_folded(self, x: torch.Tensor) -> torch.Tensor:
        """The folded layer: each row group's product with its own adapter's weight copy (the
        frozen weight for rows without an adapter of this layer)."""
        active = self._active
        if active is None or isinstance(active, str):
            return F.linear(x, self.folded_weight(active), self.bias)
        groups = x.split([rows for _, rows in active])
        return torch.cat([F.linear(g, self.folded_weight(name), self.bias) for g, (name, _) in zip(groups, active)])

    def folded_weight(self, name: str | None) -> torch.Tensor:
        """Adapter `name`'s folded copy of the weight; the frozen weight for no adapter, or one this
        layer has not folded."""
        if self.folded is None or name is None or name not in self.folded:
            return self.weight
        return self.folded[name]

    def adapter_columns(self) -> dict[str, slice]:
        """Each adapter's columns among the stacked ranks."""
        columns, start = {}, 0
        for name in self.adapters:
            rank = self.adapter(name).lora_a.shape[0]
            columns[name] = slice(start, start + rank)
            start += rank
        return columns

    @torch.no_grad()
    def merge(self, name: str) -> None:
        """Fold adapter `name` into `weight` (for export or inference with that adapter only)."""
        if self.merged is not None:
            raise LoRAError(f"adapter '{self.merged}' is already merged; unmerge it first")
        if self.folded is not None:
            raise LoRAError("the adapters are folded into their own weights already (fold_adapters)")
        self.weight += self.adapter(name).delta_weight().to(self.weight.dtype)
        self.merged = name
        self.active = self._active  # a merged adapter is no longer added on top

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged is not None:
            self.weight -= self.adapter(self.merged).delta_weight().to(self.weight.dtype)
            self.merged = None
            self.active = self._active

    @torch.no_grad()
    def fold(self) -> None:
        """Give each adapter its own weight, W + (alpha / rank) B A; the adapters stay (the
        released M-shared path calls them directly) but no call adds them any more."""
        if self.merged is not None:
            raise LoRAError(f"adapter '{self.merged}' is merged into the weight; unmerge it before folding")
        self.folded = nn.ParameterDict(
            {
                name: nn.Parameter(
                    self.weight + self.adapter(name).delta_weight().to(self.weight.dtype), requires_grad=False
                )
                for name in self.adapters
            }
        )

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, adapters={list(self.adapters)}"


def adapter_selection(layer: LoRALinear, active: str | AdapterRows | None) -> torch.Tensor | None:
    """Which stacked adapter columns each row of `layer`'s input uses: (rows, C) bool, (1, C) for
    one adapter on every row, or None when no row uses an unmerged adapter of this layer."""
    segments = ((active, 1),) if active is None or isinstance(active, str) else active
    columns = layer.adapter_columns()
    # each row group's adapter columns, or None where it uses none of this layer's unmerged adapters
    used = [columns[name] if name in columns and name != layer.merged else None for name, _ in segments]
    if all(c is None for c in used):
        return None
    width = sum(c.stop - c.start for c in columns.values())
    rows = sum(n for _, n in segments)
    selection = torch.zeros(rows, width, dtype=torch.bool, device=layer.weight.device)
    start = 0
    for (_, n), use in zip(segments, used):
        if use is not None:
            selection[start : start + n, use] = True
        start += n
    return selection


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
def use_adapter(layers: list[LoRALinear], name: str | AdapterRows | None) -> Iterator[None]:
    """Activate adapter `name` (None: the frozen base alone; AdapterRows: one adapter per row
    group of the batch) on `layers` for the duration."""
    previous = [(layer.active, layer.selection) for layer in layers]
    shared: dict[tuple, torch.Tensor | None] = {}  # layers with the same adapters share one selection
    for layer in layers:
        columns = tuple((n, c.start, c.stop) for n, c in layer.adapter_columns().items())
        key = (columns, layer.merged, layer.weight.device)
        if key not in shared:
            shared[key] = adapter_selection(layer, name)
        layer._active, layer.selection = name, shared[key]
    try:
        yield
    finally:
        for layer, (active, selection) in zip(layers, previous):
            layer._active, layer.selection = active, selection


def merge_adapter(model: nn.Module, name: str) -> None:
    """Merge adapter `name` into every LoRALinear of `model` that has it."""
    layers = [m for m in lora_layers(model) if name in m.adapters]
    if not layers:
        known = sorted({a for m in lora_layers(model) for a in m.adapters})
        raise LoRAError(f"adapter '{name}' not found; the model's adapters are: {', '.join(known) or 'none'}")
    for layer in layers:
        layer.merge(name)


def fold_adapters(model: nn.Module) -> None:
    """Fold every adapter of every LoRALinear of `model` into its own copy of the layer's weight
    (LoRALinear.fold), in place: the model computes the same, without low-rank branches."""
    for layer in lora_layers(model):
        layer.fold()


def unmerge_all(model: nn.Module) -> None:
    for layer in lora_layers(model):
        layer.unmerge()


def base_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict without adapter tensors: loads into the plain (un-wrapped) model strictly."""
    return {k: v for k, v in model.state_dict().items() if ".adapters." not in k}
