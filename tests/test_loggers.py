"""train.logger: Lightning's own loggers get the resolved config once and the metrics at log_every."""

from __future__ import annotations

import csv
import struct
import time
from pathlib import Path

import pytest
import yaml

from conftest import make_tiny_config
from velora.config import ConfigError
from velora.training.run import train

EPOCHS, LOG_EVERY = 2, 2


def run(tiny_dataset: Path, out: Path, logger: str) -> Path:
    cfg = make_tiny_config(
        data={"root": str(tiny_dataset)},
        train={"output_dir": str(out), "logger": logger, "epochs": EPOCHS, "log_every": LOG_EVERY},
    )
    train(cfg)
    return out


def expected_log_steps(out: Path) -> list[int]:
    """The steps the run's own history recorded the training loss at (every log_every steps)."""
    import json

    history = json.loads((out / "history.json").read_text())
    steps = [step for step, _ in history["train/loss"]]
    assert steps and all(step % LOG_EVERY == 0 for step in steps)
    return steps


@pytest.mark.slow
def test_csv_logger_writes_the_config_and_the_metrics(tiny_dataset, tmp_path):
    out = run(tiny_dataset, tmp_path / "run", "csv")
    folder = out / "logs" / "version_0"
    hparams = yaml.safe_load((folder / "hparams.yaml").read_text())
    assert hparams["train"]["logger"] == "csv" and hparams["model"]["num_classes"] == 8
    rows = list(csv.DictReader((folder / "metrics.csv").open()))
    loss_steps = [int(r["step"]) for r in rows if r["train/loss"]]
    assert loss_steps == expected_log_steps(out)
    assert sum(1 for r in rows if r["val/top1"]) == EPOCHS


def tfrecord_scalars(path: Path) -> dict[str, list[int]]:
    """tag -> steps of every scalar in a TensorBoard event file (TFRecord framing, Event protos)."""
    from tensorboardX.proto.event_pb2 import Event

    data, found, offset = path.read_bytes(), {}, 0
    while offset < len(data):
        (length,) = struct.unpack_from("<Q", data, offset)
        event = Event.FromString(data[offset + 12 : offset + 12 + length])
        offset += 12 + length + 4
        for value in event.summary.value:
            found.setdefault(value.tag, []).append(event.step)
    return found


@pytest.mark.slow
def test_tensorboard_logger_writes_scalars_at_the_log_steps(tiny_dataset, tmp_path):
    out = run(tiny_dataset, tmp_path / "run", "tensorboard")
    (events,) = (out / "logs" / "version_0").glob("events.out.tfevents.*")
    scalars = tfrecord_scalars(events)
    assert scalars["train/loss"] == expected_log_steps(out)
    assert len(scalars["val/top1"]) == EPOCHS
    assert yaml.safe_load((out / "logs" / "version_0" / "hparams.yaml").read_text())["lora"]["rank"] == 2


@pytest.mark.slow
def test_wandb_logger_offline_keeps_the_run_on_disk(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = run(tiny_dataset, tmp_path / "run", "wandb")
    (record,) = (out / "wandb").glob("offline-run-*/run-*.wandb")
    # wandb's service process writes the record after run.finish() returns; on a loaded machine that
    # has been seen to take seconds, so wait for it (a record that never fills still fails).
    deadline = time.monotonic() + 60
    while (data := record.read_bytes()).count(b"train/loss") < len(
        expected_log_steps(out)
    ) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert data.count(b"train/loss") >= len(expected_log_steps(out))
    assert b"val/top1" in data and b"recon_weight" in data  # the metrics and the config


def test_a_missing_logger_package_names_the_pip_command(tiny_dataset, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'velora-rgbe\[mlflow\]'"):
        run(tiny_dataset, tmp_path / "run", "mlflow")
    assert not (tmp_path / "run" / "checkpoints").exists(), "stopped before any work"
