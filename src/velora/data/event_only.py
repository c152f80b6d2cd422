"""Event-only clips: recordings in event files (N-MNIST .bs2/.bin, .npy/.npz, .h5, .aedat4) rendered
as T red/blue-on-white event images, so event-only training runs through the RGB-Event pipeline.

The files and their classes come from a labels file (velora.data.event_labels: the line format,
where files are looked up, how classes are numbered).

One item (``T`` = ``num_frames``, ``S`` = ``image_size``), the ClipDataset contract without "rgb"::

    "events": torch.uint8 (T, 3, S, S)   event images: white, ON events red, OFF events blue
    "label":  torch.int64 ()
    "index":  int

Each recording is cut into T windows (``window``, see velora.events.representations.window_bounds),
each window drawn with ``velora.events.render.event_image`` at the sensor's size and resized to
S x S: the same representation as the event frames of PokerEvent / HARDVS, so the same model runs
on both.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch

from velora.data.check_report import Issue, map_checks
from velora.data.event_labels import EventEntry, event_class_names, label_index, read_event_labels, resolve_event_file
from velora.data.labels import CLASSES_FILE
from velora.data.sampling import ClipSampling, SampledClips
from velora.errors import DataError
from velora.events.readers import SUFFIXES, read_events, require_events
from velora.events.render import EventStream
from velora.events.representations import RGB_REPRESENTATIONS, WINDOWS, window_bounds
from velora.events.resize import EVENT_RESIZE, draw_events


class EventFileDataset(SampledClips):
    """Event recordings as clips of T event images, with labels from a labels file.

    root: dataset root; samples in the labels file are relative to it.
    labels_file: the labels file (a relative path is looked up under ``root`` first).
    sampling: T windows (event images) per recording, each drawn at the sensor's size and resized
        to S x S; in training a random crop / flip (and a random window placement for
        "fixed_duration"), drawn in that order from the item's generator; off: deterministic.
    representation: how each window is drawn as a 3-channel uint8 image: "event_image" (default),
        "count", "voxel_grid" or "time_surface" (velora.events.representations.as_rgb).
    window, window_us: how a recording is cut into T windows, see :func:`window_bounds`.
    sensor_size: (width, height) for files that do not store it; None: the reader's default
        (34 x 34 for N-MNIST files, the stored size or max coordinate + 1 otherwise).
    event_resize: how event images are brought to S x S (velora.events.resize), as in ClipDataset.
    classes: class names in label order (pass the training set's to the other splits).
    num_classes: when given, every label must be in [0, num_classes).
    files: read exactly these event files, each one item labelled 0, instead of a labels file
        (``velora predict``); ``root`` and ``labels_file`` are then ignored.
    lenient: malformed lines, unknown classes and labels out of range go to ``label_problems`` and
        their lines are skipped (``dropped_lines``), instead of raising at the first (the dataset check).

    Raises DataError naming the file for a malformed labels file, an unknown class or a label out
    of range (at construction), and for a missing, unreadable or event-less recording (when the
    item is read).
    """

    modalities = ("event",)

    def __init__(
        self,
        root: str | Path,
        labels_file: str | Path | None,
        sampling: ClipSampling = ClipSampling(),
        *,
        representation: str = "event_image",
        window: str = "fixed_count",
        window_us: int | None = None,
        sensor_size: tuple[int, int] | None = None,
        event_resize: str = "keep_events",
        classes: Sequence[str] | None = None,
        num_classes: int | None = None,
        files: Sequence[str | Path] | None = None,
        lenient: bool = False,
    ) -> None:
        self.root = Path(root)
        paths = [Path(f) for f in files] if files is not None else None
        if paths is not None:  # read exactly these files, one item each, labelled 0 (velora predict)
            self.root = paths[0].parent if paths else self.root
            for path in paths:
                if not path.is_file():
                    raise DataError(f"event file '{path}' does not exist; give one of {', '.join(SUFFIXES)}")
        if not self.root.is_dir():
            raise DataError(
                f"dataset root {self.root} does not exist or is not a folder; pass the folder that "
                "holds the event files and the labels file"
            )
        problems = []
        if labels_file is None and files is None:
            problems.append("labels_file is needed, unless files names the event files to read")
        if sampling.image_size is None:
            problems.append("sampling.image_size must be set: event images are resized to S x S")
        if representation not in RGB_REPRESENTATIONS:
            problems.append(f"representation {representation!r} is not one of {tuple(RGB_REPRESENTATIONS)}")
        if window not in WINDOWS:
            problems.append(f"window {window!r} is not one of {WINDOWS}")
        if window == "fixed_duration" and not (window_us and window_us > 0):
            problems.append(f"window 'fixed_duration' needs window_us > 0 (microseconds), got {window_us}")
        if event_resize not in EVENT_RESIZE:
            problems.append(f"event_resize {event_resize!r} is not one of {EVENT_RESIZE}")
        if problems:
            raise ValueError("invalid EventFileDataset arguments: " + "; ".join(problems))

        self.label_problems: list[Issue] = []
        self.label_file: Path | None
        if paths is not None:
            self.label_file = None
            self._class_names = list(classes or ["unlabelled"])
            self.entries = [EventEntry(str(path.resolve()), self._class_names[0], 0) for path in paths]
        else:
            assert labels_file is not None  # checked with the arguments above
            self.label_file, self._class_names, self.entries = self._labelled_entries(
                labels_file, classes, num_classes, lenient
            )
        self.dropped_lines = len([p for p in self.label_problems if p[0] != "class_names"])

        self.sampling, self.num_classes = sampling, num_classes
        self.representation = representation
        self.window = window
        self.window_us = window_us
        self.sensor_size = sensor_size
        self.event_resize = event_resize
        self._paths: dict[int, Path] = {}

    def _labelled_entries(
        self, labels_file: str | Path, classes: Sequence[str] | None, num_classes: int | None, lenient: bool
    ) -> tuple[Path, list[str], list[EventEntry]]:
        """The labels file's path, the class names and one entry per line, checked against both."""
        label_file = Path(labels_file)
        if not label_file.is_absolute() and (self.root / label_file).is_file():
            label_file = self.root / label_file
        problems = self.label_problems if lenient else None
        lines = read_event_labels(label_file, problems)
        try:
            class_names = event_class_names(self.root, [line.class_name for line in lines], classes, num_classes)
        except DataError as error:
            if not lenient:
                raise
            self.label_problems.append(("class_names", str(self.root), str(error)))
            return label_file, [], []
        lookup = {name: index for index, name in enumerate(class_names)}
        entries = []
        for line in lines:
            where = f"{label_file}:{line.line_number}"
            try:
                label = label_index(line.class_name, lookup)
            except KeyError:
                message = (
                    f"class {line.class_name!r} of sample {line.sample!r} is not one of the {len(class_names)} "
                    f"classes {class_names[:10]}{' ...' if len(class_names) > 10 else ''}"
                )
                fix = f"fix the line or {self.root / CLASSES_FILE}"
            else:
                if num_classes is None or label < num_classes:
                    entries.append(EventEntry(line.sample, line.class_name, label, where))
                    continue
                message = f"sample {line.sample!r} has label {label}, outside [0, {num_classes})"
                fix = "fix the labels file or num_classes"
            if not lenient:
                raise DataError(f"{label_file}, line {line.line_number}: {message}; {fix}")
            self.label_problems.append(("bad_labels", where, message))
        return label_file, class_names, entries

    def problems(
        self,
        *,
        decode: bool = True,
        min_frames: int = 1,
        exclude: Collection[str] = (),
        workers: int = 1,
        progress: bool = False,
    ) -> dict[str, list[Issue]]:
        """Every issue of every recording, by sample (see event_file_problems), skipping ``exclude``d
        samples. decode: read every event file (finds corrupt ones), or check only that it is there
        and not empty. ``min_frames`` is accepted for the common signature; windows make T frames
        of any recording. Label-file problems are in ``label_problems`` (with ``lenient=True``).
        """
        entries = list({e.sample: e for e in self.entries if e.sample not in exclude}.values())
        check = partial(event_file_problems, self.root, decode=decode, sensor_size=self.sensor_size)
        found = map_checks(check, entries, total=len(entries), workers=workers, progress=progress)
        return {entry.sample: issues for entry, issues in zip(entries, found)}

    @property
    def class_names(self) -> list[str]:
        """Class names in label order (see the module docstring for where they come from)."""
        return list(self._class_names)

    def event_file(self, index: int) -> Path:
        """The event file of recording ``index`` (cached)."""
        if index not in self._paths:
            self._paths[index] = resolve_event_file(self.root, self.entries[index].sample)
        return self._paths[index]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        index = range(len(self))[index]  # a plain non-negative int, also for -1 or numpy ints
        path = self.event_file(index)
        width, height = self.sensor_size or (None, None)
        events = require_events(read_events(path, width, height), path)

        clip = event_frames(
            events,
            self.sampling,
            self.sampling.rng(self.epoch, index),
            self.window,
            self.window_us,
            self.event_resize,
            self.representation,
        )
        return {"events": clip, "label": torch.tensor(self.entries[index].label, dtype=torch.int64), "index": index}


def event_frames(
    events: EventStream,
    sampling: ClipSampling,
    rng: np.random.Generator | None = None,
    window: str = "fixed_count",
    window_us: int | None = None,
    event_resize: str = "keep_events",
    representation: str = "event_image",
) -> torch.Tensor:
    """An event recording as T event images, (T, 3, S, S) uint8: cut into sampling.num_frames
    windows (window_bounds), each drawn at the sensor's size as `representation` (as_rgb) and
    resized to S x S by `event_resize` (velora.events.resize.draw_events); with
    `rng` (training) a random crop and flip, then the window placement, drawn in that order."""
    box, flip = sampling.crop_and_flip(rng)
    bounds = window_bounds(events.t, sampling.num_frames, window, window_us=window_us, rng=rng)
    size = sampling.image_size
    assert size is not None  # None (keep the stored size) is for packed frames only
    pixel_box = (box[0] * events.width, box[1] * events.height, box[2] * events.width, box[3] * events.height)
    frames = []
    for start, stop in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        window_events = slice(start, stop)
        image = draw_events(
            representation,
            events.t[window_events],
            events.x[window_events],
            events.y[window_events],
            events.p[window_events],
            events.height,
            events.width,
            size,
            pixel_box,
            event_resize,
        )  # (S, S, 3)
        frames.append(image[:, ::-1] if flip else image)
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()  # (T, 3, S, S)


def event_file_problems(
    root: Path, entry: EventEntry, *, decode: bool, sensor_size: tuple[int, int] | None
) -> list[Issue]:
    """Every issue of one recording: a missing, empty or unreadable event file, or one without events."""
    where = entry.where or str(root / entry.sample)
    try:
        path = resolve_event_file(root, entry.sample)
    except DataError as error:
        return [("missing_samples", where, str(error))]
    if path.stat().st_size == 0:
        return [("unreadable_files", str(path), "empty file (0 bytes)")]
    if decode:
        width, height = sensor_size or (None, None)
        try:
            if len(read_events(path, width, height)) == 0:
                return [("unreadable_files", str(path), "the file holds no events")]
        except DataError as error:
            return [("unreadable_files", str(path), str(error))]
    return []
