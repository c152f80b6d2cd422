"""The device-side random resized crop of the packed format."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from velora.data.augment import apply_device_crop, crop_resize


def test_full_frame_box_is_the_identity():
    frames = torch.randint(0, 256, (2, 3, 3, 16, 16), dtype=torch.uint8)
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 2)
    for mode in ("bilinear", "nearest"):
        assert torch.equal(crop_resize(frames, boxes, mode), frames)


def test_nearest_crop_matches_pil_and_keeps_colours_pure():
    rng = np.random.default_rng(0)
    palette = np.array([[255, 255, 255], [255, 0, 0], [0, 0, 255]], dtype=np.uint8)
    image = palette[rng.integers(0, 3, (32, 32))]  # an event image: white, red, blue only
    box = (0.25, 0.125, 0.75, 0.625)  # 16 x 16 pixels, resized back to 32 x 32
    frames = torch.from_numpy(image).permute(2, 0, 1)[None, None]  # (1, 1, 3, 32, 32)
    out = crop_resize(frames, torch.tensor([box]), "nearest")[0, 0].permute(1, 2, 0).numpy()
    expected = np.asarray(Image.fromarray(image).resize((32, 32), Image.Resampling.NEAREST, box=(8, 4, 24, 20)))
    assert np.array_equal(out, expected)
    assert set(map(tuple, out.reshape(-1, 3))) <= set(map(tuple, palette))


def test_one_box_per_clip_applies_to_all_its_frames_and_both_modalities():
    frames = torch.randint(0, 256, (2, 4, 3, 16, 16), dtype=torch.uint8)
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])
    batch = apply_device_crop({"rgb": frames, "events": frames.clone(), "crop_box": boxes, "label": torch.zeros(2)})
    assert "crop_box" not in batch and batch["rgb"].shape == frames.shape
    for clip in range(2):
        for t in range(4):  # each frame cropped by its own clip's box
            single = crop_resize(frames[clip : clip + 1, t : t + 1], boxes[clip : clip + 1], "nearest")
            assert torch.equal(batch["events"][clip, t], single[0, 0])
    # the two clips were cut differently
    assert not torch.equal(batch["rgb"][0], crop_resize(frames[:1], boxes[1:], "bilinear")[0])
