"""The prediction panel: per clip, RGB frames, event frames, the ground truth and the top-k.

It follows the HARDVS prediction figure of the VELoRA paper
(``reference/figures/hardvs-prediction-panel.jpg``): RGB frames, then event frames, then the
ground truth and the top-5 classes, the correct class in red. Like velora.evaluation.plots, it
builds a ``matplotlib.figure.Figure`` directly (no pyplot, no global backend state).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import RendererAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties

from velora.evaluation.plots import _DPI, _save, _shorten

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
        raise ValueError(f"PanelRow.{name} must have shape (K, H, W, 3) with K >= 1, got {frames.shape}.")
    if frames.dtype != np.uint8:
        raise ValueError(
            f"PanelRow.{name} must be uint8 images in [0, 255], got dtype {frames.dtype}; "
            "convert with (frames * 255).clip(0, 255).astype(np.uint8) if they are in [0, 1]."
        )
    return frames


def _aspect(frames: np.ndarray) -> float:
    """Width over height of a (K, H, W, 3) frame stack."""
    return frames.shape[2] / frames.shape[1]


def panel_row(item: dict, topk: list[tuple[str, float]], ground_truth: str | None, frames: int = 3) -> PanelRow:
    """Three evenly spaced RGB and event frames of a dataset item, as (K, H, W, 3) uint8."""

    def pick(key: str, like: np.ndarray | None) -> np.ndarray:
        if key not in item:  # a missing modality is drawn as blank frames
            return np.full_like(like, 255)
        clip = item[key].permute(0, 2, 3, 1).numpy()  # (T, H, W, 3)
        return clip[np.linspace(0, len(clip) - 1, frames).round().astype(int)]

    first = "rgb" if "rgb" in item else "events"
    reference = pick(first, None)
    rgb = reference if first == "rgb" else pick("rgb", reference)
    events = pick("events", reference)
    return PanelRow(rgb_frames=rgb, event_frames=events, ground_truth=ground_truth, topk=topk)
