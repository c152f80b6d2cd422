"""What a dataset check found (``CheckReport``), how it reads as text, and the pieces every
dataset's ``problems()`` shares (the issue type, the parallel runner). velora.data.check runs it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from tqdm import tqdm

from velora.errors import DataError

# One finding: (kind, where, message). kind: a PROBLEM_KINDS key, "warning" for a finding that
# does not stop training, or a NOTE_KINDS key for a fact many clips share (counted per split, not
# listed); where: a file, a folder, or "<label file>:<line number>".
Issue = tuple[str, str, str]

PROBLEM_KINDS = {
    "label_files": "label files missing or unreadable",
    "malformed_lines": "malformed label lines",
    "bad_labels": "labels out of range or unknown",
    "class_names": "class names that cannot be worked out",
    "missing_samples": "label lines that point nowhere",
    "missing_folders": "missing modality folders",
    "empty_folders": "frame folders without frames",
    "bad_frame_names": "frames not named by their number",
    "unreadable_files": "unreadable, corrupt or empty files",
    "size_mismatches": "clips whose frames differ in size",
    "count_mismatches": "clips whose RGB and event frames do not all pair up",
    "short_clips": "clips with too few frames",
}

NOTE_KINDS = {
    "frame_numbers": "RGB / event frame numbers",
    "left_out": "left out by the pairing",
}


@dataclass
class CheckReport:
    """What check_dataset found.

    problems: kind (a PROBLEM_KINDS key) -> [(file, message)], every problem found.
    warnings: [(file, message)], findings that do not stop training.
    layouts: label file -> "frames" or "events".
    clip_counts: split -> label lines parsed; bad_clips: split -> those with a problem.
    notes: split -> NOTE_KINDS key -> {message: clips}, e.g. {"frame_numbers":
        {"RGB every 5th frame, events every frame": 40, "same numbers": 2}}.
    class_counts: split -> {label: clips}; class_names: names in label order, when known.
    num_classes: the number of classes checked against (argument, else classes.txt), when known.
    """

    root: Path
    problems: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: {k: [] for k in PROBLEM_KINDS})
    warnings: list[tuple[str, str]] = field(default_factory=list)
    layouts: dict[str, str] = field(default_factory=dict)
    clip_counts: dict[str, int] = field(default_factory=dict)
    bad_clips: dict[str, int] = field(default_factory=dict)
    notes: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    class_counts: dict[str, dict[int, int]] = field(default_factory=dict)
    class_names: list[str] | None = None
    num_classes: int | None = None

    @property
    def ok(self) -> bool:
        return not any(self.problems.values())

    @property
    def num_problems(self) -> int:
        return sum(len(found) for found in self.problems.values())

    def format(self, max_per_kind: int = 20, max_table_classes: int = 60) -> str:
        """The report as text: label files, clips and classes per split, then problems, warnings."""
        lines = [f"dataset {self.root}"]
        for label_file, layout in self.layouts.items():
            split = split_name(Path(label_file))
            lines.append(
                f"  {Path(label_file).name}: {layout} layout, {self.clip_counts.get(split, 0)} clips, "
                f"{self.bad_clips.get(split, 0)} with problems"
            )
            for kind, counts in self.notes.get(split, {}).items():
                noted = "; ".join(f"{clips} clip{'s' * (clips != 1)} {message}" for message, clips in counts.items())
                lines.append(f"    {NOTE_KINDS[kind]}: {noted}")
        lines += self._format_classes(max_table_classes)
        for kind, found in self.problems.items():
            if found:
                lines.append(f"{PROBLEM_KINDS[kind]} ({len(found)}):")
                lines += _format_items(found, max_per_kind)
        if self.warnings:
            lines.append(f"warnings ({len(self.warnings)}):")
            lines += _format_items(self.warnings, max_per_kind)
        verdict = "OK" if self.ok else f"FAILED: {self.num_problems} problem(s)"
        lines.append(f"{verdict}, {len(self.warnings)} warning(s)")
        return "\n".join(lines)

    def raise_for_problems(self) -> None:
        """Raise one DataError holding the formatted report when anything is wrong."""
        if not self.ok:
            raise DataError(
                f"the dataset check found problems; fix them, or train with bad clips skipped:\n{self.format()}"
            )

    def _format_classes(self, max_table_classes: int) -> list[str]:
        splits = list(self.class_counts)
        if not splits:
            return []
        labels = sorted({label for counts in self.class_counts.values() for label in counts})
        num_classes = self.num_classes or len(self.class_names or []) or (labels[-1] + 1 if labels else 0)
        lines = [f"classes: {num_classes}"]
        for split in splits:
            counts = [self.class_counts[split].get(label, 0) for label in range(num_classes)]
            present = sum(1 for c in counts if c)
            low, high = (min(counts), max(counts)) if counts else (0, 0)
            lines.append(f"  {split}: {present} classes with clips, {low} to {high} clips per class")
        if 0 < num_classes <= max_table_classes:
            lines.append("  " + "label".ljust(6) + "class".ljust(24) + "".join(s.rjust(8) for s in splits))
            for label in range(num_classes):
                name = self.class_names[label] if self.class_names and label < len(self.class_names) else ""
                row = "".join(str(self.class_counts[s].get(label, 0)).rjust(8) for s in splits)
                lines.append(f"  {str(label).ljust(6)}{name[:23].ljust(24)}{row}")
        return lines


def _format_items(items: list[tuple[str, str]], limit: int) -> list[str]:
    lines = [f"  {file}: {message}" for file, message in items[:limit]]
    if len(items) > limit:
        lines.append(f"  ... and {len(items) - limit} more")
    return lines


T = TypeVar("T")
R = TypeVar("R")


def map_checks(
    check: Callable[[T], R], items: Iterable[T], *, total: int, workers: int = 1, progress: bool = False
) -> Iterator[R]:
    """check(item) for every item, in order, in `workers` processes (1: this process), with a bar.

    `check` must be a module-level function (a functools.partial of one) so worker processes can
    run it.
    """
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            yield from tqdm(
                pool.map(check, items, chunksize=16), total=total, desc="check", unit="clip", disable=not progress
            )
    else:
        yield from tqdm(map(check, items), total=total, desc="check", unit="clip", disable=not progress)


def split_name(label_file: Path) -> str:
    """``train_label.txt`` -> ``train``; any other file -> its stem."""
    return label_file.stem.removesuffix("_label")
