"""Evaluation of a trained model on a dataset split (`velora eval`, `Recognizer.evaluate`).

Writes, for a split: `eval_<split>.json` (top-1, top-5, per-class accuracy, confusion matrix) and
`confusion_<split>.png` (`eval_<split>_<modalities>.json` when a modality is left out). The
figures are those of the single view (segment centres, the whole frame); with eval.views x
eval.crops > 1 the report's "views" entry holds the multi-view figures (each clip's scores
averaged over its views, as action-recognition toolkits test).
Predictions on single clips are `velora.evaluation.recognizer` (`velora predict`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from velora.config import Config, ConfigError, merge, parse_overrides
from velora.data.factory import loader_collate, make_dataset
from velora.data.sampling import EvalView, SampledClips, eval_views
from velora.errors import DataError
from velora.evaluation.metrics import evaluation_report
from velora.evaluation.plots import plot_confusion_matrix
from velora.model.adapter_file import AdapterCheckpoint, load_model


@torch.no_grad()
def predict_logits(
    model,
    dataset: Dataset,
    *,
    batch_size: int = 16,
    num_workers: int = 0,
    progress: bool = True,
    desc: str = "evaluate",
) -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, C) float32 and labels (N,) for every clip of `dataset`, in order."""
    device = next(model.parameters()).device
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=num_workers, shuffle=False, collate_fn=loader_collate(dataset)
    )
    logits, labels = [], []
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
        out = model(
            batch["rgb"].to(device, non_blocking=True) if "rgb" in batch else None,
            batch["events"].to(device, non_blocking=True) if "events" in batch else None,
        )
        logits.append(out.logits.float().cpu())
        labels.append(batch["label"])
    return torch.cat(logits).numpy(), torch.cat(labels).numpy()


def predict_scores(model, dataset: Dataset, **options) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities (N, C) and labels (N,) for every clip of `dataset`, in order (options: predict_logits')."""
    logits, labels = predict_logits(model, dataset, **options)
    return softmax(logits), labels


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, C) logits, as torch computes it."""
    return torch.from_numpy(logits).softmax(-1).numpy()


def configured_views(cfg: Config) -> list[EvalView]:
    """The test-time views of eval.views x eval.crops, temporal views outer."""
    e = cfg.eval
    return eval_views(e.views, e.crops, e.crop_fraction)


def predict_views(
    model, dataset: SampledClips, views: list[EvalView], *, average: str = "probabilities", **options
) -> tuple[np.ndarray, np.ndarray]:
    """Class scores (N, C) of every clip averaged over `views` (one pass over `dataset` per view),
    and labels (N,). average: 'probabilities' (the mean of each view's softmax) or 'logits' (the
    mean of the logits, then the softmax). The dataset's sampling is restored afterwards.

    Temporal views apply to the layouts sampled in segments (frames, recordings, packed); event
    files are cut into the same windows in every view, so only their crops differ."""
    single = dataset.sampling
    total, labels = None, None
    try:
        for number, view in enumerate(views, 1):
            dataset.sampling = dataclasses.replace(single, view=view)
            logits, view_labels = predict_logits(model, dataset, desc=f"view {number}/{len(views)}", **options)
            assert labels is None or np.array_equal(labels, view_labels), "every view reads the clips in one order"
            scores = softmax(logits) if average == "probabilities" else logits
            total, labels = (scores if total is None else total + scores), view_labels
    finally:
        dataset.sampling = single
    assert total is not None and labels is not None, "no views given"
    mean = total / len(views)
    return (mean if average == "probabilities" else softmax(mean)), labels


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
    loading = {
        "batch_size": batch_size or cfg.train.batch_size,
        "num_workers": cfg.data.num_workers,
        "progress": progress,
    }
    scores, labels = predict_scores(model, dataset, **loading)
    report = evaluation_report(scores, labels, ckpt.class_names)
    report.update(split=split, checkpoint=str(checkpoint), modalities=list(cfg.data.modalities), views=None)
    views = configured_views(cfg)
    if len(views) > 1:
        view_scores, _ = predict_views(model, dataset, views, average=cfg.eval.average, **loading)
        multi = evaluation_report(view_scores, labels, ckpt.class_names)
        e = cfg.eval
        report["views"] = {
            "views": len(views),
            "temporal_views": e.views,
            "crops": e.crops,
            "crop_fraction": e.crop_fraction,
            "average": e.average,
            **{k: multi[k] for k in ("top1", "top5", "top5_k", "mean_class_accuracy")},
        }
    out = Path(output_dir) if output_dir else Path(checkpoint).parent
    out.mkdir(parents=True, exist_ok=True)
    # A run with a sensor left out gets its own files instead of overwriting the full evaluation.
    trained = tuple(ckpt.config.model.modalities)
    tag = split if tuple(cfg.data.modalities) == trained else f"{split}_{'+'.join(cfg.data.modalities)}"
    (out / f"eval_{tag}.json").write_text(json.dumps(report, indent=1, allow_nan=False))
    if plot:
        plot_confusion_matrix(
            np.asarray(report["confusion_matrix"]),
            ckpt.class_names,
            out / f"confusion_{tag}.png",
            title=f"{split}: top-1 {report['top1']:.1%}",
        )
    return report


def data_config(
    config: Config,
    *,
    data_root: str | None = None,
    modalities: list[str] | None = None,
    overrides: list[str] | None = None,
) -> Config:
    """The checkpoint's config with another dataset root, a subset of the model's modalities, or
    other `data.field=value` and `eval.field=value` settings (e.g. data.layout=recordings for raw
    recordings, eval.views=3 for test-time views).

    Leaving a modality out evaluates the model as if that sensor were missing. Only the data and
    eval sections can change: the model is the checkpoint's.
    """
    if modalities:
        trained = config.model.modalities
        extra = sorted(set(modalities) - set(trained))
        if extra:
            raise DataError(
                f"the model was trained on {'+'.join(trained)} and cannot use {', '.join(extra)}; "
                f"choose modalities from {', '.join(trained)}"
            )
    changes = parse_overrides(list(overrides or []))
    fixed = sorted(f"{section}.*" for section in changes if section not in ("data", "eval"))
    if fixed:
        raise ConfigError(
            f"only data.* and eval.* settings can be changed at evaluation, not {', '.join(fixed)}: "
            "the model and its training are fixed by the checkpoint"
        )
    data = changes.setdefault("data", {})
    if data_root:
        data["root"] = data_root
    if modalities:
        data["modalities"] = list(modalities)
    return Config.from_dict(merge(config.to_dict(), changes), source="checkpoint config + options")
