"""How fast a config trains here, measured on a few real batches before a run (`velora reproduce`).

`measure_throughput` runs the model on batches of the run's own loaders, as training reads them
(decoding, workers, device crop): `warmup` + `steps` training steps (forward, loss, backward,
AdamW) and as many evaluation batches (forward only), timed after the warmup. `estimate` turns the
seconds per clip into the expected wall time of an epoch (training, validation, the test split
when eval.test_every_epoch records it) and of the whole run with its final evaluation.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import time
from dataclasses import asdict, dataclass

import torch
from torch.utils.data import Dataset

from velora.config import Config
from velora.data.factory import make_dataset
from velora.model.velora import VELoRA
from velora.reproduce.report import format_duration
from velora.training.datamodule import ClipDataModule, make_loader
from velora.training.schedule import decay_groups

AUTOCAST = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


@dataclass
class Throughput:
    device: str  # e.g. "cuda (NVIDIA H100 80GB HBM3)" or "cpu"
    batch_size: int
    precision: str
    train_s_per_clip: float
    eval_s_per_clip: float


@dataclass
class Estimate:
    """Expected wall time in seconds: per epoch, and for the epochs left plus the final evaluation."""

    train_s: float  # one epoch's training steps
    val_s: float  # one validation pass
    test_s: float  # one pass over the test split (eval.test_every_epoch, and each final view)
    epochs_left: int
    final_eval_s: float  # the test split once per view, and once more with the single view
    epoch_s: float
    total_s: float

    def as_dict(self) -> dict:
        return {key: round(value, 1) if isinstance(value, float) else value for key, value in asdict(self).items()}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def _batches(dataset: Dataset, cfg: Config, count: int):
    """`count` batches of `dataset` in order, cycling when it has fewer."""
    loader = make_loader(dataset, cfg)
    return itertools.islice(itertools.chain.from_iterable(itertools.repeat(loader)), count)


def _on_device(batch: dict, data: ClipDataModule, device: torch.device) -> dict:
    batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
    moved = data.on_after_batch_transfer(batch, 0)
    assert moved is not None  # None only for a batch of None
    return moved


def _timed(batches, warmup: int, run, device: torch.device) -> float:
    """Seconds per clip of `run(batch)` over the batches after the first `warmup`."""
    clips, start = 0, None
    for index, batch in enumerate(batches):
        if batch is None:  # every clip of it skipped (data.bad_clips = skip)
            continue
        if index == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
        run(batch)
        if index >= warmup:
            clips += int(batch["label"].numel())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    assert start is not None and clips > 0, "measure_throughput needs at least warmup + 1 batches"
    return (time.perf_counter() - start) / clips


def measure_throughput(
    cfg: Config, data: ClipDataModule, model: VELoRA, device: torch.device, *, batch_size: int, warmup: int, steps: int
) -> Throughput:
    """Seconds per clip of training and of evaluation, timed on `steps` batches of `batch_size`
    after `warmup` batches (which absorb the loader's start, cuDNN's autotuning and the first
    kernel compilations). The model's trainable weights change: measure on a model built for it."""
    cfg = copy.deepcopy(cfg)
    cfg.train.batch_size = batch_size
    dtype = AUTOCAST.get(cfg.train.precision)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
    model = model.to(device)
    optimizer = torch.optim.AdamW(decay_groups(model, cfg.train.weight_decay), lr=cfg.train.lr)

    def train_step(batch: dict) -> None:
        batch = _on_device(batch, data, device)
        with autocast:
            out = model(batch.get("rgb"), batch.get("events"))
            loss = model.loss(out, batch["label"]).total
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def eval_step(batch: dict) -> None:
        batch = _on_device(batch, data, device)
        with autocast:
            model(batch.get("rgb"), batch.get("events"))

    model.train()
    train_s = _timed(_batches(data.train_set, cfg, warmup + steps), warmup, train_step, device)
    model.eval()
    eval_s = _timed(_batches(data.val_set, cfg, warmup + steps), warmup, eval_step, device)
    return Throughput(device_name(device), batch_size, cfg.train.precision, train_s, eval_s)


def estimate(throughput: Throughput, cfg: Config, data: ClipDataModule, epochs_left: int, views: int) -> Estimate:
    """Expected wall time of `epochs_left` epochs of `data`'s splits and a final evaluation of
    the test split with `views` views per clip (1: the single view only)."""
    eval_s, t = throughput.eval_s_per_clip, cfg.train
    val_s = len(data.val_set) * eval_s
    test_clips = len(data.eval_sets["test"]) if "test" in data.eval_sets else None
    test_s = (test_clips or 0) * eval_s
    train_s = len(data.train_set) * throughput.train_s_per_clip
    epoch_s = train_s + (val_s + test_s) / t.val_every
    if test_clips is None:  # the final evaluation still reads the test split
        test_s = len(make_dataset(cfg, "test", classes=data.class_names)) * eval_s
    final_eval_s = test_s * (1 + (views if views > 1 else 0))
    return Estimate(
        train_s=train_s,
        val_s=val_s,
        test_s=test_s,
        epochs_left=epochs_left,
        final_eval_s=final_eval_s,
        epoch_s=epoch_s,
        total_s=epochs_left * epoch_s + final_eval_s,
    )


def estimate_lines(throughput: Throughput, expected: Estimate) -> list[str]:
    per_epoch = f"training {format_duration(expected.train_s)}, validation {format_duration(expected.val_s)}"
    if expected.epoch_s > expected.train_s + expected.val_s + 1e-9:
        per_epoch += f", test split (the paper's protocol) {format_duration(expected.test_s)}"
    clips_s = (1 / throughput.train_s_per_clip, 1 / throughput.eval_s_per_clip)
    return [
        f"throughput on {throughput.device}, batch {throughput.batch_size}, {throughput.precision}: "
        f"{clips_s[0]:.3g} clips/s training, {clips_s[1]:.3g} clips/s evaluating",
        f"expected wall time: {format_duration(expected.epoch_s)} per epoch ({per_epoch}); "
        f"{expected.epochs_left} epoch(s) to go and the final evaluation ({format_duration(expected.final_eval_s)}): "
        f"about {format_duration(expected.total_s)} in all",
    ]


__all__ = ["Estimate", "Throughput", "estimate", "estimate_lines", "measure_throughput"]
