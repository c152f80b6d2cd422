"""Clip-classification metrics: top-k accuracy, confusion matrix, per-class accuracy.

Pure functions on numpy arrays; torch tensors on the CPU are accepted too because every input
goes through ``np.asarray``.

Ranking policy (used by every function here, so top-1 accuracy, the confusion matrix and the
report always agree): classes are ranked by descending score with a *stable* sort, so among
tied scores the lower class index ranks first (the same choice as ``np.argmax``). A NaN score
ranks below every number, so a clip whose logits diverged to NaN counts as wrong instead of
silently being predicted as some arbitrary class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

# The report's "top5" key keeps its name for every dataset; with fewer than 5 classes it holds
# top-C accuracy and "top5_k" says which k was used.
_REPORT_TOPK = 5


def topk_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best-scoring classes of every clip, best first.

    Args:
        scores: (N, C) class scores (logits or probabilities; only their order matters).
        k: how many classes to keep; clipped to C, must be at least 1.

    Returns:
        (N, min(k, C)) int64 class indices. Ties go to the lower class index; NaN ranks last.
    """
    scores = _check_scores(scores)
    k = _check_k(k, scores.shape[1])
    # Negating turns the stable ascending sort into a descending one that still keeps tied
    # classes in index order; NaN stays NaN and numpy sorts it to the end.
    order = np.argsort(-scores, axis=1, kind="stable")
    return order[:, :k].astype(np.int64)


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of clips whose true class is among their ``k`` best-scoring classes.

    Args:
        scores: (N, C) class scores, N >= 1.
        labels: (N,) integer true classes in [0, C).
        k: number of guesses allowed; clipped to C, must be at least 1.

    Returns:
        Accuracy as a fraction in [0, 1].
    """
    scores = _check_scores(scores)
    labels = _check_labels(labels, scores.shape[0], scores.shape[1], "labels")
    best = topk_indices(scores, k)  # (N, k)
    hits = (best == labels[:, None]).any(axis=1)
    return float(hits.mean())


def confusion_matrix(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Count matrix of (true class, predicted class) pairs.

    Args:
        predictions: (N,) integer predicted classes in [0, num_classes).
        labels: (N,) integer true classes in [0, num_classes).
        num_classes: C, the number of classes.

    Returns:
        (C, C) int64 matrix; entry [t, p] counts clips of true class t predicted as p, so rows
        are true classes and columns predicted classes.
    """
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}.")
    num_classes = int(num_classes)
    predictions = np.asarray(predictions)
    labels = _check_labels(labels, None, num_classes, "labels")
    predictions = _check_labels(predictions, labels.shape[0], num_classes, "predictions")
    # One bincount over flattened (true, predicted) pairs instead of a Python loop over clips.
    flat = labels * num_classes + predictions
    counts = np.bincount(flat, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall of every class: correct clips of the class over all clips of the class.

    Args:
        cm: (C, C) confusion matrix with rows = true class, as from :func:`confusion_matrix`.

    Returns:
        (C,) float64 fractions in [0, 1]; NaN for a class with no clips (an empty row), since
        its accuracy is undefined rather than 0. Use ``np.nanmean`` to average.
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"The confusion matrix must be square with shape (C, C), got shape {cm.shape}.")
    support = cm.sum(axis=1).astype(np.float64)
    correct = np.diag(cm).astype(np.float64)
    accuracy = np.full(cm.shape[0], np.nan)
    np.divide(correct, support, out=accuracy, where=support > 0)
    return accuracy


def evaluation_report(scores: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Everything an evaluation run reports, as a JSON-serialisable dict.

    Args:
        scores: (N, C) class scores, N >= 1.
        labels: (N,) integer true classes in [0, C).
        class_names: C names, index i naming class i.

    Returns:
        A dict with plain Python values (``json.dumps`` works without options; NaN, which is
        not valid JSON, is written as ``None``/``null``):

        - ``num_clips`` (int) and ``num_classes`` (int);
        - ``top1`` and ``top5`` (fractions in [0, 1]); ``top5`` is top-k with
          k = min(5, C), and ``top5_k`` records that k;
        - ``mean_class_accuracy``: mean of the per-class accuracies over classes that have
          clips (``None`` never occurs since N >= 1);
        - ``per_class``: one ``{"class", "index", "accuracy", "support"}`` dict per class,
          ``accuracy`` ``None`` when the class has no clips;
        - ``confusion_matrix``: C lists of C ints, rows = true class, columns = predicted.
    """
    scores = _check_scores(scores)
    num_clips, num_classes = scores.shape
    labels = _check_labels(labels, num_clips, num_classes, "labels")
    class_names = [str(name) for name in class_names]
    if len(class_names) != num_classes:
        raise ValueError(
            f"class_names has {len(class_names)} entries but scores has {num_classes} class "
            "columns; pass one name per class, in class-index order."
        )

    predictions = topk_indices(scores, 1)[:, 0]
    cm = confusion_matrix(predictions, labels, num_classes)
    accuracy = per_class_accuracy(cm)
    support = cm.sum(axis=1)
    top5_k = min(_REPORT_TOPK, num_classes)
    per_class = [
        {
            "class": name,
            "index": index,
            "accuracy": _json_float(accuracy[index]),
            "support": int(support[index]),
        }
        for index, name in enumerate(class_names)
    ]
    return {
        "num_clips": int(num_clips),
        "num_classes": int(num_classes),
        "top1": topk_accuracy(scores, labels, 1),
        "top5": topk_accuracy(scores, labels, top5_k),
        "top5_k": top5_k,
        "mean_class_accuracy": _json_float(_nanmean(accuracy)),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
    }


def _nanmean(values: np.ndarray) -> float:
    """Mean over the non-NaN entries; NaN when there are none (without numpy's warning)."""
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


def _json_float(value: float) -> float | None:
    """A Python float, or None for NaN, which JSON cannot represent."""
    value = float(value)
    return None if math.isnan(value) else value


def _check_scores(scores: np.ndarray) -> np.ndarray:
    """Validate (N, C) scores with N, C >= 1 and return them as a float64 array."""
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must have shape (N, C) = (clips, classes), got shape {scores.shape}.")
    if scores.shape[0] == 0 or scores.shape[1] == 0:
        raise ValueError(f"scores has shape {scores.shape}; metrics need at least one clip and one class.")
    if not (np.issubdtype(scores.dtype, np.floating) or np.issubdtype(scores.dtype, np.integer)):
        raise ValueError(f"scores must be real numbers, got dtype {scores.dtype}.")
    return scores.astype(np.float64, copy=False)


def _check_labels(labels: np.ndarray, num_clips: int | None, num_classes: int, name: str) -> np.ndarray:
    """Validate 1-D integer class indices in [0, num_classes), optionally of length num_clips."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class indices, got shape {labels.shape}.")
    if num_clips is not None and labels.shape[0] != num_clips:
        raise ValueError(
            f"{name} has {labels.shape[0]} entries but there are {num_clips} clips; pass one entry per clip."
        )
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class indices, got dtype {labels.dtype}.")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)]
        raise ValueError(
            f"{name} must lie in [0, {num_classes}) but contains {bad[:5].tolist()}; "
            "check that the class list matches the one the labels were made with."
        )
    return labels.astype(np.int64, copy=False)


def _check_k(k: int, num_classes: int) -> int:
    """Validate k >= 1 and clip it to the number of classes."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer number of guesses, got {k!r}.")
    return min(int(k), num_classes)
