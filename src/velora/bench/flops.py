"""FLOP of one VELoRA clip, counted by torch over the model that runs, for model FLOP utilisation (MFU).

`model_flops` builds the config's model on the meta device (shapes only: no memory, no weights
read) and runs one clip forward, the training loss and its backward under torch's
`FlopCounterMode`, with attention computed by the math kernel so its two matrix products are
counted. So every model variant is counted as it is built (stream_path, fusion block, M-shared
LoRA, head), with no second description to keep in step. `tests/flop_hand_count.py` writes the
default and the released code's model out by hand; the test suite checks the two agree.

Convention: 1 multiply-add = 2 FLOP; torch counts matrix products and convolutions (what tensor
cores run), not LayerNorm, softmax, GELU or adds. The count includes the work `LoRALinear` discards
when it runs every stream's adapter on every row of a low-level block and keeps each row's own
(about 1 % of a ViT-B/16 clip), and leaves out activation-checkpointing recomputation (MFU, not
hardware FLOP utilisation).
"""

from __future__ import annotations

import torch

from velora.config import Config

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, from NVIDIA's data sheets. The first
# name contained in torch.cuda.get_device_name() wins, so more specific names come first.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H200 NVL", 835.0),
    ("GH200", 989.0),
    ("H100", 989.0),  # SXM5 ("NVIDIA H100 80GB HBM3")
    ("H200", 989.0),  # SXM
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("A10", 125.0),
)


def peak_bf16_tflops(device_name: str) -> float | None:
    """The card's dense bf16 peak in TFLOP/s, or None for a card not in the table."""
    for name, tflops in PEAK_BF16_TFLOPS:
        if name in device_name:
            return tflops
    return None


def model_flops(cfg: Config) -> dict[str, int]:
    """Forward and training-step FLOP of one clip of `cfg` (every modality of data.modalities present),
    as torch counts them over the model built from the config: {"forward", "backward", "train_step"
    (= forward + backward), "images" (backbone images per clip)}."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from velora.model.velora import meta_model

    raw = cfg.to_dict()
    raw["model"].update(grad_checkpointing=False, compile=False)  # model FLOP: no recomputation
    model = meta_model(Config.from_dict(raw, source="flop count")).train()
    T, S = cfg.data.num_frames, cfg.model.image_size
    with torch.device("meta"):
        clips = {m: torch.empty(1, T, 3, S, S, dtype=torch.uint8) for m in cfg.data.modalities}
        label = torch.zeros(1, dtype=torch.long)
        with sdpa_kernel(SDPBackend.MATH):
            with FlopCounterMode(display=False) as forward:
                out = model(clips.get("rgb"), clips.get("event"))
                loss = model.loss(out, label).total
            with FlopCounterMode(display=False) as backward:
                loss.backward()
    present = len(clips)
    images = present * T + (T - 1 if model.uses_frame_difference(T) else 0)
    fwd, bwd = forward.get_total_flops(), backward.get_total_flops()
    return {"forward": fwd, "backward": bwd, "train_step": fwd + bwd, "images": images}


def mfu(flops_per_clip: float, clips_per_s: float, peak_tflops: float) -> float:
    """Model FLOP utilisation: achieved model FLOP/s over the peak (a fraction, not percent)."""
    return flops_per_clip * clips_per_s / (peak_tflops * 1e12)
