"""The LightningDataModule: train / val / test splits of a PokerEvent-layout dataset."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from velora.config import Config
from velora.data.clips import ClipDataset
from velora.data.errors import DataError


def make_dataset(cfg: Config, split: str, *, train: bool = False) -> ClipDataset:
    """The ClipDataset of `split` ('train', 'val' or 'test') as the config describes it."""
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
        num_classes=cfg.model.num_classes,
    )


def make_loader(dataset: ClipDataset, cfg: Config, *, shuffle: bool) -> DataLoader:
    workers = cfg.data.num_workers
    generator = torch.Generator().manual_seed(cfg.train.seed)
    return DataLoader(
        dataset,
        batch_size=cfg.train.batch_size,
        shuffle=shuffle,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        # Workers are re-created each epoch so they see the dataset's new epoch (augmentation seed).
        persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
        generator=generator,
        drop_last=False,
    )


class ClipDataModule(L.LightningDataModule):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.train_set = make_dataset(cfg, "train", train=True)
        self.val_set = make_dataset(cfg, "val")
        self.class_names = self.train_set.class_names
        if len(self.class_names) != cfg.model.num_classes:
            raise DataError(
                f"the dataset at {cfg.data.root} has {len(self.class_names)} classes but "
                f"model.num_classes is {cfg.model.num_classes}; set model.num_classes={len(self.class_names)}"
            )

    def train_dataloader(self) -> DataLoader:
        self.train_set.set_epoch(self.trainer.current_epoch if self.trainer else 0)
        return make_loader(self.train_set, self.cfg, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return make_loader(self.val_set, self.cfg, shuffle=False)
