"""DVS128 Gesture (Amir et al., CVPR 2017): trials in AEDAT 3.1 files, gestures cut by their label intervals.

Layout, as the dataset ships (`data.layout: gesture`)::

    <root>/user01_fluorescent.aedat          one trial: a user's gestures under one lighting
    <root>/user01_fluorescent_labels.csv     class,startTime_usec,endTime_usec (one line per gesture)
    <root>/trials_to_train.txt               the standard user split: users 1-23 train ...
    <root>/trials_to_test.txt                ... users 24-29 test (one .aedat name per line)
    <root>/gesture_mapping.csv               optional: action,label (label 1..11 -> class name)

Each labelled interval of a trial is one sample: the events with startTime <= t < endTime, cut into
T windows (`data.event_window`) and drawn as `data.representation` (velora.data.event_only's
`event_frames`). Samples are named `<trial stem>#<line>`. Class names come from
gesture_mapping.csv in label order, else the class numbers as written; labels are numbered by
them (pass the training set's `class_names` as `classes` to the other splits, as for every layout).
A validation split for model selection: `velora split ROOT --train-labels trials_to_train.txt
--test-labels trials_to_test.txt` puts a tenth of the training trials into val_label.txt.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch

from velora.data.check_report import Issue, map_checks
from velora.data.event_only import event_frames
from velora.data.labels import natural_key, read_text
from velora.data.sampling import ClipSampling, ProcessCache, SampledClips
from velora.errors import DataError
from velora.events.readers import read_events
from velora.events.render import EventStream

MAPPING_FILE = "gesture_mapping.csv"
LABELS_SUFFIX = "_labels.csv"


@dataclass(frozen=True)
class GestureEntry:
    """One labelled interval of a trial: sample name, its trial file, class, label, start/end (us)."""

    sample: str
    trial: str
    class_name: str
    label: int
    start_us: int
    end_us: int
    where: str = field(default="", compare=False, repr=False)


def read_trial_list(path: Path) -> list[str]:
    """The trial file names of a trials_to_*.txt (blank lines and '#' comments skipped)."""
    if not path.is_file():
        raise DataError(
            f"trial list {path} does not exist; DVS128 Gesture ships trials_to_train.txt and trials_to_test.txt"
        )
    names = [line.strip() for line in read_text(path).splitlines()]
    return [name for name in names if name and not name.startswith("#")]


def read_intervals(path: Path, problems: list[Issue] | None = None) -> list[tuple[str, int, int, int]]:
    """(class as written, start us, end us, line number) of each line of a trial's labels csv.

    A malformed line raises DataError naming the file and line, or with `problems` given is
    recorded there ("malformed_lines") and skipped.
    """
    if not path.is_file():
        raise DataError(
            f"label file {path} of a DVS128 Gesture trial does not exist; restore it or drop the trial from the list"
        )
    rows = []
    for number, row in enumerate(csv.reader(io.StringIO(read_text(path))), start=1):
        if not row or not "".join(row).strip() or row[0].strip().lower() == "class":
            continue
        try:
            if len(row) != 3:
                raise ValueError(f"expected 3 fields, found {len(row)}")
            class_name, start, end = (value.strip() for value in row)
            start_us, end_us = int(start), int(end)
            if not class_name or end_us <= start_us or start_us < 0:
                raise ValueError("expected a class and 0 <= startTime_usec < endTime_usec")
        except ValueError as reason:
            if problems is None:
                raise DataError(
                    f"{path}, line {number}: cannot parse {row!r} ({reason}); expected class,startTime_usec,endTime_usec"
                ) from None
            problems.append(("malformed_lines", f"{path}:{number}", f"cannot parse {row!r} ({reason})"))
            continue
        rows.append((class_name, start_us, end_us, number))
    return rows


def gesture_class_names(root: Path, written: Sequence[str]) -> list[str]:
    """gesture_mapping.csv's actions in label order, else the distinct classes as written, by number."""
    mapping = root / MAPPING_FILE
    if mapping.is_file():
        pairs = []
        for row in csv.reader(io.StringIO(read_text(mapping))):
            if len(row) == 2 and row[1].strip().isdecimal():
                pairs.append((int(row[1]), row[0].strip()))
        if pairs:
            return [name for _, name in sorted(pairs)]
    return sorted(set(written), key=natural_key)


class GestureDataset(SampledClips):
    """The labelled gestures of the trials a trial list names, as clips of T event images.

    root: the folder holding the .aedat trials and their _labels.csv files.
    trials: a trial list file (e.g. trials_to_train.txt; relative to root) or trial file names.
    sampling, window, window_us, representation, event_resize: as for EventFileDataset (T windows
        of the gesture's events, each drawn as a 3-channel image and resized to S x S).
    classes: class names in label order (pass the training set's); default from the data.
    num_classes: every label must be below it.
    lenient: malformed label lines and unknown classes go to `label_problems` (the dataset check).
    cache_trials: decoded trials kept per process (a trial holds several gestures).
    """

    modalities = ("event",)

    def __init__(
        self,
        root: str | Path,
        trials: str | Path | Sequence[str],
        sampling: ClipSampling = ClipSampling(),
        *,
        window: str = "fixed_count",
        window_us: int | None = None,
        representation: str = "event_image",
        event_resize: str = "keep_events",
        classes: Sequence[str] | None = None,
        num_classes: int | None = None,
        lenient: bool = False,
        cache_trials: int = 2,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(
                f"dataset root {self.root} does not exist; give the folder holding the DVS128 Gesture trials"
            )
        if isinstance(trials, (str, Path)):
            listed = Path(trials) if Path(trials).is_absolute() else self.root / trials
            self.label_file: Path | None = listed
            names = read_trial_list(listed)
        else:
            self.label_file, names = None, list(trials)
        self.label_problems: list[Issue] = []
        problems = self.label_problems if lenient else None
        intervals = {}
        for name in names:
            labels = self.root / (Path(name).stem + LABELS_SUFFIX)
            try:
                intervals[name] = read_intervals(labels, problems)
            except DataError as error:
                if not lenient:
                    raise
                self.label_problems.append(("missing_samples", str(labels), str(error)))
        written = [row[0] for rows in intervals.values() for row in rows]
        mapped = gesture_class_names(self.root, written)
        self._class_names = list(classes) if classes is not None else mapped
        lookup = {name: i for i, name in enumerate(self._class_names)}
        if (self.root / MAPPING_FILE).is_file():  # the labels csv writes the mapping's numbers 1, 2, ...
            lookup.update({str(k + 1): lookup[name] for k, name in enumerate(mapped) if name in lookup})
        self.entries: list[GestureEntry] = []
        for name, rows in intervals.items():
            labels = self.root / (Path(name).stem + LABELS_SUFFIX)
            for class_name, start, end, number in rows:
                label = lookup.get(class_name)
                if label is None or (num_classes is not None and label >= num_classes):
                    message = (
                        f"class {class_name!r} is not one of the {len(self._class_names)} classes"
                        if label is None
                        else (f"label {label} is outside [0, {num_classes})")
                    )
                    if not lenient:
                        raise DataError(
                            f"{labels}, line {number}: {message}; fix the line, {MAPPING_FILE} or num_classes"
                        )
                    self.label_problems.append(("bad_labels", f"{labels}:{number}", message))
                    continue
                sample = f"{Path(name).stem}#{number}"
                self.entries.append(GestureEntry(sample, name, class_name, label, start, end, f"{labels}:{number}"))
        self.dropped_lines = sum(kind != "missing_samples" for kind, _, _ in self.label_problems)
        self.sampling, self.num_classes = sampling, num_classes
        self.window, self.window_us, self.representation = window, window_us, representation
        self.event_resize = event_resize
        self._cache = ProcessCache(cache_trials)

    @property
    def class_names(self) -> list[str]:
        return list(self._class_names)

    def trial(self, name: str) -> EventStream:
        """The decoded events of a trial file (kept in this process's small LRU cache)."""
        return self._cache.get(name, lambda: read_events(self.root / name))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        index = range(len(self))[index]
        entry = self.entries[index]
        events = self.trial(entry.trial).window(entry.start_us, entry.end_us)
        if len(events) == 0:
            raise DataError(
                f"{self.root / entry.trial}: no events between {entry.start_us} and {entry.end_us} us "
                f"({entry.where}); the labels do not fit the recording"
            )
        rng = self.sampling.rng(self.epoch, index)
        clip = event_frames(
            events, self.sampling, rng, self.window, self.window_us, self.event_resize, self.representation
        )
        return {"events": clip, "label": torch.tensor(entry.label, dtype=torch.int64), "index": index}

    def problems(
        self,
        *,
        decode: bool = True,
        min_frames: int = 1,
        exclude: Collection[str] = (),
        workers: int = 1,
        progress: bool = False,
    ) -> dict[str, list[Issue]]:
        """Every issue of every gesture, by sample: a missing or unreadable trial file, or (decode)
        an interval without events. Each trial file is checked, and decoded, once for all its
        gestures. min_frames is accepted for the common signature."""
        trials: dict[str, list[GestureEntry]] = {}
        for entry in self.entries:
            if entry.sample not in exclude:
                trials.setdefault(entry.trial, []).append(entry)
        check = partial(trial_problems, self.root, decode=decode)
        found = map_checks(check, list(trials.values()), total=len(trials), workers=workers, progress=progress)
        return {
            entry.sample: issues
            for gestures, issues_of_trial in zip(trials.values(), found)
            for entry, issues in zip(gestures, issues_of_trial)
        }


def trial_problems(root: Path, gestures: list[GestureEntry], *, decode: bool) -> list[list[Issue]]:
    """The issues of each gesture of one trial file (all of `gestures` share it)."""
    path = root / gestures[0].trial
    if not path.is_file():
        return [[("missing_samples", entry.where, f"trial file {path} does not exist")] for entry in gestures]
    if path.stat().st_size == 0:
        return [[("unreadable_files", str(path), "empty file (0 bytes)")] for _ in gestures]
    if not decode:
        return [[] for _ in gestures]
    try:
        events = read_events(path)
    except DataError as error:
        return [[("unreadable_files", str(path), str(error))] for _ in gestures]
    return [
        [("unreadable_files", entry.where, f"no events of {path.name} in this interval")]
        if len(events.window(entry.start_us, entry.end_us)) == 0
        else []
        for entry in gestures
    ]
