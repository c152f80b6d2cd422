"""`velora eval` and `velora predict`: run a trained adapter checkpoint on clips.

eval writes, for a split: `eval_<split>.json` (top-1, top-5, per-class accuracy, confusion
matrix) and `confusion_<split>.png` (`eval_<split>_<modalities>.json` when a modality is left
out). predict prints the top-5 classes of each clip (a folder, a raw recording or an event file)
and can draw a panel in the style of the paper's HARDVS figure, one row per clip.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from velora.config import Config, ConfigError, merge, parse_overrides
from velora.data.clips import ClipDataset
from velora.data.factory import clip_dataset, loader_collate, make_dataset
from velora.errors import DataError
from velora.evaluation.metrics import evaluation_report, topk_indices
from velora.evaluation.panel import panel_row, plot_prediction_panel
from velora.evaluation.plots import plot_confusion_matrix
from velora.model.adapter_file import load_model


@torch.no_grad()
def predict_scores(
    model, dataset: ClipDataset, *, batch_size: int = 16, num_workers: int = 0, progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities (N, C) and labels (N,) for every clip of `dataset`, in order."""
    device = next(model.parameters()).device
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, shuffle=False, collate_fn=loader_collate(dataset)
    )
    scores, labels = [], []
    for batch in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
        out = model(
            batch["rgb"].to(device, non_blocking=True) if "rgb" in batch else None,
            batch["events"].to(device, non_blocking=True) if "events" in batch else None,
        )
        scores.append(out.logits.float().softmax(-1).cpu())
        labels.append(batch["label"])
    return torch.cat(scores).numpy(), torch.cat(labels).numpy()


def evaluate(
    checkpoint: str | Path,
    *,
    split: str = "test",
    data_root: str | None = None,
    modalities: list[str] | None = None,
    output_dir: str | Path | None = None,
    device: str = "cpu",
    batch_size: int | None = None,
    progress: bool = True,
    overrides: list[str] | None = None,
) -> dict:
    """Evaluate an adapter checkpoint on a split of its dataset (or of `data_root`; `overrides`:
    `data.field=value` strings, see data_config)."""
    model, ckpt = load_model(checkpoint, device)
    cfg = data_config(ckpt.config, data_root=data_root, modalities=modalities, overrides=overrides)
    # Layouts that number classes by name (recordings, events) number them as the model does.
    dataset = make_dataset(cfg, split, classes=ckpt.class_names)
    scores, labels = predict_scores(
        model, dataset, batch_size=batch_size or cfg.train.batch_size, num_workers=cfg.data.num_workers, progress=progress
    )
    report = evaluation_report(scores, labels, ckpt.class_names)
    report.update(split=split, checkpoint=str(checkpoint), modalities=list(cfg.data.modalities))
    out = Path(output_dir) if output_dir else Path(checkpoint).parent
    out.mkdir(parents=True, exist_ok=True)
    # A run with a sensor left out gets its own files instead of overwriting the full evaluation.
    tag = split if tuple(cfg.data.modalities) == tuple(model.modalities) else f"{split}_{'+'.join(cfg.data.modalities)}"
    (out / f"eval_{tag}.json").write_text(json.dumps(report, indent=1, allow_nan=False))
    plot_confusion_matrix(
        np.asarray(report["confusion_matrix"]), ckpt.class_names, out / f"confusion_{tag}.png",
        title=f"{split}: top-1 {report['top1']:.1%}",
    )
    return report


def data_config(
    config: Config, *, data_root: str | None = None, modalities: list[str] | None = None, overrides: list[str] | None = None
) -> Config:
    """The checkpoint's config with another dataset root, a subset of the model's modalities, or
    other `data.field=value` settings (e.g. data.layout=recordings for raw recordings).

    Leaving a modality out evaluates the model as if that sensor were missing. Only the data
    section can change: the model is the checkpoint's.
    """
    if modalities:
        trained = config.model.modalities
        extra = sorted(set(modalities) - set(trained))
        if extra:
            raise DataError(
                f"the model was trained on {'+'.join(trained)} and cannot use {', '.join(extra)}; "
                f"choose modalities from {', '.join(trained)}"
            )
    data = parse_overrides(list(overrides or []))
    fixed = sorted(f"{section}.*" for section in data if section != "data")
    if fixed:
        raise ConfigError(
            f"only data.* settings can be changed at evaluation, not {', '.join(fixed)}: "
            "the model and its training are fixed by the checkpoint"
        )
    data = data.get("data", {})
    if data_root:
        data["root"] = data_root
    if modalities:
        data["modalities"] = list(modalities)
    return Config.from_dict(merge(config.to_dict(), {"data": data}), source="checkpoint config + options")


def predict(
    checkpoint: str | Path,
    clip: str | Path,
    *,
    modalities: list[str] | None = None,
    top_k: int = 5,
    panel: str | Path | None = None,
    ground_truth: str | None = None,
    device: str = "cpu",
) -> list[tuple[str, float]]:
    """Top-k (class name, probability) for one clip (see predict_clips); optionally write the panel PNG."""
    truths = [ground_truth] if ground_truth is not None else None
    return predict_clips(
        checkpoint, [clip], modalities=modalities, top_k=top_k, panel=panel, ground_truths=truths, device=device
    )[0]["topk"]


def predict_clips(
    checkpoint: str | Path,
    clips: list[str | Path],
    *,
    modalities: list[str] | None = None,
    top_k: int = 5,
    panel: str | Path | None = None,
    ground_truths: list[str | None] | None = None,
    device: str = "cpu",
) -> list[dict]:
    """Top-k for each clip, the model loaded once: [{"clip", "topk": [(name, prob), ...], "ground_truth"}].

    ground_truths: one per clip (None: unknown). When not given, a clip inside a folder named after
    one of the model's classes (the dataset layouts: <class>/<sample>) has that class as its ground
    truth. `panel`: one row per clip, RGB frames, event frames and the top-k, as in the paper's figure.
    """
    model, ckpt = load_model(checkpoint, device)
    cfg = data_config(ckpt.config, modalities=modalities)
    if ground_truths is None:
        ground_truths = [folder_class(clip, ckpt.class_names) for clip in clips]
    results, rows = [], []
    for clip, truth in zip(clips, ground_truths, strict=True):
        item = clip_dataset(Path(clip), cfg)[0]
        with torch.no_grad():
            out = model(
                item["rgb"][None].to(device) if "rgb" in item else None,
                item["events"][None].to(device) if "events" in item else None,
            )
        probs = out.logits.float().softmax(-1)[0].cpu().numpy()
        topk = [(ckpt.class_names[i], float(probs[i])) for i in topk_indices(probs[None], top_k)[0]]
        results.append({"clip": str(clip), "topk": topk, "ground_truth": truth})
        if panel:
            rows.append(panel_row(item, topk, truth))
    if panel:
        plot_prediction_panel(rows, panel)
    return results


def folder_class(clip: str | Path, class_names: list[str]) -> str | None:
    """The class a clip's folder is named after (<class>/<sample>, as datasets are laid out), if any."""
    folder = Path(clip).resolve().parent.name
    return folder if folder in class_names else None
