"""Labels files of event-only datasets: one event file per line, its class by name.

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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from velora.data.check_report import Issue
from velora.data.labels import CLASSES_FILE, read_class_file, read_lines
from velora.errors import DataError
from velora.events.readers import SUFFIXES

EVENT_LABEL_LINE_FORMAT = "<sample><TAB><class>"


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
    where: str = field(default="", compare=False, repr=False)  # "<labels file>:<line>", when read from one


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


def read_event_labels(path: str | Path, problems: list[Issue] | None = None) -> list[EventLabelLine]:
    """Every line of an event labels file, in file order; DataError naming file and line if malformed
    (with ``problems`` given, malformed lines go there and are skipped, see read_lines)."""
    parsed = read_lines(path, parse_event_label_line, EVENT_LABEL_LINE_FORMAT, "1\t5", problems)
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
