"""Datasets as a config describes them: the one place that turns `Config.data` into a dataset.

Training (`velora train`), evaluation (`velora eval`), prediction (`velora predict`) and the
dataset check all build their datasets here, so a clip is read the same way by each.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset, Subset

from velora.config import Config
from velora.data.clips import ClipDataset
from velora.data.event_only import EventFileDataset
from velora.data.gesture import GestureDataset
from velora.data.labels import ClipEntry
from velora.data.packed import PackedClipDataset, collate_packed
from velora.data.recordings import RecordingDataset
from velora.data.sampling import ClipSampling
from velora.data.skipping import SkipBadClips, collate_skipping
from velora.errors import DataError


def clip_sampling(cfg: Config, *, train: bool = False) -> ClipSampling:
    """How the config's datasets draw clips: frames, size, crop, flip, seed (train: augmented)."""
    d = cfg.data
    return ClipSampling(
        num_frames=d.num_frames, image_size=cfg.model.image_size, train=train, seed=cfg.train.seed,
        crop_scale=tuple(d.crop_scale), horizontal_flip=d.hflip,
    )


def event_windows(cfg: Config) -> dict:
    """How the events layout cuts a recording into T event images (EventFileDataset arguments)."""
    d = cfg.data
    return {
        "window": d.event_window, "window_us": d.event_window_us or None, "sensor_size": tuple(d.sensor_size) or None,
        "representation": d.representation, "event_resize": d.event_resize,
    }


def label_file(cfg: Config, split: str) -> Path:
    """The label file of `split` ('train', 'val' or 'test') under data.root."""
    d = cfg.data
    return Path(d.root) / {"train": d.train_labels, "val": d.val_labels, "test": d.test_labels}[split]


def make_dataset(
    cfg: Config,
    split: str,
    *,
    train: bool = False,
    check_labels: bool = True,
    classes: list[str] | None = None,
    lenient: bool = False,
) -> Dataset:
    """The dataset of `split` ('train', 'val' or 'test') as the config describes it.

    check_labels: require every label below model.num_classes.
    classes: class names to number labels by (recordings and events layouts; pass the training
        set's, or a checkpoint's).
    lenient: list label-file problems in the dataset's ``label_problems`` instead of raising (the
        dataset check, velora.data.check).
    """
    d = cfg.data
    sampling = clip_sampling(cfg, train=train)
    num_classes = cfg.model.num_classes if check_labels else None
    if d.format == "packed":
        return PackedClipDataset(
            d.packed_root, split, sampling, modalities=tuple(d.modalities), device_crop=d.device_crop,
            num_classes=num_classes, event_resize=d.event_resize,
        )
    if not d.root:
        raise DataError("data.root is empty; set it in the config or with data.root=/path/to/dataset")
    if d.layout == "recordings":
        return RecordingDataset(
            Path(d.root) / split, sampling, modalities=tuple(d.modalities), classes=classes, num_classes=num_classes,
            representation=d.representation, event_resize=d.event_resize,
        )
    if d.layout == "gesture":
        return GestureDataset(
            d.root, label_file(cfg, split), sampling, window=d.event_window, window_us=d.event_window_us or None,
            representation=d.representation, event_resize=d.event_resize, classes=classes, num_classes=num_classes,
            lenient=lenient,
        )
    if d.layout == "events":
        return EventFileDataset(
            d.root, label_file(cfg, split), sampling, **event_windows(cfg), classes=classes, num_classes=num_classes,
            lenient=lenient,
        )
    return ClipDataset(
        d.root, label_file(cfg, split), sampling, modalities=tuple(d.modalities), event_resize=d.event_resize,
        frame_count_policy=d.frame_count_policy, num_classes=num_classes, lenient=lenient,
    )


def clip_dataset(clip: str | Path, cfg: Config) -> ClipDataset | RecordingDataset | EventFileDataset:
    """A one-clip dataset read as the config's training data was (``velora predict``).

    For the frames and recordings layouts: a folder `<sample>/` holding `<sample>_aps/` and/or
    `<sample>_dvs/`, or a raw `.aedat4` recording (sampled over its whole length, as training on
    recordings does); for the events layout: one event file, cut into windows as in training.
    """
    clip = Path(clip).resolve()
    d = cfg.data
    sampling = clip_sampling(cfg)
    if d.layout in ("events", "gesture"):
        if clip.is_dir():
            raise DataError(
                f"'{clip}' is a folder, but this model was trained on event files (data.layout events); "
                "give one event file"
            )
        return EventFileDataset(clip.parent, None, sampling, files=[clip], **event_windows(cfg))
    if clip.is_file() and clip.suffix.lower() != ".aedat4":
        # An event file without APS frames (.raw, .dat, .es, ...): its events alone, cut into windows
        # as an event-only dataset is; a model with RGB takes its missing-modality path.
        return EventFileDataset(clip.parent, None, sampling, files=[clip], **event_windows(cfg))
    if clip.is_file() or clip.suffix.lower() == ".aedat4":
        return RecordingDataset(
            clip.parent, sampling, files=[clip], modalities=tuple(d.modalities), cache_recordings=0,
            representation=d.representation, event_resize=d.event_resize,
        )
    if not clip.is_dir():
        raise DataError(
            f"clip '{clip}' does not exist; give a folder holding <name>_aps and <name>_dvs, or an .aedat4 recording"
        )
    entry = ClipEntry(sample=f"{clip.parent.name}/{clip.name}", num_frames=0, label=0)
    return ClipDataset(
        clip.parent.parent, [entry], sampling, modalities=tuple(d.modalities), event_resize=d.event_resize,
        frame_count_policy=d.frame_count_policy,
    )


def loader_collate(dataset: Dataset):
    """The collate function a dataset needs (None: torch's default)."""
    while isinstance(dataset, Subset):  # a Subset forwards __getitems__ to what it wraps
        dataset = dataset.dataset
    if isinstance(dataset, PackedClipDataset):
        return collate_packed  # its __getitems__ builds whole batches
    if isinstance(dataset, SkipBadClips) and not dataset.replace:
        return collate_skipping
    return None
