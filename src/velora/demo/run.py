"""`velora demo`: synthetic data -> train VELoRA and baselines -> evaluate -> report folder.

<output>/data       the synthetic dataset (PokerEvent layout; reused when complete)
<output>/packed     the same clips in the packed format, which the trainings read
<output>/runs/<r>   one training run per variant and seed (checkpoints, curves, eval JSON)
<output>/report     metrics.json, summary.md, confusion.png, curves.png, prediction_panel.png

By default the demo trains VELoRA with three training seeds and the two single-modality
baselines; `compare` adds the frozen-backbone linear probe, LoRA on a random backbone and full
fine-tuning, whose learning rate is chosen on the validation split. The trainings run side by
side, one per CPU core (velora.demo.jobs), under one progress bar (velora.demo.progress).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import torch

from velora.config import RELEASE_MODEL, Config, ConfigError, load_config, merge
from velora.data.packed.format import packed_event_resize, read_index
from velora.data.packed.writer import pack_dataset
from velora.demo.generate import (
    DEFAULT_CLIPS_PER_CLASS,
    DEFAULT_FRAMES_RANGE,
    DEFAULT_MATCHED_SPLITS,
    generate_demo_dataset,
)
from velora.demo.jobs import Job, evaluate_checkpoint, run_jobs
from velora.demo.progress import UNITS_PER_FRAME, UNITS_PER_PACKED_CLIP, UNITS_REPORT, DemoBar, job_units
from velora.demo.report import aggregate, format_table, write_report
from velora.demo.scenes import SceneConfig
from velora.model.weights_source import describe_source, resolve_source
from velora.pretrain.train import cpu_description

# Each baseline is the demo config with these overrides.
VARIANTS: dict[str, tuple[str, dict]] = {
    "velora": ("VELoRA (RGB + event)", {}),
    "rgb_only": ("RGB only", {"model": {"modalities": ["rgb"]}, "data": {"modalities": ["rgb"]}}),
    "event_only": ("event only", {"model": {"modalities": ["event"]}, "data": {"modalities": ["event"]}}),
    "linear_probe": ("frozen-backbone linear probe", {"lora": {"rank": 0}}),
    "random_backbone": ("LoRA on a random backbone", {"model": {"weights": "none"}}),
    # Full fine-tuning's learning rate is chosen on the validation split from FULL_FINETUNE_LRS.
    "full_finetune": ("full fine-tuning", {"model": {"finetune_backbone": True}}),
    # Ablations of where our reading departs from the original code (not run by default).
    "fusion_random": ("fusion: random trainable block", {"model": {"fusion_block": "random_trainable"}}),
    "recon_block": ("recon decoder: ViT block", {"model": {"recon_decoder": "block"}}),
    "recon_attached": ("recon targets not detached", {"model": {"recon_detach_target": False}}),
    "head_cls": ("head pooling: class token", {"model": {"head_pool": "cls"}}),
    "no_frame_diff": ("no frame-difference stream", {"model": {"frame_diff": False}}),
    "no_recon": ("no reconstruction loss", {"model": {"recon_weight": 0.0}}),
    "modality_dropout": ("modality dropout 0.2", {"model": {"modality_dropout": 0.2}}),
    # The released code's model, one structural field at a time, then all of them (configs/*_release.yaml).
    "release_stream_path": (
        "release: all blocks + projection + embeddings",
        {"model": {"stream_path": "all_blocks_projected"}},
    ),
    "release_shared_lora": (
        "release: the above + M-shared bottleneck",
        {"model": {"stream_path": "all_blocks_projected", "shared_lora": "mlp_bottleneck"}},
    ),
    "release_head": ("release: attention head, last 10 tokens", {"model": {"head": "attention_last_tokens"}}),
    "release_random_blocks": (
        "release: random fusion + recon blocks as released",
        {"model": {"fusion_block": "random_trainable", "recon_decoder": "block", "random_block": "release"}},
    ),
    "release": ("the released code's model (all fields)", {"model": dict(RELEASE_MODEL)}),
}
DEFAULT_VARIANTS = ["velora", "rgb_only", "event_only"]
COMPARE_VARIANTS = ["linear_probe", "random_backbone", "full_finetune"]
# Learning rates tried for full fine-tuning; the best on the validation split is reported.
FULL_FINETUNE_LRS = (1e-4, 3e-4, 1e-3)
VELORA_SEEDS = 3
FULL_SPLITS = DEFAULT_CLIPS_PER_CLASS
QUICK_SPLITS = {"train": 4, "val": 2, "test": 2}


def run_demo(
    output: str | Path = "velora-demo",
    *,
    config: str = "demo",
    overrides: list[str] | None = None,
    quick: bool = False,
    compare: bool = False,
    variants: list[str] | None = None,
    seeds: int = VELORA_SEEDS,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Run the demo; returns metrics.json's content.

    variants: the models to train (default DEFAULT_VARIANTS, plus COMPARE_VARIANTS with `compare`).
    seeds: training seeds of VELoRA (train.seed, +1, ...); the other variants train once.
    workers: trainings at once (default: one per CPU core).
    """
    start = time.perf_counter()
    output = Path(output)
    command = demo_command(quick, compare, variants, seeds, overrides)
    variants = list(dict.fromkeys(list(variants or DEFAULT_VARIANTS) + (COMPARE_VARIANTS if compare else [])))
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ConfigError(f"unknown demo variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    base = load_config(config, overrides)
    splits = QUICK_SPLITS if quick else FULL_SPLITS
    scene, frames_range = SceneConfig(), DEFAULT_FRAMES_RANGE
    num_classes = len(scene.class_names)
    clips = {split: n * num_classes for split, n in splits.items()}

    jobs = plan_jobs(base, variants, seeds, output, num_classes, quick, clips)
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    data_units = sum(clips.values()) * (sum(frames_range) / 2 * UNITS_PER_FRAME + UNITS_PER_PACKED_CLIP)
    bar = DemoBar(data_units + sum(job.units for job in jobs) + UNITS_REPORT, enabled=progress)
    timings = {}
    try:
        bar.write(f"[1/3] synthetic RGB-Event dataset -> {output / 'data'}")
        bar.stage("rendering clips")
        t0 = time.perf_counter()
        info = generate_demo_dataset(
            output / "data",
            clips_per_class=splits,
            image_size=base.model.image_size,
            frames_range=frames_range,
            scene=scene,
            seed=base.train.seed,
            progress=False,
            on_clip=lambda frames: bar.add("data", frames * UNITS_PER_FRAME),
        )
        bar.stage("packing clips")
        packed = pack(info, output / "packed", base.model.image_size, base.data.event_resize)
        bar.set("data", data_units)
        timings["data_seconds"] = round(time.perf_counter() - t0, 1)
        bar.write(f"      {len(info.class_names)} classes, clips {info.counts}{' (reused)' if info.reused else ''}")

        bar.write(f"[2/3] training {len(jobs)} models, {workers} at a time: {', '.join(job.name for job in jobs)}")
        bar.stage("training")
        t0 = time.perf_counter()
        done = run_jobs(jobs, workers=workers, on_progress=lambda name, units: bar.set(name, units))
        results = collect(jobs, done, base, bar)
        timings["training_seconds"] = round(time.perf_counter() - t0, 1)

        bar.write("[3/3] report")
        bar.stage("report")
        metrics = {
            "variants": results,
            "class_names": list(info.class_names),
            "caps": {"rgb": 1 / len(scene.directions), "event": 1 / len(scene.shapes)},
            "note": backbone_note(base),
            "command": command,
            "workers": workers,
            "data": {"clips": info.counts, "packed": str(packed), "matched_splits": list(DEFAULT_MATCHED_SPLITS)},
            "machine": machine_description(),
            "timings": timings,
        }
        report_dir = write_report(output, metrics, start)
        bar.set("report", UNITS_REPORT)
    finally:
        bar.close()
    print(format_table(results))
    print(f"report: {report_dir} ({metrics['seconds']:.0f} s)")
    return metrics


def plan_jobs(
    base: Config, variants: list[str], seeds: int, output: Path, num_classes: int, quick: bool, clips: dict[str, int]
) -> list[Job]:
    """One job per variant and seed (VELoRA: `seeds` seeds) and per learning rate of a sweep."""
    jobs = []
    for name in variants:
        extra = VARIANTS[name][1]
        if name == "full_finetune":
            for lr in FULL_FINETUNE_LRS:
                run_name = f"{name}_lr{format_lr(lr)}"
                cfg = variant_config(base, merge(extra, {"train": {"lr": lr}}), output, run_name, num_classes, quick, 0)
                jobs.append(Job(run_name, name, cfg.to_dict(), evaluate=False, units=job_units(cfg, clips, False)))
            continue
        for k in range(seeds if name == "velora" else 1):
            run_name = name if k == 0 else f"{name}_seed{k}"
            cfg = variant_config(base, extra, output, run_name, num_classes, quick, k)
            jobs.append(Job(run_name, name, cfg.to_dict(), evaluate=True, units=job_units(cfg, clips, True)))
    return jobs


def variant_config(
    base: Config, extra: dict, output: Path, run_name: str, num_classes: int, quick: bool, seed_offset: int
) -> Config:
    raw = merge(base.to_dict(), extra)
    raw["data"]["root"] = str(output / "data")
    raw["data"]["format"] = "packed"
    raw["data"]["packed_root"] = str(output / "packed")
    raw["model"]["num_classes"] = num_classes
    raw["train"]["output_dir"] = str(output / "runs" / run_name)
    raw["train"]["seed"] = base.train.seed + seed_offset
    raw["train"]["progress"] = False  # the demo's one bar stands for every training
    if quick:
        raw["train"]["epochs"] = 1
    return Config.from_dict(raw, source=f"demo run {run_name}")


def pack(info, packed_root: Path, image_size: int, event_resize: str) -> Path:
    """The demo's clips in the packed format (kept when the data was reused and the pack is complete,
    with the same event resizing)."""
    existing = read_index(packed_root, missing_ok=True) if packed_root.is_dir() else None
    if not info.reused or (existing and packed_event_resize(existing["header"]) != event_resize):
        shutil.rmtree(packed_root, ignore_errors=True)  # made from the clips just replaced, or resized otherwise
    pack_dataset(
        info.root,
        packed_root,
        splits={split: f"{split}_label.txt" for split in ("train", "val", "test")},
        image_size=image_size,
        event_resize=event_resize,
        progress=False,
    )
    return packed_root


def collect(jobs: list[Job], done: dict[str, dict], base: Config, bar: DemoBar) -> dict:
    """Per variant: its runs aggregated over seeds; a sweep's best run on the validation split, evaluated."""
    results = {}
    for variant in dict.fromkeys(job.variant for job in jobs):
        runs = [(job, done[job.name]) for job in jobs if job.variant == variant]
        sweep = None
        if variant == "full_finetune":
            sweep = [
                {"lr": job.config["train"]["lr"], "best_val_top1": run["best_val_top1"], "run": job.name}
                for job, run in runs
            ]
            # ties go to the smaller learning rate (listed first)
            job, run = max(runs, key=lambda pair: pair[1]["best_val_top1"])
            bar.stage(f"evaluating full fine-tuning at lr {format_lr(job.config['train']['lr'])}")
            run = {**run, **evaluate_checkpoint(run["best_checkpoint"])}
            runs = [(job, run)]
        cfg = Config.from_dict(runs[0][0].config)
        title = VARIANTS[variant][0]
        results[variant] = {
            "title": title if sweep is None else f"{title} (lr {format_lr(cfg.train.lr)})",
            "modalities": cfg.data.modalities,
            "backbone_weights": cfg.model.weights,
            "backbone_source": describe_source(resolve_source(cfg.model.weights, cfg.model.backbone)),
            "backbone_trained": cfg.model.finetune_backbone,
            "lr": cfg.train.lr,
            **aggregate([{**run, "seed": job.config["train"]["seed"]} for job, run in runs]),
        }
        if sweep is not None:
            results[variant]["lr_sweep"] = sweep
            results[variant]["chosen_lr"] = cfg.train.lr
    return results


def format_lr(lr: float) -> str:
    """3e-4, not 0.0003."""
    return f"{lr:.0e}".replace("e-0", "e-").replace("e+0", "e")


def backbone_note(base: Config) -> str:
    return (
        f"Backbone weights (model.weights: {base.model.weights}): "
        f"{describe_source(resolve_source(base.model.weights, base.model.backbone))}; frozen unless the table says "
        "'trained'. Each variant's weights are in metrics.json (backbone_source)."
    )


def demo_command(
    quick: bool, compare: bool, variants: list[str] | None, seeds: int, overrides: list[str] | None
) -> str:
    """The command line that repeats this run (output folder aside)."""
    words = ["velora demo"] + (["--quick"] if quick else []) + (["--compare"] if compare else [])
    if variants:
        words.append(f"--variants {','.join(variants)}")
    if seeds != VELORA_SEEDS:
        words.append(f"--seeds {seeds}")
    return " ".join(words + list(overrides or []))


def machine_description() -> str:
    cpu = cpu_description()
    return (
        f"{cpu['logical_cpus']} CPUs, {cpu['machine']}, torch {torch.__version__} "
        f"({cpu['torch_cpu_capability']}), one torch thread per training"
    )


__all__ = ["run_demo", "VARIANTS", "DEFAULT_VARIANTS", "COMPARE_VARIANTS", "FULL_FINETUNE_LRS"]
