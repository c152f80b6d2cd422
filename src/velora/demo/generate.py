"""Write the synthetic demo dataset in the PokerEvent on-disk layout.

    <root>/classes.txt                               class names, one a line, label-index order
    <root>/train_label.txt, val_label.txt, test_label.txt
                                                     "<class_dir>/<sample> <num_frames> <label>"
    <root>/<class_dir>/<sample>/<sample>_aps/0000.png  RGB frames, 0000 .. T-1
    <root>/<class_dir>/<sample>/<sample>_dvs/0000.png  event images, same count
    <root>/velora_demo.json                          parameters; written last = dataset complete

Every clip has its own seed, derived from (seed, class index, clip index), so the result
does not depend on the number of worker processes. A rerun with the same parameters finds
the marker and returns at once; with other parameters (or after an interrupted run, which
leaves `velora_demo.partial.json`) it deletes what the generator wrote and starts over.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from velora.demo.scenes import SceneConfig, render_clip

GENERATOR_VERSION = 3  # bump whenever the same parameters would give different files
MARKER = "velora_demo.json"
PARTIAL_MARKER = "velora_demo.partial.json"
SPLITS = ("train", "val", "test")
DEFAULT_CLIPS_PER_CLASS = {"train": 60, "val": 15, "test": 25}


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
    seed_entropy: tuple[int, int, int]  # (seed, class index, clip index)
    image_size: int
    frames_range: tuple[int, int]
    scene: SceneConfig


def generate_demo_dataset(
    root: str | Path,
    *,
    clips_per_class: dict[str, int] | None = None,
    image_size: int = 64,
    frames_range: tuple[int, int] = (8, 12),
    seed: int = 0,
    scene: SceneConfig | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> DemoDatasetInfo:
    """Generate (or reuse) the demo dataset under `root`.

    Args:
        root: output folder; must be new, empty, or hold an earlier demo dataset.
        clips_per_class: clips of each class per split, keys from "train", "val", "test"
            (a missing split gets 0 clips); default 60 / 15 / 25.
        image_size: side of the square frames in pixels.
        frames_range: (min, max) frames per clip, inclusive; each clip draws its own.
        seed: master seed; the same parameters give the same files.
        scene: look of the clips and the classes (shapes x directions); default SceneConfig().
        workers: processes to render with; default the number of CPUs.
        progress: show a tqdm progress bar.
    """
    root = Path(root)
    scene = scene or SceneConfig()
    clips_per_class = _check_arguments(clips_per_class, image_size, frames_range)
    params = {
        "generator_version": GENERATOR_VERSION,
        "clips_per_class": clips_per_class,
        "image_size": image_size,
        "frames_range": list(frames_range),
        "seed": seed,
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
        clip_index = 0
        for split in SPLITS:
            for _ in range(clips_per_class[split]):
                sample = f"clip_{clip_index:05d}"
                tasks.append(_ClipTask(root, class_dir, sample, shape, direction, (seed, class_index, clip_index), image_size, tuple(frames_range), scene))
                label_of[(class_dir, sample)], split_of[(class_dir, sample)] = class_index, split
                clip_index += 1

    num_frames = _run(tasks, workers, progress)

    lines = {split: [] for split in SPLITS}
    for task, frames in zip(tasks, num_frames):  # task order: class, then clip index
        key = (task.class_dir, task.sample)
        lines[split_of[key]].append(f"{task.class_dir}/{task.sample} {frames} {label_of[key]}\n")
    for split in SPLITS:
        (root / f"{split}_label.txt").write_text("".join(lines[split]))
    (root / "classes.txt").write_text("".join(f"{name}\n" for name in class_names))
    (root / MARKER).write_text(json.dumps(record, indent=2))
    (root / PARTIAL_MARKER).unlink()
    return DemoDatasetInfo(root, tuple(class_names), counts, reused=False)


def _run(tasks: list[_ClipTask], workers: int | None, progress: bool) -> list[int]:
    """Render and write every clip; returns the frame counts in task order."""
    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    with tqdm(total=len(tasks), desc="demo clips", unit="clip", disable=not progress) as bar:
        if workers == 1:
            results = []
            for task in tasks:
                results.append(_write_clip(task))
                bar.update()
            return results
        with multiprocessing.get_context().Pool(workers) as pool:
            results = []
            for frames in pool.imap(_write_clip, tasks, chunksize=4):
                results.append(frames)
                bar.update()
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


def _check_arguments(clips_per_class: dict[str, int] | None, image_size: int, frames_range: tuple[int, int]) -> dict[str, int]:
    problems = []
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
