"""The LightningDataModule: train / val / test splits of a PokerEvent-layout dataset."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Sampler

from velora.config import Config
from velora.data.clips import ClipDataset
from velora.data.errors import DataError


def make_dataset(cfg: Config, split: str, *, train: bool = False, check_labels: bool = True) -> ClipDataset:
    """The ClipDataset of `split` ('train', 'val' or 'test') as the config describes it.

    check_labels: require every label below model.num_classes.
    """
    d = cfg.data
    if not d.root:
        raise DataError("data.root is empty; set it in the config or with data.root=/path/to/dataset")
    labels = {"train": d.train_labels, "val": d.val_labels, "test": d.test_labels}[split]
    return ClipDataset(
        d.root,
        Path(d.root) / labels,
        num_frames=d.num_frames,
        image_size=cfg.model.image_size,
        modalities=tuple(d.modalities),
        train=train,
        seed=cfg.train.seed,
        crop_scale=tuple(d.crop_scale),
        horizontal_flip=d.hflip,
        frame_count_policy=d.frame_count_policy,
        num_classes=cfg.model.num_classes if check_labels else None,
    )


class EpochShuffleSampler(Sampler[int]):
    """A random order that depends only on (seed, epoch), so a resumed run repeats it.

    Lightning calls `set_epoch` before each epoch (and wraps this sampler for DDP).
    """

    def __init__(self, length: int, seed: int):
        self.length, self.seed, self.epoch = length, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.length, generator=generator).tolist())

    def __len__(self) -> int:
        return self.length


def make_loader(dataset: ClipDataset, cfg: Config, *, shuffle: bool) -> DataLoader:
    workers = cfg.data.num_workers
    return DataLoader(
        dataset,
        batch_size=cfg.train.batch_size,
        sampler=EpochShuffleSampler(len(dataset), cfg.train.seed) if shuffle else None,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        # Workers are re-created each epoch so they see the dataset's new epoch (augmentation seed).
        persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
        drop_last=False,
    )


class ClipDataModule(L.LightningDataModule):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        # Count the classes before checking label ranges, so a wrong model.num_classes gets the
        # message that names the right value.
        self.train_set = make_dataset(cfg, "train", train=True, check_labels=False)
        self.class_names = self.train_set.class_names
        if len(self.class_names) != cfg.model.num_classes:
            raise DataError(
                f"the dataset at {cfg.data.root} has {len(self.class_names)} classes but "
                f"model.num_classes is {cfg.model.num_classes}; set model.num_classes={len(self.class_names)}"
            )
        self.val_set = make_dataset(cfg, "val")

    def train_dataloader(self) -> DataLoader:
        epoch = self.trainer.current_epoch if self.trainer else 0
        self.train_set.set_epoch(epoch)
        loader = make_loader(self.train_set, self.cfg, shuffle=True)
        loader.sampler.set_epoch(epoch)
        return loader

    def val_dataloader(self) -> DataLoader:
        return make_loader(self.val_set, self.cfg, shuffle=False)
