"""The LightningDataModule: train / val / test splits of a PokerEvent-layout dataset."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from velora.config import Config
from velora.data.augment import apply_device_crop
from velora.data.factory import label_file, layout, loader_collate, make_dataset
from velora.data.sampling import SampledClips
from velora.data.skipping import SkipBadClips
from velora.errors import DataError


def require_val_split(cfg: Config) -> None:
    """Stop before any work when the validation list is missing, with the command that makes one."""
    d, kind = cfg.data, layout(cfg)
    if d.format == "packed" or not kind.label_files or not d.root:  # no label files
        return  # packed data has its splits inside; recordings their <root>/val folder
    if not Path(d.root).is_dir():
        raise DataError(
            f"data.root {d.root} does not exist or is not a folder; set data.root to the folder that holds the "
            "class folders and the label files"
        )
    val = label_file(cfg, "val")
    if not val.is_file():
        source = kind.split_arguments()
        raise DataError(
            f"the validation list {val} (data.val_labels) does not exist, and model selection needs one (never "
            f"the test split). Make it from the training list: velora split {d.root} {source}--val-fraction 0.1 "
            f"(writes val_label.txt and train_split_label.txt), then train with "
            f"data.train_labels=train_split_label.txt data.val_labels=val_label.txt"
        )


class EpochShuffleSampler(Sampler[int]):
    """This rank's share of a random order that depends only on (seed, epoch), resumable mid-epoch.

    Rank r of W takes every W-th index of the epoch's permutation; the permutation wraps around
    to a multiple of W so that every rank runs the same number of steps (DDP needs it).
    `skip(epoch)` says how many of this rank's indices were already trained: it is asked when an
    epoch's iteration begins, after Lightning has restored a resumed run's counters (the loader
    itself is built before that). The length stays that of the whole epoch, so Lightning's batch
    counters keep their meaning.
    """

    def __init__(
        self, length: int, seed: int, rank: int = 0, world_size: int = 1, skip: Callable[[int], int] | None = None
    ):
        self.length, self.seed, self.epoch = length, seed, 0
        self.rank, self.world_size = rank, world_size
        self.skip = skip

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.length, generator=generator).tolist()
        padded = len(self) * self.world_size
        order = (order * (padded // max(1, self.length) + 1))[:padded]  # repeats < world_size clips
        start = self.skip(self.epoch) if self.skip else 0
        return iter(order[self.rank :: self.world_size][start:])

    def __len__(self) -> int:
        return math.ceil(self.length / self.world_size)


class ShardSampler(Sampler[int]):
    """Rank r of W evaluates clips r, r+W, r+2W, ...: every clip exactly once over all ranks.

    (torch's DistributedSampler pads the last shard with repeated clips, which would count them
    twice in a global accuracy.)
    """

    def __init__(self, length: int, rank: int = 0, world_size: int = 1):
        self.indices = range(rank, length, world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def make_loader(dataset: Dataset, cfg: Config, sampler: Sampler | None = None) -> DataLoader:
    workers = cfg.data.num_workers
    return DataLoader(
        dataset,
        batch_size=cfg.train.batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        # Workers are re-created each epoch so they see the dataset's new epoch (augmentation seed).
        persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
        drop_last=False,
        collate_fn=loader_collate(dataset),
    )


class ClipDataModule(L.LightningDataModule):
    """Train and val splits, and the test split with eval.test_every_epoch (the paper's protocol,
    recorded for comparison only); with data.bad_clips = skip each is wrapped in SkipBadClips.

    The validation loop runs over `eval_splits` in order: "val" (dataloader 0, model selection),
    then "test" when eval.test_every_epoch is set.
    """

    def __init__(self, cfg: Config, skip_log: Path | None = None):
        super().__init__()
        self.cfg = cfg
        require_val_split(cfg)
        # Count the classes before checking label ranges, so a wrong model.num_classes gets the
        # message that names the right value.
        train_set = make_dataset(cfg, "train", train=True, check_labels=False)
        self.class_names = train_set.class_names
        if len(self.class_names) != cfg.model.num_classes:
            raise DataError(
                f"the dataset at {cfg.data.root} has {len(self.class_names)} classes but "
                f"model.num_classes is {cfg.model.num_classes}; set model.num_classes={len(self.class_names)}"
            )
        eval_sets = {split: make_dataset(cfg, split, classes=self.class_names) for split in eval_splits(cfg)}
        self.train_set: SampledClips | SkipBadClips = train_set
        self.eval_sets: dict[str, SampledClips | SkipBadClips] = dict(eval_sets)
        if skip_log is not None:
            self.train_set = SkipBadClips(train_set, skip_log, name="train")
            self.eval_sets = {
                split: SkipBadClips(dataset, skip_log, name=split, replace=False)
                for split, dataset in eval_sets.items()
            }

    @property
    def val_set(self) -> SampledClips | SkipBadClips:
        return self.eval_sets["val"]

    def train_dataloader(self) -> DataLoader:
        epoch = self.trainer.current_epoch if self.trainer else 0
        self.train_set.set_epoch(epoch)
        sampler = EpochShuffleSampler(
            len(self.train_set), self.cfg.train.seed, *self._rank_and_world(), skip=self._clips_done
        )
        sampler.set_epoch(epoch)
        return make_loader(self.train_set, self.cfg, sampler)

    def _rank_and_world(self) -> tuple[int, int]:
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)

    def _clips_done(self, epoch: int) -> int:
        """Clips of `epoch` this rank already trained on: nonzero only in a run resumed mid-epoch.

        Every batch is one optimizer step (no gradient accumulation), so the restored global
        step says how far into the epoch the checkpoint was written.
        """
        if self.trainer is None:
            return 0
        per_rank = math.ceil(len(self.train_set) / self.trainer.world_size)
        batches = math.ceil(per_rank / self.cfg.train.batch_size)
        done = min(max(0, self.trainer.global_step - epoch * batches), batches)
        return done * self.cfg.train.batch_size

    def on_after_batch_transfer(self, batch: dict | None, dataloader_idx: int) -> dict | None:
        # The packed loader can leave the random resized crop to the device (data.device_crop).
        return apply_device_crop(batch, self.cfg.data.event_resize) if batch is not None else batch

    def val_dataloader(self) -> list[DataLoader]:
        rank_and_world = self._rank_and_world()
        return [
            make_loader(dataset, self.cfg, ShardSampler(len(dataset), *rank_and_world))
            for dataset in self.eval_sets.values()
        ]


def eval_splits(cfg: Config) -> tuple[str, ...]:
    """The splits the validation loop scores, in dataloader order: val (selection), then test when
    eval.test_every_epoch records the paper's protocol."""
    return ("val", "test") if cfg.eval.test_every_epoch else ("val",)
