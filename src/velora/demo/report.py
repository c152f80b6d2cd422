"""The demo's report folder: metrics.json, summary.md, confusion.png, curves.png, prediction_panel.png.

metrics.json holds, for every variant, the mean over its training seeds and the spread:
`seeds`, `test_top1` (mean), `test_top1_per_seed`, `test_top1_std` (sample standard deviation,
null for one seed), `test_top1_min`, `test_top1_max`, and `test_clips`; a learning-rate sweep adds
`lr_sweep` and `chosen_lr` (chosen on the validation split).
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from velora.data.factory import make_dataset
from velora.evaluation.evaluate import predict_scores
from velora.evaluation.metrics import topk_indices
from velora.evaluation.panel import panel_row, plot_prediction_panel
from velora.evaluation.plots import plot_confusion_matrix
from velora.model.adapter_file import load_model

SPREAD_FIELDS = (
    "seeds",
    "test_top1",
    "test_top1_per_seed",
    "test_top1_std",
    "test_top1_min",
    "test_top1_max",
    "test_clips",
)


def aggregate(runs: list[dict]) -> dict:
    """Mean and spread over the runs (one per seed) of one variant; figures from the job results."""

    def mean(key: str) -> float | None:
        values = [run[key] for run in runs if run.get(key) is not None]
        return statistics.fmean(values) if values else None

    top1 = [run["test_top1"] for run in runs]
    first = runs[0]
    return {
        "seeds": [run["seed"] for run in runs],
        "test_top1": statistics.fmean(top1),
        "test_top1_per_seed": top1,
        "test_top1_std": statistics.stdev(top1) if len(top1) > 1 else None,
        "test_top1_min": min(top1),
        "test_top1_max": max(top1),
        "test_clips": first["test_clips"],
        "test_top5": mean("test_top5"),
        "mean_class_accuracy": mean("mean_class_accuracy"),
        "test_top1_without_rgb": mean("test_top1_without_rgb"),
        "test_top1_without_event": mean("test_top1_without_event"),
        "best_val_top1": mean("best_val_top1"),
        "best_epoch_per_seed": [run["best_epoch"] for run in runs],
        "trainable_parameters": first["trainable_parameters"],
        "total_parameters": first["total_parameters"],
        "trainable_fraction": first["trainable_parameters"] / first["total_parameters"],
        "train_seconds": round(statistics.fmean(run["train_seconds"] for run in runs), 1),
        "train_cpu_seconds": round(statistics.fmean(run["train_cpu_seconds"] for run in runs), 1),
        "checkpoint": first["best_checkpoint"],
    }


def standard_error(accuracy: float, clips: int) -> float:
    """Binomial standard error of an accuracy measured on `clips` test clips."""
    return math.sqrt(max(accuracy * (1 - accuracy), 0.0) / clips) if clips else float("nan")


def write_report(output: Path, metrics: dict, start: float) -> Path:
    """The figures of the first VELoRA run, then summary.md and metrics.json -> <output>/report.

    start: time.perf_counter() at the start of the demo; metrics["seconds"] is the time from
    then to the end of the report.
    """
    report_dir = output / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    results = metrics["variants"]
    t0 = time.perf_counter()
    if "velora" in results:
        run = Path(results["velora"]["checkpoint"]).parent
        evaluation = json.loads((run / "eval_test.json").read_text())
        plot_confusion_matrix(
            np.asarray(evaluation["confusion_matrix"]),
            metrics["class_names"],
            report_dir / "confusion.png",
            title=f"VELoRA, test split: top-1 {evaluation['top1']:.1%}",
        )
        shutil.copyfile(run / "curves.png", report_dir / "curves.png")
        write_panel(Path(results["velora"]["checkpoint"]), report_dir / "prediction_panel.png")
    metrics["timings"]["report_seconds"] = round(time.perf_counter() - t0, 1)
    metrics["seconds"] = round(time.perf_counter() - start, 1)
    (report_dir / "summary.md").write_text(summary(metrics))
    (report_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return report_dir


def summary(metrics: dict) -> str:
    results = metrics["variants"]
    lines = ["# velora demo", "", metrics["note"], "", "```", format_table(results), "```", ""]
    lines += [f"- {finding}" for finding in findings(metrics)]
    lines += ["", f"Total time {metrics['seconds']:.0f} s ({metrics['machine']})."]
    return "\n".join(lines) + "\n"


def findings(metrics: dict) -> list[str]:
    """What the figures say, in sentences computed from them."""
    results, caps = metrics["variants"], metrics["caps"]
    out = []
    if "velora" in results:
        v = results["velora"]
        seeds = ", ".join(f"{x:.1%}" for x in v["test_top1_per_seed"])
        spread = (
            f" +/- {v['test_top1_std']:.1%} over {len(v['seeds'])} training seeds ({seeds})"
            if v["test_top1_std"] is not None
            else ""
        )
        out.append(
            f"VELoRA: {v['test_top1']:.1%} test top-1{spread}; the test split has {v['test_clips']} clips, "
            f"a sampling error of about {standard_error(v['test_top1'], v['test_clips']):.1%} at this accuracy."
        )
        singles = [results[name] for name in ("rgb_only", "event_only") if name in results]
        if singles:
            best = max(singles, key=lambda r: r["test_top1"])
            out.append(
                f"Fusion: VELoRA is {100 * (v['test_top1'] - best['test_top1']):.1f} points above the best single "
                f"modality ({best['title']}, {best['test_top1']:.1%})."
            )
    for name, modality in (("rgb_only", "rgb"), ("event_only", "event")):
        if name in results:
            r = results[name]
            out.append(
                f"{r['title']}: {r['test_top1']:.1%} of its {caps[modality]:.0%} cap "
                f"({100 * (caps[modality] - r['test_top1']):.1f} points below it)."
            )
    if "velora" in results:
        for name in ("linear_probe", "random_backbone", "full_finetune"):
            if name in results:
                r = results[name]
                diff = 100 * (results["velora"]["test_top1"] - r["test_top1"])
                tuned = ""
                if "chosen_lr" in r:
                    tried = ", ".join(f"{x['lr']:.0e}" for x in r["lr_sweep"])
                    tuned = f", learning rate {r['chosen_lr']:.0e} chosen on the validation split from {tried}"
                out.append(
                    f"VELoRA vs {r['title']} ({r['test_top1']:.1%}{tuned}): {diff:+.1f} points, training "
                    f"{results['velora']['trainable_fraction']:.1%} of the parameters against {r['trainable_fraction']:.1%}."
                )
    return out


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

    def top1(r: dict) -> str:
        if r["test_top1_std"] is None:
            return pct(r["test_top1"])
        return f"{r['test_top1']:.1%} +/- {100 * r['test_top1_std']:.1f} ({len(r['seeds'])} seeds)"

    width = max([34] + [len(r["title"]) for r in results.values()])  # ablation titles are longer
    lines = [
        f"{'model':{width}s} {'modalities':10s} {'test top-1':>24s} {'top-5':>7s} {'no RGB':>7s} {'no event':>8s} "
        f"{'trainable':>10s} {'share':>6s} {'backbone':>18s} {'train s':>8s}"
    ]
    for r in results.values():
        lines.append(
            f"{r['title']:{width}s} {'+'.join(r['modalities']):10s} {top1(r):>24s} {pct(r['test_top5']):>7s} "
            f"{pct(r['test_top1_without_rgb']):>7s} {pct(r['test_top1_without_event']):>8s} "
            f"{r['trainable_parameters']:10,d} {r['trainable_fraction']:6.1%} {backbone_label(r):>18s} "
            f"{r['train_seconds']:8.0f}"
        )
    lines.append("no RGB / no event: the same model evaluated with that sensor missing at test time.")
    lines.append("share: trainable parameters / all parameters (frozen backbone included).")
    lines.append("train s: wall-clock seconds of one training (mean over seeds), trainings running side by side.")
    return "\n".join(lines)


def backbone_label(result: dict) -> str:
    """'fractal, frozen', 'random, frozen', 'fractal, trained', ..."""
    weights = result.get("backbone_weights", "none")
    origin = "random" if weights == "none" else "fractal" if weights.startswith("shipped:fractal") else "pretrained"
    return f"{origin}, {'trained' if result.get('backbone_trained') else 'frozen'}"
