"""`velora.load`: a recognizer from whatever a user has, an adapter file, a run, a package, a hub
id or an exported ONNX file. Here, not in recognizer.py, so that the two recognizers need not
import each other (OnnxRecognizer is a Recognizer)."""

from __future__ import annotations

from pathlib import Path

import torch

from velora.errors import CheckpointError
from velora.evaluation.onnx_recognizer import OnnxRecognizer
from velora.evaluation.package import model_file
from velora.evaluation.recognizer import Recognizer
from velora.model.adapter_file import load_model


def load(
    path_or_id: str | Path, *, device: str | torch.device = "cpu", weights: str | Path | None = None
) -> Recognizer:
    """A Recognizer from any of:
    - a training run's folder (its best.safetensors) or an adapter file (.safetensors);
    - a folder written by `velora package` (its adapters.safetensors), or `hf:org/name[@revision]`,
      such a folder on the Hugging Face hub, fetched through the hub's cache (HF_HUB_OFFLINE,
      HF_HUB_CACHE and HF_HOME are read at the call);
    - an ONNX file written by `velora export`: an OnnxRecognizer, run by onnxruntime, with no torch
      model built.
    weights: the frozen backbone's weights, instead of the stored config's model.weights (for a
      model trained on a local file that is elsewhere on this machine; its sha256 is checked).
    """
    path = model_file(path_or_id)
    if path.suffix == ".onnx":
        if weights is not None:
            raise CheckpointError(
                f"'{path}' is an ONNX file, which holds its backbone weights; weights= is for adapter files"
            )
        return OnnxRecognizer(path, device=device)
    model, checkpoint = load_model(path, device, weights)
    return Recognizer(model, checkpoint, path, device)
