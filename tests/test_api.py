"""The Python API: velora.load -> Recognizer.predict on every kind of input, batched, equal to the
datasets' own items; and the README's example, run as written."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import velora
from velora.data.factory import make_dataset
from velora.evaluation.recognizer import Prediction, Recognizer
from velora.events.aedat4 import read_aedat4

README = Path(__file__).resolve().parents[1] / "README.md"


def test_load_a_run_folder_or_its_adapter_file(tiny_run):
    recognizer = velora.load(tiny_run)
    assert isinstance(recognizer, Recognizer) and recognizer.checkpoint == tiny_run / "best.safetensors"
    assert len(recognizer.class_names) == 8 and recognizer.config.model.modalities == ["rgb", "event"]
    assert recognizer.weights_source == {
        "kind": "none",
        "backbone": "vit_base_patch16_clip_quickgelu_224",
        "init": "random, seed 0",
    }
    assert velora.load(tiny_run / "best.safetensors").class_names == recognizer.class_names
    with pytest.raises(FileNotFoundError, match="without best.safetensors"):
        velora.load(tiny_run / "checkpoints")


def test_predictions_equal_the_models_scores_on_the_dataset_items(tiny_run, tiny_dataset):
    recognizer = velora.load(tiny_run)
    dataset = make_dataset(recognizer.config, "test")
    clips = [tiny_dataset / entry.sample for entry in dataset.entries[:5]]
    batched = recognizer.predict(clips, top_k=8)
    with torch.no_grad():
        batch = (
            torch.stack([dataset[i]["rgb"] for i in range(5)]),
            torch.stack([dataset[i]["events"] for i in range(5)]),
        )
        probs = recognizer.model(*batch).logits.softmax(-1)
    for i, prediction in enumerate(batched):
        assert isinstance(prediction, Prediction) and prediction.ground_truth == clips[i].parent.name
        by_name = dict(prediction.topk)
        assert [by_name[name] for name in recognizer.class_names] == pytest.approx(probs[i].tolist(), abs=1e-6)
        one = recognizer.predict(clips[i], top_k=8)
        assert one.labels == prediction.labels and one.scores == pytest.approx(prediction.scores, abs=1e-6)


def test_arrays_recordings_and_event_streams_are_read_as_the_files_are(tiny_run, tiny_dataset, real_data_dir):
    recognizer = velora.load(tiny_run)
    item = make_dataset(recognizer.config, "test")[0]
    from_files = recognizer.predict(tiny_dataset / make_dataset(recognizer.config, "test").entries[0].sample)
    # The dataset's own frames as arrays, channels last: already T frames at S pixels.
    arrays = {"rgb": item["rgb"].permute(0, 2, 3, 1).numpy(), "events": item["events"].numpy()}
    assert recognizer.predict(arrays).scores == pytest.approx(from_files.scores, abs=1e-6)
    # A decoded recording predicts as its file does.
    street = real_data_dir / "davis346" / "street_davis346.aedat4"
    assert recognizer.predict(read_aedat4(street)).topk == recognizer.predict(street).topk
    # Events alone: the missing-RGB path, said once.
    with pytest.warns(UserWarning, match="input without RGB"):
        only_events = recognizer.predict(read_aedat4(street).events)
    assert len(only_events.topk) == 5
    with pytest.raises(ValueError, match="uint8 frames"):
        recognizer.predict({"rgb": np.zeros((4, 8, 8), np.float32)})
    with pytest.raises(TypeError, match="cannot predict from int"):
        recognizer.predict(3)


def readme_example() -> str:
    text = README.read_text()
    match = re.search(r"<!-- the API example, run by tests/test_api.py -->\s*```python\n(.*?)```", text, re.S)
    assert match, "README holds the API example"
    return match.group(1)


def test_the_readme_api_example_runs(tiny_run, tiny_dataset, tmp_path, monkeypatch, capsys):
    demo = tmp_path / "velora-demo"
    (demo / "runs").mkdir(parents=True)
    os.symlink(tiny_run, demo / "runs" / "velora")
    os.symlink(tiny_dataset, demo / "data")
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_example(), "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "Recognizer(" in out and "random, seed 0" in out
    assert len(re.findall(r"\['\w+', '\w+', '\w+'\]", out)) >= 3  # three clips, top-3 labels each
