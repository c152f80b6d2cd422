"""`velora stream --reuse-frames`: each frame's low-level tokens computed once, for every window it is in.

Consecutive windows of a stream share all but `hop` of their T samples. Before the high-level
fusion blocks, VELoRA treats every image on its own (an RGB frame, an event image, a frame
difference through the low-level blocks with its stream's adapter, then the mean over the T
samples: velora.model.velora), so the tokens of a sample's images can be kept and reused by the next
windows; only the new samples' images go through the low-level blocks, then the mean, fusion and
head run on the whole window. With T = 4 and a prediction every frame that is 3 images per window
instead of 11.

The result equals the full forward pass up to float rounding (the images are batched differently:
a few 1e-7 in the probabilities), not bit for bit, which is why it is an option.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

from velora.data.names import BATCH_KEY
from velora.model.velora import VELoRA


class FrameTokens:
    """Low-level tokens of the recent samples' images, keyed by the sample (its time bounds)."""

    def __init__(self, model: VELoRA, device: torch.device, keep: int):
        self.model, self.device, self.keep = model, device, keep
        self.tokens: OrderedDict[tuple, torch.Tensor] = OrderedDict()  # (stream, sample key(s)) -> (N, D)

    @torch.inference_mode()
    def probabilities(self, item: dict[str, torch.Tensor], keys: list[tuple], modalities: list[str]) -> np.ndarray:
        """Class probabilities (C,) of one window: `item` as WindowEncoder.item gives it (T samples per
        fed modality), `keys` the T samples' keys, `modalities` the fed ones ("rgb", "event")."""
        model = self.model
        frames = {m: model.normalize(item[BATCH_KEY[m]][None].to(self.device))[0] for m in modalities}  # (T, 3, S, S)
        wanted: dict[str, list[tuple]] = {m: [(m, key) for key in keys] for m in modalities}
        if model.uses_frame_difference(len(keys)):
            wanted["diff"] = [("diff", tuple(modalities), keys[j], keys[j + 1]) for j in range(len(keys) - 1)]

        missing: dict[str, list[tuple[int, tuple]]] = {}
        for stream, names in wanted.items():
            for j, name in enumerate(names):
                if name not in self.tokens:
                    missing.setdefault(stream, []).append((j, name))
        if missing:
            images = {}
            for stream, todo in missing.items():
                if stream == "diff":  # |f(j+1) - f(j)| summed over the fed modalities, as the model does
                    diffs = [[(frames[m][j + 1] - frames[m][j]).abs() for m in modalities] for j, _ in todo]
                    images[stream] = torch.stack([sum(d[1:], start=d[0]) for d in diffs])
                else:
                    images[stream] = frames[stream][[j for j, _ in todo]]
            for stream, out in model.encode_images(images).items():
                for (_, name), tokens in zip(missing[stream], out):
                    self.tokens[name] = tokens
        for names in wanted.values():
            for name in names:
                self.tokens.move_to_end(name)
        while len(self.tokens) > self.keep:
            self.tokens.popitem(last=False)

        means = {
            stream: torch.stack([self.tokens[name] for name in names])[None].mean(dim=1)
            for stream, names in wanted.items()
        }
        logits = model.forward_head(model.features_from_low(means))
        return logits.float().softmax(-1)[0].cpu().numpy()
