"""Which scaled-dot-product-attention kernel runs for the backbone's attention, and which could.

timm's `Attention` calls `F.scaled_dot_product_attention` (its `fused_attn`); PyTorch then picks a
kernel per call from the device, dtype, head size and whether gradients are needed: FlashAttention,
memory-efficient attention, cuDNN attention, or the unfused math fallback (on the CPU: its own
flash-style kernel or math). The kernel shows in the aten op that the call dispatches to.
"""

from __future__ import annotations

import warnings
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode

BACKENDS = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "memory_efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "math": SDPBackend.MATH,
}


class _AttentionOps(TorchDispatchMode):
    """Records the names of the attention aten ops dispatched while active."""

    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.name()
        if "attention" in name and name not in self.names:
            self.names.append(name)
        return func(*args, **(kwargs or {}))


def kernel_name(ops: list[str]) -> str:
    """'flash', 'memory_efficient', 'cudnn', 'cpu_flash' or 'math' from the dispatched op names."""
    joined = " ".join(ops)
    for key, name in (
        ("flash_attention_for_cpu", "cpu_flash"),
        ("_flash_attention", "flash"),
        ("efficient_attention", "memory_efficient"),
        ("cudnn_attention", "cudnn"),
    ):
        if key in joined:
            return name
    return "math"


def sdpa_report(backbone, device: str, precision: str, images: int = 8) -> dict:
    """What attention runs in one backbone block, forward and backward, as `velora bench` runs it.

    Returns {"used": kernel name, "ops": dispatched aten ops, "available": {backend: "ok" or why
    not}} for the block's token count, head size and the bench's precision.
    """
    block = backbone.blocks[-1].attn
    tokens = backbone.patch_embed.num_patches + backbone.num_prefix_tokens
    x = torch.randn(images, tokens, backbone.embed_dim, device=device, requires_grad=True)
    kind = torch.device(device).type
    autocast = torch.autocast(device_type=kind, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    recorder = _AttentionOps()
    with autocast, recorder:
        block(x).sum().backward()

    head_dim = block.head_dim
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    q = torch.randn(images, block.num_heads, tokens, head_dim, device=device, dtype=dtype, requires_grad=True)
    available = {}
    for name, backend in BACKENDS.items():
        with warnings.catch_warnings(record=True) as caught:  # PyTorch warns why a kernel does not fit
            warnings.simplefilter("always")
            try:
                with sdpa_kernel(backend):
                    F.scaled_dot_product_attention(q, q, q).sum().backward()
                available[name] = "ok"
            except RuntimeError as exc:
                reasons = [str(w.message).strip().splitlines()[0] for w in caught] or [str(exc).strip().splitlines()[0]]
                available[name] = "; ".join(reasons)[:300]
    return {
        "used": kernel_name(recorder.names),
        "ops": recorder.names,
        "fused_attn": bool(getattr(block, "fused_attn", False)),
        "tokens": tokens,
        "head_dim": head_dim,
        "dtype": str(dtype).removeprefix("torch."),
        "available": available,
    }
