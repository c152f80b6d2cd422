"""One progress bar, with an ETA, for the whole demo: data, packing, every training, the report.

Work is counted in units of about one backbone image pass (see velora.demo.jobs): each stage
knows its total in advance, so the bar's ETA covers the whole run from the first clip on.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import lightning as L
from tqdm import tqdm

# Rough cost of one image through the backbone, in work units (about 0.4 ms of one core here),
# so that the bar's ETA holds across stages and jobs of different kinds; only the ratios matter
# (measured on the demo model, benchmarks/demo_speed.md).
UNITS_FORWARD = 1.0  # one image, forward only (validation, evaluation)
UNITS_TRAIN = 3.0  # one image, forward + backward + optimizer, frozen backbone
UNITS_TRAIN_FULL = 4.0  # the same with every backbone weight trained
UNITS_PER_EPOCH = 400.0  # Lightning's per-epoch work: loaders, validation start, checkpoints, curves
UNITS_PER_JOB = 1500.0  # process start-up share, model build, Trainer set-up, evaluation files
UNITS_PER_FRAME = 12.0  # rendering one frame (RGB exposure + DVS simulation) and writing its PNGs
UNITS_PER_PACKED_CLIP = 5.0  # decoding a clip's PNGs into the packed shards
UNITS_REPORT = 2500.0  # the report: panel, confusion matrix, curves, table


class DemoBar:
    """The demo's bar: named parts, each with its units done; the bar shows their sum."""

    def __init__(self, total_units: float, enabled: bool = True):
        self.done: dict[str, float] = {}
        self.bar = tqdm(
            total=round(total_units),
            desc="velora demo",
            unit="u",
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} elapsed, about {remaining} left{postfix}",
            smoothing=0.05,
            # in a log file (CI) a line every 30 s, not ten a second
            mininterval=0.1 if sys.stderr.isatty() else 30.0,
            disable=not enabled,
        )

    def set(self, part: str, units: float) -> None:
        """Record that `part` has done `units` so far (never goes back)."""
        self.done[part] = max(units, self.done.get(part, 0.0))
        target = min(round(sum(self.done.values())), self.bar.total)
        if target > self.bar.n:
            self.bar.update(target - self.bar.n)  # redraws at most every mininterval

    def add(self, part: str, units: float) -> None:
        self.set(part, self.done.get(part, 0.0) + units)

    def stage(self, text: str) -> None:
        self.bar.set_postfix_str(text)

    def write(self, text: str) -> None:
        """Print a line above the bar."""
        self.bar.write(text) if not self.bar.disable else print(text)

    def close(self) -> None:
        self.bar.close()


def images_per_clip(cfg) -> int:
    """Backbone images per clip: T per modality, plus T-1 frame differences when the model has that stream."""
    T = cfg.data.num_frames
    images = len(cfg.data.modalities) * T
    if cfg.lora.rank > 0 and cfg.model.frame_diff and T > 1:
        images += T - 1
    return images


def job_units(cfg, clips: dict[str, int], evaluate: bool) -> float:
    """Estimated work of training `cfg` on `clips` (clips per split) and, if asked, evaluating it."""
    images = images_per_clip(cfg)
    per_epoch = clips["train"] * train_units_per_clip(cfg) + clips["val"] * images * UNITS_FORWARD + UNITS_PER_EPOCH
    units = cfg.train.epochs * per_epoch + UNITS_PER_JOB
    if evaluate:
        evaluations = 3 if len(cfg.data.modalities) == 2 else 1  # both sensors, then each one missing
        units += evaluations * clips["test"] * images * UNITS_FORWARD
    return units


def train_units_per_clip(cfg) -> float:
    """Work units of one training clip (see job_units)."""
    if cfg.lora.rank == 0 and not cfg.model.finetune_backbone:
        cost = UNITS_FORWARD  # a linear probe: nothing behind the head needs gradients
    else:
        cost = UNITS_TRAIN_FULL if cfg.model.finetune_backbone else UNITS_TRAIN
    return images_per_clip(cfg) * cost


class UnitsCallback(L.Callback):
    """Counts a training's work in units and sends the running total, at most twice a second."""

    def __init__(self, cfg, send: Callable[[float], None], interval_s: float = 0.5):
        self.train_per_clip = train_units_per_clip(cfg)
        self.forward_per_clip = images_per_clip(cfg) * UNITS_FORWARD
        self.send, self.interval_s = send, interval_s
        self.units_done = 0.0
        self.last_sent = 0.0

    def _report(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last_sent >= self.interval_s:
            self.send(self.units_done)
            self.last_sent = now

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx: int) -> None:
        self.units_done += len(batch["label"]) * self.train_per_clip
        self._report()

    def on_validation_batch_end(self, trainer, module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch is not None:
            self.units_done += len(batch["label"]) * self.forward_per_clip
            self._report()

    def on_train_epoch_end(self, trainer, module) -> None:
        self.units_done += UNITS_PER_EPOCH
        self._report(force=True)
