"""A hand count of VELoRA's FLOP, written out block by block: the independent reference that
velora.bench.flops.model_flops (torch's FlopCounterMode over the model that runs) is checked against.

Convention: 1 multiply-add = 2 FLOP, and only matrix products and convolutions are counted
(what tensor cores run); LayerNorm, softmax, GELU, adds and the frame difference are left out
(well under 1 % of the total at ViT-B/16 size). timm and many papers quote ViT-B/16 at 224 px as
"17.6 GFLOPs": that figure counts multiply-adds; in FLOP it is 35.1 G (`image_forward`).

Training step accounting (what the hardware must compute, not the 3x-forward rule of thumb):
- a frozen matrix product whose input carries gradient costs its forward again (input gradient
  only; frozen weights get no weight gradient);
- the attention products (Q K^T, P V) cost twice their forward (both operands carry gradient);
- a trainable product (LoRA A/B, M-shared LoRA, head, reconstruction decoder, random fusion
  blocks) costs twice its forward (input and weight gradients), less the input gradient where its
  input carries none;
- nothing upstream of the first trainable parameter is differentiated: the patch embedding never,
  and in the first low-level block only what follows its first LoRA target.
`stacked=True` counts the low-level adapters as `LoRALinear` executes them (every stream's adapter
on every row, each row keeping its own), which is what torch counts.
"""

from __future__ import annotations

from dataclasses import dataclass

from velora.config import Config

# Order of the Linear layers inside a timm Block's forward pass.
BLOCK_LINEARS = ("qkv", "proj", "fc1", "fc2")
RELEASE_HEAD_TOKENS = 10


@dataclass(frozen=True)
class ViTShape:
    """The sizes of a ViT that set its FLOP count (all in elements)."""

    image_size: int
    patch_size: int
    dim: int  # D, token width
    depth: int  # Transformer blocks
    mlp_hidden: int  # hidden width of the MLP (4 D in ViT-B)
    prefix_tokens: int = 1  # class token
    in_chans: int = 3

    @property
    def patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def tokens(self) -> int:
        return self.prefix_tokens + self.patches


def vit_shape(backbone) -> ViTShape:
    """The ViTShape of a built timm VisionTransformer."""
    block = backbone.blocks[0]
    return ViTShape(
        image_size=backbone.patch_embed.img_size[0],
        patch_size=backbone.patch_embed.patch_size[0],
        dim=backbone.embed_dim,
        depth=len(backbone.blocks),
        mlp_hidden=block.mlp.fc1.out_features,
        prefix_tokens=backbone.num_prefix_tokens,
        in_chans=backbone.patch_embed.proj.in_channels,
    )


def linear_flops(shape: ViTShape, n: int) -> dict[str, int]:
    """Forward FLOP of each Linear of one block on n tokens."""
    D, H = shape.dim, shape.mlp_hidden
    return {"qkv": 2 * n * D * 3 * D, "proj": 2 * n * D * D, "fc1": 2 * n * D * H, "fc2": 2 * n * H * D}


def lora_io(shape: ViTShape) -> dict[str, tuple[int, int]]:
    """(in_features, out_features) of each adaptable Linear of a block."""
    D, H = shape.dim, shape.mlp_hidden
    return {"qkv": (D, 3 * D), "proj": (D, D), "fc1": (D, H), "fc2": (H, D)}


def attention_flops(shape: ViTShape, n: int) -> int:
    """Q K^T and P V of one block on n tokens: 2 * (2 n^2 D)."""
    return 4 * n * n * shape.dim


def image_forward(shape: ViTShape) -> int:
    """FLOP of a plain forward pass of one image through the whole backbone (no LoRA)."""
    patch = 2 * shape.patches * shape.in_chans * shape.patch_size**2 * shape.dim
    n = shape.tokens
    return patch + shape.depth * (sum(linear_flops(shape, n).values()) + attention_flops(shape, n))


@dataclass
class _Tally:
    forward: int = 0
    backward: int = 0

    def frozen(self, flops: int, grad_in: bool, operands: int = 1) -> None:
        self.forward += flops
        self.backward += operands * flops if grad_in else 0

    def trainable(self, flops: int, grad_in: bool) -> None:
        self.forward += flops
        self.backward += flops * (2 if grad_in else 1)


def _lora(t: _Tally, n: int, d_in: int, d_out: int, rank: int, grad_in: bool) -> None:
    # x -> A (rank x d_in) -> B (d_out x rank); B's input (A's output) always carries gradient.
    t.trainable(2 * n * rank * d_in, grad_in)
    t.trainable(2 * n * rank * d_out, True)


def _block(t: _Tally, shape: ViTShape, n: int, targets: set[str], rank: int, grad_in: bool, trainable: bool) -> bool:
    """Add one block on n tokens; returns whether its output carries gradient."""
    lin, io = linear_flops(shape, n), lora_io(shape)
    for name in BLOCK_LINEARS:
        if trainable:
            t.trainable(lin[name], grad_in)
        else:
            t.frozen(lin[name], grad_in)
        if name in targets and rank > 0:
            _lora(t, n, *io[name], rank, grad_in)
        grad_in = grad_in or trainable or (name in targets and rank > 0)
        if name == "qkv":
            # Attention (no weights): both operands carry gradient once the qkv output does.
            t.forward += attention_flops(shape, n)
            t.backward += 2 * attention_flops(shape, n) if grad_in else 0
    return grad_in


def velora_flops(cfg: Config, shape: ViTShape, stacked: bool = False) -> dict[str, int]:
    """Forward and training-step FLOP of one clip of `cfg`, velora's default model (stream_path
    low_blocks, linear M-shared LoRA and head), every configured modality present.

    stacked: count the low-level adapters as executed (every stream's adapter on every row)
    instead of the model's FLOP (each row's own adapter).
    Returns {"forward", "backward", "train_step" (= forward + backward), "images" (backbone
    images per clip)}.
    """
    m, lo = cfg.model, cfg.lora
    rank = lo.rank
    targets = set(lo.targets) & set(BLOCK_LINEARS) if rank > 0 else set()
    T, N, D = cfg.data.num_frames, shape.tokens, shape.dim
    num_low = shape.depth - m.high_level_blocks
    modalities = [x for x in ("rgb", "event") if x in cfg.model.modalities]
    streams = {x: T for x in modalities}
    if rank > 0 and m.frame_diff and T > 1:
        streams["diff"] = T - 1
    t = _Tally()
    low_rank = rank * len(streams) if stacked else rank

    # Low-level streams: patch embedding (never differentiated) and num_low LoRA blocks per image.
    patch = 2 * shape.patches * shape.in_chans * shape.patch_size**2 * D
    for images in streams.values():
        s = _Tally()
        s.frozen(patch, grad_in=False)
        grad = False
        for _ in range(num_low):
            grad = _block(s, shape, N, targets, low_rank, grad, trainable=False)
        t.forward += images * s.forward
        t.backward += images * s.backward

    # Reconstruction decoder, both directions, on the time-averaged tokens.
    if m.recon_weight > 0 and rank > 0 and len(modalities) == 2:
        for _ in range(2):
            if m.recon_decoder == "block":
                _block(t, shape, N, set(), 0, True, trainable=True)
            else:
                t.trainable(2 * N * D * D, True)

    # High-level blocks: the fusion block over [diff; rgb; event], the frozen block per modality,
    # and the M-shared LoRA (D -> D) per modality.
    grad_in = rank > 0
    for _ in range(m.high_level_blocks):
        if rank > 0:
            fused = len(streams) * N
            if m.fusion_block == "random_trainable":
                _block(t, shape, fused, set(), 0, True, trainable=True)
            else:
                _block(t, shape, fused, targets, rank, True, trainable=False)
        for _ in modalities:
            _block(t, shape, N, set(), 0, grad_in, trainable=False)
            if rank > 0:
                _lora(t, N, D, D, rank, True)

    # Head: Linear(2 D -> classes) on the pooled features.
    t.trainable(2 * 2 * D * m.num_classes, grad_in)
    return {
        "forward": t.forward,
        "backward": t.backward,
        "train_step": t.forward + t.backward,
        "images": sum(streams.values()),
    }


def release_flops(cfg: Config, shape: ViTShape, projection: int, stacked: bool = False) -> dict[str, int]:
    """Forward and training-step FLOP of one clip of the released code's model (configs/*_release.yaml:
    stream_path all_blocks_projected, fusion_block random_trainable, shared_lora mlp_bottleneck,
    recon_decoder block, head attention_last_tokens), every configured modality present.

    projection: E, the width of CLIP's projection (512 for ViT-B/16).
    """
    m, lo = cfg.model, cfg.lora
    rank = lo.rank
    targets = set(lo.targets) & set(BLOCK_LINEARS)
    T, N, D, E = cfg.data.num_frames, shape.tokens, shape.dim, projection
    modalities = [x for x in ("rgb", "event") if x in cfg.model.modalities]
    streams = {x: T for x in modalities}
    if m.frame_diff and T > 1:
        streams["diff"] = T - 1
    t = _Tally()
    low_rank = rank * len(streams) if stacked else rank

    # Each image: patch embedding, all blocks with its stream's adapter, ln_post, the frozen
    # projection D -> E (as CLIP's encode_image).
    patch = 2 * shape.patches * shape.in_chans * shape.patch_size**2 * D
    for images in streams.values():
        s = _Tally()
        s.frozen(patch, grad_in=False)
        grad = False
        for _ in range(shape.depth):
            grad = _block(s, shape, N, targets, low_rank, grad, trainable=False)
        s.frozen(2 * N * D * E, grad_in=True)
        t.forward += images * s.forward
        t.backward += images * s.backward
    # After the mean over frames: the trainable Linear E -> D shared by the streams, per stream.
    for _ in streams:
        t.trainable(2 * N * E * D, True)

    # Reconstruction: a random trainable block, both directions.
    if m.recon_weight > 0 and len(modalities) == 2:
        for _ in range(2):
            _block(t, shape, N, set(), 0, True, trainable=True)

    for _ in range(m.high_level_blocks):
        _block(t, shape, len(streams) * N, set(), 0, True, trainable=True)  # the random fusion block
        for _ in modalities:
            # The final block runs again with the stream's adapter (LoRALinear runs all its adapters).
            _block(t, shape, N, targets, low_rank, True, trainable=False)
            # M-shared: the final block's fc1 then fc2 adapters of the stream, as a bottleneck.
            H = shape.mlp_hidden
            for d_in, d_out in ((D, rank), (rank, H), (H, rank), (rank, D)):
                t.trainable(2 * N * d_in * d_out, True)

    # Head: single-head self-attention over [rgb; event] (2N tokens), the last tokens flattened, a Linear.
    n2 = 2 * N
    for _ in range(3):  # query, key, value
        t.trainable(2 * n2 * D * D, True)
    t.forward += 2 * (2 * n2 * n2 * D)  # scores and attended
    t.backward += 2 * 2 * (2 * n2 * n2 * D)
    t.trainable(2 * min(RELEASE_HEAD_TOKENS, N) * D * m.num_classes, True)
    return {
        "forward": t.forward,
        "backward": t.backward,
        "train_step": t.forward + t.backward,
        "images": sum(streams.values()),
    }
