"""Adapter checkpoints: only what was trained, plus the resolved config, in safetensors.

A checkpoint is megabytes (the original stored three full CLIP models, 1.88 GB): the frozen
backbone is rebuilt from `model.backbone` / `model.weights` of the stored config. Files are
written to a temporary name and renamed, so a crash never leaves a truncated checkpoint.
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from velora.config import Config, ConfigError

FORMAT = "velora-adapters/1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or does not fit the model."""


@dataclass
class AdapterCheckpoint:
    config: Config
    class_names: list[str]
    state: dict[str, torch.Tensor]
    info: dict


def save_adapters(path: str | Path, model, config: Config, class_names: list[str], info: dict | None = None) -> Path:
    """Write the trainable tensors of `model` and the metadata to `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.trainable_state_dict().items()}
    metadata = {
        "format": FORMAT,
        "config": json.dumps(config.to_dict()),
        "class_names": json.dumps(list(class_names)),
        "info": json.dumps(info or {}),
    }
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata=metadata)
    _sync(tmp)
    os.replace(tmp, path)
    return path


def _sync(path: Path) -> None:
    """Flush a written file to disk before it is renamed over the previous checkpoint."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's resume checkpoints (`checkpoints/last.ckpt`), written and read safely.

    Written to a temporary file, flushed and renamed, so a crash or `kill -9` mid-write leaves
    the previous checkpoint whole. Read with `torch.load(weights_only=True)`: a file holding
    anything but tensors and plain containers is refused instead of unpickled (which can run code).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def load_checkpoint(self, path, map_location: Any | None = None, weights_only: bool | None = None) -> dict:
        return read_resume_state(path)


def _unpickler_reason(exc: Exception) -> str:
    """What torch's weights-only unpickler refused, without its generic advice."""
    generic = ("Weights only load failed", "Check the documentation")
    lines = [line.split("WeightsUnpickler error:")[-1].strip() for line in str(exc).splitlines()]
    return "; ".join(line for line in lines if line and not line.startswith(generic)) or type(exc).__name__


def read_resume_state(path: str | Path) -> dict:
    """The resume state in `path`, loaded without executing code; CheckpointError if it cannot be."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"resume checkpoint '{path}' does not exist; give <output_dir>/checkpoints/last.ckpt of an earlier run"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged file makes torch's unpickler fail in many ways (IndexError, ...)
        reason = _unpickler_reason(exc)
        if isinstance(exc, pickle.UnpicklingError) and "GLOBAL" in str(exc):  # names a class or function
            raise CheckpointError(
                f"refusing to load resume checkpoint '{path}': it holds objects other than tensors and plain "
                f"containers, and unpickling them could run code ({reason}). Resume only from a "
                "checkpoints/last.ckpt written by velora train."
            ) from None
        raise CheckpointError(
            f"resume checkpoint '{path}' is unreadable (truncated or not a checkpoint): {reason}. "
            "Resume from an intact checkpoints/last.ckpt, or start the run again."
        ) from None
    if not isinstance(state, dict) or "velora_config" not in state:
        raise CheckpointError(f"'{path}' is not a velora resume checkpoint (no velora_config entry)")
    return state


def read_adapters(path: str | Path) -> AdapterCheckpoint:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist; give the .safetensors file written by velora train")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint '{path}' is not a readable safetensors file: {exc}") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(
            f"checkpoint '{path}' is not a velora adapter checkpoint (format {metadata.get('format')!r}, "
            f"expected {FORMAT!r})"
        )
    try:
        raw_config = json.loads(metadata.get("config", "null"))
        class_names = json.loads(metadata.get("class_names", "[]"))
        info = json.loads(metadata.get("info", "{}"))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"checkpoint '{path}' has corrupt metadata ({exc}); write it again with velora train") from None
    names_ok = isinstance(class_names, list) and all(isinstance(name, str) for name in class_names)
    if not isinstance(raw_config, dict) or not names_ok or not isinstance(info, dict):
        raise CheckpointError(
            f"checkpoint '{path}' has corrupt metadata (it needs a config mapping, a list of class names and "
            "an info mapping); write it again with velora train"
        )
    try:
        config = Config.from_dict(raw_config, source=f"{path} (stored config)")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
    return AdapterCheckpoint(config=config, class_names=class_names, state=state, info=info)


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the VELoRA model stored in an adapter checkpoint, ready for inference."""
    from velora.model.velora import VELoRA

    ckpt = read_adapters(path)
    model = VELoRA(ckpt.config)
    load_trainable(model, ckpt.state, str(path))
    return model.to(device).eval(), ckpt


def load_trainable(model, state: dict[str, torch.Tensor], source: str) -> None:
    expected = set(model.trainable_state_dict())
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        raise CheckpointError(
            f"{source} does not fit the model built from its config: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
    model.load_state_dict(state, strict=False)
