"""The LightningDataModule: train / val / test splits of a PokerEvent-layout dataset."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from velora.config import Config
from velora.data.augment import apply_device_crop
from velora.data.clips import ClipDataset
from velora.data.errors import DataError
from velora.data.event_only import EventFileDataset
from velora.data.packed import PackedClipDataset, collate_packed
from velora.data.recordings import RecordingDataset
from velora.data.skipping import SkipBadClips, collate_skipping


def make_dataset(
    cfg: Config, split: str, *, train: bool = False, check_labels: bool = True, classes: list[str] | None = None
) -> Dataset:
    """The dataset of `split` ('train', 'val' or 'test') as the config describes it.

    check_labels: require every label below model.num_classes.
    classes: class names to number labels by (event layout; pass the training set's).
    """
    d = cfg.data
    num_classes = cfg.model.num_classes if check_labels else None
    if d.format == "packed":
        return PackedClipDataset(
            d.packed_root,
            split,
            num_frames=d.num_frames,
            modalities=tuple(d.modalities),
            train=train,
            seed=cfg.train.seed,
            crop_scale=tuple(d.crop_scale),
            horizontal_flip=d.hflip,
            image_size=cfg.model.image_size,
            num_classes=num_classes,
            device_crop=d.device_crop,
        )
    if not d.root:
        raise DataError("data.root is empty; set it in the config or with data.root=/path/to/dataset")
    labels = Path(d.root) / {"train": d.train_labels, "val": d.val_labels, "test": d.test_labels}[split]
    if d.layout == "recordings":
        return RecordingDataset(
            Path(d.root) / split,
            num_frames=d.num_frames,
            image_size=cfg.model.image_size,
            modalities=tuple(d.modalities),
            train=train,
            seed=cfg.train.seed,
            crop_scale=tuple(d.crop_scale),
            horizontal_flip=d.hflip,
            classes=classes,
            num_classes=num_classes,
        )
    if d.layout == "events":
        return EventFileDataset(
            d.root,
            labels,
            num_frames=d.num_frames,
            image_size=cfg.model.image_size,
            train=train,
            seed=cfg.train.seed,
            window=d.event_window,
            window_us=d.event_window_us or None,
            sensor_size=tuple(d.sensor_size) or None,
            crop_scale=tuple(d.crop_scale),
            horizontal_flip=d.hflip,
            classes=classes,
            num_classes=num_classes,
        )
    return ClipDataset(
        d.root,
        labels,
        num_frames=d.num_frames,
        image_size=cfg.model.image_size,
        modalities=tuple(d.modalities),
        train=train,
        seed=cfg.train.seed,
        crop_scale=tuple(d.crop_scale),
        horizontal_flip=d.hflip,
        frame_count_policy=d.frame_count_policy,
        num_classes=num_classes,
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


def loader_collate(dataset: Dataset):
    """The collate function a dataset needs (None: torch's default)."""
    while isinstance(dataset, Subset):  # a Subset forwards __getitems__ to what it wraps
        dataset = dataset.dataset
    if isinstance(dataset, PackedClipDataset):
        return collate_packed  # its __getitems__ builds whole batches
    if isinstance(dataset, SkipBadClips) and not dataset.replace:
        return collate_skipping
    return None


def make_loader(dataset: Dataset, cfg: Config, *, shuffle: bool) -> DataLoader:
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
        collate_fn=loader_collate(dataset),
    )


class ClipDataModule(L.LightningDataModule):
    """Train and val splits; with data.bad_clips = skip both are wrapped in SkipBadClips."""

    def __init__(self, cfg: Config, skip_log: Path | None = None):
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
        self.val_set = make_dataset(cfg, "val", classes=self.class_names)
        if skip_log is not None:
            self.train_set = SkipBadClips(self.train_set, skip_log, name="train")
            self.val_set = SkipBadClips(self.val_set, skip_log, name="val", replace=False)

    def train_dataloader(self) -> DataLoader:
        epoch = self.trainer.current_epoch if self.trainer else 0
        self.train_set.set_epoch(epoch)
        loader = make_loader(self.train_set, self.cfg, shuffle=True)
        loader.sampler.set_epoch(epoch)
        return loader

    def on_after_batch_transfer(self, batch: dict | None, dataloader_idx: int) -> dict | None:
        # The packed loader can leave the random resized crop to the device (data.device_crop).
        return apply_device_crop(batch) if batch is not None else batch

    def val_dataloader(self) -> DataLoader:
        return make_loader(self.val_set, self.cfg, shuffle=False)
