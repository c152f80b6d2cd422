"""Event-only clips: recordings in event files (N-MNIST .bs2/.bin, .npy/.npz, .h5, .aedat4) rendered
as T red/blue-on-white event images, so event-only training runs through the RGB-Event pipeline.

Layout: event files anywhere under ``<root>`` and a labels file with one line per recording::

    # sample<TAB>class            ('#' starts a comment, blank lines are skipped)
    1	5                         -> <root>/1.bs2 (the suffix may be left out), class "5"
    digits/seven.npy	7

A line is split at its last tab, or at its last run of whitespace when it has no tab. The sample is
a path relative to ``root``; when no file has that exact name, the one file ``<sample><suffix>``
with a suffix of ``velora.events.readers.SUFFIXES`` is used. This is the format of
``tests/data/real/nmnist/labels.txt``.

Class names and label indices, first rule that applies:
1. ``classes`` given (e.g. the training set's ``class_names``, so every split agrees);
2. ``<root>/classes.txt``, one class name per line in label-index order;
3. every class is a non-negative integer (N-MNIST's digits): the integer is the label index;
4. otherwise the distinct class names, sorted; a split that lacks a class then numbers the others
   differently, so write classes.txt for datasets with several label files.

One item (``T`` = ``num_frames``, ``S`` = ``image_size``), the ClipDataset contract without "rgb"::

    "events": torch.uint8 (T, 3, S, S)   event images: white, ON events red, OFF events blue
    "label":  torch.int64 ()
    "index":  int

Each recording is cut into T windows (``window``), each window drawn with
``velora.events.render.event_image`` at the sensor's size and resized to S x S: the same
representation as the event frames of PokerEvent / HARDVS, so the same model runs on both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from velora.data.labels import CLASSES_FILE, read_class_file, read_lines
from velora.data.layout import EVENT_RESAMPLE
from velora.data.sampling import ClipSampling, SampledClips
from velora.errors import DataError
from velora.events.readers import SUFFIXES, read_events, require_events
from velora.events.render import event_image

EVENT_LABEL_LINE_FORMAT = "<sample><TAB><class>"
WINDOWS = ("fixed_count", "fixed_duration", "uniform")
REPRESENTATIONS = ("event_image",)


@dataclass(frozen=True)
class EventLabelLine:
    """One parsed line of an event labels file: the sample path and its class as written."""

    sample: str
    class_name: str
    line_number: int


@dataclass(frozen=True)
class EventEntry:
    """One recording of an EventFileDataset: sample path (relative to root), class name, label."""

    sample: str
    class_name: str
    label: int


def parse_event_label_line(line: str) -> tuple[str, str]:
    """``(sample, class)`` of one stripped, non-comment line; ValueError with the reason if malformed."""
    fields = line.rsplit("\t", 1) if "\t" in line else line.rsplit(None, 1)
    fields = [field.strip() for field in fields]
    if len(fields) != 2 or not all(fields):
        raise ValueError("expected a sample and a class separated by a tab")
    sample, class_name = fields
    if "\t" in sample:
        raise ValueError("expected 2 tab-separated fields, found more")
    sample = sample.replace("\\", "/").rstrip("/")
    if sample.startswith("/") or ".." in sample.split("/") or not sample:
        raise ValueError("the sample must be a path relative to the dataset root")
    return sample, class_name


def read_event_labels(path: str | Path) -> list[EventLabelLine]:
    """Every line of an event labels file, in file order; DataError naming file and line if malformed."""
    parsed = read_lines(path, parse_event_label_line, EVENT_LABEL_LINE_FORMAT, "1\t5")
    return [EventLabelLine(sample, class_name, number) for number, (sample, class_name) in parsed]


def resolve_event_file(root: Path, sample: str) -> Path:
    """The event file of ``sample``: ``root/sample`` itself, else the one ``root/sample<suffix>``."""
    exact = root / sample
    if exact.is_file():
        return exact
    candidates = [exact.with_name(exact.name + suffix) for suffix in SUFFIXES]
    found = [path for path in candidates if path.is_file()]
    if len(found) == 1:
        return found[0]
    if found:
        raise DataError(
            f"sample {sample!r} matches several event files {[p.name for p in found]} in "
            f"{exact.parent}; name the file with its suffix in the labels file"
        )
    raise DataError(
        f"event file for sample {sample!r} not found: neither {exact} nor {exact.name}"
        f"{{{','.join(SUFFIXES)}}} exists in {exact.parent}; restore it or remove the line"
    )


def event_class_names(
    root: Path,
    class_fields: Sequence[str],
    classes: Sequence[str] | None = None,
    num_classes: int | None = None,
) -> list[str]:
    """Class names in label-index order, by the rules of the module docstring."""
    if classes is not None:
        return list(classes)
    classes_file = root / CLASSES_FILE
    if classes_file.is_file():
        return read_class_file(classes_file)
    if class_fields and all(field.isascii() and field.isdigit() for field in class_fields):
        count = max(int(field) for field in class_fields) + 1
        return [str(i) for i in range(max(count, num_classes or 0))]
    return sorted(set(class_fields))


def label_index(class_name: str, lookup: dict[str, int]) -> int:
    """The label of a class as written in a labels file (``lookup``: name -> index); KeyError if none."""
    if class_name in lookup:
        return lookup[class_name]
    if class_name.isascii() and class_name.isdigit() and str(int(class_name)) in lookup:
        return lookup[str(int(class_name))]  # "05" is class "5" in the integer-class rule
    raise KeyError(class_name)


def window_bounds(
    t: np.ndarray,
    num_windows: int,
    window: str,
    *,
    window_us: int | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Cut a recording into ``num_windows`` consecutive windows; returns event-index bounds.

    t: event timestamps, shape (N,), microseconds, sorted.
    window:
        "fixed_count": equal event counts, window k = events [k N / T, (k+1) N / T) (floored);
            busy and quiet stretches get one image each alike, so every image is equally dense.
        "uniform": equal durations spanning the first to the last event.
        "fixed_duration": T windows of ``window_us`` microseconds each, their span placed at a
            random start (``rng`` given, training) or centred; a recording shorter than the span
            leaves the last windows empty (white images).

    Returns int64 array of shape (num_windows + 1,), non-decreasing: window k holds events
    ``bounds[k]:bounds[k+1]``. Every event lies in exactly one window, except with
    "fixed_duration" where events outside the span fall in none.
    """
    t = np.asarray(t, dtype=np.int64)
    n = len(t)
    k = np.arange(num_windows + 1, dtype=np.int64)
    if window == "fixed_count":
        return (k * n) // num_windows
    if n == 0:
        return np.zeros(num_windows + 1, dtype=np.int64)
    if window == "uniform":
        duration = int(t[-1] - t[0]) + 1  # + 1: the last event falls inside the last window
        edges = t[0] + (k * duration) // num_windows
    elif window == "fixed_duration":
        if window_us is None or window_us <= 0:
            raise ValueError(f"window 'fixed_duration' needs window_us > 0 (microseconds), got {window_us}")
        slack = max(0, int(t[-1] - t[0]) + 1 - num_windows * window_us)
        offset = int(rng.integers(0, slack + 1)) if rng is not None else slack // 2
        edges = t[0] + offset + k * window_us
    else:
        raise ValueError(f"window {window!r} is not one of {WINDOWS}")
    return np.searchsorted(t, edges, side="left").astype(np.int64)


class EventFileDataset(SampledClips):
    """Event recordings as clips of T event images, with labels from a labels file.

    root: dataset root; samples in the labels file are relative to it.
    labels_file: the labels file (a relative path is looked up under ``root`` first).
    sampling: T windows (event images) per recording, each drawn at the sensor's size and resized
        to S x S; in training a random crop / flip (and a random window placement for
        "fixed_duration"), drawn in that order from the item's generator; off: deterministic.
    representation: "event_image" (the only one whose frames the model takes: 3-channel uint8).
    window, window_us: how a recording is cut into T windows, see :func:`window_bounds`.
    sensor_size: (width, height) for files that do not store it; None: the reader's default
        (34 x 34 for N-MNIST files, the stored size or max coordinate + 1 otherwise).
    event_resample: as in ClipDataset.
    classes: class names in label order (pass the training set's to the other splits).
    num_classes: when given, every label must be in [0, num_classes).
    files: read exactly these event files, each one item labelled 0, instead of a labels file
        (``velora predict``); ``root`` and ``labels_file`` are then ignored.

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
        event_resample: str = "nearest",
        classes: Sequence[str] | None = None,
        num_classes: int | None = None,
        files: Sequence[str | Path] | None = None,
    ) -> None:
        self.root = Path(root)
        if files is not None:  # read exactly these files, one item each, labelled 0 (velora predict)
            files = [Path(f) for f in files]
            self.root = files[0].parent if files else self.root
            for path in files:
                if not path.is_file():
                    raise DataError(f"event file '{path}' does not exist; give one of {', '.join(SUFFIXES)}")
        if not self.root.is_dir():
            raise DataError(
                f"dataset root {self.root} does not exist or is not a folder; pass the folder that "
                "holds the event files and the labels file"
            )
        problems = []
        if sampling.image_size is None:
            problems.append("sampling.image_size must be set: event images are resized to S x S")
        if representation not in REPRESENTATIONS:
            problems.append(
                f"representation {representation!r} is not one of {REPRESENTATIONS} (the model "
                "takes 3-channel uint8 event images)"
            )
        if window not in WINDOWS:
            problems.append(f"window {window!r} is not one of {WINDOWS}")
        if window == "fixed_duration" and not (window_us and window_us > 0):
            problems.append(f"window 'fixed_duration' needs window_us > 0 (microseconds), got {window_us}")
        if event_resample not in EVENT_RESAMPLE:
            problems.append(f"event_resample {event_resample!r} is not one of {tuple(EVENT_RESAMPLE)}")
        if problems:
            raise ValueError("invalid EventFileDataset arguments: " + "; ".join(problems))

        if files is not None:
            self.label_file = None
            self._class_names = list(classes or ["unlabelled"])
            self.entries = [EventEntry(str(path.resolve()), self._class_names[0], 0) for path in files]
        else:
            self.label_file, self._class_names, self.entries = self._labelled_entries(
                labels_file, classes, num_classes
            )

        self.sampling, self.num_classes = sampling, num_classes
        self.representation = representation
        self.window = window
        self.window_us = window_us
        self.sensor_size = sensor_size
        self.event_resample = event_resample
        self._paths: dict[int, Path] = {}

    def _labelled_entries(
        self, labels_file: str | Path, classes: Sequence[str] | None, num_classes: int | None
    ) -> tuple[Path, list[str], list[EventEntry]]:
        """The labels file's path, the class names and one entry per line, checked against both."""
        label_file = Path(labels_file)
        if not label_file.is_absolute() and (self.root / label_file).is_file():
            label_file = self.root / label_file
        lines = read_event_labels(label_file)
        class_names = event_class_names(self.root, [line.class_name for line in lines], classes, num_classes)
        lookup = {name: index for index, name in enumerate(class_names)}
        entries = []
        for line in lines:
            try:
                label = label_index(line.class_name, lookup)
            except KeyError:
                raise DataError(
                    f"{label_file}, line {line.line_number}: class {line.class_name!r} of sample "
                    f"{line.sample!r} is not one of the {len(class_names)} classes "
                    f"{class_names[:10]}{' ...' if len(class_names) > 10 else ''}; "
                    f"fix the line or {self.root / CLASSES_FILE}"
                ) from None
            if num_classes is not None and label >= num_classes:
                raise DataError(
                    f"{label_file}, line {line.line_number}: sample {line.sample!r} has label "
                    f"{label}, outside [0, {num_classes}); fix the labels file or num_classes"
                )
            entries.append(EventEntry(line.sample, line.class_name, label))
        return label_file, class_names, entries

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

        rng = self.sampling.rng(self.epoch, index)
        box, flip = self.sampling.crop_and_flip(rng)
        bounds = window_bounds(events.t, self.sampling.num_frames, self.window, window_us=self.window_us, rng=rng)

        size, resample = self.sampling.image_size, EVENT_RESAMPLE[self.event_resample]
        pixel_box = (box[0] * events.width, box[1] * events.height, box[2] * events.width, box[3] * events.height)
        frames = []
        for start, stop in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            pixels = event_image(
                events.x[start:stop], events.y[start:stop], events.p[start:stop], events.height, events.width
            )  # (H, W, 3)
            image = Image.fromarray(pixels).resize((size, size), resample, box=pixel_box)
            if flip:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            frames.append(np.asarray(image))
        clip = np.stack(frames)  # (T, S, S, 3)
        return {
            "events": torch.from_numpy(clip).permute(0, 3, 1, 2).contiguous(),  # (T, 3, S, S)
            "label": torch.tensor(self.entries[index].label, dtype=torch.int64),
            "index": index,
        }
