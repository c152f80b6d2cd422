"""Random inputs for the before/after scripts (op_count.py, cpu_step_time.py).

Kept out of the package on purpose: those scripts also run against older checkouts
(PYTHONPATH=<checkout>/src), which need not have any helper of this one.
"""

import torch


def random_clips(cfg, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random uint8 RGB and event clips (B, T, 3, S, S) of the config's shape, and random labels."""
    shape = (batch_size, cfg.data.num_frames, 3, cfg.model.image_size, cfg.model.image_size)
    rgb = torch.randint(0, 256, shape, dtype=torch.uint8)
    events = torch.randint(0, 256, shape, dtype=torch.uint8)
    labels = torch.randint(0, cfg.model.num_classes, (batch_size,))
    return rgb, events, labels
