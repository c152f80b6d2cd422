"""Label files and class names of the PokerEvent / HARDVS frame layout.

A label file (``train_label.txt``, ``val_label.txt``, ``test_label.txt``) has one line per clip::

    <class_dir>/<sample> <num_frames> <label_index>
    action_Poker001/dvSave-2023_03_02_18_58_21 28 0

Blank lines and lines starting with ``#`` are skipped. ``num_frames`` is informational: the data
loader counts the frames on disk. An optional ``<root>/classes.txt`` holds one class name per line
in label-index order.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TypeVar

from velora.data.check_report import Issue
from velora.errors import DataError

T = TypeVar("T")

LABEL_LINE_FORMAT = "<class_dir>/<sample> <num_frames> <label_index>"
CLASSES_FILE = "classes.txt"


@dataclass(frozen=True)
class ClipEntry:
    """One line of a label file.

    sample: clip folder relative to the dataset root, with ``/`` separators
        (``action_Poker001/dvSave-2023_03_02_18_58_21``).
    num_frames: frame count written in the label file (not trusted; the loader counts files).
    label: class index, 0-based.
    """

    sample: str
    num_frames: int
    label: int
    where: str = field(default="", compare=False, repr=False)  # "<label file>:<line>", when read from one

    @property
    def class_dir(self) -> str:
        """The folder part of ``sample`` (``action_Poker001``); empty when the sample has none."""
        parent = PurePosixPath(self.sample).parent
        return "" if str(parent) == "." else str(parent)

    @property
    def name(self) -> str:
        """The clip's own folder name, the prefix of its ``_aps`` / ``_dvs`` frame folders."""
        return PurePosixPath(self.sample).name


def label_fields(line: str) -> list[str]:
    """A label line's fields: tab-separated when it holds a tab, else whitespace-separated. Their
    count tells the layouts apart: 1 a recording list, 2 event labels (sample, class), 3 frames."""
    return line.split("\t") if "\t" in line else line.split()


def natural_key(name: str) -> tuple:
    """Sort key: class names that are numbers first, by value, then the others by name."""
    return (0, int(name), "") if name.isdecimal() else (1, 0, name)


def parse_label_line(line: str) -> ClipEntry:
    """Parse one non-comment line; raises ValueError with the reason on a malformed one."""
    # Split from the right so a sample path containing spaces still parses.
    fields = line.rsplit(None, 2)
    if len(fields) != 3:
        raise ValueError(f"expected 3 fields, found {len(fields)}")
    sample, num_frames_text, label_text = fields
    try:
        num_frames, label = int(num_frames_text), int(label_text)
    except ValueError:
        raise ValueError("num_frames and label_index must be integers") from None
    if num_frames < 0 or label < 0:
        raise ValueError("num_frames and label_index must be >= 0")
    sample = sample.replace("\\", "/").rstrip("/")
    if sample.startswith("/") or ".." in PurePosixPath(sample).parts or not sample:
        raise ValueError("the sample must be a path relative to the dataset root")
    return ClipEntry(sample=sample, num_frames=num_frames, label=label)


def read_lines(
    path: str | Path,
    parse: Callable[[str], T],
    expected: str,
    example: str,
    problems: list[Issue] | None = None,
) -> list[tuple[int, T]]:
    """(line number, parse(line)) for every non-blank, non-comment line of a text file.

    The shared reader of label-style files. Raises DataError when the file is missing or not
    UTF-8. A line that does not parse raises DataError naming the file, the line number (1-based),
    the line, the expected format and an example; with ``problems`` given, it is appended there as
    a "malformed_lines" issue instead and skipped, so a check can list every bad line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"label file {path} does not exist; pass a file with lines '{expected}' (e.g. {example!r})")
    parsed = []
    for line_number, raw_line in enumerate(io.StringIO(read_text(path), newline=None), start=1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            parsed.append((line_number, parse(line)))
        except ValueError as reason:
            if problems is not None:
                message = f"cannot parse {line!r} ({reason}); expected '{expected}'"
                problems.append(("malformed_lines", f"{path}:{line_number}", message))
                continue
            raise DataError(
                f"{path}, line {line_number}: cannot parse {line!r} ({reason}); expected '{expected}', e.g. {example!r}"
            ) from None
    return parsed


def read_text(path: Path) -> str:
    """The text of a UTF-8 file; DataError naming the file and line when it is not UTF-8."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line_number = raw.count(b"\n", 0, error.start) + 1
        raise DataError(
            f"{path}, line {line_number}: not UTF-8 text ({error.reason} at byte {error.start}); save the file as UTF-8"
        ) from None


def read_class_file(path: Path) -> list[str]:
    """The names of a classes.txt, one per line in label-index order, blank lines skipped.

    Raises DataError when the file is not UTF-8 or lists a name twice.
    """
    names = [line.strip() for line in read_text(path).splitlines()]
    names = [name for name in names if name]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DataError(f"{path} lists these names more than once: {duplicates}")
    return names


def read_label_file(path: str | Path, problems: list[Issue] | None = None) -> list[ClipEntry]:
    """Read a label file into clip entries, in file order (DataError naming file and line if malformed;
    with ``problems`` given, malformed lines go there and are skipped, see read_lines)."""
    example = "action_Poker001/dvSave-2023_03_02_18_58_21 28 0"
    parsed = read_lines(path, parse_label_line, LABEL_LINE_FORMAT, example, problems)
    return [dataclasses.replace(entry, where=f"{path}:{number}") for number, entry in parsed]


def read_class_names(root: str | Path, entries: Sequence[ClipEntry]) -> list[str]:
    """Class names in label-index order.

    From ``<root>/classes.txt`` (one name per line, blank lines skipped) when present; every label
    in ``entries`` must index into it. Otherwise derived from the clips: the name of class ``i`` is
    the class folder of its clips. Indices no clip uses (a split may lack some classes) are named
    ``class_<i>``; write classes.txt to get real names and the full class count.

    Raises DataError when classes.txt is too short or holds duplicates, or when clips of one label
    index live in different class folders.
    """
    root = Path(root)
    classes_file = root / CLASSES_FILE
    max_label = max((entry.label for entry in entries), default=-1)
    if classes_file.is_file():
        names = read_class_file(classes_file)
        if max_label >= len(names):
            raise DataError(
                f"{classes_file} has {len(names)} class names but the labels go up to {max_label}; "
                "add the missing names (one per line, in label-index order) or fix the label file"
            )
        return names

    dirs_per_label: dict[int, set[str]] = {}
    for entry in entries:
        if not entry.class_dir:
            raise DataError(
                f"cannot derive class names: sample {entry.sample!r} has no class folder; "
                f"write {classes_file} with one class name per line"
            )
        dirs_per_label.setdefault(entry.label, set()).add(entry.class_dir)
    conflicts = {label: sorted(dirs) for label, dirs in dirs_per_label.items() if len(dirs) > 1}
    if conflicts:
        shown = "; ".join(f"label {label}: {dirs}" for label, dirs in sorted(conflicts.items())[:5])
        raise DataError(
            f"cannot derive class names: clips of one label index live in different class folders "
            f"({shown}); fix the label file or write {classes_file}"
        )
    return [
        next(iter(dirs_per_label[label])) if label in dirs_per_label else f"class_{label}"
        for label in range(max_label + 1)
    ]
