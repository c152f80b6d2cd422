"""An ONNX file written by `velora export`, run by onnxruntime behind the Recognizer interface.

    recognizer = velora.load("model.onnx")          # an OnnxRecognizer; no torch model is built
    recognizer.predict("data/PokerEvent/<class>/<sample>")

Everything it needs is in the file's metadata (`metadata_props`, written by velora.export.onnx):
the training config, the class names and the weights source. Inputs are read exactly as by a
Recognizer (its `item`: the dataset readers of velora.data, at the config's frames and size); only
the forward pass differs. The file's graph takes `rgb` and `events`, uint8 (batch, T, 3, S, S); a
missing sensor is an empty array (batch 0), which selects the graph without that stream.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from velora.config import ConfigError, stored_config
from velora.errors import CheckpointError
from velora.evaluation.recognizer import Recognizer

FORMAT = "velora-onnx/1"
EXTRA = "pip install 'velora-rgbe[onnx]'"


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise CheckpointError(f"running an ONNX file needs onnxruntime, which is not installed: {EXTRA}") from None
    return onnxruntime


def providers(device: str | torch.device) -> list:
    """onnxruntime's execution providers for a torch-style device name ('cpu', 'cuda', 'cuda:1')."""
    ort = import_onnxruntime()
    device = torch.device(device)
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    raise CheckpointError(
        f"onnxruntime cannot run on '{device}' here (its providers: {', '.join(ort.get_available_providers())}); "
        "use device='cpu', or install onnxruntime-gpu for CUDA"
    )


class OnnxRecognizer(Recognizer):
    """A velora ONNX file with its class names, config and weights source, ready to predict.

    session: the onnxruntime InferenceSession; metadata: the file's velora metadata (opset,
    velora version, merged or not, ...); threads: onnxruntime's intra-op threads (default: its
    own choice). `evaluate` is not available: evaluate the adapter file.
    """

    fixed_clip_length = True  # the graph's T is fixed at export (its batch is the one dynamic axis)

    def __init__(self, path: str | Path, device: str | torch.device = "cpu", threads: int | None = None):
        ort = import_onnxruntime()
        path = Path(path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        chosen = providers(device)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=chosen)
        except Exception as error:  # onnxruntime raises its own classes for unreadable or invalid files
            raise CheckpointError(f"'{path}' is not a readable ONNX file ({type(error).__name__}: {error})") from None
        self.metadata = read_metadata(self.session, path)
        self.model = None
        self.saved = None
        metadata = self.metadata
        self._attach(
            metadata.pop("config"), metadata.pop("class_names"), metadata.pop("weights_source", {}), path, device
        )
        self.inputs = {i.name: i for i in self.session.get_inputs()}

    def _repr_details(self) -> str:
        merged = ", merged" if self.metadata.get("merged") else ""
        return f", opset {self.metadata.get('opset')}{merged}"

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Class scores (B, classes): the file's graph on the batch; an input the batch lacks is fed
        as an empty array (its missing-modality graph)."""
        extra = sorted(set(batch) - set(self.inputs))
        if extra:
            raise ValueError(
                f"this model was trained on {'+'.join(self.config.model.modalities)} only and has no {extra[0]} input; "
                "leave it out"
            )
        present = next(iter(batch.values()))
        empty = np.zeros((0, *present.shape[1:]), dtype=np.uint8)
        feeds = {name: batch[name].numpy() if name in batch else empty for name in self.inputs}
        (logits,) = self.session.run(["logits"], feeds)
        return torch.from_numpy(logits)

    def evaluate(self, split: str = "test", **options) -> dict:
        raise CheckpointError(
            f"velora eval runs on the adapter file, not on an ONNX file ('{self.checkpoint}'): evaluate the "
            "checkpoint it was exported from; predictions from the two agree to 1e-4 (velora export checks it)"
        )


JSON_KEYS = ("config", "class_names", "weights_source", "info", "inputs")  # the other values are plain strings


def read_metadata(session, path: Path) -> dict:
    """The velora metadata of an ONNX session's file: config (a Config), class_names,
    weights_source, info, inputs, and the export's record as strings (velora_version, opset,
    merged, cases, ...). CheckpointError for a file velora did not write."""
    props = dict(session.get_modelmeta().custom_metadata_map)
    if props.get("format") != FORMAT:
        raise CheckpointError(
            f"'{path}' is an ONNX file, but not one written by velora export (format {props.get('format')!r} in its "
            f"metadata, expected {FORMAT!r}); export the adapter checkpoint with: velora export CHECKPOINT model.onnx"
        )
    try:
        meta = {key: json.loads(value) if key in JSON_KEYS else value for key, value in props.items()}
        meta["config"] = stored_config(meta["config"], source=f"{path} (stored config)")
        names = meta["class_names"]
    except (json.JSONDecodeError, KeyError, ConfigError) as exc:
        raise CheckpointError(
            f"'{path}' has corrupt velora metadata ({exc}); export it again with velora export"
        ) from None
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise CheckpointError(f"'{path}' has corrupt velora metadata (class_names); export it again with velora export")
    meta["merged"] = meta.get("merged") == "true"
    return meta
