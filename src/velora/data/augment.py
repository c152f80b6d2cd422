"""Augmentation applied on the training device, after the batch is copied there.

The packed format can leave the random resized crop to the device (`data.device_crop`): its
loader then only copies frames out of the memory map, and the crop + resize of a whole batch is
one `grid_sample` call on the GPU (or CPU) instead of per-frame work in the loader workers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def crop_resize(frames: torch.Tensor, boxes: torch.Tensor, mode: str) -> torch.Tensor:
    """Crop each clip's box out of all its frames and resize it back to the frame size.

    frames: (B, T, C, H, W) uint8. boxes: (B, 4) float, (left, top, right, bottom) in fractions of
    the frame, one box per clip (the same for all its frames and both modalities). mode:
    "bilinear" (RGB) or "nearest" (event images: red, blue and white stay pure).
    Returns (B, T, C, H, W) uint8. Sampling uses pixel centres (align_corners=False), as PIL's
    resize with a box does, so a full-frame box returns the frames unchanged.
    """
    B, T, C, H, W = frames.shape
    boxes = boxes.to(device=frames.device, dtype=torch.float32)
    # Normalised coordinates of the output pixel centres inside each box, in [-1, 1].
    ys = (torch.arange(H, device=frames.device, dtype=torch.float32) + 0.5) / H  # (H,)
    xs = (torch.arange(W, device=frames.device, dtype=torch.float32) + 0.5) / W  # (W,)
    left, top, right, bottom = boxes.unbind(-1)  # (B,) each
    gy = (top[:, None] + ys[None] * (bottom - top)[:, None]) * 2 - 1  # (B, H)
    gx = (left[:, None] + xs[None] * (right - left)[:, None]) * 2 - 1  # (B, W)
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)  # (B, H, W, 2)
    grid = grid.repeat_interleave(T, dim=0)  # (B*T, H, W, 2)
    out = F.grid_sample(
        frames.flatten(0, 1).float(), grid, mode=mode, padding_mode="border", align_corners=False
    )  # (B*T, C, H, W)
    return out.round_().clamp_(0, 255).to(torch.uint8).view(B, T, C, H, W)


def apply_device_crop(batch: dict, event_resize: str = "keep_events") -> dict:
    """Crop the batch's frames by its `crop_box` (if any) and drop the box: RGB bilinear; events
    nearest, or bilinear when `event_resize` (data.event_resize) is bilinear. A crop box lies inside
    the frame, so the crop is enlarged: nearest then shows every event pixel of the box."""
    if "crop_box" not in batch:
        return batch
    batch = dict(batch)
    boxes = batch.pop("crop_box")
    if "rgb" in batch:
        batch["rgb"] = crop_resize(batch["rgb"], boxes, "bilinear")
    if "events" in batch:
        batch["events"] = crop_resize(batch["events"], boxes, "bilinear" if event_resize == "bilinear" else "nearest")
    return batch
