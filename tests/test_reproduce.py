"""velora reproduce, end to end on tiny generated datasets in the PokerEvent layout (train and test
lists only) and the HARDVS layout (train, val and test lists), with the tiny backbone passed as
config overrides after ROOT: the split it makes, the check that stops on bad files, the estimate
and the request for --cpu, a run cut off after an epoch that a rerun continues, and the report."""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path

import lightning as L
import pytest
import torch

from conftest import TINY, add_trainer_callback
from velora.cli import main
from velora.config import merge
from velora.data.labels import read_label_file
from velora.reproduce.report import PUBLISHED
from velora.training.checkpoint import read_resume_state

CLASSES = 8


def tiny_overrides(**train) -> list[str]:
    """The tiny model and a 2-epoch run as section.field=value overrides (JSON values are YAML)."""
    raw = merge(copy.deepcopy(TINY), {"train": {"epochs": 2, "logger": "none", **train}})
    return [f"{section}.{key}={json.dumps(value)}" for section, fields in raw.items() for key, value in fields.items()]


def reproduce(dataset: str, root: Path, out: Path, *extra: str, cpu: bool = True) -> int:
    argv = ["reproduce", dataset, str(root), "--output", str(out), "--workers", "1", *(["--cpu"] if cpu else [])]
    return main([*argv, *tiny_overrides(), *extra])


def pokerevent_layout(source: Path, root: Path, *, copy_clips: bool = False) -> Path:
    """`source`'s class folders (linked, or copied to be damaged) with only train_label.txt and
    test_label.txt, as PokerEvent ships."""
    root.mkdir()
    for folder in source.iterdir():
        if folder.is_dir():
            if copy_clips:
                shutil.copytree(folder, root / folder.name)
            else:
                (root / folder.name).symlink_to(folder)
    for name in ("train_label.txt", "test_label.txt", "classes.txt"):
        shutil.copy(source / name, root / name)
    return root


class CrashAfterFirstEpoch(L.Callback):
    """A crash once epoch 0 is validated and its resume checkpoint written (velora's callbacks run first)."""

    def on_validation_end(self, trainer, module):
        if trainer.current_epoch == 0:
            raise RuntimeError("power cut")


class CountSteps(L.Callback):
    def __init__(self):
        self.steps = 0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.steps += 1


@pytest.mark.slow
def test_pokerevent_end_to_end_cut_off_after_an_epoch_then_continued(tiny_dataset, tmp_path, monkeypatch, capsys):
    root = pokerevent_layout(tiny_dataset, tmp_path / "PokerEvent")
    listed_before = sorted(p.name for p in root.iterdir())
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        add_trainer_callback(patch, CrashAfterFirstEpoch())
        with pytest.raises(RuntimeError, match="power cut"):
            reproduce("pokerevent", root, out)
    printed = capsys.readouterr()
    assert "backbone weights: random initialisation" in printed.out
    assert "expected wall time" in printed.out and "per epoch" in printed.out and "in all" in printed.out
    assert "warning" not in printed.err, "the tiny backbone trained from random weights is on purpose"

    # The validation split: made in OUTPUT, seeded, stratified, disjoint from test; ROOT untouched.
    assert sorted(p.name for p in root.iterdir()) == listed_before
    val = read_label_file(out / "split" / "val_label.txt")
    rest = read_label_file(out / "split" / "train_split_label.txt")
    assert sorted(e.label for e in val) == list(range(CLASSES)), "one of each class's 3 training clips"
    assert len(rest) == 2 * CLASSES
    assert not {e.sample for e in val + rest} & {e.sample for e in read_label_file(root / "test_label.txt")}

    journal = json.loads((out / "reproduce.json").read_text())
    assert [c["step"] for c in journal["commands"]] == ["split", "check", "measure", "train"]
    assert journal["commands"][-1]["status"] == "failed: RuntimeError: power cut"
    assert "train" not in journal["done"] and "check" in journal["done"]
    steps_per_epoch = math.ceil(2 * CLASSES / 4)
    assert read_resume_state(out / "run" / "checkpoints" / "last.ckpt")["global_step"] == steps_per_epoch

    # The same command again continues: one epoch left to train, not two.
    with monkeypatch.context() as patch:
        counter = CountSteps()
        add_trainer_callback(patch, counter)
        assert reproduce("pokerevent", root, out) == 0
    assert counter.steps == steps_per_epoch, "the rerun restarted instead of resuming"
    history = json.loads((out / "run" / "history.json").read_text())
    assert [s for s, _ in history["train/loss"]] == list(range(2 * steps_per_epoch))

    report = json.loads((out / "report.json").read_text())
    steps = [c["step"] for c in report["commands"]]
    assert steps == ["split", "check", "measure", "train", "measure", "train", "eval"], "finished steps were redone"
    train_commands = [c["command"] for c in report["commands"] if c["step"] == "train"]
    assert "--resume" not in train_commands[0]
    assert train_commands[1].endswith(f"--resume {out / 'run' / 'checkpoints' / 'last.ckpt'}")
    assert [i["status"] for i in report["invocations"]] == ["failed: RuntimeError: power cut", "done"]
    assert report["config"] == "pokerevent_vitb16" and report["clips"] == {"train": 16, "val": 8, "test": 8}
    assert report["validation_split"]["made"] and report["validation_split"]["seed"] == 0

    figures = report["figures"]
    evaluation = json.loads((out / "eval" / "eval_test.json").read_text())
    assert figures["velora"]["top1_pct"] == pytest.approx(100 * evaluation["top1"], abs=0.01)
    assert evaluation["num_clips"] == CLASSES and figures["velora"]["test_clips"] == CLASSES
    paper = json.loads((out / "run" / "paper_protocol.json").read_text())
    assert [row["epoch"] for row in paper["epochs"]] == [0, 1], "the cut-off run's epoch is kept"
    assert figures["paper_protocol"]["top1_pct"] == pytest.approx(100 * max(r["test_top1"] for r in paper["epochs"]))
    assert "comparison only" in figures["paper_protocol"]["protocol"]
    assert figures["published"]["VELoRA"] == 57.99 and figures["published"]["SAFE"] == 58.15
    # Test-time views: the shipped config's 3 temporal views x 3 crops, beside the single view.
    assert figures["views"]["top1_pct"] == pytest.approx(100 * evaluation["views"]["top1"], abs=0.01)
    assert (figures["views"]["temporal_views"], figures["views"]["crops"]) == (3, 3)
    params = report["parameters"]
    assert 0 < params["trainable"] < params["total"]
    assert report["hardware"]["cpu"] and report["training_device"] == "cpu" and report["wall_time_s"] > 0
    assert report["throughput"]["estimate"]["total_s"] > 0

    markdown = (out / "report.md").read_text()
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert "velora's figure" in rows[0] and f"{figures['velora']['top1_pct']:.2f} %" in rows[0]
    assert "test-time views (3 x 3)" in rows[1] and f"{figures['views']['top1_pct']:.2f} %" in rows[1]
    paper_row = next(row for row in rows if "best epoch on the test split" in row)
    assert "for comparison only" in paper_row and "not velora's result" in paper_row
    assert "57.99 %" in markdown and "58.15 %" in markdown and "## Commands" in markdown

    # Once finished, a rerun trains nothing and writes the same figures.
    with monkeypatch.context() as patch:
        counter = CountSteps()
        add_trainer_callback(patch, counter)
        assert reproduce("pokerevent", root, out) == 0
    assert counter.steps == 0
    assert json.loads((out / "report.json").read_text())["figures"] == figures


@pytest.mark.slow
def test_hardvs_release_uses_the_shipped_validation_list(tiny_dataset, tmp_path):
    out = tmp_path / "out"
    assert reproduce("hardvs", tiny_dataset, out, "--release") == 0
    report = json.loads((out / "report.json").read_text())
    assert report["config"] == "hardvs_vitb16_release"
    assert report["validation_split"] == {
        "made": False,
        "val_labels": str(tiny_dataset / "val_label.txt"),
        "sha256": report["validation_split"]["sha256"],
    }
    assert not (out / "split").exists()
    assert report["figures"]["published"]["VELoRA"] == PUBLISHED["hardvs"]["VELoRA"] == 50.89
    assert report["figures"]["published"]["SAFE"] == 53.61
    config = json.loads((out / "reproduce.json").read_text())["config"]
    assert config["model"]["head"] == "attention_last_tokens" and config["eval"]["test_every_epoch"]


def test_bad_files_stop_before_training_with_the_full_report(tiny_dataset, tmp_path, capsys):
    root = pokerevent_layout(tiny_dataset, tmp_path / "PokerEvent", copy_clips=True)
    first, second = (line.split()[0] for line in (root / "train_label.txt").read_text().splitlines()[:2])
    frame = sorted((root / first / f"{Path(first).name}_dvs").glob("*.png"))[1]
    frame.write_bytes(frame.read_bytes()[:40])  # a truncated PNG
    shutil.rmtree(root / second)  # a clip folder gone
    out = tmp_path / "out"
    assert reproduce("pokerevent", root, out) == 2
    printed = capsys.readouterr()
    assert str(frame) in printed.out and str(root / second) in printed.out
    assert "data_check.txt" in printed.err and "rerun the same command" in printed.err
    assert str(frame) in (out / "data_check.txt").read_text()
    assert not (out / "run").exists(), "nothing is trained on a dataset with problems"
    journal = json.loads((out / "reproduce.json").read_text())
    assert journal["commands"][-1]["step"] == "check" and journal["commands"][-1]["status"].startswith("failed")
    assert (out / "split" / "val_label.txt").is_file(), "the split made before the check is kept"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a GPU")
def test_without_a_gpu_it_says_what_it_expects_and_asks_for_cpu(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    assert reproduce("hardvs", tiny_dataset, out, cpu=False) == 1
    printed = capsys.readouterr().out
    assert "expected wall time" in printed and "--cpu" in printed
    assert not (out / "run" / "checkpoints").exists() and not (out / "report.json").exists()
    journal = json.loads((out / "reproduce.json").read_text())
    assert journal["invocations"][-1]["result"] == "needs_cpu"
    assert journal["throughput"]["estimate"]["epoch_s"] > 0
    # A rerun with other settings would mix two experiments in one folder: refused, naming the field.
    assert reproduce("hardvs", tiny_dataset, out, "lora.rank=3") == 2
    assert "lora.rank: 2 before, 3 now" in capsys.readouterr().err


def test_one_device_only(tiny_dataset, tmp_path, capsys):
    assert reproduce("pokerevent", tiny_dataset, tmp_path / "out", "train.devices=2") == 2
    assert "velora reproduce trains on one device" in capsys.readouterr().err
    assert not (tmp_path / "out" / "split").exists()
