"""RGB (APS) and event-image clips from the PokerEvent / HARDVS frame layout, as uint8 tensors.

Layout (``<sample>`` is the clip's folder name, the last part of the label-file path)::

    <root>/<class_dir>/<sample>/<sample>_aps/0000.png ...   RGB or grayscale APS frames
    <root>/<class_dir>/<sample>/<sample>_dvs/0000.png ...   event images: red / blue on white

Frame names are zero-padded frame numbers of any width, sorted numerically.

One item is a dict (``T`` = ``num_frames``, ``S`` = ``image_size``)::

    "rgb":    torch.uint8 (T, 3, S, S)   present when "rgb" is in modalities
    "events": torch.uint8 (T, 3, S, S)   present when "event" is in modalities
    "label":  torch.int64 ()
    "index":  int                        position in the dataset

torch's default collate stacks these into (B, T, 3, S, S), (B,) and (B,). Frames stay uint8: the
model normalises them on its device, which keeps host-to-device copies 4x smaller than float32.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Collection, Sequence
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from velora.data.check_report import Issue, map_checks
from velora.data.labels import ClipEntry, read_class_names, read_label_file
from velora.data.layout import BATCH_KEY, FOLDER_SUFFIX, FRAME_COUNT_POLICIES, MODALITIES
from velora.data.sampling import ClipSampling, SampledClips, modality_problems
from velora.errors import DataError
from velora.events.resize import EVENT_RESIZE, resize_event_image


WHAT = {"rgb": "RGB frame", "event": "event frame"}


class FrameFolder(NamedTuple):
    """The frame files of one folder, in frame-number order."""

    folder: Path
    names: tuple[str, ...]


def scan_frames(folder: Path) -> tuple[FrameFolder, list[Issue]]:
    """``folder``'s ``.png`` frames sorted by frame number, and a "bad_frame_names" issue per bad name.

    Hidden files (``.DS_Store``, ``._0000.png``) and non-PNG files are ignored. A PNG whose name is
    not a number, or a second PNG with a number already taken, is left out and reported.
    Raises OSError when the folder cannot be listed.
    """
    numbered: dict[int, str] = {}
    issues: list[Issue] = []
    with os.scandir(folder) as listing:
        names = sorted(dirent.name for dirent in listing)
    for name in names:
        if name.startswith(".") or not name.lower().endswith(".png"):
            continue
        stem = name[: -len(".png")]
        if not (stem.isascii() and stem.isdigit()):
            issues.append(("bad_frame_names", str(folder / name), "is not named by its frame number (e.g. 0000.png)"))
        elif int(stem) in numbered:
            other = numbered[int(stem)]
            issues.append(("bad_frame_names", str(folder / name), f"is a second frame numbered {int(stem)} (also {other})"))
        else:
            # Interned: "0000.png" of every clip is then one string, which keeps the cache small.
            numbered[int(stem)] = sys.intern(name)
    return FrameFolder(folder, tuple(numbered[number] for number in sorted(numbered))), issues


def list_frames(folder: Path, what: str) -> FrameFolder:
    """``folder``'s frames in frame-number order (scan_frames); ``what`` names it in errors.

    A missing folder, a PNG not named by a number, two names with one number, and a folder
    without frames are DataErrors.
    """
    if not folder.is_dir():
        parent = folder.parent
        siblings = sorted(p.name for p in parent.iterdir())[:6] if parent.is_dir() else []
        raise DataError(
            f"{what} folder {folder} does not exist (the clip folder holds {siblings}); "
            f"each clip needs <sample>{FOLDER_SUFFIX['rgb']} and <sample>{FOLDER_SUFFIX['event']} "
            "frame folders"
        )
    frames, issues = scan_frames(folder)
    for _, path, message in issues:
        fix = "keep one" if "second frame" in message else "rename the frames to zero-padded numbers such as 0000.png"
        raise DataError(f"frame {path} {message}; {fix}")
    if not frames.names:
        raise DataError(
            f"{what} folder {folder} holds no .png frames; re-export the clip or remove it from "
            "the label file"
        )
    return frames


def read_frame(path: Path) -> Image.Image:
    """Decode one PNG as an RGB image (grayscale APS frames get three equal channels)."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(
            f"cannot read frame {path} ({type(error).__name__}: {error}); the file is corrupt or "
            "not a PNG: re-export the clip or remove it from the label file"
        ) from None


class ClipDataset(SampledClips):
    """Clips of T frames per modality, taken at the same frame indices in RGB and events.

    root: dataset root holding the class folders (and optionally classes.txt).
    labels: a label file (a relative path is looked up under ``root`` first) or clip entries.
    sampling: T frames per clip (:func:`segment_indices`: random offsets in training, segment
        centres otherwise; short clips repeat frames), the size S (bilinear resize for RGB,
        ``event_resize`` for events), the training crop and flip, the seed (ClipSampling).
    modalities: a subset of ("rgb", "event"); only these folders are read and returned.
    event_resize: how event images are resized (velora.events.resize): "keep_events" (default)
        keeps every event pixel visible, in its own colour; "nearest", "box", "bilinear" are PIL's.
    frame_count_policy: when a clip's RGB and event frame counts differ: "error" raises,
        "min" uses the first min(n_rgb, n_event) frames of both.
    num_classes: when given, every label must be in [0, num_classes).
    lenient: a malformed label line or a label out of range is recorded in ``label_problems`` and
        the line skipped (``dropped_lines`` counts them), instead of raising at the first; the
        dataset check builds datasets this way to list every problem (see :meth:`problems`).

    The crop box and the flip are drawn once per item and applied to all T frames of both
    modalities (in fractions of each frame, so differing RGB / event resolutions still line up).
    Each clip's directory listing is cached after its first read.

    With ``persistent_workers=True`` a DataLoader keeps the dataset copies it made when its workers
    started, so :meth:`set_epoch` does not reach them; leave it off when training with this class.
    """

    def __init__(
        self,
        root: str | Path,
        labels: str | Path | Sequence[ClipEntry],
        sampling: ClipSampling = ClipSampling(),
        *,
        modalities: Sequence[str] = MODALITIES,
        event_resize: str = "keep_events",
        frame_count_policy: str = "error",
        num_classes: int | None = None,
        lenient: bool = False,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(
                f"dataset root {self.root} does not exist or is not a folder; pass the folder that "
                "holds the class folders and the label files"
            )
        self.modalities = tuple(modalities)
        problems = modality_problems(self.modalities, MODALITIES)
        if sampling.image_size is None:
            problems.append("sampling.image_size must be set: frames are resized to S x S")
        if event_resize not in EVENT_RESIZE:
            problems.append(f"event_resize {event_resize!r} is not one of {EVENT_RESIZE}")
        if frame_count_policy not in FRAME_COUNT_POLICIES:
            problems.append(
                f"frame_count_policy {frame_count_policy!r} is not one of {FRAME_COUNT_POLICIES}"
            )
        if problems:
            raise ValueError("invalid ClipDataset arguments: " + "; ".join(problems))

        self.label_problems: list[Issue] = []
        if isinstance(labels, (str, Path)):
            label_file = Path(labels)
            if not label_file.is_absolute() and (self.root / label_file).is_file():
                label_file = self.root / label_file
            self.label_file: Path | None = label_file
            entries = read_label_file(label_file, self.label_problems if lenient else None)
        else:
            self.label_file = None
            entries = list(labels)
        source = self.label_file or "the given entries"
        self.entries = []
        for entry in entries:
            if num_classes is not None and not 0 <= entry.label < num_classes:
                if not lenient:
                    raise DataError(
                        f"clip {entry.sample} in {source} has label {entry.label}, outside [0, {num_classes}); "
                        "fix the label file or num_classes"
                    )
                message = f"clip {entry.sample} has label {entry.label}, outside [0, {num_classes})"
                self.label_problems.append(("bad_labels", entry.where or str(source), message))
                continue
            self.entries.append(entry)
        self.dropped_lines = len(self.label_problems)

        self.sampling, self.num_classes = sampling, num_classes
        self.event_resize = event_resize
        self.frame_count_policy = frame_count_policy
        self._class_names: list[str] | None = None
        self._frame_folders: dict[int, dict[str, FrameFolder]] = {}

    @property
    def class_names(self) -> list[str]:
        """Class names in label order, from classes.txt or the class folders (read_class_names)."""
        if self._class_names is None:
            self._class_names = read_class_names(self.root, self.entries)
        return self._class_names

    def frame_folders(self, index: int) -> dict[str, FrameFolder]:
        """The requested modalities' frame lists of clip ``index``, equal in length (cached)."""
        if index not in self._frame_folders:
            entry = self.entries[index]
            clip_dir = self.root / entry.sample
            if not clip_dir.is_dir():
                raise DataError(
                    f"clip folder {clip_dir} (listed in {self.label_file or 'the given entries'}) "
                    "does not exist; restore it or remove the line from the label file"
                )
            self._frame_folders[index] = {
                m: list_frames(clip_dir / f"{entry.name}{FOLDER_SUFFIX[m]}", WHAT[m])
                for m in self.modalities
            }
        folders = self._frame_folders[index]
        if len(folders) == 2:
            n_rgb, n_event = len(folders["rgb"].names), len(folders["event"].names)
            if n_rgb != n_event:
                if self.frame_count_policy == "error":
                    raise DataError(
                        f"clip {self.root / self.entries[index].sample} has {n_rgb} RGB frames but "
                        f"{n_event} event frames; fix the export, or pass "
                        "frame_count_policy='min' to use the first min(n_rgb, n_event) of both"
                    )
                n = min(n_rgb, n_event)
                folders = {m: FrameFolder(f.folder, f.names[:n]) for m, f in folders.items()}
        return folders

    def problems(
        self, *, decode: bool = True, min_frames: int = 1, exclude: Collection[str] = (), workers: int = 1,
        progress: bool = False,
    ) -> dict[str, list[Issue]]:
        """Every issue of every clip on disk, by sample (see clip_problems), skipping ``exclude``d samples.

        decode: decode every PNG (thorough, finds truncated files), or read headers only.
        min_frames: clips with fewer frames (in either modality) are "short_clips".
        Label-file problems are in ``label_problems`` (with ``lenient=True``).
        """
        entries = list({e.sample: e for e in self.entries if e.sample not in exclude}.values())
        check = partial(
            clip_problems, self.root, modalities=self.modalities, decode=decode, min_frames=min_frames,
            frame_count_policy=self.frame_count_policy,
        )
        found = map_checks(check, entries, total=len(entries), workers=workers, progress=progress)
        return {entry.sample: issues for entry, issues in zip(entries, found)}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        index = range(len(self))[index]  # a plain non-negative int, also for -1 or numpy ints
        entry = self.entries[index]
        folders = self.frame_folders(index)
        # RGB leads when both exist; the counts are equal after frame_folders' check.
        num_clip_frames = len(folders["rgb" if "rgb" in folders else "event"].names)

        frame_indices, box, flip = self.draw(index, num_clip_frames)

        item: dict[str, torch.Tensor | int] = {}
        for modality in self.modalities:
            item[BATCH_KEY[modality]] = self._load_frames(folders[modality], frame_indices, box, flip, modality)
        item["label"] = torch.tensor(entry.label, dtype=torch.int64)
        item["index"] = index
        return item

    def _load_frames(
        self,
        frames: FrameFolder,
        frame_indices: np.ndarray,
        box: tuple[float, float, float, float],
        flip: bool,
        modality: str,
    ) -> torch.Tensor:
        """Decode, crop, resize (RGB bilinear, events by ``event_resize``) and flip the chosen frames:
        uint8 (T, 3, S, S)."""
        size = self.sampling.image_size
        decoded: dict[int, np.ndarray] = {}  # short clips repeat indices; decode each frame once
        first_path, first_size = None, None
        for frame_index in dict.fromkeys(frame_indices.tolist()):
            path = frames.folder / frames.names[frame_index]
            image = read_frame(path)
            if first_size is None:
                first_path, first_size = path, image.size
            elif image.size != first_size:
                raise DataError(
                    f"frames of one clip differ in size: {first_path} is {first_size[0]}x"
                    f"{first_size[1]}, {path} is {image.size[0]}x{image.size[1]}; re-export the "
                    "clip at one resolution"
                )
            width, height = image.size
            pixel_box = (box[0] * width, box[1] * height, box[2] * width, box[3] * height)
            if modality == "rgb":
                resized = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR, box=pixel_box))
            else:
                resized = resize_event_image(np.asarray(image), size, pixel_box, self.event_resize)
            decoded[frame_index] = resized[:, ::-1] if flip else resized  # (S, S, 3)
        clip = np.stack([decoded[i] for i in frame_indices.tolist()])  # (T, S, S, 3)
        return torch.from_numpy(clip).permute(0, 3, 1, 2).contiguous()  # (T, 3, S, S)


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


def clip_problems(
    root: Path,
    entry: ClipEntry,
    *,
    modalities: Sequence[str],
    decode: bool,
    min_frames: int,
    frame_count_policy: str,
) -> list[Issue]:
    """Every issue of one clip on disk, each with its file: a missing clip or modality folder, bad
    frame names, no frames, unreadable frames, frames of differing sizes, RGB / event frame counts
    that differ ("warning" under frame_count_policy "min"), fewer than ``min_frames`` frames, and a
    frame count other than the label line's ("warning").
    """
    clip_dir = root / entry.sample
    if not clip_dir.is_dir():
        return [("missing_samples", entry.where or str(clip_dir), f"clip folder {clip_dir} does not exist")]
    issues: list[Issue] = []
    counts: dict[str, int] = {}
    for modality in modalities:
        folder = clip_dir / f"{entry.name}{FOLDER_SUFFIX[modality]}"
        if not folder.is_dir():
            holds = sorted(p.name for p in clip_dir.iterdir())[:6]
            issues.append(("missing_folders", str(folder), f"{WHAT[modality]} folder is missing (the clip folder holds {holds})"))
            continue
        try:
            frames, name_issues = scan_frames(folder)
        except OSError as error:
            issues.append(("unreadable_files", str(folder), f"cannot list the folder ({error.strerror or error})"))
            continue
        issues += name_issues
        if not frames.names:
            issues.append(("empty_folders", str(folder), f"{WHAT[modality]} folder holds no .png frames"))
            continue
        counts[modality] = len(frames.names)
        sizes: dict[Path, tuple[int, int]] = {}
        for name in frames.names:
            try:
                sizes[folder / name] = image_size(folder / name, decode)
            except DataError as error:
                issues.append(("unreadable_files", str(folder / name), str(error)))
        if len(set(sizes.values())) > 1:
            common, _ = Counter(sizes.values()).most_common(1)[0]
            odd = [p for p, s in sizes.items() if s != common]
            issues.append((
                "size_mismatches", str(odd[0]),
                f"is {sizes[odd[0]][0]}x{sizes[odd[0]][1]} but most frames of {folder.name} are "
                f"{common[0]}x{common[1]}; {len(odd)} frame(s) differ: {', '.join(p.name for p in odd[:5])}",
            ))
    if len(counts) == 2 and counts["rgb"] != counts["event"]:
        kind = "count_mismatches" if frame_count_policy == "error" else "warning"
        issues.append((kind, str(clip_dir), f"{counts['rgb']} RGB frames but {counts['event']} event frames"))
    if counts and entry.where and entry.num_frames not in counts.values():
        issues.append(("warning", entry.where, f"lists {entry.num_frames} frames, the clip has {counts}"))
    short = {m: n for m, n in counts.items() if n < min_frames}
    if short:
        issues.append(("short_clips", str(clip_dir), f"fewer than {min_frames} frames: {short}"))
    return issues
