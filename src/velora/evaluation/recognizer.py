"""The Python API: `velora.load(...)` gives a `Recognizer`; `recognizer.predict(...)` gives top-k.

    import velora
    recognizer = velora.load("runs/poker/best.safetensors")     # or the run folder, a package, hf:org/name, an .onnx
    print(recognizer.predict("data/PokerEvent/<class>/<sample>"))  # a clip folder
    recognizer.predict(["a.aedat4", "b.aedat4"], top_k=3)           # several: one batched forward

`predict` takes what a user has at hand, one or a list of:
- a clip folder (`<sample>/` with `<sample>_aps/`, `<sample>_dvs/`), a raw `.aedat4` recording, or
  (for a model trained on event files) an event file: read exactly as the training data was;
- a decoded `Recording` (APS frames + events) or an `EventStream` (events only: a model with RGB
  takes its missing-modality path, and this is said once);
- uint8 arrays: `{"rgb": frames, "events": event_images}` with (T, H, W, 3) or (T, 3, H, W)
  frames, either key optional; T frames are sampled as in evaluation and resized to the model's
  size.
It returns a `Prediction` (top-k labels and scores) per input. `velora predict` and `velora eval`
run through this class. An ONNX file written by `velora export` loads as an `OnnxRecognizer`
(velora.evaluation.onnx_recognizer): the same inputs, read the same way, run by onnxruntime.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from velora.config import Config
from velora.data.event_only import event_frames
from velora.data.factory import clip_dataset, clip_sampling
from velora.data.recordings import recording_frames
from velora.data.sampling import segment_indices
from velora.evaluation.evaluate import data_config, evaluate_model
from velora.evaluation.metrics import topk_indices
from velora.evaluation.panel import panel_row, plot_prediction_panel
from velora.events.aedat4 import Recording
from velora.events.render import EventStream
from velora.events.resize import resize_event_image
from velora.model.adapter_file import AdapterCheckpoint
from velora.model.velora import VELoRA


@dataclass
class Prediction:
    """The top-k of one input: class names and probabilities, best first."""

    source: str  # the path, or a description of an in-memory input
    topk: list[tuple[str, float]]
    ground_truth: str | None = None

    @property
    def label(self) -> str:
        return self.topk[0][0]

    @property
    def labels(self) -> list[str]:
        return [name for name, _ in self.topk]

    @property
    def scores(self) -> list[float]:
        return [score for _, score in self.topk]

    def as_dict(self) -> dict:
        return {"clip": self.source, "topk": [list(pair) for pair in self.topk], "ground_truth": self.ground_truth}


class Recognizer:
    """A trained VELoRA model with its class names, config and weights source, ready to predict.

    model: the VELoRA module (eval mode); class_names: in label order; config: the resolved
    training config; weights_source: the backbone weights it was trained on (hub id, tag, sha256
    or path); checkpoint: the adapter file it was loaded from.
    """

    # Runs each clip as one whole (a graph exported for a fixed T, e.g. OnnxRecognizer), so a
    # caller cannot feed it clips of another length or parts of a clip.
    fixed_clip_length = False

    # None in a recognizer that runs an exported graph instead (OnnxRecognizer)
    model: VELoRA | None
    saved: AdapterCheckpoint | None

    def __init__(self, model: VELoRA, checkpoint: AdapterCheckpoint, path: Path, device: str | torch.device = "cpu"):
        self.model = model
        self.saved = checkpoint
        weights_source = checkpoint.weights_source or model.weights_source
        self._attach(checkpoint.config, checkpoint.class_names, weights_source, path, device)

    def _attach(
        self, config: Config, class_names, weights_source: dict, path: Path, device: str | torch.device
    ) -> None:
        """The fields of every recognizer, whatever runs it."""
        self.config: Config = config
        self.class_names = list(class_names)
        self.weights_source = weights_source
        self.checkpoint = path
        self.device = torch.device(device)
        self._said_missing = False

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.checkpoint}, {len(self.class_names)} classes, modalities "
            f"{'+'.join(self.config.model.modalities)}, {self.config.model.backbone}{self._repr_details()})"
        )

    def _repr_details(self) -> str:
        return ""

    # ------------------------------------------------------------------ inputs
    def item(self, source, config: Config | None = None) -> dict[str, torch.Tensor]:
        """One input as a dataset item: {"rgb"?: (T, 3, S, S), "events"?: (T, 3, S, S)} uint8."""
        cfg = config or self.config
        if isinstance(source, (str, Path)):
            return clip_dataset(Path(source), cfg)[0]
        sampling = clip_sampling(cfg)
        modalities = [m for m in cfg.data.modalities]
        if isinstance(source, Recording):
            if len(source.aps_frames) < 2:
                return self.item(source.events, cfg)
            draw = sampling.draw(0, 0, len(source.aps_frames) - 1, modalities)
            return recording_frames(
                source, draw, cfg.model.image_size, modalities, cfg.data.representation, cfg.data.event_resize
            )
        if isinstance(source, EventStream):
            d = cfg.data
            frames = event_frames(
                source, sampling, None, d.event_window, d.event_window_us or None, d.event_resize, d.representation
            )
            return {"events": frames}
        if isinstance(source, dict):
            unknown = set(source) - {"rgb", "events"}
            if unknown or not source:
                raise ValueError(f"an array input is a dict with keys 'rgb' and/or 'events', got {sorted(source)}")
            return {key: self._frames(np.asarray(value), key, cfg) for key, value in source.items()}
        raise TypeError(
            f"cannot predict from {type(source).__name__}: give a clip folder or file path, a Recording, an "
            "EventStream, or a dict of uint8 arrays {'rgb': ..., 'events': ...}"
        )

    def _frames(self, frames: np.ndarray, key: str, config: Config) -> torch.Tensor:
        """uint8 (T, H, W, 3) or (T, 3, H, W) -> the model's T frames, (T, 3, S, S) uint8: RGB resized
        bilinearly, event images by data.event_resize, as the datasets do."""
        if frames.dtype != np.uint8 or frames.ndim != 4 or 3 not in (frames.shape[1], frames.shape[3]):
            raise ValueError(
                f"'{key}' must be uint8 frames (T, H, W, 3) or (T, 3, H, W), got {frames.dtype} {frames.shape}"
            )
        clip = torch.from_numpy(np.ascontiguousarray(frames))
        if clip.shape[1] != 3:
            clip = clip.permute(0, 3, 1, 2)
        picked = segment_indices(len(clip), config.data.num_frames, random_offset=False)
        clip = clip[torch.from_numpy(picked)]
        size = config.model.image_size
        if key == "rgb":
            resized = F.interpolate(clip.float(), size=(size, size), mode="bilinear", antialias=True)
            return resized.round().clamp(0, 255).to(torch.uint8)
        images = clip.permute(0, 2, 3, 1).numpy()  # (T, H, W, 3)
        event_images = np.stack([resize_event_image(image, size, None, config.data.event_resize) for image in images])
        return torch.from_numpy(event_images).permute(0, 3, 1, 2).contiguous()

    # ------------------------------------------------------------------ predictions
    @torch.no_grad()
    def probabilities(self, items: Sequence[dict], expected: Sequence[str] | None = None) -> np.ndarray:
        """Class probabilities (N, C) of dataset items, in batches of train.batch_size with the
        same modalities; a modality the model has but an item lacks takes the missing-modality path
        (said once, unless `expected`, the modalities asked for, leaves it out anyway)."""
        out = np.zeros((len(items), len(self.class_names)), dtype=np.float32)
        groups: dict[tuple, list[int]] = {}
        for i, item in enumerate(items):
            groups.setdefault(tuple(k for k in ("rgb", "events") if k in item), []).append(i)
        for keys, indices in groups.items():
            wanted = {"rgb" if m == "rgb" else "events" for m in (expected or self.config.model.modalities)}
            if not wanted <= set(keys) and not self._said_missing:
                warnings.warn(
                    f"input without {'RGB' if 'rgb' not in keys else 'events'}: the model (trained on "
                    f"{'+'.join(self.config.model.modalities)}) takes its missing-modality path",
                    stacklevel=3,
                )
                self._said_missing = True
            for start in range(0, len(indices), self.config.train.batch_size):
                chunk = indices[start : start + self.config.train.batch_size]
                batch = {k: torch.stack([items[i][k] for i in chunk]) for k in keys}
                out[chunk] = self.logits(batch).float().softmax(-1).cpu().numpy()
        return out

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Class scores (B, classes) of a batch {"rgb"?: (B, T, 3, S, S), "events"?: ...} uint8."""
        assert self.model is not None  # a recognizer without one overrides this
        return self.model(*(batch[k].to(self.device) if k in batch else None for k in ("rgb", "events"))).logits

    def predict(
        self,
        inputs,
        *,
        top_k: int = 5,
        modalities: Sequence[str] | None = None,
        ground_truths: Sequence[str | None] | None = None,
        panel: str | Path | None = None,
    ) -> Prediction | list[Prediction]:
        """Top-k of one input (a Prediction) or of a list of inputs (a list, one batched pass).

        modalities: a subset of the model's, to predict as if a sensor were missing.
        ground_truths: one per input (None: unknown); when not given, a clip inside a folder named
            after one of the model's classes (<class>/<sample>) has that class as its ground truth.
        panel: write a prediction panel PNG, one row per input (RGB frames, event frames, top-k).
        """
        single = not isinstance(inputs, (list, tuple))
        sources = [inputs] if single else list(inputs)
        config = self.data_config(modalities=list(modalities)) if modalities else self.config
        items = [self.item(source, config) for source in sources]
        probs = self.probabilities(items, config.data.modalities)
        ranked = topk_indices(probs, min(top_k, probs.shape[1]))
        if ground_truths is None:
            ground_truths = [folder_class(s, self.class_names) if isinstance(s, (str, Path)) else None for s in sources]
        predictions = [
            Prediction(
                source=str(s) if isinstance(s, (str, Path)) else f"{type(s).__name__} {i}",
                topk=[(self.class_names[c], float(probs[i, c])) for c in ranked[i]],
                ground_truth=truth,
            )
            for i, (s, truth) in enumerate(zip(sources, ground_truths, strict=True))
        ]
        if panel:
            plot_prediction_panel(
                [panel_row(item, p.topk, p.ground_truth) for item, p in zip(items, predictions)], panel
            )
        return predictions[0] if single else predictions

    def data_config(self, **options) -> Config:
        """The training config with other data settings (see velora.evaluation.evaluate.data_config)."""
        return data_config(self.config, **options)

    def evaluate(self, split: str = "test", **options) -> dict:
        """Top-1, top-5, per-class accuracy and confusion matrix on a split, written next to the
        checkpoint (options: those of velora.evaluation.evaluate.evaluate_model)."""
        assert self.model is not None and self.saved is not None  # a recognizer without them overrides this
        return evaluate_model(self.model, self.saved, self.checkpoint, split=split, **options)


def folder_class(clip: str | Path, class_names: list[str]) -> str | None:
    """The class a clip's folder is named after (<class>/<sample>, as datasets are laid out), if any."""
    folder = Path(clip).resolve().parent.name
    return folder if folder in class_names else None
