"""Dataset layouts are objects in one table (velora.data.layouts): the config, the factory, the
dataset check, training's split check and the stream ask the layout, never compare its name."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from conftest import REPO_ROOT, make_tiny_config
from velora.config import ConfigError
from velora.data.factory import clip_dataset, make_dataset
from velora.data.layouts import LAYOUTS, Layout


class SquaresLayout(Layout):
    """A layout written the way a contributor adds one: this class, and one line in LAYOUTS."""

    name = "squares"
    description = "clips generated from their folder's name (a test)"
    modalities = ("event",)
    label_files = False

    def dataset(self, cfg, split, sampling, *, classes, num_classes, lenient):
        return Squares(self.label_file(cfg, split), sampling.num_frames, sampling.image_size)

    def clip(self, path, cfg, sampling):
        return Squares(path, sampling.num_frames, sampling.image_size)


class Squares(Dataset):
    def __init__(self, root: Path, frames: int, size: int):
        self.root, self.frames, self.size = root, frames, size
        self.class_names = ["a", "b"]

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> dict:
        events = torch.full((self.frames, 3, self.size, self.size), 255 * index, dtype=torch.uint8)
        return {"events": events, "label": torch.tensor(index), "index": index}


@pytest.fixture
def squares(monkeypatch):
    monkeypatch.setitem(LAYOUTS, "squares", SquaresLayout())  # the one table line


def test_a_new_layout_is_one_class_and_one_table_line(squares, tmp_path):
    cfg = make_tiny_config(
        f"data.root={tmp_path}",
        "data.layout=squares",
        "data.modalities=[event]",
        "model.modalities=[event]",
        "model.num_classes=2",
    )
    train = make_dataset(cfg, "train")
    assert isinstance(train, Squares) and train.root == tmp_path / "train"
    assert train[1]["events"].shape == (3, 3, 32, 32)
    assert isinstance(clip_dataset(tmp_path / "x", cfg), Squares)
    with pytest.raises(ConfigError, match="'data.layout' squares holds event only"):
        make_tiny_config(f"data.root={tmp_path}", "data.layout=squares", "model.num_classes=2")


def test_an_unknown_layout_lists_the_table():
    with pytest.raises(ConfigError, match="'data.layout' must be one of frames, events, recordings, gesture"):
        make_tiny_config("data.layout=folders")


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_each_layouts_rules_come_from_its_attributes(name):
    layout, cfg = LAYOUTS[name], make_tiny_config()

    def problems(**data) -> list[str]:
        cfg.data = dataclasses.replace(make_tiny_config().data, **data)  # unvalidated: the layout's own rules
        return layout.problems(cfg)

    assert any("cannot be packed" in p for p in problems(format="packed")) == (not layout.packable)
    assert any("draws events" in p for p in problems(representation="count")) == (not layout.draws_events)
    assert any("release reads frames" in p for p in problems(frame_sampling="release")) == (
        not layout.reads_clip_frames
    )
    assert any("holds event only" in p for p in problems(modalities=["rgb"])) == ("rgb" not in layout.modalities)


def test_no_module_outside_the_table_compares_a_layout_name():
    src = REPO_ROOT / "src" / "velora"
    pattern = re.compile(r"layout\s*(==|!=|\bin\b\s*\(|\bnot in\b)\s*")
    found = [
        f"{path.relative_to(src)}:{number}"
        for path in src.rglob("*.py")
        if path.parent.name != "layouts"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line) and not line.lstrip().startswith("#")
    ]
    assert not found, found


def test_the_frames_layout_reads_the_sensor_size_of_its_first_aps_frame(tmp_path):
    from PIL import Image

    folder = tmp_path / "c0" / "s0" / "s0_aps"
    folder.mkdir(parents=True)
    Image.fromarray(np.zeros((260, 346), np.uint8)).save(folder / "0000.png")
    size, where = LAYOUTS["frames"].sensor_size(tmp_path)
    assert size == (346, 260) and where.endswith("0000.png")
    assert LAYOUTS["events"].sensor_size(tmp_path) is None
