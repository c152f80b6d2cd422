"""Clips read straight from raw AEDAT 4.0 recordings, without converting them to PNG folders first.

Layout::

    <root>/<class_dir>/<recording>.aedat4    one recording per file, its class is its folder
    <root>/classes.txt                       optional: class names in label order

Class names and label indices, first rule that applies: ``classes`` given (pass the training
set's ``class_names`` to the other splits); ``<root>/classes.txt``; the class folders holding
recordings, sorted by name (what ``convert_recordings`` writes to classes.txt).

Samples follow ``velora.data.convert.convert_recordings``: a recording with N APS frames has
N - 1 samples, sample j pairs APS frame j + 1 with the event image of the events
``t_j <= t < t_j+1`` (``t_k``: start of frame k's exposure, microseconds), drawn by
``velora.events.render.event_image``. An item then goes through ClipDataset's steps (T samples
at the same indices for both modalities, one crop box and flip for all frames, resize to S x S:
bilinear for APS frames, ``event_resize`` for event images), so it is bit-identical to ClipDataset's
item over the converted folder for the same (seed, epoch, index), in training as in evaluation.

One item (``T`` = ``num_frames``, ``S`` = ``image_size``), the ClipDataset contract::

    "rgb":    torch.uint8 (T, 3, S, S)   APS frames (grayscale ones get three equal channels)
    "events": torch.uint8 (T, 3, S, S)   event images: white, ON events red, OFF events blue
    "label":  torch.int64 ()
    "index":  int

Every item decodes its whole recording (the APS frames and all events); the last
``cache_recordings`` decoded recordings of each process are kept, which helps when a few
recordings are read over and over, and costs their decoded size in memory per worker.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from velora.data.check_report import Issue, map_checks
from velora.data.convert import list_recordings
from velora.data.labels import CLASSES_FILE, ClipEntry, read_class_file
from velora.data.names import BATCH_KEY, MODALITIES
from velora.data.sampling import ClipDraw, ClipSampling, ProcessCache, SampledClips, modality_problems
from velora.errors import DataError
from velora.events.aedat4 import MAGIC as AEDAT4_MAGIC
from velora.events.readers import Recording, read_aedat4
from velora.events.representations import RGB_REPRESENTATIONS, frame_windows
from velora.events.resize import EVENT_RESIZE, draw_events


class RecordingDataset(SampledClips):
    """Clips of T APS frames and T event images per raw recording, labelled by class folder.

    root: folder of class folders holding ``.aedat4`` recordings (hidden files ignored).
    sampling: T samples per clip, chosen by :func:`segment_indices` among the recording's N - 1
        samples (random offsets in training, segment centres otherwise); both modalities are
        resized to S x S; crop, flip and seed as for ClipDataset (ClipSampling).
    modalities, num_classes: as for ClipDataset; the per-item generator ``default_rng([seed, epoch, index])`` draws the
        sample indices, then the crop box, then the flip.
    classes: class names in label order; every class folder must be one of them.
    cache_recordings: decoded recordings kept per process (0: none).
    files: read exactly these recordings, each one item labelled 0, instead of listing ``root``'s
        class folders (``velora predict`` on a new recording); ``root`` is then ignored.
    representation: how the events between two frames are drawn (default the event image of
        PokerEvent / HARDVS; see velora.events.representations.as_rgb).
    event_resize: how event images are brought to S x S (velora.events.resize).

    ``entries`` are ClipEntry("<class_dir>/<recording>", 0, label) in class then file-name
    order; their num_frames is 0 because a recording's sample count is known once it is decoded.

    Raises DataError for a root without recordings or a class folder outside ``classes`` (at
    construction), and naming the file for a recording that cannot be read or has fewer than
    2 APS frames (when its item is read).
    """

    def __init__(
        self,
        root: str | Path,
        sampling: ClipSampling = ClipSampling(),
        *,
        modalities: Sequence[str] = MODALITIES,
        classes: Sequence[str] | None = None,
        num_classes: int | None = None,
        cache_recordings: int = 2,
        files: Sequence[str | Path] | None = None,
        representation: str = "event_image",
        event_resize: str = "keep_events",
    ) -> None:
        self.root = Path(root)
        self.modalities = tuple(modalities)
        problems = modality_problems(self.modalities, MODALITIES)
        if sampling.image_size is None:
            problems.append("sampling.image_size must be set: frames are resized to S x S")
        if cache_recordings < 0:
            problems.append(f"cache_recordings must be >= 0, got {cache_recordings}")
        if representation not in RGB_REPRESENTATIONS:
            problems.append(f"representation {representation!r} is not one of {tuple(RGB_REPRESENTATIONS)}")
        if event_resize not in EVENT_RESIZE:
            problems.append(f"event_resize {event_resize!r} is not one of {EVENT_RESIZE}")
        if problems:
            raise ValueError("invalid RecordingDataset arguments: " + "; ".join(problems))

        self.paths: list[Path] = []
        self.entries: list[ClipEntry] = []
        if files is not None:
            self._class_names = list(classes or ["unlabelled"])
            for path in map(Path, files):
                self.paths.append(_recording_file(path))
                self.entries.append(ClipEntry(path.stem, 0, 0))
        else:
            recordings = list_recordings(self.root)  # class_dir -> sorted files; DataError when none
            self._class_names = _class_names(self.root, list(recordings), classes)
            label_of = {name: label for label, name in enumerate(self._class_names)}
            for class_dir, paths in recordings.items():
                label = label_of[class_dir]
                if num_classes is not None and label >= num_classes:
                    raise DataError(
                        f"class folder {self.root / class_dir} has label {label}, outside [0, {num_classes}); "
                        "fix classes / classes.txt or num_classes"
                    )
                for path in paths:
                    self.paths.append(path)
                    self.entries.append(ClipEntry(f"{class_dir}/{path.stem}", 0, label))

        self.sampling, self.num_classes = sampling, num_classes
        self.representation = representation
        self.event_resize = event_resize
        self._cache = ProcessCache(cache_recordings)

    @property
    def class_names(self) -> list[str]:
        """Class names in label order (see the module docstring for where they come from)."""
        return list(self._class_names)

    def recording(self, index: int) -> Recording:
        """The decoded recording of item ``index`` (kept in this process's small LRU cache)."""
        return self._cache.get(index, lambda: _decode(self.paths[index]))

    def problems(
        self,
        *,
        decode: bool = True,
        min_frames: int = 1,
        exclude: Collection[str] = (),
        workers: int = 1,
        progress: bool = False,
    ) -> dict[str, list[Issue]]:
        """Every issue of every recording, by sample (see recording_problems), skipping ``exclude``d ones.

        decode: decode every recording (finds corrupt ones; slow), or check only the file's magic.
        min_frames: recordings with fewer samples (APS frames - 1) are "short_clips".
        """
        todo = [(entry, path) for entry, path in zip(self.entries, self.paths) if entry.sample not in exclude]
        check = partial(recording_problems, decode=decode, min_frames=min_frames)
        found = map_checks(check, [path for _, path in todo], total=len(todo), workers=workers, progress=progress)
        return {entry.sample: issues for (entry, _), issues in zip(todo, found)}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        index = range(len(self))[index]  # a plain non-negative int, also for -1 or numpy ints
        recording = self.recording(index)
        draw = self.draw(index, len(recording.aps_frames) - 1, self.modalities)
        assert self.sampling.image_size is not None  # the constructor requires it
        frames = recording_frames(
            recording, draw, self.sampling.image_size, self.modalities, self.representation, self.event_resize
        )
        return {**frames, "label": torch.tensor(self.entries[index].label, dtype=torch.int64), "index": index}


def recording_frames(
    recording: Recording,
    draw: ClipDraw,
    image_size: int,
    modalities: Sequence[str] = MODALITIES,
    representation: str = "event_image",
    event_resize: str = "keep_events",
) -> dict[str, torch.Tensor]:
    """The T samples `draw` picks of a decoded recording, each modality (T, 3, S, S) uint8.

    draw: the sample indices among the recording's N - 1 samples, crop box, flip and per-frame
        augmentation (ClipSampling.draw). Sample j pairs APS frame j + 1 with the image of the events since
        frame j, as convert_recordings writes it (events drawn as `representation`, see
        velora.events.representations.as_rgb); both are resized to S x S (bilinear for APS
        frames, ``event_resize`` for the events, velora.events.resize) after the crop, then flipped.
    """
    box = draw.box
    events = recording.events
    windows = frame_windows(events.t, recording.frame_timestamps_us)[1:]  # (N - 1) slices

    def sample(modality: str, j: int, pixel_box: tuple[float, float, float, float]) -> np.ndarray:
        """Sample j of one modality, ``pixel_box`` of it resized to S x S: (S, S, 3)."""
        if modality == "rgb":
            aps = Image.fromarray(recording.aps_frames[j + 1]).convert("RGB")  # as read_frame
            return np.asarray(aps.resize((image_size, image_size), Image.Resampling.BILINEAR, box=pixel_box))
        window = windows[j]
        return draw_events(
            representation,
            events.t[window],
            events.x[window],
            events.y[window],
            events.p[window],
            events.height,
            events.width,
            image_size,
            pixel_box,
            event_resize,
        )

    item: dict[str, torch.Tensor] = {}
    for modality in modalities:
        width, height = (events.width, events.height)
        if modality == "rgb":
            height, width = recording.aps_frames[0].shape[:2]
        pixel_box = (box[0] * width, box[1] * height, box[2] * width, box[3] * height)
        sample_indices = draw.frames[modality].tolist()
        resized = {j: sample(modality, j, pixel_box) for j in dict.fromkeys(sample_indices)}  # each sample once
        clip = np.stack([draw.transform(modality, k, resized[j]) for k, j in enumerate(sample_indices)])  # (T, S, S, 3)
        item[BATCH_KEY[modality]] = torch.from_numpy(clip).permute(0, 3, 1, 2).contiguous()  # (T, 3, S, S)
    return item


def _decode(path: Path) -> Recording:
    recording = read_aedat4(path)  # DataError naming the file when it cannot be read
    if len(recording.aps_frames) < 2:
        raise DataError(
            f"{path}: the recording has {len(recording.aps_frames)} APS frame(s); a sample pairs an "
            "APS frame with the events since the previous one, so at least 2 are needed. Remove the file"
        )
    return recording


def recording_problems(path: Path, *, decode: bool, min_frames: int) -> list[Issue]:
    """Every issue of one raw recording: missing, empty, not AEDAT 4.0, unreadable, too few APS frames."""
    if not path.is_file():
        return [("missing_samples", str(path), "the recording does not exist")]
    with open(path, "rb") as file:
        head = file.read(len(AEDAT4_MAGIC))
    if not head:
        return [("unreadable_files", str(path), "empty file (0 bytes)")]
    if head != AEDAT4_MAGIC:
        return [
            ("unreadable_files", str(path), "not an AEDAT 4.0 recording (its first bytes are not the format's magic)")
        ]
    if not decode:
        return []
    try:
        samples = len(read_aedat4(path).aps_frames) - 1
    except DataError as error:
        return [("unreadable_files", str(path), str(error))]
    if samples < max(1, min_frames):
        return [
            (
                "short_clips",
                str(path),
                f"{samples + 1} APS frame(s) give {max(samples, 0)} sample(s); "
                f"at least {max(1, min_frames)} needed (a sample pairs a frame with the events since the previous)",
            )
        ]
    return []


def _recording_file(path: Path) -> Path:
    if not path.is_file():
        raise DataError(f"recording '{path}' does not exist; give an AEDAT 4.0 file (.aedat4)")
    if path.suffix.lower() != ".aedat4":
        raise DataError(f"'{path}' is not an .aedat4 recording; convert other formats first (velora convert)")
    return path


def _class_names(root: Path, class_dirs: list[str], classes: Sequence[str] | None) -> list[str]:
    """Class names in label order: ``classes``, else classes.txt, else the sorted class folders."""
    source = "classes"
    if classes is not None:
        names = list(classes)
    elif (root / CLASSES_FILE).is_file():
        source = str(root / CLASSES_FILE)
        names = read_class_file(root / CLASSES_FILE)
    else:
        return sorted(class_dirs)
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DataError(f"{source} lists these names more than once: {duplicates}")
    unknown = [name for name in class_dirs if name not in names]
    if unknown:
        raise DataError(
            f"class folders {unknown} of {root} are not in {source} ({names[:10]}"
            f"{' ...' if len(names) > 10 else ''}); add them there or move the recordings"
        )
    return names
