"""What velora asks a dataset layout (``data.layout``), in one place, instead of comparing its name.

A layout is how a dataset sits on disk: PNG frame folders with label files (``frames``), raw
recordings in class folders (``recordings``), event files with a labels file (``events``), DVS128
Gesture trials (``gesture``). Each is a ``Layout`` in a module of its own, listed once in
``velora.data.layouts.LAYOUTS``; the config takes its choices and checks from there, and the
factory, the dataset check, training and the stream ask the layout object. Dataset classes are
imported inside the methods, so reading the table (``velora --help``) loads no dataset code.

``cfg`` below is a ``velora.config.Config`` (the config imports this package for its choices, so
the type is only named here).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from velora.errors import DataError

if TYPE_CHECKING:
    from velora.config import Config
    from velora.data.sampling import ClipSampling, SampledClips


class Layout:
    """A dataset layout (subclasses set the attributes and implement ``dataset`` and ``clip``).

    name: the value of data.layout.
    description: one sentence for the config's help text.
    modalities: the modalities its files can hold.
    draws_events: events are read and drawn into images (data.representation applies).
    reads_clip_frames: a sample is a sequence of frames that release frame sampling and per-frame
        augmentation can draw from (data.frame_sampling, data.augmentation).
    label_files: its splits are label files under data.root (train/val/test_labels); otherwise the
        folders <root>/<split>.
    names_classes: classes are numbered by name, so the other splits take the training set's names.
    packable: velora convert packed can pack it (data.format packed).
    label_line_fields: the fields of a line of its label files, when `velora check-data ROOT` can
        tell the layout from them (frames 3, events 2; None: not told from a label file).
    """

    name: str = ""
    description: str = ""
    modalities: tuple[str, ...] = ("rgb", "event")
    draws_events: bool = False
    reads_clip_frames: bool = False
    label_files: bool = True
    names_classes: bool = False
    packable: bool = False
    label_line_fields: int | None = None

    def problems(self, cfg: Config) -> list[str]:
        """What in the data section does not fit this layout (the config lists them with its own)."""
        d, p = cfg.data, []
        if d.format == "packed" and not self.packable:
            p.append(
                f"'data.format' packed holds frame clips; layout {self.name} cannot be packed: use data.format=folders"
            )
        extra = [m for m in d.modalities if m not in self.modalities]
        if extra:
            p.append(
                f"'data.layout' {self.name} holds {'+'.join(self.modalities)} only; set "
                f"data.modalities=[{', '.join(self.modalities)}] (got {d.modalities})"
            )
        if d.representation != "event_image" and not self.draws_events:
            p.append(
                f"'data.representation' {d.representation} draws events, but layout {self.name} reads event images "
                "already drawn (PNG); use a layout that reads events (events, recordings, gesture) or event_image"
            )
        for name in ("frame_sampling", "augmentation"):
            if getattr(d, name) == "release" and not self.reads_clip_frames:
                p.append(
                    f"'data.{name}' release reads frames of a clip; layout {self.name} has none (use frames or recordings)"
                )
        return p

    def dataset(
        self,
        cfg: Config,
        split: str,
        sampling: ClipSampling,
        *,
        classes: list[str] | None,
        num_classes: int | None,
        lenient: bool,
    ) -> SampledClips:
        """The dataset of ``split`` ("train", "val" or "test") under data.root."""
        raise NotImplementedError

    def from_label_file(self, root: Path, labels: Path, sampling: ClipSampling, options: ReadOptions) -> SampledClips:
        """The dataset of one label file read with explicit options (the dataset check of a folder
        on its own, ``velora check-data ROOT``, which has no config); layouts with label_line_fields."""
        raise NotImplementedError

    def clip(self, path: Path, cfg: Config, sampling: ClipSampling) -> SampledClips:
        """A one-item dataset of one clip given by a user (``velora predict``), read as training read its data."""
        raise NotImplementedError

    def label_file(self, cfg: Config, split: str) -> Path:
        """Where ``split`` is listed: its label file, or (label_files False) its folder."""
        d = cfg.data
        if not self.label_files:
            return Path(d.root) / split
        return Path(d.root) / {"train": d.train_labels, "val": d.val_labels, "test": d.test_labels}[split]

    def split_arguments(self) -> str:
        """The arguments `velora split` needs for this layout's training list, after ROOT."""
        return ""

    def sensor_size(self, root: Path) -> tuple[tuple[int, int], str] | None:
        """(width, height) of the sensor the data at ``root`` was recorded with, and the file that says
        so; None when the layout cannot tell (``velora stream`` then asks for data.sensor_size)."""
        return None


@dataclass(frozen=True)
class ReadOptions:
    """How a label file's samples are read, outside a config (the fields of data.* of the same names)."""

    modalities: tuple[str, ...] = ("rgb", "event")
    event_resize: str = "keep_events"
    frame_pairing: str = "number"
    frame_count_policy: str = "error"
    sensor_size: tuple[int, int] | None = None
    classes: list[str] | None = None
    num_classes: int | None = None
    lenient: bool = False

    @classmethod
    def of(cls, cfg: Config, *, classes: list[str] | None, num_classes: int | None, lenient: bool) -> ReadOptions:
        d = cfg.data
        return cls(
            tuple(d.modalities),
            d.event_resize,
            d.frame_pairing,
            d.frame_count_policy,
            tuple(d.sensor_size) or None,
            classes,
            num_classes,
            lenient,
        )


def event_windows(cfg: Config) -> dict:
    """How recordings are cut into T event images (EventFileDataset arguments)."""
    d = cfg.data
    return {
        "window": d.event_window,
        "window_us": d.event_window_us or None,
        "sensor_size": tuple(d.sensor_size) or None,
        "representation": d.representation,
        "event_resize": d.event_resize,
    }


def event_file_clip(path: Path, cfg: Config, sampling: ClipSampling) -> SampledClips:
    """One event file (any reader's format), cut into windows as an event-only dataset is."""
    from velora.data.event_only import EventFileDataset

    return EventFileDataset(path.parent, None, sampling, files=[path], **event_windows(cfg))


def frame_or_recording_clip(path: Path, cfg: Config, sampling: ClipSampling) -> SampledClips:
    """What a model trained on frames or recordings predicts from: a clip folder (``<sample>/`` with
    ``<sample>_aps/`` and/or ``<sample>_dvs/``), a raw ``.aedat4`` recording (sampled over its whole
    length, as training on recordings does), or another event file (its events alone: a model with
    RGB takes its missing-modality path)."""
    from velora.data.clips import ClipDataset
    from velora.data.labels import ClipEntry
    from velora.data.recordings import RecordingDataset

    d = cfg.data
    if path.is_file() and path.suffix.lower() != ".aedat4":
        return event_file_clip(path, cfg, sampling)
    if path.is_file() or path.suffix.lower() == ".aedat4":
        return RecordingDataset(
            path.parent,
            sampling,
            files=[path],
            modalities=tuple(d.modalities),
            cache_recordings=0,
            representation=d.representation,
            event_resize=d.event_resize,
        )
    if not path.is_dir():
        raise DataError(
            f"clip '{path}' does not exist; give a folder holding <name>_aps and <name>_dvs, or an .aedat4 recording"
        )
    entry = ClipEntry(sample=f"{path.parent.name}/{path.name}", num_frames=0, label=0)
    return ClipDataset(
        path.parent.parent,
        [entry],
        sampling,
        modalities=tuple(d.modalities),
        event_resize=d.event_resize,
        frame_pairing=d.frame_pairing,
        frame_count_policy=d.frame_count_policy,
    )
