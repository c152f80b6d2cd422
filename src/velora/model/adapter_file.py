"""Adapter files: only what was trained, plus the resolved config and class names, in safetensors.

An adapter file is megabytes (the original stored three full CLIP models, 1.88 GB): the frozen
backbone is rebuilt from `model.backbone` / `model.weights` of the stored config. Files are
written to a temporary name, flushed and renamed (velora.files), so a crash or a full disk never
leaves a truncated file.
Training writes them (`best.safetensors`, `last.safetensors`); evaluation, prediction and the
demo read them with `load_model`.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from velora.config import Config, ConfigError, merge, stored_config
from velora.errors import CheckpointError
from velora.files import write_atomically

FORMAT = "velora-adapters/1"


@dataclass
class AdapterCheckpoint:
    config: Config
    class_names: list[str]
    state: dict[str, torch.Tensor]
    info: dict
    weights_source: dict  # the backbone weights it was trained on (velora.model.weights_source); {} in old files


def save_adapters(path: str | Path, model, config: Config, class_names: list[str], info: dict | None = None) -> Path:
    """Write the trainable tensors of `model` and the metadata to `path` atomically (velora.files): a
    write that fails raises OutputError and leaves the previous file whole."""
    path = Path(path)
    state = {k: v.detach().contiguous().cpu() for k, v in model.trainable_state_dict().items()}
    metadata = {
        "format": FORMAT,
        "config": json.dumps(config.to_dict()),
        "class_names": json.dumps(list(class_names)),
        "info": json.dumps(info or {}),
        "weights_source": json.dumps(getattr(model, "weights_source", {})),
    }
    return write_atomically(
        path,
        lambda tmp: save_file(state, str(tmp), metadata=metadata),
        "adapter file",
        errors=(OSError, SafetensorError),
    )


def read_adapters(path: str | Path) -> AdapterCheckpoint:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist; give the .safetensors file written by velora train")
    try:
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
        source = json.loads(metadata.get("weights_source", "{}"))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(
            f"checkpoint '{path}' has corrupt metadata ({exc}); write it again with velora train"
        ) from None
    names_ok = isinstance(class_names, list) and all(isinstance(name, str) for name in class_names)
    if not isinstance(raw_config, dict) or not names_ok or not isinstance(info, dict) or not isinstance(source, dict):
        raise CheckpointError(
            f"checkpoint '{path}' has corrupt metadata (it needs a config mapping, a list of class names and "
            "an info mapping); write it again with velora train"
        )
    try:
        config = stored_config(raw_config, source=f"{path} (stored config)")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
    return AdapterCheckpoint(config=config, class_names=class_names, state=state, info=info, weights_source=source)


def load_model(path: str | Path, device: str | torch.device = "cpu", weights: str | Path | None = None):
    """Rebuild the VELoRA model stored in an adapter checkpoint, ready for inference.

    weights: backbone weights to use instead of the stored config's model.weights (a file, hub,
        shipped:<name>), e.g. where the file it was trained on sits at another path; the returned
        checkpoint's config says which. A file with another sha256 than the recorded one warns.
    """
    from velora.model.velora import VELoRA

    ckpt = read_adapters(path)
    if weights is not None:
        raw = merge(ckpt.config.to_dict(), {"model": {"weights": str(weights)}})
        ckpt.config = Config.from_dict(raw, source=f"{path} (stored config) with model.weights={weights}")
    model = VELoRA.from_config(ckpt.config)
    load_trainable(model, ckpt.state, str(path))
    trained_on, now = ckpt.weights_source.get("sha256"), model.weights_source.get("sha256")
    if trained_on and now and trained_on != now:
        warnings.warn(
            f"{path} was trained on backbone weights with sha256 {trained_on[:16]}..., but "
            f"{model.weights_source.get('path')} has sha256 {now[:16]}...: its predictions may be wrong",
            stacklevel=2,
        )
    return model.to(device).eval(), ckpt


# Trainable tensors renamed since adapter files were first written: (old prefix, new prefix).
RENAMED = (
    ("shared_rgb.", "fusion.shared_rgb."),
    ("shared_event.", "fusion.shared_event."),
    ("fusion_blocks.", "fusion.blocks."),
)


def migrate_keys(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """`state` with the names of files written before the high-level part moved to model/fusion.py."""
    out = {}
    for key, value in state.items():
        for old, new in RENAMED:
            if key.startswith(prefix + old):
                key = prefix + new + key[len(prefix + old) :]
                break
        out[key] = value
    return out


def load_trainable(model, state: dict[str, torch.Tensor], source: str) -> None:
    state = migrate_keys(state)
    expected = set(model.trainable_state_dict())
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        raise CheckpointError(
            f"{source} does not fit the model built from its config: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
    model.load_state_dict(state, strict=False)
