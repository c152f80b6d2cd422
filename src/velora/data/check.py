"""Check a dataset before training: every problem, each with the file it is in (``velora check-data``).

One checking path: each dataset reports its own problems (``problems()`` of ClipDataset,
EventFileDataset, RecordingDataset and PackedClipDataset, built ``lenient`` so that label-file
problems are listed instead of raised), and ``check_datasets`` gathers them with counts and
cross-split warnings into a ``CheckReport``. Two ways in:

- ``check_config(cfg, splits)``: the datasets a config describes (``velora check-data --config``,
  and training's check of its train and val splits before the first step);
- ``check_dataset(root)``: a folder on its own, each label file's layout told from its first
  data line (3 fields: frames, ``<class_dir>/<sample> <num_frames> <label>``; 2 fields: events,
  ``<sample><TAB><class>``) (``velora check-data ROOT``).

Problems (``CheckReport.problems``, keys of PROBLEM_KINDS) make ``ok`` False: the dataset cannot be
read as it is, or reads wrong labels. Warnings do not: duplicate or cross-split samples, frame
counts that differ from the label file's, classes without clips in a split.

``decode=True`` decodes every PNG and reads every event file (thorough, slow: it finds truncated
files); ``False`` reads only PNG headers (sizes, non-PNG files) and file sizes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from velora.data.check_report import NOTE_KINDS, PROBLEM_KINDS, CheckReport, split_name
from velora.data.event_labels import event_class_names, read_event_labels
from velora.data.factory import label_file, layout, make_dataset
from velora.data.labels import CLASSES_FILE, label_fields, read_class_file, read_class_names
from velora.data.layouts import LAYOUTS, Layout
from velora.data.layouts.base import ReadOptions
from velora.data.names import FRAME_COUNT_POLICIES, FRAME_PAIRINGS, MODALITIES
from velora.data.sampling import ClipSampling, SampledClips
from velora.errors import DataError

if TYPE_CHECKING:
    from velora.config import Config

SPLIT_FILES = ("train_label.txt", "val_label.txt", "test_label.txt")
EVENT_LABELS_FILE = "labels.txt"  # looked for when no split file exists


def check_datasets(
    root: str | Path,
    datasets: Mapping[str, SampledClips],
    *,
    num_classes: int | None = None,
    class_names: list[str] | None = None,
    decode: bool = True,
    min_frames: int = 1,
    workers: int = 1,
    progress: bool = False,
    report: CheckReport | None = None,
) -> CheckReport:
    """Gather every dataset's problems (split name -> dataset built with lenient=True) into a report.

    Each distinct sample is checked once, even when several splits list it. class_names: the names
    to show (default: from the first dataset that has them).
    """
    report = report or CheckReport(root=Path(root))
    report.num_classes = num_classes
    checked: dict[str, list] = {}
    for split, dataset in datasets.items():
        for kind, where, message in dataset.label_problems:
            report.problems[kind].append((where, message))
        found = dataset.problems(
            decode=decode, min_frames=min_frames, exclude=checked.keys(), workers=workers, progress=progress
        )
        for issues in found.values():
            for kind, where, message in issues:
                if kind == "warning":
                    report.warnings.append((where, message))
                elif kind not in NOTE_KINDS:
                    report.problems[kind].append((where, message))
        checked.update(found)
        samples = dict.fromkeys(e.sample for e in dataset.entries)  # label-file order: ties list in it
        notes: dict[str, Counter] = {}
        for sample in samples:
            for kind, _, message in checked[sample]:
                if kind in NOTE_KINDS:
                    notes.setdefault(kind, Counter())[message] += 1
        if notes:
            report.notes[split] = {kind: dict(notes[kind].most_common()) for kind in NOTE_KINDS if kind in notes}
        bad = {sample for sample in samples if any(kind in PROBLEM_KINDS for kind, _, _ in checked[sample])}
        report.clip_counts[split] = len(dataset.entries) + dataset.dropped_lines
        report.bad_clips[split] = sum(e.sample in bad for e in dataset.entries) + dataset.dropped_lines
        report.bad_clips = {s: n for s, n in report.bad_clips.items() if n}
        report.class_counts[split] = dict(sorted(Counter(e.label for e in dataset.entries).items()))
    if report.class_names is None:
        report.class_names = class_names
    _warn_repeats(datasets, report)
    return report


def _warn_repeats(datasets: Mapping[str, SampledClips], report: CheckReport) -> None:
    """Warnings for samples listed twice in a split or in several splits, and classes without clips."""
    splits_of: dict[str, set[str]] = {}
    for split, dataset in datasets.items():
        first: dict[str, str] = {}
        for entry in dataset.entries:
            where = getattr(entry, "where", "") or split
            if entry.sample in first:
                report.warnings.append(
                    (where, f"sample {entry.sample} is listed again (first at {first[entry.sample]})")
                )
            first.setdefault(entry.sample, where)
            splits_of.setdefault(entry.sample, set()).add(split)
    overlaps = Counter(tuple(sorted(s)) for s in splits_of.values() if len(s) > 1)
    for splits, count in sorted(overlaps.items()):
        report.warnings.append((str(report.root), f"{count} sample(s) are in several splits: {' and '.join(splits)}"))
    total = report.num_classes or len(report.class_names or [])
    for split, counts in report.class_counts.items():
        empty = [label for label in range(total) if not counts.get(label)]
        if empty:
            known = report.class_names or []
            names = [known[i] if i < len(known) else str(i) for i in empty]
            shown = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
            report.warnings.append((split, f"{len(empty)} of {total} classes have no clips: {shown}"))


def check_config(
    cfg: Config,
    splits: Sequence[str] = ("train", "val", "test"),
    *,
    decode: bool = True,
    workers: int = 1,
    progress: bool = False,
    missing_ok: bool = False,
) -> CheckReport:
    """Check the datasets of `splits` as `cfg` describes them (the layout, the label files, the
    modalities, model.num_classes, data.min_frames, data.frame_pairing, data.frame_count_policy,
    data.sensor_size).

    missing_ok: skip splits whose label file does not exist (``velora check-data`` checks the
    splits a dataset has); otherwise a missing one is a "label_files" problem.
    """
    d, kind = cfg.data, layout(cfg)
    report = CheckReport(root=Path(d.packed_root if d.format == "packed" else d.root))
    datasets: dict[str, SampledClips] = {}
    class_names = None
    for split in splits:
        source = label_file(cfg, split)
        listed = kind.label_files and d.format != "packed"
        is_file = not listed or source.is_file()
        if not is_file and missing_ok:
            continue
        try:
            datasets[split] = make_dataset(cfg, split, classes=class_names, lenient=True)
        except DataError as error:
            report.problems["label_files"].append((str(source if listed else report.root), str(error)))
            continue
        if listed:
            report.layouts[str(source)] = d.layout
        if class_names is None and kind.names_classes:  # the other splits number classes by these names
            class_names = datasets[split].class_names
    if not datasets and missing_ok and not report.problems["label_files"]:
        report.problems["label_files"].append((str(report.root), f"none of the label files of {list(splits)} exist"))
    names = class_names
    if not kind.names_classes and d.format != "packed" and datasets:
        names = _frame_class_names(Path(d.root), datasets.values(), report)
    elif d.format == "packed" and datasets:
        names = next(iter(datasets.values())).class_names
    return check_datasets(
        report.root,
        datasets,
        num_classes=cfg.model.num_classes,
        class_names=names,
        decode=decode,
        min_frames=d.min_frames,
        workers=workers,
        progress=progress,
        report=report,
    )


def check_dataset(
    root: str | Path,
    label_files: Sequence[str | Path] | None = None,
    *,
    num_classes: int | None = None,
    min_frames: int = 1,
    decode_images: bool = True,
    progress: bool = True,
    modalities: Sequence[str] = MODALITIES,
    frame_pairing: str = "number",
    frame_count_policy: str = "error",
    sensor_size: tuple[int, int] | None = None,
    workers: int = 1,
) -> CheckReport:
    """Walk a dataset folder's label files and samples and report every problem found (never stops early).

    root: dataset root.
    label_files: label files (relative paths are looked up under ``root``); default: those of
        train/val/test_label.txt that exist, else labels.txt. Each one's layout (frames or
        events) is told from its first data line.
    num_classes: labels must be in [0, num_classes); default: the length of classes.txt if any.
    min_frames: clips with fewer frames (in either modality) are problems.
    decode_images: decode every PNG / read every event file (thorough), or headers only (fast).
    modalities: frame folders to check, a subset of ("rgb", "event").
    frame_pairing: how RGB and event frames are paired, as for ClipDataset ("number",
        "accumulate", "position"); the report counts per split how the folders' numbers relate.
    frame_count_policy: "error": frames the pairing leaves without a partner are problems; "min":
        warnings (ClipDataset then leaves them out).
    sensor_size: (width, height) for event files that do not store it, as in EventFileDataset.
    workers: processes checking samples in parallel; 1 checks in this process.
    """
    bad_modalities = [m for m in modalities if m not in MODALITIES]
    if (
        bad_modalities
        or not modalities
        or frame_pairing not in FRAME_PAIRINGS
        or frame_count_policy not in FRAME_COUNT_POLICIES
        or min_frames < 0
    ):
        raise ValueError(
            f"invalid check_dataset arguments: modalities {tuple(modalities)} must be a non-empty subset of "
            f"{MODALITIES}, frame_pairing {frame_pairing!r} one of {FRAME_PAIRINGS}, frame_count_policy "
            f"{frame_count_policy!r} one of {FRAME_COUNT_POLICIES}, min_frames ({min_frames}) >= 0"
        )
    root = Path(root)
    report = CheckReport(root=root)
    if not root.is_dir():
        report.problems["label_files"].append((str(root), "dataset root does not exist or is not a folder"))
        return report
    num_classes = _classes_file_count(root, num_classes, report)
    files = _find_label_files(root, label_files, report)
    detected = {path: _detect_layout(path, report) for path in files}
    layouts = {path: found for path, found in detected.items() if found is not None}
    report.layouts = {str(path): found.name for path, found in layouts.items()}

    # Layouts that name classes number them over all their label files together.
    named = [path for path, found in layouts.items() if found.names_classes]
    classes = _event_classes(root, named, num_classes, report) if named else None
    sampling = ClipSampling(image_size=1)  # a check reads no frames through the sampling
    options = ReadOptions(
        tuple(modalities),
        frame_pairing=frame_pairing,
        frame_count_policy=frame_count_policy,
        sensor_size=sensor_size,
        classes=classes,
        num_classes=num_classes,
        lenient=True,
    )
    datasets: dict[str, SampledClips] = {}
    for path, found in layouts.items():
        if found.names_classes and classes is None:
            continue  # their class names are a problem already
        datasets[split_name(path)] = found.from_label_file(root, path, sampling, options)
    numbered = [datasets[split_name(p)] for p, found in layouts.items() if not found.names_classes]
    names = _frame_class_names(root, numbered, report) if numbered else classes
    return check_datasets(
        root,
        datasets,
        num_classes=num_classes,
        class_names=names,
        decode=decode_images,
        min_frames=min_frames,
        workers=workers,
        progress=progress,
        report=report,
    )


def _classes_file_count(root: Path, num_classes: int | None, report: CheckReport) -> int | None:
    """num_classes, else the length of classes.txt; a classes.txt that disagrees is a problem."""
    classes_file = root / CLASSES_FILE
    if not classes_file.is_file():
        return num_classes
    try:
        listed = len(read_class_file(classes_file))
    except DataError as error:
        report.problems["class_names"].append((str(classes_file), str(error)))
        return num_classes
    if num_classes is not None and listed != num_classes:
        report.problems["class_names"].append(
            (str(classes_file), f"lists {listed} classes but num_classes is {num_classes}")
        )
    return num_classes if num_classes is not None else listed


def _find_label_files(root: Path, label_files, report: CheckReport) -> list[Path]:
    if label_files is None:
        found = [root / name for name in SPLIT_FILES if (root / name).is_file()]
        if not found and (root / EVENT_LABELS_FILE).is_file():
            found = [root / EVENT_LABELS_FILE]
        if not found:
            report.problems["label_files"].append(
                (str(root), f"no label files found (looked for {', '.join(SPLIT_FILES)}, {EVENT_LABELS_FILE})")
            )
        return found
    found = []
    for name in label_files:
        path = Path(name)
        if not path.is_absolute() and (root / path).is_file():
            path = root / path
        if path.is_file():
            found.append(path)
        else:
            report.problems["label_files"].append((str(path), "label file does not exist"))
    return found


def _detect_layout(path: Path, report: CheckReport) -> Layout | None:
    """The layout whose label lines have as many fields as the file's first data line (events:
    ``sample<TAB>class``, 2; frames otherwise); None (and a problem) when the file cannot be read
    as UTF-8 text."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        report.problems["label_files"].append((str(path), f"cannot be read as UTF-8 text ({error})"))
        return None
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            fields = len(label_fields(line))
            return next((found for found in LAYOUTS.values() if found.label_line_fields == fields), LAYOUTS["frames"])
    report.warnings.append((str(path), "holds no label lines"))
    return LAYOUTS["frames"]


def _event_classes(root: Path, files: list[Path], num_classes: int | None, report: CheckReport) -> list[str] | None:
    """The class names of event labels files, numbered over all of them together (None: a problem)."""
    fields = [line.class_name for path in files for line in read_event_labels(path, problems=[])]
    try:
        return event_class_names(root, fields, None, num_classes)
    except DataError as error:
        report.problems["class_names"].append((str(root), str(error)))
        return None


def _frame_class_names(root: Path, datasets, report: CheckReport) -> list[str] | None:
    """The class names of frame-layout splits together (classes.txt or the class folders)."""
    try:
        return read_class_names(root, [entry for dataset in datasets for entry in dataset.entries])
    except DataError as error:
        report.problems["class_names"].append((str(root), str(error)))
        return None
