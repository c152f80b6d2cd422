"""Write the synthetic demo dataset in the PokerEvent on-disk layout.

    <root>/classes.txt                               class names, one a line, label-index order
    <root>/train_label.txt, val_label.txt, test_label.txt
                                                     "<class_dir>/<sample> <num_frames> <label>"
    <root>/<class_dir>/<sample>/<sample>_aps/0000.png  RGB frames, 0000 .. T-1
    <root>/<class_dir>/<sample>/<sample>_dvs/0000.png  event images, same count
    <root>/velora_demo.json                          parameters; written last = dataset complete

Seeds. In the training split every clip has its own seed, derived from (seed, split, class
index, clip index): each clip is a new scene. In a matched split (by default val and test)
the seed is derived from (seed, split, clip index) alone, so clip k of every class shows the
same scene (aperture, grating, shape placement, sensor noise), only with that class's shape
and direction. Since the events do not depend on the shape and the RGB frames do not depend
on the direction (see velora.demo.scenes), the four shapes of one scene and direction have
bit-identical event frames, and its two directions bit-identical RGB frames: a model that
sees one modality alone gives them one answer, so on a matched split RGB alone scores at most
50 % and events alone at most 25 %, exactly, whatever the model.

Seeds never depend on the number of worker processes. A rerun with the same parameters finds
the marker and returns at once; with other parameters (or after an interrupted run, which
leaves `velora_demo.partial.json`) it deletes what the generator wrote and starts over.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from velora.demo.scenes import SceneConfig, render_clip

GENERATOR_VERSION = 4  # bump whenever the same parameters would give different files
MARKER = "velora_demo.json"
PARTIAL_MARKER = "velora_demo.partial.json"
SPLITS = ("train", "val", "test")
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}  # part of every clip's seed
DEFAULT_CLIPS_PER_CLASS = {"train": 30, "val": 10, "test": 25}
DEFAULT_FRAMES_RANGE = (5, 7)
DEFAULT_MATCHED_SPLITS = ("val", "test")


@dataclass(frozen=True)
class DemoDatasetInfo:
    """What `generate_demo_dataset` wrote (or found already complete).

    Attributes:
        root: dataset folder.
        class_names: class folder names in label-index order.
        counts: clips per split over all classes, e.g. {"train": 480, "val": 120, "test": 200}.
        reused: True when a complete dataset with the same parameters was already there.
    """

    root: Path
    class_names: tuple[str, ...]
    counts: dict[str, int]
    reused: bool


@dataclass(frozen=True)
class _ClipTask:
    root: Path
    class_dir: str
    sample: str
    shape: str
    direction: str
    seed_entropy: tuple[int, ...]  # (seed, split, class index, clip index), or (seed, split, clip index) when matched
    image_size: int
    frames_range: tuple[int, int]
    scene: SceneConfig


def generate_demo_dataset(
    root: str | Path,
    *,
    clips_per_class: dict[str, int] | None = None,
    image_size: int = 64,
    frames_range: tuple[int, int] = DEFAULT_FRAMES_RANGE,
    seed: int = 0,
    scene: SceneConfig | None = None,
    matched_splits: tuple[str, ...] = DEFAULT_MATCHED_SPLITS,
    workers: int | None = None,
    progress: bool = True,
    on_clip: Callable[[int], None] | None = None,
) -> DemoDatasetInfo:
    """Generate (or reuse) the demo dataset under `root`.

    Args:
        root: output folder; must be new, empty, or hold an earlier demo dataset.
        clips_per_class: clips of each class per split, keys from "train", "val", "test"
            (a missing split gets 0 clips); default 30 / 10 / 25.
        image_size: side of the square frames in pixels.
        frames_range: (min, max) frames per clip, inclusive; each clip draws its own.
        seed: master seed; the same parameters give the same files.
        scene: look of the clips and the classes (shapes x directions); default SceneConfig().
        matched_splits: splits whose clip k shows the same scene in every class (see the
            module docstring); the others draw a new scene for every clip.
        workers: processes to render with; default the number of CPUs.
        progress: show a tqdm progress bar.
        on_clip: called with the clip's frame count after each clip is written (a progress
            report for a caller's own bar).
    """
    root = Path(root)
    scene = scene or SceneConfig()
    clips_per_class = _check_arguments(clips_per_class, image_size, frames_range, matched_splits)
    params = {
        "generator_version": GENERATOR_VERSION,
        "clips_per_class": clips_per_class,
        "image_size": image_size,
        "frames_range": list(frames_range),
        "seed": seed,
        "matched_splits": sorted(matched_splits),
        "scene": dataclasses.asdict(scene),
    }
    params = json.loads(json.dumps(params))  # tuples -> lists, as they come back from the file
    class_names = scene.class_names
    counts = {split: clips_per_class[split] * len(class_names) for split in SPLITS}

    marker = _read_json(root / MARKER)
    if marker is not None and marker.get("params") == params:
        (root / PARTIAL_MARKER).unlink(missing_ok=True)  # left if a run stopped right after the marker
        return DemoDatasetInfo(root, tuple(marker["classes"]), marker["counts"], reused=True)
    _clear_previous(root)

    record = {"params": params, "classes": class_names, "counts": counts}
    root.mkdir(parents=True, exist_ok=True)
    (root / PARTIAL_MARKER).write_text(json.dumps(record, indent=2))

    tasks, label_of, split_of = [], {}, {}
    for class_index, class_dir in enumerate(class_names):
        shape, direction = class_dir.split("_", 1)
        clip_index = 0  # sample names run on over the splits: clip k is the same sample name in every class
        for split in SPLITS:
            for k in range(clips_per_class[split]):
                sample = f"clip_{clip_index:05d}"
                entropy: tuple[int, ...]
                if split in matched_splits:
                    entropy = (seed, SPLIT_CODES[split], k)
                else:
                    entropy = (seed, SPLIT_CODES[split], class_index, k)
                tasks.append(
                    _ClipTask(
                        root,
                        class_dir,
                        sample,
                        shape,
                        direction,
                        entropy,
                        image_size,
                        (frames_range[0], frames_range[1]),
                        scene,
                    )
                )
                label_of[(class_dir, sample)], split_of[(class_dir, sample)] = class_index, split
                clip_index += 1

    num_frames = _run(tasks, workers, progress, on_clip)

    lines: dict[str, list[str]] = {split: [] for split in SPLITS}
    for task, frames in zip(tasks, num_frames):  # task order: class, then clip index
        key = (task.class_dir, task.sample)
        lines[split_of[key]].append(f"{task.class_dir}/{task.sample} {frames} {label_of[key]}\n")
    for split in SPLITS:
        (root / f"{split}_label.txt").write_text("".join(lines[split]))
    (root / "classes.txt").write_text("".join(f"{name}\n" for name in class_names))
    (root / MARKER).write_text(json.dumps(record, indent=2))
    (root / PARTIAL_MARKER).unlink()
    return DemoDatasetInfo(root, tuple(class_names), counts, reused=False)


def _run(
    tasks: list[_ClipTask], workers: int | None, progress: bool, on_clip: Callable[[int], None] | None
) -> list[int]:
    """Render and write every clip; returns the frame counts in task order."""
    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    results = []
    frame_counts: Iterator[int]
    with tqdm(total=len(tasks), desc="demo clips", unit="clip", disable=not progress) as bar:
        if workers == 1:
            frame_counts = map(_write_clip, tasks)
            pool = None
        else:
            pool = multiprocessing.get_context().Pool(workers)
            frame_counts = pool.imap(_write_clip, tasks, chunksize=4)
        try:
            for frames in frame_counts:
                results.append(frames)
                bar.update()
                if on_clip is not None:
                    on_clip(frames)
        finally:
            if pool is not None:
                pool.terminate()  # all results are in (or an error stops the run): no work is lost
                pool.join()
    return results


def _write_clip(task: _ClipTask) -> int:
    """Render one clip and write its _aps and _dvs PNG folders; returns its frame count."""
    frames_seed, render_seed = np.random.SeedSequence(list(task.seed_entropy)).spawn(2)
    low, high = task.frames_range
    num_frames = int(np.random.default_rng(frames_seed).integers(low, high + 1))
    clip = render_clip(task.shape, task.direction, num_frames, task.image_size, task.scene, render_seed)
    sample_dir = task.root / task.class_dir / task.sample
    for suffix, frames in (("aps", clip.aps_frames), ("dvs", clip.event_frames)):
        folder = sample_dir / f"{task.sample}_{suffix}"
        folder.mkdir(parents=True, exist_ok=True)
        for index, frame in enumerate(frames):
            Image.fromarray(frame).save(folder / f"{index:04d}.png", compress_level=1)
    return num_frames


def _check_arguments(
    clips_per_class: dict[str, int] | None,
    image_size: int,
    frames_range: tuple[int, int],
    matched_splits: tuple[str, ...],
) -> dict[str, int]:
    problems = []
    unknown = sorted(set(matched_splits) - set(SPLITS))
    if unknown:
        problems.append(f"matched_splits has unknown splits {unknown}; use names from {list(SPLITS)}")
    clips_per_class = dict(DEFAULT_CLIPS_PER_CLASS if clips_per_class is None else clips_per_class)
    unknown = sorted(set(clips_per_class) - set(SPLITS))
    if unknown:
        problems.append(f"clips_per_class has unknown splits {unknown}; use {list(SPLITS)}")
    if any(not isinstance(n, int) or n < 0 for n in clips_per_class.values()):
        problems.append(f"clips_per_class values must be integers >= 0 (got {clips_per_class})")
    if image_size < 16:
        problems.append(f"image_size must be at least 16 pixels (got {image_size})")
    if len(frames_range) != 2 or not (1 <= frames_range[0] <= frames_range[1]):
        problems.append(f"frames_range must be (min, max) with 1 <= min <= max (got {frames_range})")
    if problems:
        raise ValueError("generate_demo_dataset: " + "; ".join(problems) + ".")
    return {split: clips_per_class.get(split, 0) for split in SPLITS}


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _clear_previous(root: Path) -> None:
    """Delete what an earlier (complete or interrupted) demo run wrote; refuse foreign folders."""
    if not root.exists() or not any(root.iterdir()):
        return
    previous = [record for record in (_read_json(root / MARKER), _read_json(root / PARTIAL_MARKER)) if record]
    if not previous:
        raise FileExistsError(
            f"{root} is not empty and holds no velora demo dataset ({MARKER} is missing); "
            "choose a new or empty folder so the generator does not overwrite other files."
        )
    for record in previous:
        for class_dir in record.get("classes", []):
            if class_dir and "/" not in class_dir and class_dir not in (".", ".."):
                shutil.rmtree(root / class_dir, ignore_errors=True)
    for name in [f"{split}_label.txt" for split in SPLITS] + ["classes.txt", MARKER, PARTIAL_MARKER]:
        (root / name).unlink(missing_ok=True)
