"""RGB (APS) and event-image clips from the PokerEvent / HARDVS frame layout, as uint8 tensors.

Layout (``<sample>`` is the clip's folder name, the last part of the label-file path)::

    <root>/<class_dir>/<sample>/<sample>_aps/0000.png ...   RGB or grayscale APS frames
    <root>/<class_dir>/<sample>/<sample>_dvs/0000.png ...   event images: red / blue on white

Frame names are zero-padded frame numbers of any width, sorted numerically. The two folders'
frames are paired by their numbers (``frame_pairing``, velora.data.pairing): frame k of a clip is
the k-th pair, and the folders may hold frames that have no partner (HARDVS: RGB every 5th frame).

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
import warnings
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
from velora.data.names import BATCH_KEY, FOLDER_SUFFIX, FRAME_COUNT_POLICIES, FRAME_PAIRINGS, MODALITIES
from velora.data.pairing import (
    accumulate_event_images,
    number_relation,
    pair_frames,
    pairing_advice,
    pairing_problem,
)
from velora.data.sampling import ClipDraw, ClipSampling, SampledClips, modality_problems
from velora.errors import DataError, DataWarning
from velora.events.resize import EVENT_RESIZE, resize_event_image

WHAT = {"rgb": "RGB frame", "event": "event frame"}


class FrameFolder(NamedTuple):
    """The frames of one folder, in order: frame k is the file ``names[k]``, or, when ``groups`` is
    given (event frames under frame_pairing accumulate), the files ``groups[k]`` combined into one
    image (``names[k]`` is the last of them)."""

    folder: Path
    names: tuple[str, ...]
    groups: tuple[tuple[str, ...], ...] | None = None


def frame_numbers(frames: FrameFolder) -> tuple[int, ...]:
    """The frame numbers of ``frames.names`` (``00000005.png`` -> 5)."""
    return tuple(int(name[: -len(".png")]) for name in frames.names)


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
            issues.append(
                ("bad_frame_names", str(folder / name), f"is a second frame numbered {int(stem)} (also {other})")
            )
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
            f"{what} folder {folder} holds no .png frames; re-export the clip or remove it from the label file"
        )
    return frames


def read_frame_at(frames: FrameFolder, index: int) -> Image.Image:
    """Frame ``index`` of ``frames`` as an RGB image: its file, or its group of event images combined
    at their stored resolution (accumulate_event_images), before any resize."""
    if frames.groups is None or len(frames.groups[index]) == 1:
        return read_frame(frames.folder / frames.names[index])
    paths = [frames.folder / name for name in frames.groups[index]]
    images = [np.asarray(read_frame(path)) for path in paths]
    for path, image in zip(paths, images):
        if image.shape != images[0].shape:
            (height, width), (odd_height, odd_width) = images[0].shape[:2], image.shape[:2]
            raise DataError(
                f"frames of one clip differ in size: {paths[0]} is {width}x{height}, {path} is "
                f"{odd_width}x{odd_height}; re-export the clip at one resolution"
            )
    return Image.fromarray(accumulate_event_images(images))


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
    frame_pairing: which event frames go with each RGB frame (velora.data.pairing): "number"
        (the same frame number), "accumulate" (the event frames since the previous RGB frame,
        combined), "position" (k-th with k-th).
    frame_count_policy: when the pairing leaves frames without a partner: "error" raises, naming
        what the folders hold and the settings that fit; "min" uses the paired frames (under
        "position" the first min(n_rgb, n_event) of both) and leaves the others out, with a
        DataWarning for the first such clip.
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
        frame_pairing: str = "number",
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
        if frame_pairing not in FRAME_PAIRINGS:
            problems.append(f"frame_pairing {frame_pairing!r} is not one of {FRAME_PAIRINGS}")
        if frame_count_policy not in FRAME_COUNT_POLICIES:
            problems.append(f"frame_count_policy {frame_count_policy!r} is not one of {FRAME_COUNT_POLICIES}")
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
        self.frame_pairing, self.frame_count_policy = frame_pairing, frame_count_policy
        self._class_names: list[str] | None = None
        self._frame_folders: dict[int, dict[str, FrameFolder]] = {}
        self._warned_lone_frames = False

    @property
    def class_names(self) -> list[str]:
        """Class names in label order, from classes.txt or the class folders (read_class_names)."""
        if self._class_names is None:
            self._class_names = read_class_names(self.root, self.entries)
        return self._class_names

    def frame_folders(self, index: int) -> dict[str, FrameFolder]:
        """The requested modalities' frames of clip ``index``, paired and equal in length (cached).
        With frame_sampling "release" each modality keeps its whole folder, unpaired: the released
        code draws from each folder on its own."""
        if index not in self._frame_folders:
            entry = self.entries[index]
            clip_dir = self.root / entry.sample
            if not clip_dir.is_dir():
                raise DataError(
                    f"clip folder {clip_dir} (listed in {self.label_file or 'the given entries'}) "
                    "does not exist; restore it or remove the line from the label file"
                )
            folders = {m: list_frames(clip_dir / f"{entry.name}{FOLDER_SUFFIX[m]}", WHAT[m]) for m in self.modalities}
            if len(folders) == 2 and self.sampling.frame_sampling != "release":
                folders = self._pair(clip_dir, folders["rgb"], folders["event"])
            self._frame_folders[index] = folders
        return self._frame_folders[index]

    def _pair(self, clip_dir: Path, rgb: FrameFolder, event: FrameFolder) -> dict[str, FrameFolder]:
        """The paired frames of both folders (frame_pairing). Frames without a partner raise under
        frame_count_policy "error"; under "min" they are left out, and the first clip of this
        dataset that leaves any out is warned about (DataWarning)."""
        rgb_numbers, event_numbers = frame_numbers(rgb), frame_numbers(event)
        pairs = pair_frames(rgb_numbers, event_numbers, self.frame_pairing)
        if not pairs.complete:
            problem = f"clip {clip_dir}: {pairing_problem(rgb_numbers, event_numbers, pairs, self.frame_pairing)}"
            if self.frame_count_policy == "error" or not pairs.rgb:
                raise DataError(f"{problem}; {pairing_advice(rgb_numbers, event_numbers, self.frame_pairing)}")
            if not self._warned_lone_frames:
                self._warned_lone_frames = True
                warnings.warn(
                    f"{problem}; data.frame_count_policy min leaves them out. Later clips are not "
                    "warned about: `velora check-data` lists every one",
                    DataWarning,
                    stacklevel=3,
                )
        groups = tuple(tuple(event.names[k] for k in group) for group in pairs.event)
        return {
            "rgb": FrameFolder(rgb.folder, tuple(rgb.names[k] for k in pairs.rgb)),
            "event": FrameFolder(
                event.folder,
                tuple(group[-1] for group in groups),
                groups if any(len(group) > 1 for group in groups) else None,
            ),
        }

    def problems(
        self,
        *,
        decode: bool = True,
        min_frames: int = 1,
        exclude: Collection[str] = (),
        workers: int = 1,
        progress: bool = False,
    ) -> dict[str, list[Issue]]:
        """Every issue of every clip on disk, by sample (see clip_problems), skipping ``exclude``d samples.

        decode: decode every PNG (thorough, finds truncated files), or read headers only.
        min_frames: clips with fewer frames (in either modality) are "short_clips".
        Label-file problems are in ``label_problems`` (with ``lenient=True``).
        """
        entries = list({e.sample: e for e in self.entries if e.sample not in exclude}.values())
        check = partial(
            clip_problems,
            self.root,
            modalities=self.modalities,
            decode=decode,
            min_frames=min_frames,
            frame_pairing=self.frame_pairing,
            frame_count_policy=self.frame_count_policy,
        )
        found = map_checks(check, entries, total=len(entries), workers=workers, progress=progress)
        return {entry.sample: issues for entry, issues in zip(entries, found)}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        index = range(len(self))[index]  # a plain non-negative int, also for -1 or numpy ints
        entry = self.entries[index]
        folders = self.frame_folders(index)
        # Paired by frame_folders, the counts are equal (release sampling: each folder its own).
        draw = self.draw(index, {m: len(folders[m].names) for m in self.modalities}, self.modalities)

        item: dict[str, torch.Tensor | int] = {}
        for modality in self.modalities:
            item[BATCH_KEY[modality]] = self._load_frames(folders[modality], draw, modality)
        item["label"] = torch.tensor(entry.label, dtype=torch.int64)
        item["index"] = index
        return item

    def _load_frames(self, frames: FrameFolder, draw: ClipDraw, modality: str) -> torch.Tensor:
        """Decode, crop, resize (RGB bilinear, events by ``event_resize``) and augment the frames
        ``draw`` chose: uint8 (T, 3, S, S)."""
        size, box = self.sampling.image_size, draw.box
        assert size is not None  # the constructor requires it
        frame_indices = draw.frames[modality]
        decoded: dict[int, np.ndarray] = {}  # short clips repeat indices; decode each frame once
        first_path, first_size = None, None
        for frame_index in dict.fromkeys(frame_indices.tolist()):
            path = frames.folder / frames.names[frame_index]
            image = read_frame_at(frames, frame_index)
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
            decoded[frame_index] = resized  # (S, S, 3)
        clip = np.stack([draw.transform(modality, k, decoded[i]) for k, i in enumerate(frame_indices.tolist())])
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
    frame_pairing: str,
    frame_count_policy: str,
) -> list[Issue]:
    """Every issue of one clip on disk, each with its file: a missing clip or modality folder, bad
    frame names, no frames, unreadable frames, frames of differing sizes, frames the pairing leaves
    without a partner ("count_mismatches", a "warning" under frame_count_policy "min" when some
    pair), fewer than ``min_frames`` frames (or pairs), and a frame count other than the label
    line's ("warning"). With both modalities, two notes (NOTE_KINDS): how the folders' numbers relate
    ("frame_numbers", always) and the event frames accumulate leaves out after the last RGB frame
    ("left_out").
    """
    clip_dir = root / entry.sample
    if not clip_dir.is_dir():
        return [("missing_samples", entry.where or str(clip_dir), f"clip folder {clip_dir} does not exist")]
    issues: list[Issue] = []
    numbers: dict[str, tuple[int, ...]] = {}
    for modality in modalities:
        folder = clip_dir / f"{entry.name}{FOLDER_SUFFIX[modality]}"
        if not folder.is_dir():
            holds = sorted(p.name for p in clip_dir.iterdir())[:6]
            issues.append(
                ("missing_folders", str(folder), f"{WHAT[modality]} folder is missing (the clip folder holds {holds})")
            )
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
        numbers[modality] = frame_numbers(frames)
        sizes: dict[Path, tuple[int, int]] = {}
        for name in frames.names:
            try:
                sizes[folder / name] = image_size(folder / name, decode)
            except DataError as error:
                issues.append(("unreadable_files", str(folder / name), str(error)))
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
    counts = {modality: len(found) for modality, found in numbers.items()}
    if len(numbers) == 2:
        rgb, event = numbers["rgb"], numbers["event"]
        issues.append(("frame_numbers", str(clip_dir), number_relation(rgb, event)))
        pairs = pair_frames(rgb, event, frame_pairing)
        if not pairs.complete:
            problem = pairing_problem(rgb, event, pairs, frame_pairing)
            if frame_count_policy == "min" and pairs.rgb:
                issues.append(("warning", str(clip_dir), f"{problem}; left out (data.frame_count_policy min)"))
            else:
                advice = pairing_advice(rgb, event, frame_pairing)
                issues.append(("count_mismatches", str(clip_dir), f"{problem}; {advice}"))
        if pairs.after_last:
            issues.append(("left_out", str(clip_dir), "event frames after the last RGB frame (accumulate)"))
        if len(pairs.rgb) < min(counts.values()):
            counts["paired"] = len(pairs.rgb)
    if counts and entry.where and entry.num_frames not in counts.values():
        issues.append(("warning", entry.where, f"lists {entry.num_frames} frames, the clip has {counts}"))
    short = {m: n for m, n in counts.items() if n < min_frames}
    if short:
        issues.append(("short_clips", str(clip_dir), f"fewer than {min_frames} frames: {short}"))
    return issues
