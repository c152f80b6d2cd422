"""Datasets as a config describes them: the one place that turns `Config.data` into a dataset.

Training (`velora train`), evaluation (`velora eval`), prediction (`velora predict`) and the
dataset check all build their datasets here, so a clip is read the same way by each.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from torch.utils.data import Dataset, Subset

from velora.data.layouts import LAYOUTS, Layout
from velora.data.packed import PackedClipDataset, collate_packed
from velora.data.sampling import ClipSampling, SampledClips
from velora.data.skipping import SkipBadClips, collate_skipping
from velora.errors import DataError

if TYPE_CHECKING:
    from velora.config import Config


def clip_sampling(cfg: Config, *, train: bool = False) -> ClipSampling:
    """How the config's datasets draw clips: frames, size, crop, flip, seed (train: augmented)."""
    d = cfg.data
    return ClipSampling(
        num_frames=d.num_frames,
        image_size=cfg.model.image_size,
        train=train,
        seed=cfg.train.seed,
        crop_scale=tuple(d.crop_scale),
        horizontal_flip=d.hflip,
        frame_sampling=d.frame_sampling,
        augmentation=d.augmentation,
    )


def layout(cfg: Config) -> Layout:
    """The Layout object of the config's data.layout (validated by the config)."""
    return LAYOUTS[cfg.data.layout]


def label_file(cfg: Config, split: str) -> Path:
    """Where `split` ('train', 'val' or 'test') is listed: its label file under data.root, or its
    folder for a layout without label files (recordings)."""
    return layout(cfg).label_file(cfg, split)


def make_dataset(
    cfg: Config,
    split: str,
    *,
    train: bool = False,
    check_labels: bool = True,
    classes: list[str] | None = None,
    lenient: bool = False,
) -> SampledClips:
    """The dataset of `split` ('train', 'val' or 'test') as the config describes it.

    check_labels: require every label below model.num_classes.
    classes: class names to number labels by (layouts that name classes, e.g. recordings and
        events; pass the training set's, or a checkpoint's).
    lenient: list label-file problems in the dataset's ``label_problems`` instead of raising (the
        dataset check, velora.data.check).
    """
    d = cfg.data
    sampling = clip_sampling(cfg, train=train)
    num_classes = cfg.model.num_classes if check_labels else None
    if d.format == "packed":
        return PackedClipDataset(
            d.packed_root,
            split,
            sampling,
            modalities=tuple(d.modalities),
            device_crop=d.device_crop,
            num_classes=num_classes,
            event_resize=d.event_resize,
        )
    if not d.root:
        raise DataError("data.root is empty; set it in the config or with data.root=/path/to/dataset")
    return layout(cfg).dataset(cfg, split, sampling, classes=classes, num_classes=num_classes, lenient=lenient)


def clip_dataset(clip: str | Path, cfg: Config) -> SampledClips:
    """A one-clip dataset read as the config's training data was (``velora predict``): what each
    layout takes is in its ``clip`` (velora.data.layouts), e.g. a clip folder or a raw ``.aedat4``
    recording for frames and recordings, one event file for the event layouts."""
    return layout(cfg).clip(Path(clip).resolve(), cfg, clip_sampling(cfg))


def loader_collate(dataset: Dataset):
    """The collate function a dataset needs (None: torch's default)."""
    while isinstance(dataset, Subset):  # a Subset forwards __getitems__ to what it wraps
        dataset = dataset.dataset
    if isinstance(dataset, PackedClipDataset):
        return collate_packed  # its __getitems__ builds whole batches
    if isinstance(dataset, SkipBadClips) and not dataset.replace:
        return collate_skipping
    return None
