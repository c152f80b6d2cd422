"""Raw recordings -> sample folders in the PokerEvent frame layout.

    <src_root>/<class_dir>/<recording>.aedat4      (or any event file: .raw, .dat, .es, .aedat, .bin, ...)
 -> <out_root>/<class_dir>/<recording>/<recording>_aps/0000.png   APS frame k + 1
    <out_root>/<class_dir>/<recording>/<recording>_dvs/0000.png   events of [t_k, t_k+1), red / blue on white
    <out_root>/<class_dir>/<recording>/.converted.json            done marker, written last
    <out_root>/classes.txt                                        class folders, sorted = label order
    <out_root>/all_label.txt                                      "<class_dir>/<recording> <num_frames> <label>"

Window convention. ``t_k`` is the start of APS frame k's exposure (``Recording.frame_timestamps_us``,
microseconds). A recording with N APS frames gives N - 1 samples: sample j pairs APS frame j + 1
with the event image of the events ``t_j <= t < t_j+1`` (``frame_windows(...)[1:]``), i.e. the
motion that led up to that frame. APS frame 0 has no previous frame, so its window would span an
arbitrary stretch of time (everything since the recording started); it and the events before
``t_0`` or at / after ``t_N-1`` are left out. The frame names are zero-padded to four digits (more
when a recording has over 10,000 samples), as in PokerEvent.

Recordings without APS frames (Prophesee .raw/.dat, Event Stream, AEDAT 2/3.1, N-MNIST files, CSV,
or an .aedat4 with fewer than 2 frames) have only events: their sample folder holds `_dvs` frames
alone, one per `event_window_us` of events from the first event on (default 33,333 us, 30 per
second). Train on them with data.modalities=[event] (or predict with an RGB + event model, which
takes its missing-modality path).

Resuming. A recording is done when its marker exists and matches the source file (size and
modification time) and the conversion settings; a rerun skips it. A recording folder without a
valid marker (a run stopped while writing it) is deleted and converted again. The two text files
are rewritten at the end of every complete run from all done recordings.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from velora.data.labels import CLASSES_FILE
from velora.data.names import FOLDER_SUFFIX
from velora.errors import DataError
from velora.events.aedat4 import read_aedat4
from velora.events.readers import SUFFIXES, read_events, require_events
from velora.events.render import EventStream, event_image
from velora.events.representations import fixed_duration_windows, frame_windows
from velora.events.resize import resize_event_image

CONVERTER_VERSION = 1  # bump whenever the same recording and settings would give other files
RECORDING_SUFFIX = ".aedat4"
DONE_MARKER = ".converted.json"
LABEL_FILE = "all_label.txt"
# Level 1 is ~5x faster to write than PIL's default 6 and decodes as fast; files grow ~20 %.
PNG_COMPRESS_LEVEL = 1


@dataclass
class ConversionStats:
    """What one `convert_recordings` run did.

    recordings: recordings converted in this run; skipped: already done, left alone.
    frames: samples written (each one APS PNG and one event PNG); events: events decoded.
    seconds: wall time spent converting (reading, drawing, writing), skipped ones excluded.
    failures: (recording, reason) of the recordings left out with ``skip_bad=True``.
    """

    recordings: int = 0
    skipped: int = 0
    frames: int = 0
    events: int = 0
    seconds: float = 0.0
    failures: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def list_recordings(src_root: Path, suffixes: tuple[str, ...] = (RECORDING_SUFFIX,)) -> dict[str, list[Path]]:
    """The recordings (files with one of `suffixes`) of each class folder, both sorted by name;
    hidden entries ignored."""
    if not src_root.is_dir():
        raise DataError(
            f"recordings folder {src_root} does not exist or is not a folder; pass the folder that "
            f"holds one folder per class with the {RECORDING_SUFFIX} recordings inside"
        )
    classes = {}
    for class_dir in sorted(p for p in src_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(
            p
            for p in class_dir.iterdir()
            if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith(".")
        )
        if files:
            classes[class_dir.name] = files
    if not classes:
        found = sorted(p.name for p in src_root.iterdir())[:8]
        raise DataError(
            f"{src_root} holds no <class>/<recording> files with a suffix of {', '.join(suffixes)} (it holds "
            f"{found}); put each class's recordings in a folder named after the class"
        )
    return classes


def convert_recordings(
    src_root: str | Path,
    out_root: str | Path,
    *,
    image_size: int | None = None,
    skip_bad: bool = False,
    progress: bool = True,
    event_window_us: int = 33_333,
) -> ConversionStats:
    """Convert every ``<src_root>/<class>/<recording>.aedat4`` into PokerEvent sample folders.

    image_size: None keeps the sensor resolution (346 x 260 for a DAVIS346); S resizes both
        modalities to S x S (bilinear for APS frames; event images by keep_events, which keeps every
        event pixel visible, velora.events.resize).
    skip_bad: a recording that cannot be read (DataError) is recorded in ``failures`` and left
        out of the label file, and conversion goes on; off, the first one stops the run with a
        DataError naming the file. Finished recordings stay done either way.
    progress: show a tqdm progress bar over the recordings.
    event_window_us: recordings without APS frames: one event image per this many microseconds.

    Raises DataError for a bad src_root and, unless skip_bad, for the first bad recording.
    """
    src_root, out_root = Path(src_root), Path(out_root)
    if image_size is not None and image_size < 1:
        raise ValueError(f"image_size must be None or >= 1, got {image_size}")
    if event_window_us < 1:
        raise ValueError(f"event_window_us must be >= 1, got {event_window_us}")
    classes = list_recordings(src_root, tuple(SUFFIXES))
    out_root.mkdir(parents=True, exist_ok=True)
    stats = ConversionStats()
    done: dict[tuple[str, str], int] = {}  # (class_dir, recording) -> num_frames
    total = sum(len(files) for files in classes.values())
    with tqdm(total=total, desc="convert", unit="rec", disable=not progress) as bar:
        for class_dir, files in classes.items():
            for path in files:
                sample_dir = out_root / class_dir / path.stem
                settings = _settings(src_root, path, image_size, event_window_us)
                num_frames = _done_frames(sample_dir, settings)
                if num_frames is not None:
                    stats.skipped += 1
                else:
                    start = time.perf_counter()
                    try:
                        num_frames, num_events = _convert_one(path, sample_dir, image_size, event_window_us)
                    except DataError as error:
                        shutil.rmtree(sample_dir, ignore_errors=True)
                        if not skip_bad:
                            raise DataError(
                                f"{error} (conversion stopped; the {stats.recordings + stats.skipped} "
                                "recordings done so far are kept, a rerun skips them; pass "
                                "skip_bad=True to leave bad recordings out and go on)"
                            ) from None
                        stats.failures.append((path, str(error)))
                        bar.update()
                        continue
                    _write_json_atomic(sample_dir / DONE_MARKER, {**settings, "num_frames": num_frames})
                    stats.seconds += time.perf_counter() - start
                    stats.recordings += 1
                    stats.frames += num_frames
                    stats.events += num_events
                done[(class_dir, path.stem)] = num_frames
                bar.update()
                bar.set_postfix(frames=stats.frames, failed=len(stats.failures))

    label_of = {class_dir: label for label, class_dir in enumerate(classes)}
    (out_root / CLASSES_FILE).write_text("".join(f"{name}\n" for name in label_of), encoding="utf-8")
    lines = [
        f"{class_dir}/{recording} {num_frames} {label_of[class_dir]}\n"
        for (class_dir, recording), num_frames in done.items()
    ]
    (out_root / LABEL_FILE).write_text("".join(lines), encoding="utf-8")
    return stats


def _convert_one(path: Path, sample_dir: Path, image_size: int | None, event_window_us: int) -> tuple[int, int]:
    """Write one recording's sample folder (from scratch); returns (samples, events decoded)."""
    recording = read_aedat4(path) if path.suffix.lower() == RECORDING_SUFFIX else None
    if recording is None or len(recording.aps_frames) < 2:
        events = require_events(recording.events if recording else read_events(path), path)
        return _convert_events(events, sample_dir, image_size, event_window_us), len(events)
    num_aps = len(recording.aps_frames)
    events = recording.events
    windows = frame_windows(events.t, recording.frame_timestamps_us)[1:]  # (N - 1) slices
    num_samples = num_aps - 1
    width = max(4, len(str(num_samples - 1)))

    if sample_dir.exists():
        shutil.rmtree(sample_dir)  # a partial folder of an interrupted run, or stale settings
    folders = {m: sample_dir / f"{sample_dir.name}{FOLDER_SUFFIX[m]}" for m in ("rgb", "event")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    for j, window in enumerate(windows):
        aps = Image.fromarray(recording.aps_frames[j + 1])  # (H, W) grayscale or (H, W, 3)
        drawn = Image.fromarray(
            event_image(events.x[window], events.y[window], events.p[window], events.height, events.width)
        )  # (H, W, 3)
        if image_size is not None:
            aps = aps.resize((image_size, image_size), Image.Resampling.BILINEAR)
            drawn = Image.fromarray(resize_event_image(np.asarray(drawn), image_size))
        name = f"{j:0{width}d}.png"
        aps.save(folders["rgb"] / name, compress_level=PNG_COMPRESS_LEVEL)
        drawn.save(folders["event"] / name, compress_level=PNG_COMPRESS_LEVEL)
    return num_samples, len(events)


def _convert_events(events: EventStream, sample_dir: Path, image_size: int | None, window_us: int) -> int:
    """A sample folder of event images only, one per `window_us` (a recording without APS frames)."""
    windows = fixed_duration_windows(events.t, window_us)
    width = max(4, len(str(len(windows) - 1)))
    if sample_dir.exists():
        shutil.rmtree(sample_dir)
    folder = sample_dir / f"{sample_dir.name}{FOLDER_SUFFIX['event']}"
    folder.mkdir(parents=True)
    for j, window in enumerate(windows):
        drawn = Image.fromarray(
            event_image(events.x[window], events.y[window], events.p[window], events.height, events.width)
        )
        if image_size is not None:
            drawn = Image.fromarray(resize_event_image(np.asarray(drawn), image_size))
        drawn.save(folder / f"{j:0{width}d}.png", compress_level=PNG_COMPRESS_LEVEL)
    return len(windows)


def _settings(src_root: Path, path: Path, image_size: int | None, event_window_us: int = 33_333) -> dict:
    """What a done marker must match for its recording to count as converted."""
    stat = path.stat()
    return {
        "converter_version": CONVERTER_VERSION,
        "source": path.relative_to(src_root).as_posix(),
        "source_bytes": stat.st_size,
        "source_mtime_ns": stat.st_mtime_ns,
        "image_size": image_size,
        "event_window_us": event_window_us,
        # Resized frames: how event images were brought to image_size (nearest before keep_events).
        **({"event_resize": "keep_events"} if image_size is not None else {}),
    }


def _done_frames(sample_dir: Path, settings: dict) -> int | None:
    """The sample count in a marker matching ``settings``; None when not done (or stale)."""
    try:
        marker = json.loads((sample_dir / DONE_MARKER).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(marker, dict) or {k: marker.get(k) for k in settings} != settings:
        return None
    num_frames = marker.get("num_frames")
    return num_frames if isinstance(num_frames, int) and num_frames >= 1 else None


def _write_json_atomic(path: Path, content: dict) -> None:
    """Write JSON so that a reader sees the old file or the whole new one, never a torn one."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as file:
        json.dump(content, file, indent=2)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)
