"""Report figures: confusion matrix, training curves and the per-clip prediction panel.

Every function builds a ``matplotlib.figure.Figure`` directly instead of going through pyplot,
so nothing here touches global backend state: the figures render with Agg on a machine without
a display and are safe to make from worker threads. Each function writes one PNG, creating the
parent folder, and returns the path it wrote.

The prediction panel follows the HARDVS prediction figure of the VELoRA paper
(``reference/figures/hardvs-prediction-panel.jpg``): per clip, RGB frames, then event frames,
then the ground truth and the top-5 classes, the correct class in red.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import RendererAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.ticker import MaxNLocator

_DPI = 150

# Confusion-matrix readability thresholds: per-cell numbers stop being readable beyond about
# 15 classes, class names beyond about 40 (HARDVS has 300, so it gets index ticks instead).
_CM_MAX_CLASSES_WITH_NUMBERS = 15
_CM_MAX_CLASSES_WITH_NAMES = 40
_CM_MAX_NAME_CHARS = 28

# Prediction-panel geometry in inches and colours sampled from the paper's figure.
_PANEL_CELL_HEIGHT = 1.35
_PANEL_MARGIN = 0.08
_PANEL_FRAME_GAP = 0.06
_PANEL_BLOCK_GAP = 0.16
_PANEL_ROW_GAP = 0.08
_PANEL_TEXT_WIDTH = 3.7
_PANEL_BORDER_COLOUR = "#3a5a8c"
_PANEL_HIT_COLOUR = "#d40000"
_PANEL_RANK_COLOUR = "#505050"
# STIX ships with matplotlib and is Times-like, as in the paper; DejaVu Serif is the fallback.
_PANEL_FONT = ["STIXGeneral", "DejaVu Serif", "serif"]
_PANEL_MAX_FONT_PT = 11.0
_PANEL_MIN_FONT_PT = 5.0
_PANEL_LINE_SPACING = 1.25
_PANEL_MAX_NAME_CHARS = 120
# Text measured at 72 dpi comes out a few percent narrower than rendered at _DPI (hinting),
# so lines are wrapped to slightly less than the column width.
_PANEL_WRAP_FRACTION = 0.94


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


def plot_training_curves(
    history: Mapping[str, Sequence[tuple[float, float]]], path: str | Path
) -> Path:
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


@dataclass
class PanelRow:
    """One clip of the prediction panel.

    Attributes:
        rgb_frames: (K, H, W, 3) uint8 RGB frames, drawn left to right.
        event_frames: (K', H', W', 3) uint8 event frames already rendered as images
            (red/blue polarity on white), drawn after the RGB frames.
        ground_truth: the true class name, or None for an unlabelled clip (then no
            "Ground Truth" line is drawn and the top-1 line is red).
        topk: (class name, score) pairs, best first, at least one; scores are printed as given
            (probabilities or logits) with 3 significant digits.
    """

    rgb_frames: np.ndarray
    event_frames: np.ndarray
    ground_truth: str | None
    topk: list[tuple[str, float]]

    def __post_init__(self) -> None:
        self.rgb_frames = _check_frames(self.rgb_frames, "rgb_frames")
        self.event_frames = _check_frames(self.event_frames, "event_frames")
        if len(self.topk) == 0:
            raise ValueError("PanelRow.topk is empty; pass at least the top-1 (name, score) pair.")
        self.topk = [(str(name), float(score)) for name, score in self.topk]


def plot_prediction_panel(rows: Sequence[PanelRow], path: str | Path) -> Path:
    """Write the HARDVS-style prediction panel: one row per clip.

    Each row shows the clip's RGB frames, its event frames and, on the right, "Ground Truth:
    <name>" in bold, "Top-1: <name> (score s)" in bold, then Top-2.. in gray. Red marks the
    ground-truth class wherever it appears: a red Top-1 is a correct prediction, a black Top-1
    is wrong (and the true class is red further down if it made the top-k). Without ground
    truth the Top-1 line is red, as the model's answer. Long names wrap and the font shrinks
    until the text fits the row.

    Args:
        rows: clips to show; every row must have the same number of RGB frames and the same
            number of event frames. Frames are scaled to the first row's aspect ratios.
        path: PNG file to write; its folder is created.

    Returns:
        ``path`` as a ``Path``.
    """
    if len(rows) == 0:
        raise ValueError("plot_prediction_panel needs at least one PanelRow; got none.")
    for index, row in enumerate(rows):
        if not isinstance(row, PanelRow):
            raise ValueError(f"rows[{index}] is a {type(row).__name__}; pass PanelRow objects.")
    first = rows[0]
    num_rgb, num_event = len(first.rgb_frames), len(first.event_frames)
    for index, row in enumerate(rows):
        if len(row.rgb_frames) != num_rgb or len(row.event_frames) != num_event:
            raise ValueError(
                f"rows[{index}] has {len(row.rgb_frames)} RGB and {len(row.event_frames)} event "
                f"frames but rows[0] has {num_rgb} and {num_event}; give every clip the same "
                "number of frames so the columns line up."
            )

    cell_h = _PANEL_CELL_HEIGHT
    rgb_w = cell_h * _aspect(first.rgb_frames)
    event_w = cell_h * _aspect(first.event_frames)
    gap = _PANEL_FRAME_GAP
    rgb_x = _PANEL_MARGIN
    event_x = rgb_x + num_rgb * (rgb_w + gap) - gap + _PANEL_BLOCK_GAP
    text_x = event_x + num_event * (event_w + gap) - gap + _PANEL_BLOCK_GAP
    width = text_x + _PANEL_TEXT_WIDTH + _PANEL_MARGIN
    height = 2 * _PANEL_MARGIN + len(rows) * (cell_h + _PANEL_ROW_GAP) - _PANEL_ROW_GAP

    fig = Figure(figsize=(width, height), dpi=_DPI)

    def add_axes(x: float, top: float, w: float):
        """Axes at x inches from the left, top inches from the top, w x cell_h inches."""
        return fig.add_axes(((x / width), 1 - (top + cell_h) / height, w / width, cell_h / height))

    for row_index, row in enumerate(rows):
        top = _PANEL_MARGIN + row_index * (cell_h + _PANEL_ROW_GAP)
        for frame_index, frame in enumerate(row.rgb_frames):
            _draw_frame(add_axes(rgb_x + frame_index * (rgb_w + gap), top, rgb_w), frame)
        for frame_index, frame in enumerate(row.event_frames):
            _draw_frame(add_axes(event_x + frame_index * (event_w + gap), top, event_w), frame)
        text_ax = add_axes(text_x, top, _PANEL_TEXT_WIDTH)
        text_ax.set_axis_off()
        wrap_width_pt = _PANEL_TEXT_WIDTH * 72 * _PANEL_WRAP_FRACTION
        _draw_prediction_text(text_ax, row, wrap_width_pt, cell_h * 72)
    return _save(fig, path)


def _draw_frame(ax, frame: np.ndarray) -> None:
    """Show one frame filling the axes, framed by the paper's thin blue-gray border."""
    # aspect="auto" fills the cell exactly so the border hugs the image in every row.
    ax.imshow(frame, aspect="auto", interpolation="antialiased")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(_PANEL_BORDER_COLOUR)
        spine.set_linewidth(1.2)


def _prediction_lines(row: PanelRow) -> list[tuple[str, str, str]]:
    """(text, colour, weight) for every logical line of a row's prediction text."""
    lines = []
    if row.ground_truth is not None:
        truth = _shorten(row.ground_truth, _PANEL_MAX_NAME_CHARS)
        lines.append((f"Ground Truth: {truth}", "black", "bold"))
    for rank, (name, score) in enumerate(row.topk, start=1):
        is_hit = name == row.ground_truth or (row.ground_truth is None and rank == 1)
        colour = _PANEL_HIT_COLOUR if is_hit else ("black" if rank == 1 else _PANEL_RANK_COLOUR)
        weight = "bold" if rank == 1 else "normal"
        text = f"Top-{rank}: {_shorten(name, _PANEL_MAX_NAME_CHARS)} (score {score:.3g})"
        lines.append((text, colour, weight))
    return lines


def _draw_prediction_text(ax, row: PanelRow, width_pt: float, height_pt: float) -> None:
    """Wrap the row's lines to width_pt, shrinking the font until they fit height_pt."""
    lines = _prediction_lines(row)
    # Measure with a 72-dpi renderer so text widths come out directly in points.
    renderer = RendererAgg(1, 1, 72)
    font_size = _PANEL_MAX_FONT_PT
    while True:
        wrapped = [
            (piece, colour, weight)
            for text, colour, weight in lines
            for piece in _wrap(text, _panel_font(font_size, weight), width_pt, renderer)
        ]
        block_pt = len(wrapped) * font_size * _PANEL_LINE_SPACING
        if block_pt <= height_pt or font_size <= _PANEL_MIN_FONT_PT:
            break
        font_size -= 0.5
    # Centre the block vertically in the row, like the paper's text beside its frames.
    offset = max((height_pt - block_pt) / 2, 0.0)
    for piece, colour, weight in wrapped:
        ax.annotate(
            piece,
            xy=(0, 1),
            xycoords="axes fraction",
            xytext=(0, -offset),
            textcoords="offset points",
            ha="left",
            va="top",
            color=colour,
            fontproperties=_panel_font(font_size, weight),
            parse_math=False,
            annotation_clip=False,
        )
        offset += font_size * _PANEL_LINE_SPACING


def _wrap(text: str, font: FontProperties, width_pt: float, renderer: RendererAgg) -> list[str]:
    """Greedy word wrap of text so that every line is at most width_pt wide."""

    def fits(candidate: str) -> bool:
        return renderer.get_text_width_height_descent(candidate, font, ismath=False)[0] <= width_pt

    pieces: list[str] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if current and not fits(candidate):
            pieces.append(current)
            current = word
        else:
            current = candidate
    pieces.append(current)
    return pieces


def _panel_font(size: float, weight: str) -> FontProperties:
    return FontProperties(family=_PANEL_FONT, size=size, weight=weight)


def _check_frames(frames: np.ndarray, name: str) -> np.ndarray:
    """Validate a (K, H, W, 3) uint8 frame stack with K >= 1."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(
            f"PanelRow.{name} must have shape (K, H, W, 3) with K >= 1, got {frames.shape}."
        )
    if frames.dtype != np.uint8:
        raise ValueError(
            f"PanelRow.{name} must be uint8 images in [0, 255], got dtype {frames.dtype}; "
            "convert with (frames * 255).clip(0, 255).astype(np.uint8) if they are in [0, 1]."
        )
    return frames


def _aspect(frames: np.ndarray) -> float:
    """Width over height of a (K, H, W, 3) frame stack."""
    return frames.shape[2] / frames.shape[1]


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
