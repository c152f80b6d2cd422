"""`velora demo`: synthetic data -> train VELoRA and baselines -> evaluate -> report folder.

<output>/data       the synthetic dataset (PokerEvent layout; reused when complete)
<output>/runs/<v>   one training run per variant (checkpoints, curves, eval JSON)
<output>/report     metrics.json, summary.md, confusion.png, curves.png, prediction_panel.png
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch

from velora.config import RELEASE_MODEL, Config, ConfigError, load_config, merge
from velora.data.factory import make_dataset
from velora.demo.generate import generate_demo_dataset
from velora.evaluation.evaluate import evaluate, predict_scores
from velora.evaluation.panel import panel_row, plot_prediction_panel
from velora.evaluation.metrics import topk_indices
from velora.model.adapter_file import load_model
from velora.model.velora import count_parameters
from velora.model.weights_source import describe_source, resolve_source
from velora.training.run import train

# Each baseline is the demo config with these overrides.
VARIANTS: dict[str, tuple[str, dict]] = {
    "velora": ("VELoRA (RGB + event)", {}),
    "rgb_only": ("RGB only", {"model": {"modalities": ["rgb"]}, "data": {"modalities": ["rgb"]}}),
    "event_only": ("event only", {"model": {"modalities": ["event"]}, "data": {"modalities": ["event"]}}),
    "linear_probe": ("frozen-backbone linear probe", {"lora": {"rank": 0}}),
    "random_backbone": ("LoRA on a random backbone", {"model": {"weights": "none"}}),
    # Full fine-tuning at the LoRA learning rate wrecks the pre-trained weights; 3e-4 is the usual lower rate.
    "full_finetune": ("full fine-tuning (lr 3e-4)", {"model": {"finetune_backbone": True}, "train": {"lr": 3.0e-4}}),
    # Ablations of where our reading departs from the original code (not run by default).
    "fusion_random": ("fusion: random trainable block", {"model": {"fusion_block": "random_trainable"}}),
    "recon_block": ("recon decoder: ViT block", {"model": {"recon_decoder": "block"}}),
    "recon_attached": ("recon targets not detached", {"model": {"recon_detach_target": False}}),
    "head_cls": ("head pooling: class token", {"model": {"head_pool": "cls"}}),
    "no_frame_diff": ("no frame-difference stream", {"model": {"frame_diff": False}}),
    "no_recon": ("no reconstruction loss", {"model": {"recon_weight": 0.0}}),
    "modality_dropout": ("modality dropout 0.2", {"model": {"modality_dropout": 0.2}}),
    # The released code's model, one structural field at a time, then all of them (configs/*_release.yaml).
    "release_stream_path": ("release: all blocks + projection + embeddings", {"model": {"stream_path": "all_blocks_projected"}}),
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
DEFAULT_VARIANTS = ["velora", "rgb_only", "event_only", "linear_probe", "random_backbone", "full_finetune"]
FULL_SPLITS = {"train": 30, "val": 10, "test": 25}
QUICK_SPLITS = {"train": 4, "val": 2, "test": 2}


def run_demo(
    output: str | Path = "velora-demo",
    *,
    config: str = "demo",
    overrides: list[str] | None = None,
    quick: bool = False,
    variants: list[str] | None = None,
    progress: bool = True,
) -> dict:
    start = time.perf_counter()
    output = Path(output)
    variants = variants or DEFAULT_VARIANTS
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ConfigError(f"unknown demo variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    base = load_config(config, overrides)
    splits = QUICK_SPLITS if quick else FULL_SPLITS

    print(f"[1/3] synthetic RGB-Event dataset -> {output / 'data'}")
    info = generate_demo_dataset(
        output / "data", clips_per_class=splits, image_size=base.model.image_size, progress=progress,
        seed=base.train.seed,
    )
    print(f"      {len(info.class_names)} classes, clips {info.counts}{' (reused)' if info.reused else ''}")

    results = {}
    for i, name in enumerate(variants, 1):
        title, extra = VARIANTS[name]
        cfg = variant_config(base, extra, output, name, len(info.class_names), quick)
        print(f"[2/3] training {i}/{len(variants)}: {title}")
        t0 = time.perf_counter()
        result = train(cfg)
        seconds = time.perf_counter() - t0
        report = evaluate(result.best_checkpoint, split="test", progress=progress)
        model, _ = load_model(result.best_checkpoint)
        total, trainable = count_parameters(model)
        # The same model with one sensor missing at test time.
        missing = {}
        if len(model.modalities) == 2:
            for absent, present in (("rgb", "event"), ("event", "rgb")):
                missing[absent] = evaluate(
                    result.best_checkpoint, split="test", modalities=[present], progress=False,
                    output_dir=result.output_dir / f"without_{absent}",
                )["top1"]
        results[name] = {
            "title": title,
            "modalities": cfg.data.modalities,
            "backbone_weights": cfg.model.weights,
            "backbone_source": describe_source(resolve_source(cfg.model.weights, cfg.model.backbone)),
            "backbone_trained": cfg.model.finetune_backbone,
            "test_top1": report["top1"],
            "test_top5": report["top5"],
            "mean_class_accuracy": report["mean_class_accuracy"],
            "test_top1_without_rgb": missing.get("rgb"),
            "test_top1_without_event": missing.get("event"),
            "best_val_top1": result.best_val_top1,
            "best_epoch": result.best_epoch,
            "trainable_parameters": trainable,
            "total_parameters": total,
            "trainable_fraction": trainable / total,
            "train_seconds": round(seconds, 1),
            "checkpoint": str(result.best_checkpoint),
        }

    print("[3/3] report")
    report_dir = write_report(output, base, results, info.class_names, time.perf_counter() - start)
    print(format_table(results))
    print(f"report: {report_dir}")
    return results


def variant_config(base: Config, extra: dict, output: Path, name: str, num_classes: int, quick: bool) -> Config:
    raw = merge(base.to_dict(), extra)
    raw["data"]["root"] = str(output / "data")
    raw["model"]["num_classes"] = num_classes
    raw["train"]["output_dir"] = str(output / "runs" / name)
    if quick:
        raw["train"]["epochs"] = 1
        raw["data"]["num_workers"] = 0
    return Config.from_dict(raw, source=f"demo variant {name}")


def write_report(output: Path, base: Config, results: dict, class_names, seconds: float) -> Path:
    report_dir = output / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    backbone_note = (
        f"Backbone weights (model.weights: {base.model.weights}): "
        f"{describe_source(resolve_source(base.model.weights, base.model.backbone))}; frozen unless the table says "
        "'trained'. Each variant's weights are in metrics.json (backbone_source)."
    )
    metrics = {"variants": results, "class_names": list(class_names), "seconds": round(seconds, 1), "note": backbone_note}
    (report_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    (report_dir / "summary.md").write_text(
        "# velora demo\n\n" + backbone_note + "\n\n```\n" + format_table(results) + "\n```\n"
        f"\nTotal time {seconds:.0f} s.\n"
    )
    if "velora" in results:
        run = Path(results["velora"]["checkpoint"]).parent
        for src, dst in (("confusion_test.png", "confusion.png"), ("curves.png", "curves.png")):
            if (run / src).exists():
                shutil.copyfile(run / src, report_dir / dst)
        write_panel(Path(results["velora"]["checkpoint"]), report_dir / "prediction_panel.png")
    return report_dir


def write_panel(checkpoint: Path, path: Path, rows: int = 4) -> None:
    """Prediction panel of the first test clips of distinct classes."""
    model, ckpt = load_model(checkpoint)
    dataset = make_dataset(ckpt.config, "test")
    seen, picked = set(), []
    for i, entry in enumerate(dataset.entries):
        if entry.label not in seen:
            seen.add(entry.label)
            picked.append(i)
        if len(picked) == rows:
            break
    subset = torch.utils.data.Subset(dataset, picked)
    scores, labels = predict_scores(model, subset, progress=False)
    top = topk_indices(scores, 5)
    panel_rows = []
    for row, i in enumerate(picked):
        topk = [(ckpt.class_names[c], float(scores[row, c])) for c in top[row]]
        panel_rows.append(panel_row(dataset[i], topk, ckpt.class_names[int(labels[row])]))
    plot_prediction_panel(panel_rows, path)


def format_table(results: dict) -> str:
    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    lines = [
        f"{'model':32s} {'modalities':10s} {'test top-1':>10s} {'top-5':>7s} {'no RGB':>7s} {'no event':>8s} "
        f"{'trainable':>10s} {'share':>6s} {'backbone':>18s} {'train s':>8s}"
    ]
    for r in results.values():
        lines.append(
            f"{r['title']:32s} {'+'.join(r['modalities']):10s} {pct(r['test_top1']):>10s} {pct(r['test_top5']):>7s} "
            f"{pct(r['test_top1_without_rgb']):>7s} {pct(r['test_top1_without_event']):>8s} "
            f"{r['trainable_parameters']:10,d} {r['trainable_fraction']:6.1%} {backbone_label(r):>18s} "
            f"{r['train_seconds']:8.0f}"
        )
    lines.append("no RGB / no event: the same model evaluated with that sensor missing at test time.")
    lines.append("share: trainable parameters / all parameters (frozen backbone included).")
    return "\n".join(lines)


def backbone_label(result: dict) -> str:
    """'pretrained, frozen', 'random, frozen', 'pretrained, trained', ..."""
    weights = result.get("backbone_weights", "none")
    origin = "random" if weights == "none" else "fractal" if weights.startswith("shipped:fractal") else "pretrained"
    return f"{origin}, {'trained' if result.get('backbone_trained') else 'frozen'}"


__all__ = ["run_demo", "VARIANTS"]
