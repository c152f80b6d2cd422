"""Contracts of the evaluation metrics and report figures (hand-computed cases, PNG outputs)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from velora.evaluation.metrics import (
    confusion_matrix,
    evaluation_report,
    per_class_accuracy,
    topk_accuracy,
    topk_indices,
)
from velora.evaluation.panel import PanelRow, plot_prediction_panel
from velora.evaluation.plots import plot_confusion_matrix, plot_training_curves

# 4 clips, 3 classes. Rankings (best first): [2, 1, 0], [1, 0, 2], [0, 2, 1], [2, 0, 1].
SCORES = np.array(
    [
        [0.1, 0.3, 0.6],
        [0.5, 0.9, 0.0],
        [0.7, 0.1, 0.2],
        [0.3, 0.2, 0.5],
    ]
)
LABELS = np.array([2, 0, 0, 1])


def test_topk_accuracy_hand_computed():
    # Top-1 predictions are [2, 1, 0, 2]: clips 0 and 2 are right.
    assert topk_accuracy(SCORES, LABELS, 1) == pytest.approx(0.5)
    # Top-2 adds clip 1 (label 0 ranked second); clip 3's label 1 is ranked last.
    assert topk_accuracy(SCORES, LABELS, 2) == pytest.approx(0.75)
    assert topk_accuracy(SCORES, LABELS, 3) == pytest.approx(1.0)


def test_topk_k_is_clipped_to_the_number_of_classes():
    assert topk_accuracy(SCORES, LABELS, 5) == pytest.approx(1.0)
    assert topk_indices(SCORES, 5).shape == (4, 3)


def test_ties_go_to_the_lower_class_index():
    scores = np.array([[1.0, 2.0, 2.0, 0.0]])
    np.testing.assert_array_equal(topk_indices(scores, 4), [[1, 2, 0, 3]])
    assert topk_accuracy(scores, np.array([2]), 1) == 0.0
    assert topk_accuracy(scores, np.array([1]), 1) == 1.0


def test_nan_scores_rank_last():
    scores = np.array([[np.nan, 0.1, 0.2]])
    np.testing.assert_array_equal(topk_indices(scores, 3), [[2, 1, 0]])
    assert topk_accuracy(scores, np.array([0]), 1) == 0.0


def test_confusion_matrix_rows_are_true_classes():
    cm = confusion_matrix(np.array([2, 1, 0, 2]), LABELS, 3)
    expected = np.array(
        [
            [1, 1, 0],  # true 0: clip 2 right, clip 1 predicted 1
            [0, 0, 1],  # true 1: clip 3 predicted 2
            [0, 0, 1],  # true 2: clip 0 right
        ]
    )
    np.testing.assert_array_equal(cm, expected)
    assert cm.dtype == np.int64


def test_per_class_accuracy_is_nan_for_a_class_without_clips():
    cm = np.array([[3, 1, 0], [0, 0, 0], [1, 0, 1]])
    accuracy = per_class_accuracy(cm)
    assert accuracy[0] == pytest.approx(0.75)
    assert math.isnan(accuracy[1])
    assert accuracy[2] == pytest.approx(0.5)


def test_evaluation_report_values_and_json():
    # Add a fourth class with no clips so the report has to carry an undefined accuracy.
    scores = np.concatenate([SCORES, np.full((4, 1), -1.0)], axis=1)
    names = ["wave", "jump", "clap", "unused"]
    report = evaluation_report(scores, LABELS, names)

    assert set(report) >= {"num_clips", "top1", "top5", "per_class", "confusion_matrix", "mean_class_accuracy"}
    assert report["num_clips"] == 4
    assert report["top1"] == pytest.approx(0.5)
    assert report["top5_k"] == 4
    assert report["top5"] == pytest.approx(1.0)
    assert report["confusion_matrix"][0] == [1, 1, 0, 0]
    assert report["per_class"][0] == {"class": "wave", "index": 0, "accuracy": 0.5, "support": 2}
    assert report["per_class"][3] == {"class": "unused", "index": 3, "accuracy": None, "support": 0}
    # Classes 0, 1, 2 have accuracies 0.5, 0, 1; the empty class is left out of the mean.
    assert report["mean_class_accuracy"] == pytest.approx(0.5)
    # NaN is not valid JSON, so the report must serialise with allow_nan=False.
    assert json.loads(json.dumps(report, allow_nan=False)) == report


@pytest.mark.parametrize(
    ("scores", "labels", "names", "match"),
    [
        (SCORES, LABELS[:3], ["a", "b", "c"], "3 entries but there are 4 clips"),
        (SCORES, np.array([0, 1, 2, 3]), ["a", "b", "c"], r"\[0, 3\)"),
        (SCORES, np.array([0, 1, 2, -1]), ["a", "b", "c"], r"\[0, 3\)"),
        (SCORES, LABELS.astype(float), ["a", "b", "c"], "integer"),
        (SCORES, LABELS, ["a", "b"], "class_names has 2 entries"),
        (SCORES[0], LABELS, ["a", "b", "c"], r"shape \(N, C\)"),
        (np.zeros((0, 3)), np.zeros(0, dtype=int), ["a", "b", "c"], "at least one clip"),
    ],
)
def test_evaluation_report_rejects_bad_inputs(scores, labels, names, match):
    with pytest.raises(ValueError, match=match):
        evaluation_report(scores, labels, names)


def test_bad_k_and_bad_confusion_inputs_raise():
    with pytest.raises(ValueError, match="k must be a positive integer"):
        topk_accuracy(SCORES, LABELS, 0)
    with pytest.raises(ValueError, match="predictions must lie in"):
        confusion_matrix(np.array([0, 5, 0, 0]), LABELS, 3)
    with pytest.raises(ValueError, match="square"):
        per_class_accuracy(np.zeros((2, 3)))


def _png_size(path) -> tuple[int, int]:
    assert path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


@pytest.mark.slow
@pytest.mark.parametrize("num_classes", [8, 114])
def test_confusion_matrix_plot_writes_a_png(tmp_path, num_classes):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, num_classes, 10 * num_classes)
    predictions = np.where(rng.random(labels.size) < 0.6, labels, rng.integers(0, num_classes))
    cm = confusion_matrix(predictions, labels, num_classes)
    names = [f"class number {i}" for i in range(num_classes)]
    path = plot_confusion_matrix(cm, names, tmp_path / "nested" / "cm.png")
    # The heat map's side grows with the class count (3 + 0.3 C inches, from 6 up to 12), plus
    # 1.2 inches for the colour bar, at 150 dpi.
    side = {8: 6.0, 114: 12.0}[num_classes]
    assert _png_size(path) == (round((side + 1.2) * 150), round(side * 150))

    def dark_blue_pixels(path) -> int:  # the Blues colour map's dark cells (and the colour bar's end)
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB")).astype(int)
        return int((pixels[..., 2] - pixels[..., 0] > 100).sum())

    empty = plot_confusion_matrix(np.zeros_like(cm), names, tmp_path / "empty.png")
    # The 60 %-correct diagonal is drawn dark: at least a tenth of its cells' area.
    cell_px = (side * 150 * 0.75 / num_classes) ** 2
    assert dark_blue_pixels(path) - dark_blue_pixels(empty) > 0.1 * num_classes * cell_px


def test_confusion_matrix_plot_rejects_mismatched_names(tmp_path):
    with pytest.raises(ValueError, match="class_names has 2 entries"):
        plot_confusion_matrix(np.eye(3, dtype=int), ["a", "b"], tmp_path / "cm.png")


def test_training_curves_handle_empty_and_single_point_series(tmp_path):
    history = {
        "train/loss": [(step, 1.0 / (step + 1)) for step in range(50)],
        "val/loss": [(10, 0.4)],
        "val/top1": [],
        "lr": [(0, 0.0), (10, 1e-3)],
    }
    # One panel per quantity (loss: train and val together, top1, lr), 4.2 x 3 inches each, at 150 dpi.
    assert _png_size(plot_training_curves(history, tmp_path / "curves.png")) == (3 * 630, 450)
    assert _png_size(plot_training_curves({}, tmp_path / "empty.png")) == (630, 450)
    with pytest.raises(ValueError, match="history\\['lr'\\]"):
        plot_training_curves({"lr": [(0, 1.0, 2.0)]}, tmp_path / "bad.png")


def _frames(num_frames: int, fill: tuple[int, int, int]) -> np.ndarray:
    frames = np.zeros((num_frames, 60, 80, 3), dtype=np.uint8)
    frames[...] = fill
    return frames


def _text_column_has_red(path) -> bool:
    """Whether the rightmost 500 px (the text column, about 3.7 in at 150 dpi) hold red text."""
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))[:, -500:].astype(int)
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    return bool(((red > 150) & (green < 80) & (blue < 80)).any())


def test_prediction_panel_two_rows_with_and_without_ground_truth(tmp_path):
    # Gray RGB frames and white event frames keep red out of the images, so red in the text
    # column can only be the hit colour.
    rows = [
        PanelRow(
            _frames(3, (90, 90, 90)),
            _frames(3, (255, 255, 255)),
            "side lift",
            [("side lift", 0.578), ("step in place", 0.2), ("arm circle", 0.1)],
        ),
        PanelRow(
            _frames(3, (90, 90, 90)), _frames(3, (255, 255, 255)), None, [("knee lift", 2.31), ("side lift", 1.0)]
        ),
    ]
    path = plot_prediction_panel(rows, tmp_path / "panel" / "predictions.png")
    width, height = _png_size(path)
    # Two rows of 1.35-inch frames at 150 dpi, six 4:3 frames plus a text column across.
    assert 400 <= height <= 500
    assert 1800 <= width <= 2400
    assert _text_column_has_red(path)


def test_prediction_panel_wrong_top1_is_not_red(tmp_path):
    row = PanelRow(
        _frames(2, (90, 90, 90)), _frames(2, (255, 255, 255)), "side lift", [("knee lift", 0.9), ("arm circle", 0.05)]
    )
    path = plot_prediction_panel([row], tmp_path / "wrong.png")
    assert not _text_column_has_red(path)


def test_prediction_panel_rejects_bad_rows():
    with pytest.raises(ValueError, match="uint8"):
        PanelRow(np.zeros((2, 8, 8, 3)), _frames(2, (0, 0, 0)), "a", [("a", 1.0)])
    with pytest.raises(ValueError, match="topk is empty"):
        PanelRow(_frames(2, (0, 0, 0)), _frames(2, (0, 0, 0)), "a", [])
    rows = [
        PanelRow(_frames(2, (0, 0, 0)), _frames(2, (0, 0, 0)), "a", [("a", 1.0)]),
        PanelRow(_frames(3, (0, 0, 0)), _frames(2, (0, 0, 0)), "a", [("a", 1.0)]),
    ]
    with pytest.raises(ValueError, match="same number of frames"):
        plot_prediction_panel(rows, "unused.png")
