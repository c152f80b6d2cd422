"""Report figures: the confusion matrix and the training curves (the prediction panel: velora.evaluation.panel).

Every function builds a ``matplotlib.figure.Figure`` directly instead of going through pyplot,
so nothing here touches global backend state: the figures render with Agg on a machine without
a display and are safe to make from worker threads. Each function writes one PNG, creating the
parent folder, and returns the path it wrote.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

_DPI = 150

# Confusion-matrix readability thresholds: per-cell numbers stop being readable beyond about
# 15 classes, class names beyond about 40 (HARDVS has 300, so it gets index ticks instead).
_CM_MAX_CLASSES_WITH_NUMBERS = 15
_CM_MAX_CLASSES_WITH_NAMES = 40
_CM_MAX_NAME_CHARS = 28


def plot_confusion_matrix(
    cm: np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    title: str | None = None,
    normalize: bool = True,
) -> Path:
    """Write a confusion-matrix heat map as a PNG.

    Args:
        cm: (C, C) non-negative counts, rows = true class, columns = predicted class.
        class_names: C names in class-index order.
        path: PNG file to write; its folder is created.
        title: figure title; a default names the colour scale.
        normalize: colour each row by the fraction of that true class's clips (classes with
            no clips stay at 0) instead of by raw counts, so rare classes are as visible as
            common ones.

    Returns:
        ``path`` as a ``Path``. Up to 15 classes every cell is labelled with its value, up to
        40 the axes carry class names, beyond that class indices (names are in the report).
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
        raise ValueError(f"cm must be a square (C, C) matrix with C >= 1, got shape {cm.shape}.")
    if (cm < 0).any():
        raise ValueError("cm holds negative counts; pass the matrix from confusion_matrix().")
    num_classes = cm.shape[0]
    if len(class_names) != num_classes:
        raise ValueError(
            f"class_names has {len(class_names)} entries but cm is {num_classes}x{num_classes}; "
            "pass one name per class, in class-index order."
        )

    if normalize:
        support = cm.sum(axis=1, keepdims=True).astype(np.float64)
        values = np.divide(cm, support, out=np.zeros(cm.shape), where=support > 0)
        vmax, colour_label = 1.0, "fraction of the true class's clips"
    else:
        values = cm.astype(np.float64)
        vmax, colour_label = max(float(values.max()), 1.0), "clips"
    if title is None:
        title = "Confusion matrix (rows normalised)" if normalize else "Confusion matrix (counts)"

    # Side grows with C so 8 classes stay compact and 100+ classes still get a few pixels each.
    side = float(np.clip(3.0 + 0.3 * num_classes, 6.0, 12.0))
    fig = Figure(figsize=(side + 1.2, side), dpi=_DPI, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8, label=colour_label)
    ax.set_title(title)

    if num_classes <= _CM_MAX_CLASSES_WITH_NAMES:
        names = [_shorten(str(name), _CM_MAX_NAME_CHARS) for name in class_names]
        # The heat map takes about three quarters of the side; labels fill about half a cell.
        cell_pt = side * 72 * 0.75 / num_classes
        font_size = float(np.clip(0.45 * cell_pt, 5.0, 9.0))
        ticks = np.arange(num_classes)
        ax.set_xticks(ticks, names, rotation=90, fontsize=font_size, parse_math=False)
        ax.set_yticks(ticks, names, fontsize=font_size, parse_math=False)
        ax.set_xlabel("Predicted class")
        ax.set_ylabel("True class")
    else:
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(MaxNLocator(nbins=12, integer=True))
        ax.tick_params(labelsize=8)
        ax.set_xlabel("Predicted class index")
        ax.set_ylabel("True class index")

    if num_classes <= _CM_MAX_CLASSES_WITH_NUMBERS:
        for true_class, predicted_class in zip(*np.nonzero(cm)):
            value = values[true_class, predicted_class]
            ax.text(
                predicted_class,
                true_class,
                f"{value:.2f}" if normalize else f"{int(value)}",
                ha="center",
                va="center",
                fontsize=8,
                # White on dark cells keeps the number readable against the colour map.
                color="white" if value > 0.55 * vmax else "black",
            )
    return _save(fig, path)


def plot_training_curves(history: Mapping[str, Sequence[tuple[float, float]]], path: str | Path) -> Path:
    """Write one PNG with a small grid of training curves against the optimizer step.

    Args:
        history: metric name -> list of (step, value) pairs, e.g. ``{"train/loss": [...],
            "val/loss": [...], "val/top1": [...], "lr": [...]}``. Metrics that name the same
            quantity for different splits (the part after the last ``/``, such as
            ``train/loss`` and ``val/loss``) share one subplot so they can be compared.
            Empty lists are allowed (the subplot says "no data yet"); a single point is drawn
            as a marker.
        path: PNG file to write; its folder is created.

    Returns:
        ``path`` as a ``Path``.
    """
    series = {name: _as_curve(name, points) for name, points in history.items()}
    panels: dict[str, list[str]] = {}
    for name in series:
        panels.setdefault(name.rsplit("/", 1)[-1], []).append(name)

    num_panels = max(len(panels), 1)
    num_cols = min(3, num_panels)
    num_rows = math.ceil(num_panels / num_cols)
    fig = Figure(figsize=(4.2 * num_cols, 3.0 * num_rows), dpi=_DPI, layout="constrained")
    if not panels:
        ax = fig.add_subplot()
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no metrics recorded", ha="center", va="center", transform=ax.transAxes)
        return _save(fig, path)

    for index, (quantity, names) in enumerate(panels.items()):
        ax = fig.add_subplot(num_rows, num_cols, index + 1)
        ax.set_title(quantity)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        drawn = 0
        for name in names:
            steps, values = series[name]
            if steps.size == 0:
                continue
            # Markers only for short series: a single point would otherwise be invisible.
            marker = "o" if steps.size <= 30 else None
            ax.plot(steps, values, marker=marker, markersize=3, linewidth=1.2, label=name)
            drawn += 1
        if drawn == 0:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes)
        elif len(names) > 1 or names[0] != quantity:
            ax.legend(fontsize=8)
    return _save(fig, path)


def _as_curve(name: str, points: Sequence[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) float arrays from a list of (step, value) pairs."""
    message = f"history[{name!r}] must be a list of (step, value) number pairs"
    try:
        array = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{message}; converting it failed: {error}") from error
    if array.size == 0:
        return np.empty(0), np.empty(0)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{message}, got an array of shape {array.shape}.")
    return array[:, 0], array[:, 1]


def _shorten(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
