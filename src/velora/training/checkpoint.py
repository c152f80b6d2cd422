"""The resume state `checkpoints/last.ckpt`: Lightning's full training state, written and read safely.

Adapter files (best/last.safetensors) are velora.model.adapter_file; this module is only the
state a run resumes from (trainable tensors, optimizer, schedule, counters).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from velora.errors import CheckpointError
from velora.files import write_atomically


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's resume checkpoints (`checkpoints/last.ckpt`), written and read safely.

    Written to a temporary file, flushed and renamed (velora.files), so a crash, `kill -9` or a
    full disk mid-write leaves the previous checkpoint whole (a failed write raises OutputError).
    Read with `torch.load(weights_only=True)`: a file holding anything but tensors and plain
    containers is refused instead of unpickled (which can run code).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)

        write_atomically(path, write, "resume checkpoint")

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
