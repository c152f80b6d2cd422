"""`velora split`: carve a validation split out of a training list, stratified by class.

PokerEvent ships train and test lists only; model selection needs a validation split that is not
the test split (the original code selected on test). `split_train_val` reads the training list,
puts `val_fraction` of each class's samples (rounded, at least one when the class has two or more)
into the validation list, and writes the rest as a new training list:

    <root>/train_label.txt          read, never changed
    <root>/test_label.txt           never read for samples, never changed; a sample it lists is
                                    left out of both outputs (a train/test overlap is reported)
    <root>/val_label.txt            written: the validation samples
    <root>/train_split_label.txt    written: the training list without them

The choice depends only on (seed, the training list): the same command gives the same files. The
label formats are read: frames (`<class_dir>/<sample> <num_frames> <label>`), event files
(`<sample><TAB><class>`), and trial lists with one recording per line (DVS128 Gesture's
trials_to_train.txt, split by recording); lines are written back as they were.

`split_folders` makes all three lists of a dataset that ships none, only class folders of event
files (N-Caltech101): `<root>/<class>/<sample>.bin` -> train/val/test_label.txt in the event-file
format and classes.txt, stratified by class the same way.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from velora.data.event_labels import parse_event_label_line
from velora.data.labels import label_fields, natural_key, parse_label_line, read_text
from velora.errors import DataError

VAL_FILE = "val_label.txt"
TRAIN_SPLIT_FILE = "train_split_label.txt"


@dataclass
class SplitResult:
    train_file: Path
    val_file: Path
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # class -> (train, val)
    left_out: list[str] = field(default_factory=list)  # training samples the test list also holds
    written: list[Path] = field(default_factory=list)

    def format(self) -> str:
        lines = [f"{'class':32s} {'train':>7s} {'val':>5s}"]
        lines += [f"{name[:32]:32s} {t:7d} {v:5d}" for name, (t, v) in self.counts.items()]
        train, val = (sum(c[i] for c in self.counts.values()) for i in (0, 1))
        lines.append(f"{'all ' + str(len(self.counts)) + ' classes':32s} {train:7d} {val:5d}")
        if self.left_out:
            lines.append(
                f"left out of both: {len(self.left_out)} sample(s) also in the test list, e.g. {self.left_out[:3]}"
            )
        lines.append(f"wrote {', '.join(str(p) for p in self.written or [self.val_file, self.train_file])}")
        return "\n".join(lines)


def split_train_val(
    root: str | Path,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    train_labels: str = "train_label.txt",
    test_labels: str = "test_label.txt",
    val_out: str = VAL_FILE,
    train_out: str = TRAIN_SPLIT_FILE,
    force: bool = False,
) -> SplitResult:
    """Write `val_out` and `train_out` under `root` from `train_labels` (see the module docstring).

    Raises DataError when the training list is missing or malformed, when an output exists and
    `force` is not set, or when an output would overwrite an input.
    """
    if not 0 < val_fraction < 1:
        raise DataError(f"--val-fraction must be in (0, 1), got {val_fraction}")
    root = Path(root)
    source = root / train_labels
    outputs = [root / val_out, root / train_out]
    if any(out.resolve() in (source.resolve(), (root / test_labels).resolve()) for out in outputs):
        raise DataError(f"the outputs {val_out}, {train_out} must differ from the lists they are made from")
    if not source.is_file():
        raise DataError(f"training list {source} does not exist; give the dataset root that holds {train_labels}")
    existing = [str(out) for out in outputs if out.exists()]
    if existing and not force:
        raise DataError(f"{', '.join(existing)} already exist; pass --force to overwrite them")

    lines = _labelled_lines(source)
    test = root / test_labels
    test_samples = {sample for sample, _, _ in _labelled_lines(test)} if test.is_file() else set()
    left_out = [sample for sample, _, _ in lines if sample in test_samples]
    by_class: dict[str, list[str]] = {}
    for sample, class_key, line in lines:
        if sample not in test_samples:
            by_class.setdefault(class_key, []).append(line)

    val_lines, train_lines, counts = set(), [], {}
    for class_key in sorted(by_class, key=natural_key):
        members = by_class[class_key]
        take = min(len(members) - 1, max(1, round(val_fraction * len(members)))) if len(members) > 1 else 0
        rng = np.random.default_rng([seed, zlib.crc32(class_key.encode())])
        chosen = {members[i] for i in rng.permutation(len(members))[:take]}
        val_lines |= chosen
        counts[class_key] = (len(members) - take, take)
    for sample, _, line in lines:
        if line not in val_lines and sample not in test_samples:
            train_lines.append(line)
    ordered_val = [line for _, _, line in lines if line in val_lines]  # file order, not draw order
    _write(
        root / val_out,
        ordered_val,
        f"# validation split: {val_fraction:g} of each class of {train_labels}, seed {seed}",
    )
    _write(root / train_out, train_lines, f"# {train_labels} without the samples of {val_out}")
    return SplitResult(train_file=root / train_out, val_file=root / val_out, counts=counts, left_out=left_out)


def split_folders(
    root: str | Path, *, val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0, force: bool = False
) -> SplitResult:
    """train/val/test_label.txt (`<class>/<file><TAB><class>` lines) and classes.txt for class folders
    of event files, each class split val_fraction / test_fraction / the rest (at least one training
    sample per class); deterministic for a seed. Refuses to overwrite without `force`."""
    from velora.events.readers import SUFFIXES

    root = Path(root)
    if not 0 < val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise DataError(
            f"--val-fraction ({val_fraction}) and --test-fraction ({test_fraction}) must be in [0, 1) with a sum below 1"
        )
    if not root.is_dir():
        raise DataError(f"dataset root {root} does not exist; give the folder holding one folder per class")
    outputs = [root / name for name in ("train_label.txt", "val_label.txt", "test_label.txt", "classes.txt")]
    existing = [str(out) for out in outputs if out.exists()]
    if existing and not force:
        raise DataError(f"{', '.join(existing)} already exist; pass --force to overwrite them")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = {c: sorted(f.name for f in (root / c).iterdir() if f.suffix.lower() in SUFFIXES) for c in classes}
    classes = [c for c in classes if files[c]]
    if not classes:
        raise DataError(f"{root} holds no class folders of event files ({', '.join(sorted(SUFFIXES))})")
    lists: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    counts = {}
    for name in classes:
        members = files[name]
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        order = [members[i] for i in rng.permutation(len(members))]
        n_test = min(len(members) - 1, round(test_fraction * len(members)))
        n_val = min(len(members) - 1 - n_test, max(1 if len(members) > 2 else 0, round(val_fraction * len(members))))
        picked = {"test": set(order[:n_test]), "val": set(order[n_test : n_test + n_val])}
        for member in members:  # file order in every list
            split = next((s for s, chosen in picked.items() if member in chosen), "train")
            lists[split].append(f"{name}/{member}\t{name}")
        counts[name] = (len(members) - n_test - n_val, n_val)
    for split, lines in lists.items():
        _write(root / f"{split}_label.txt", lines, f"# {split} split of the class folders of {root}, seed {seed}")
    (root / "classes.txt").write_text("\n".join(classes) + "\n", encoding="utf-8")  # no comment lines here
    return SplitResult(
        train_file=root / "train_label.txt", val_file=root / "val_label.txt", counts=counts, written=outputs
    )


def _labelled_lines(path: Path) -> list[tuple[str, str, str]]:
    """(sample, class key, line as written) of every data line; the layout from each line's fields."""
    found = []
    for number, raw in enumerate(read_text(path).splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = label_fields(line)
        try:
            if len(fields) == 1:  # a list of recordings with several classes each (DVS128 Gesture trials)
                sample, class_key = line, "all"
            elif len(fields) == 2:
                sample, class_key = parse_event_label_line(line)
            else:
                entry = parse_label_line(line)
                sample, class_key = entry.sample, str(entry.label)
        except ValueError as reason:
            raise DataError(f"{path}, line {number}: cannot parse {line!r} ({reason})") from None
        found.append((sample, class_key, line))
    if not found:
        raise DataError(f"{path} holds no samples")
    return found


def _write(path: Path, lines: list[str], header: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    os.replace(tmp, path)


__all__ = ["SplitResult", "split_train_val", "TRAIN_SPLIT_FILE", "VAL_FILE"]
