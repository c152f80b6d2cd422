"""Experiment tracking: the config's `train.logger` as one of Lightning's own loggers.

    csv          <output_dir>/logs/version_N/metrics.csv and hparams.yaml (default; offline, no extra)
    tensorboard  <output_dir>/logs/version_N/events.out.tfevents.* (extra: velora-rgbe[tensorboard])
    wandb        a Weights & Biases run in project <output_dir name> (extra: velora-rgbe[wandb]);
                 WANDB_MODE=offline keeps it on disk under <output_dir>/wandb
    mlflow       an MLflow run in experiment <output_dir name> (extra: velora-rgbe[mlflow]), at
                 MLFLOW_TRACKING_URI or file:<output_dir>/mlruns
    none         history.json and curves.png only

Each run logs the resolved config once as hyperparameters, the training losses and the learning
rate at every `train.log_every` steps, and the validation metrics after each validation. A resumed
run starts a new version (csv, tensorboard) next to the first one's.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger, MLFlowLogger, TensorBoardLogger, WandbLogger

from velora.config import Config, ConfigError

# logger -> (import names, any one of which is enough; the pip extra that installs one)
NEEDS = {
    "tensorboard": (("tensorboard", "tensorboardX"), "tensorboard"),
    "wandb": (("wandb",), "wandb"),
    "mlflow": (("mlflow",), "mlflow"),
}


def make_logger(cfg: Config, output_dir: Path) -> Logger | None:
    """The Lightning logger `cfg.train.logger` names, writing under `output_dir`; None for 'none'.

    Raises ConfigError naming the pip command when the logger's package is not installed.
    """
    kind = cfg.train.logger
    if kind in NEEDS:
        modules, extra = NEEDS[kind]
        if not any(importlib.util.find_spec(name) for name in modules):
            raise ConfigError(
                f"train.logger {kind} needs the {modules[0]} package, which is not installed: "
                f"pip install 'velora-rgbe[{extra}]' (or set train.logger=csv, which needs nothing)"
            )
    name = Path(output_dir).resolve().name
    if kind == "csv":
        return CSVLogger(save_dir=output_dir, name="logs")
    if kind == "tensorboard":
        return TensorBoardLogger(save_dir=output_dir, name="logs", default_hp_metric=False)
    if kind == "wandb":
        return WandbLogger(project=name, save_dir=str(output_dir), offline=os.environ.get("WANDB_MODE") == "offline")
    if kind == "mlflow":
        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"file:{Path(output_dir).resolve() / 'mlruns'}"
        return MLFlowLogger(experiment_name=name, tracking_uri=uri)
    return None


def close_logger(logger: Logger | None) -> None:
    """End the logger's run once training ends (Lightning leaves a wandb run open in the process:
    its files would stay incomplete, and the next run in the same process would log into it)."""
    if isinstance(logger, WandbLogger) and logger._experiment is not None:
        logger.experiment.finish()
