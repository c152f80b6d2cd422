"""Check a dataset before training: every problem, each with the file it is in (``velora check-data``).

Two layouts, told apart per label file by its first data line (3 fields: frames, 2: events):
- frames (PokerEvent, HARDVS): label lines ``<class_dir>/<sample> <num_frames> <label>``, frames in
  ``<root>/<sample>/<name>_aps/*.png`` and ``<name>_dvs/*.png`` (velora.data.clips);
- events (velora.data.event_only): label lines ``<sample><TAB><class>``, one event file per sample.

Problems (``CheckReport.problems``, keys of PROBLEM_KINDS; both in velora.data.check_report) make
``ok`` False: the dataset cannot be read as it is, or reads wrong labels. Warnings do not:
duplicate or cross-split samples, frame counts that differ from the label file's, classes without
clips in a split.

``decode_images=True`` decodes every PNG and reads every event file (thorough, slow: it finds
truncated files); ``False`` reads only PNG headers (sizes, non-PNG files) and file sizes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from functools import partial
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from PIL import Image
from tqdm import tqdm

from velora.data.check_report import CheckReport, split_name
from velora.data.layout import FOLDER_SUFFIX, MODALITIES
from velora.errors import DataError
from velora.data.event_labels import (
    event_class_names,
    label_index,
    parse_event_label_line,
    resolve_event_file,
)
from velora.data.labels import CLASSES_FILE, LABEL_LINE_FORMAT, parse_label_line, read_class_names, read_text
from velora.events.readers import read_events

SPLIT_FILES = ("train_label.txt", "val_label.txt", "test_label.txt")
EVENT_LABELS_FILE = "labels.txt"  # looked for when no split file exists
WHAT = {"rgb": "RGB frame", "event": "event frame"}
Issue = tuple[str, str, str]  # (kind, file, message); kind "warning" for a warning


class LabelLine(NamedTuple):
    """One data line of a label file; ``sample`` is "" when malformed, ``label`` None when bad."""

    split: str
    sample: str
    label: int | None
    where: str  # "<label file>:<line number>"
    layout: str  # "frames" or "events"
    num_frames: int | None = None  # as written in a frames-layout line


def detect_layout(lines: list[tuple[int, str]]) -> str:
    """"events" when the first data line has 2 fields (``sample<TAB>class``), else "frames"."""
    for _, line in lines[:1]:
        fields = line.split("\t") if "\t" in line else line.split()
        return "events" if len(fields) == 2 else "frames"
    return "frames"


def check_dataset(
    root: str | Path,
    label_files: Sequence[str | Path] | None = None,
    *,
    num_classes: int | None = None,
    min_frames: int = 1,
    decode_images: bool = True,
    progress: bool = True,
    modalities: Sequence[str] = MODALITIES,
    frame_count_policy: str = "error",
    sensor_size: tuple[int, int] | None = None,
    workers: int = 1,
) -> CheckReport:
    """Walk a dataset's label files and clips and report every problem found (never stops early).

    root: dataset root.
    label_files: label files (relative paths are looked up under ``root``); default: those of
        train/val/test_label.txt that exist, else labels.txt.
    num_classes: labels must be in [0, num_classes); default: the length of classes.txt if any.
    min_frames: clips with fewer frames (in either modality) are problems.
    decode_images: decode every PNG / read every event file (thorough), or headers only (fast).
    modalities: frame folders to check, a subset of ("rgb", "event").
    frame_count_policy: "error": differing RGB / event frame counts are problems; "min": warnings
        (ClipDataset then uses the common prefix).
    sensor_size: (width, height) for event files that do not store it, as in EventFileDataset.
    workers: processes checking clips in parallel; 1 checks in this process.
    """
    bad_modalities = [m for m in modalities if m not in MODALITIES]
    if bad_modalities or not modalities or frame_count_policy not in ("error", "min") or min_frames < 0:
        raise ValueError(
            f"invalid check_dataset arguments: modalities {tuple(modalities)} must be a non-empty subset of "
            f"{MODALITIES}, frame_count_policy {frame_count_policy!r} one of ('error', 'min'), "
            f"min_frames ({min_frames}) >= 0"
        )
    root = Path(root)
    report = CheckReport(root=root)
    if not root.is_dir():
        report.problems["label_files"].append((str(root), "dataset root does not exist or is not a folder"))
        return report
    classes_file = root / CLASSES_FILE
    listed = None
    if classes_file.is_file():
        try:
            listed = len([n for n in read_text(classes_file).splitlines() if n.strip()])
        except DataError as error:
            report.problems["class_names"].append((str(classes_file), str(error)))
    if listed is not None:
        if num_classes is not None and listed != num_classes:
            report.problems["class_names"].append(
                (str(classes_file), f"lists {listed} classes but num_classes is {num_classes}")
            )
        num_classes = num_classes if num_classes is not None else listed
    report.num_classes = num_classes

    texts = {path: _data_lines(path, report) for path in _find_label_files(root, label_files, report)}
    texts = {path: text for path, text in texts.items() if text is not None}
    report.warnings += [(str(path), "holds no label lines") for path, text in texts.items() if not text]
    layouts = {path: detect_layout(text) for path, text in texts.items()}
    report.layouts = {str(path): layout for path, layout in layouts.items()}
    frame_texts = {path: text for path, text in texts.items() if layouts[path] == "frames"}
    event_texts = {path: text for path, text in texts.items() if layouts[path] == "events"}
    lines = _parse_frame_labels(root, frame_texts, num_classes, report) if frame_texts else []
    lines += _parse_event_labels(root, event_texts, num_classes, report) if event_texts else []
    _count_and_warn(lines, num_classes, report)

    # Check each distinct sample once, even when several splits list it.
    tasks: dict[str, LabelLine] = {}
    for line in lines:
        if line.sample:
            tasks.setdefault(line.sample, line)

    check = partial(
        _check_line,
        root=root,
        modalities=tuple(modalities),
        decode=decode_images,
        min_frames=min_frames,
        frame_count_policy=frame_count_policy,
        sensor_size=sensor_size,
    )
    bad_samples: set[str] = set()
    with ProcessPoolExecutor(workers) if workers > 1 else nullcontext() as pool:
        results = pool.map(check, tasks.values(), chunksize=16) if pool else map(check, tasks.values())
        bar = tqdm(results, total=len(tasks), desc="check clips", unit="clip", disable=not progress)
        for sample, issues in zip(tasks, bar):
            for kind, file, message in issues:
                if kind == "warning":
                    report.warnings.append((file, message))
                else:
                    report.problems[kind].append((file, message))
                    bad_samples.add(sample)
    for line in lines:
        if line.label is None or line.sample in bad_samples:
            report.bad_clips[line.split] = report.bad_clips.get(line.split, 0) + 1
    return report


def _check_line(line: LabelLine, *, root: Path, modalities, decode, min_frames, frame_count_policy, sensor_size):
    """The issues of one label line's sample (module level, so worker processes can run it)."""
    if line.layout == "events":
        return check_event_sample(root, line.sample, line.where, decode, sensor_size)
    return check_clip(
        root, line.sample, line.where, modalities, decode, min_frames, frame_count_policy, line.num_frames
    )


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


def _parse_frame_labels(root: Path, texts: dict, num_classes: int | None, report: CheckReport) -> list[LabelLine]:
    parsed, entries = [], []
    for path, text in texts.items():
        split = split_name(path)
        for line_number, line in text:
            where = f"{path}:{line_number}"
            try:
                entry = parse_label_line(line)
            except ValueError as reason:
                report.problems["malformed_lines"].append(
                    (where, f"cannot parse {line!r} ({reason}); expected '{LABEL_LINE_FORMAT}'")
                )
                parsed.append(LabelLine(split, "", None, where, "frames"))
                continue
            label = entry.label
            if num_classes is not None and label >= num_classes:
                report.problems["bad_labels"].append(
                    (where, f"clip {entry.sample} has label {label}, outside [0, {num_classes})")
                )
                label = None
            else:
                entries.append(entry)
            parsed.append(LabelLine(split, entry.sample, label, where, "frames", entry.num_frames))
    try:
        report.class_names = read_class_names(root, entries)
    except DataError as error:
        report.problems["class_names"].append((str(root), str(error)))
    return parsed


def _parse_event_labels(root: Path, texts: dict, num_classes: int | None, report: CheckReport) -> list[LabelLine]:
    parsed, class_of = [], {}
    for path, text in texts.items():
        for line_number, line in text:
            where = f"{path}:{line_number}"
            try:
                sample, class_of[where] = parse_event_label_line(line)
            except ValueError as reason:
                report.problems["malformed_lines"].append(
                    (where, f"cannot parse {line!r} ({reason}); expected '<sample><TAB><class>'")
                )
                sample = ""
            parsed.append(LabelLine(split_name(path), sample, None, where, "events"))
    try:
        names = event_class_names(root, list(class_of.values()), None, num_classes)
    except DataError as error:
        report.problems["class_names"].append((str(root), str(error)))
        return parsed
    report.class_names = names
    lookup = {name: index for index, name in enumerate(names)}
    for i, line in enumerate(parsed):
        if not line.sample:
            continue
        class_name = class_of[line.where]
        try:
            label = label_index(class_name, lookup)
        except KeyError:
            report.problems["bad_labels"].append(
                (line.where, f"sample {line.sample} has class {class_name!r}, not one of the {len(names)} classes")
            )
            continue
        if num_classes is not None and label >= num_classes:
            report.problems["bad_labels"].append(
                (line.where, f"sample {line.sample} has label {label}, outside [0, {num_classes})")
            )
            continue
        parsed[i] = line._replace(label=label)
    return parsed


def _data_lines(path: Path, report: CheckReport) -> list[tuple[int, str]] | None:
    """(line number, stripped line) of every non-blank, non-comment line; None when unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        report.problems["label_files"].append((str(path), f"cannot be read as UTF-8 text ({error})"))
        return None
    lines = [(number, raw.strip()) for number, raw in enumerate(text.splitlines(), start=1)]
    return [(number, line) for number, line in lines if line and not line.startswith("#")]


def _count_and_warn(lines, num_classes: int | None, report: CheckReport) -> None:
    """Clip and class counts per split; warnings for duplicates, overlaps, empty classes."""
    seen: dict[tuple[str, str], str] = {}
    splits_of: dict[str, set[str]] = {}
    for split, sample, label, where, *_ in lines:
        report.clip_counts[split] = report.clip_counts.get(split, 0) + 1
        counts = report.class_counts.setdefault(split, {})
        if label is not None:
            counts[label] = counts.get(label, 0) + 1
        if not sample:
            continue
        if (split, sample) in seen:
            report.warnings.append((where, f"sample {sample} is listed again (first at {seen[split, sample]})"))
        seen.setdefault((split, sample), where)
        splits_of.setdefault(sample, set()).add(split)
    overlaps = Counter(tuple(sorted(s)) for s in splits_of.values() if len(s) > 1)
    for splits, count in sorted(overlaps.items()):
        report.warnings.append((str(report.root), f"{count} sample(s) are in several splits: {' and '.join(splits)}"))
    total = num_classes or (len(report.class_names) if report.class_names else 0)
    for split, counts in report.class_counts.items():
        empty = [label for label in range(total) if not counts.get(label)]
        if empty:
            known = report.class_names or []
            names = [known[i] if i < len(known) else str(i) for i in empty]
            shown = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
            report.warnings.append((split, f"{len(empty)} of {total} classes have no clips: {shown}"))
        report.class_counts[split] = dict(sorted(counts.items()))


def scan_frames(folder: Path) -> tuple[list[Path], list[Issue]]:
    """The numbered .png frames of a folder in frame order, and an issue for every bad name."""
    numbered: dict[int, Path] = {}
    issues: list[Issue] = []
    for path in sorted(folder.iterdir()):
        name = path.name
        if name.startswith(".") or not name.lower().endswith(".png"):
            continue
        stem = name[: -len(".png")]
        if not (stem.isascii() and stem.isdigit()):
            issues.append(("bad_frame_names", str(path), "frame is not named by its frame number (e.g. 0000.png)"))
        elif int(stem) in numbered:
            other = numbered[int(stem)].name
            issues.append(("bad_frame_names", str(path), f"a second frame numbered {int(stem)} (also {other})"))
        else:
            numbered[int(stem)] = path
    return [numbered[n] for n in sorted(numbered)], issues


def image_size(path: Path, decode: bool) -> tuple[int, int]:
    """(width, height) of a PNG; with ``decode`` the whole image is decoded. Raises DataError."""
    try:
        if path.stat().st_size == 0:
            raise DataError("empty file (0 bytes)")
        with Image.open(path) as image:
            if decode:
                image.load()
            return image.size
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(f"cannot read the image ({type(error).__name__}: {error})") from None


def check_clip(
    root: Path,
    sample: str,
    where: str,
    modalities: Sequence[str],
    decode: bool,
    min_frames: int,
    frame_count_policy: str,
    listed_frames: int | None = None,
) -> list[Issue]:
    """Every issue of one frame-layout clip.

    ``where`` (label file:line) is named when the clip is missing; ``listed_frames`` (the label
    line's count) gives a warning when no modality has that many frames.
    """
    clip_dir = root / sample
    if not clip_dir.is_dir():
        return [("missing_samples", where, f"clip folder {clip_dir} does not exist")]
    name = PurePosixPath(sample).name
    issues: list[Issue] = []
    counts: dict[str, int] = {}
    for modality in modalities:
        folder = clip_dir / f"{name}{FOLDER_SUFFIX[modality]}"
        if not folder.is_dir():
            holds = sorted(p.name for p in clip_dir.iterdir())[:6]
            message = f"{WHAT[modality]} folder is missing (the clip folder holds {holds})"
            issues.append(("missing_folders", str(folder), message))
            continue
        try:
            frames, name_issues = scan_frames(folder)
        except OSError as error:
            issues.append(("unreadable_files", str(folder), f"cannot list the folder ({error.strerror or error})"))
            continue
        issues += name_issues
        if not frames:
            issues.append(("empty_folders", str(folder), f"{WHAT[modality]} folder holds no .png frames"))
            continue
        counts[modality] = len(frames)
        sizes: dict[Path, tuple[int, int]] = {}
        for path in frames:
            try:
                sizes[path] = image_size(path, decode)
            except DataError as error:
                issues.append(("unreadable_files", str(path), str(error)))
        if len(set(sizes.values())) > 1:
            common, _ = Counter(sizes.values()).most_common(1)[0]
            odd = [p for p, s in sizes.items() if s != common]
            issues.append(
                (
                    "size_mismatches",
                    str(odd[0]),
                    f"is {sizes[odd[0]][0]}x{sizes[odd[0]][1]} but most frames of {folder.name} are "
                    f"{common[0]}x{common[1]}; {len(odd)} frame(s) differ: {', '.join(p.name for p in odd[:5])}",
                )
            )
    if len(counts) == 2 and counts["rgb"] != counts["event"]:
        kind = "count_mismatches" if frame_count_policy == "error" else "warning"
        issues.append((kind, str(clip_dir), f"{counts['rgb']} RGB frames but {counts['event']} event frames"))
    if counts and listed_frames is not None and listed_frames not in counts.values():
        issues.append(("warning", where, f"lists {listed_frames} frames, the clip has {counts}"))
    short = {m: n for m, n in counts.items() if n < min_frames}
    if short:
        issues.append(("short_clips", str(clip_dir), f"fewer than {min_frames} frames: {short}"))
    return issues


def check_event_sample(
    root: Path, sample: str, where: str, decode: bool, sensor_size: tuple[int, int] | None
) -> list[Issue]:
    """Every issue of one event-only sample: a missing, empty or unreadable event file."""
    try:
        path = resolve_event_file(root, sample)
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
