"""Evaluation of a trained model on a dataset split (`velora eval`, `Recognizer.evaluate`).

Writes, for a split: `eval_<split>.json` (top-1, top-5, per-class accuracy, confusion matrix) and
`confusion_<split>.png` (`eval_<split>_<modalities>.json` when a modality is left out).
Predictions on single clips are `velora.evaluation.recognizer` (`velora predict`).
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
from velora.data.factory import loader_collate, make_dataset
from velora.errors import DataError
from velora.evaluation.metrics import evaluation_report
from velora.evaluation.plots import plot_confusion_matrix
from velora.model.adapter_file import AdapterCheckpoint, load_model


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


def evaluate(checkpoint: str | Path, *, device: str = "cpu", **options) -> dict:
    """Evaluate an adapter file on a split of its dataset: `velora.load(checkpoint).evaluate(...)`
    (options: those of evaluate_model)."""
    model, ckpt = load_model(checkpoint, device)
    return evaluate_model(model, ckpt, Path(checkpoint), **options)


def evaluate_model(
    model,
    ckpt: AdapterCheckpoint,
    checkpoint: Path,
    *,
    split: str = "test",
    data_root: str | None = None,
    modalities: list[str] | None = None,
    output_dir: str | Path | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    overrides: list[str] | None = None,
    plot: bool = True,
) -> dict:
    """Top-1, top-5, per-class accuracy and confusion matrix of `model` (loaded from `checkpoint`)
    on a split of its dataset, or of `data_root`; `overrides`: `data.field=value` strings (see
    data_config). Writes eval_<split>.json and (`plot`) confusion_<split>.png (next to the
    checkpoint by default; eval_<split>_<modalities>.json when a modality is left out)."""
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
    trained = tuple(ckpt.config.model.modalities)
    tag = split if tuple(cfg.data.modalities) == trained else f"{split}_{'+'.join(cfg.data.modalities)}"
    (out / f"eval_{tag}.json").write_text(json.dumps(report, indent=1, allow_nan=False))
    if plot:
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
