"""`velora train`: fit adapters, select on the validation split, write checkpoints and curves.

Output folder (train.output_dir):
    config.yaml          the resolved config of the run
    best.safetensors     adapters of the epoch with the best val top-1 (never selected on test)
    last.safetensors     adapters after the last finished epoch
    checkpoints/last.ckpt  resume state (trainable tensors, optimizer, schedule, counters), written
                         at epoch ends and every train.checkpoint_every_steps steps

All files are written by rank zero only, each to a temporary name and renamed into place.
    history.json, curves.png  training curves: history.json after every validation; curves.png
                         at most every CURVES_EVERY_S seconds (drawing it takes about a second)
                         and once more at the end, so its final state is the last history.json
    paper_protocol.json  with eval.test_every_epoch: the test top-1 of every validated epoch and
                         the best of them, the paper's protocol, for comparison only (see
                         paper_protocol); best.safetensors never depends on it
"""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import lightning as L
import yaml
from lightning.fabric.utilities.rank_zero import rank_zero_only

from velora.config import Config
from velora.data.check import check_config
from velora.data.skipping import clear_skip_log, read_skip_report
from velora.evaluation.plots import plot_training_curves
from velora.files import write_atomically
from velora.model.adapter_file import save_adapters
from velora.model.weights_source import describe_source, random_backbone_warning
from velora.training.checkpoint import AtomicCheckpointIO, read_resume_state
from velora.training.datamodule import ClipDataModule, eval_splits
from velora.training.loggers import close_logger, make_logger
from velora.training.module import PAPER_TEST_TOP1, VELoRAModule

# Redrawing curves.png after every validation cost a tenth of a short training's time.
CURVES_EVERY_S = 30.0


@dataclass
class TrainResult:
    output_dir: Path
    best_checkpoint: Path
    best_val_top1: float
    best_epoch: int
    history: dict
    finished: bool = True  # all train.epochs ran (False: a callback stopped the run early)
    paper_protocol: dict | None = None  # with eval.test_every_epoch: paper_protocol.json's content


PAPER_PROTOCOL_NOTE = (
    "Test-set top-1 after every validated epoch, and the best of them: the paper's protocol (its reported "
    "figure is the best epoch on the test set), recorded for comparison with the paper only. It selects on the "
    "test set, so it overstates accuracy; velora's figure is the checkpoint selected on the validation split "
    "(best.safetensors), scored once on the full test set. Nothing here was used to select a checkpoint."
)


def paper_protocol(epochs: list[dict], best_val_epoch: int) -> dict:
    """paper_protocol.json: `epochs` ({epoch, global_step, val_top1, test_top1} per validation), the
    best epoch on the test set (the first of equal ones), and the val-selected epoch's test top-1."""
    best = max(epochs, key=lambda row: row["test_top1"], default=None)  # max keeps the first of equal values
    selected = next((row for row in epochs if row["epoch"] == best_val_epoch), None)
    return {
        "note": PAPER_PROTOCOL_NOTE,
        "best_epoch_on_test": best,
        "val_selected_epoch": selected,
        "epochs": epochs,
    }


class AdapterCheckpoints(L.Callback):
    """Writes best/last adapter checkpoints and the curves after each validation, on rank zero.

    Selection reads val/top1 only. With eval.test_every_epoch the test top-1 of each validation is
    kept beside it (paper_protocol.json), for comparison with the paper's protocol.
    """

    def __init__(self, output_dir: Path):
        self.output_dir = output_dir
        self.best_top1 = -1.0
        self.best_epoch = -1
        self.test_by_epoch: list[dict] = []  # eval.test_every_epoch: one row per validation
        self.last_plot = -float("inf")  # time.monotonic() of the last curves.png
        self.unplotted: dict | None = None  # the history last written to history.json, if curves.png lags it

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        assert isinstance(module, VELoRAModule), "train() adds this callback for a VELoRAModule"
        top1 = float(trainer.callback_metrics["val/top1"])
        info = {"epoch": trainer.current_epoch, "global_step": trainer.global_step, "val_top1": top1}
        if trainer.is_global_zero:
            save_adapters(self.output_dir / "last.safetensors", module.model, module.cfg, module.class_names, info)
        if top1 > self.best_top1:
            self.best_top1, self.best_epoch = top1, trainer.current_epoch
            if trainer.is_global_zero:
                save_adapters(self.output_dir / "best.safetensors", module.model, module.cfg, module.class_names, info)
        if PAPER_TEST_TOP1 in trainer.callback_metrics:
            self.test_by_epoch.append({**info, "test_top1": float(trainer.callback_metrics[PAPER_TEST_TOP1])})
            if trainer.is_global_zero:
                text = json.dumps(self.paper_protocol(), indent=1)
                write_atomic(self.output_dir / "paper_protocol.json", text)
        if trainer.is_global_zero:
            self.write_history(module.history)

    def paper_protocol(self) -> dict | None:
        return paper_protocol(self.test_by_epoch, self.best_epoch) if self.test_by_epoch else None

    def write_history(self, history: dict) -> None:
        text = json.dumps(history)
        write_atomically(self.output_dir / "history.json", lambda tmp: tmp.write_text(text), "training history")
        self.unplotted = json.loads(text)  # a copy: the module keeps appending to its lists
        if time.monotonic() - self.last_plot >= CURVES_EVERY_S:
            self.plot_pending()

    def plot_pending(self) -> None:
        if self.unplotted is not None:
            plot_training_curves(self.unplotted, self.output_dir / "curves.png")
            self.unplotted, self.last_plot = None, time.monotonic()

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self.plot_pending()

    def state_dict(self) -> dict:
        return {"best_top1": self.best_top1, "best_epoch": self.best_epoch, "test_by_epoch": self.test_by_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best_top1, self.best_epoch = state["best_top1"], state["best_epoch"]
        self.test_by_epoch = list(state.get("test_by_epoch", []))  # resume files from before it existed


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to a temporary name and rename it into place: a kill never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


class ResumeCheckpoint(L.Callback):
    """The resume state `checkpoints/last.ckpt`, overwritten in place after every epoch and every N steps.

    The epoch's file is written after its validation (so the best-so-far record is in it), or at
    the epoch's end when it has none. The step files skip an epoch's last batch: one written
    there, before the validation, would resume into the next epoch with the validation (and the
    model selection) skipped. Every rank calls trainer.save_checkpoint; rank zero writes.
    """

    def __init__(self, path: Path, every_n_steps: int):
        self.path = path
        self.every_n_steps = every_n_steps
        self.saved_step = -1

    def save(self, trainer: L.Trainer) -> None:
        if trainer.global_step != self.saved_step:
            trainer.save_checkpoint(self.path, weights_only=False)  # the full resume state
            self.saved_step = trainer.global_step

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx: int) -> None:
        due = self.every_n_steps and trainer.global_step % self.every_n_steps == 0
        if due and batch_idx + 1 < trainer.num_training_batches:
            self.save(trainer)

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.save(trainer)  # an epoch without validation (train.val_every > 1); else already saved


class ProgressBar(L.pytorch.callbacks.TQDMProgressBar):
    """Lightning's bar showing the module's host-side values (VELoRAModule.progress).

    Lightning's own bar metrics would read the logged tensors back from the GPU at every step.
    """

    def get_metrics(self, trainer: L.Trainer, module: L.LightningModule) -> dict:
        assert isinstance(module, VELoRAModule), "train() adds this bar for a VELoRAModule"
        return {k: f"{v:.3f}" for k, v in module.progress.items()}


def preflight(cfg: Config, skip_log: Path | None, resume: str | None) -> None:
    """Check the train and val splits before the first step (see velora.data.skipping for the policy).

    bad_clips = stop: any problem stops the run here with the full report. bad_clips = skip: the
    problems are printed and the run goes on, logging skipped clips in `skip_log`.
    """
    # Headers and file sizes only: a frame or recording that is corrupt inside raises a DataError
    # naming it when it is first read (or is skipped, with data.bad_clips = skip).
    report = check_config(cfg, ("train", *eval_splits(cfg)), decode=False, progress=cfg.train.progress)
    if skip_log is None:
        report.raise_for_problems()
        return
    if not report.ok:
        print(report.format())
        print("data.bad_clips = skip: training on; skipped clips are reported at the end")
    if resume is None:
        clear_skip_log(skip_log)


def quiet_lightning() -> None:
    """Hide Lightning's start-up chatter; keep its real warnings."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric.utilities.rank_zero").setLevel(logging.WARNING)
    # The frozen backbone is in eval mode on purpose (VELoRA.train keeps it so).
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
    # ClipDataModule resumes mid-epoch from the restored global step (see EpochShuffleSampler).
    warnings.filterwarnings("ignore", message=r".*your dataloader is not resumable.*")
    warnings.filterwarnings("ignore", message=r"torch.distributed.nn.functional.all_gather is deprecated")
    # Training losses go to the logger from VELoRAModule.flush_stats at train.log_every, not through
    # Lightning's log_every_n_steps, so its warning about short epochs does not apply.
    warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")


def announce_weights(model) -> None:
    """Say where the backbone's weights come from (stdout), and warn (stderr, one line) when a
    CLIP-sized backbone is random: before any step, so a forgotten model.weights costs no GPU hours."""
    source = model.weights_source
    print(f"backbone weights: {describe_source(source)}", flush=True)
    warning = random_backbone_warning(source, model.backbone.embed_dim)
    if warning:
        print(warning, file=sys.stderr, flush=True)


def train(
    cfg: Config, resume: str | None = None, callbacks: Sequence[L.Callback] = (), *, announce: bool = True
) -> TrainResult:
    """Train VELoRA as `cfg` says; `resume` is a `checkpoints/last.ckpt` of an earlier run.

    callbacks: extra Lightning callbacks, run after velora's own (e.g. `velora demo`'s progress
    reports for its one bar over the whole run).
    announce: print the backbone's weight source before the first step (announce_weights); the
    demo, which says it once for all its trainings, turns it off.
    """
    quiet_lightning()
    if resume is not None:
        read_resume_state(resume)  # refuse an unsafe or broken file before any work starts
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    out = Path(cfg.train.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Under torchrun or SLURM, each rank knows its rank from the environment. Lightning sets .rank on the
    # decorator function at import, which its type (an overloaded function) does not declare.
    if rank_zero_only.rank == 0:  # type: ignore[attr-defined]
        (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))

    logger = make_logger(cfg, out)  # a missing extra is named before any work
    skip_log = out / "skipped" if cfg.data.bad_clips == "skip" else None
    data = ClipDataModule(cfg, skip_log)  # raises the targeted errors: root, label files, class count
    preflight(cfg, skip_log, resume)
    module = VELoRAModule(cfg, data.class_names)
    if announce and rank_zero_only.rank == 0:  # type: ignore[attr-defined]  # set by Lightning at import
        announce_weights(module.model)
    if logger is not None:
        logger.log_hyperparams(cfg.to_dict())  # the resolved config, once (rank zero only)
    adapters = AdapterCheckpoints(out)
    t = cfg.train
    # After AdapterCheckpoints, whose best-so-far record goes into the resume state.
    resume_state = ResumeCheckpoint(out / "checkpoints" / "last.ckpt", t.checkpoint_every_steps)
    strategy: str | L.pytorch.strategies.Strategy = t.strategy
    if t.strategy == "ddp" and cfg.model.modality_dropout > 0:
        # A dropped modality leaves its adapters without gradients for that step.
        strategy = L.pytorch.strategies.DDPStrategy(find_unused_parameters=True)
    trainer = L.Trainer(
        max_epochs=t.epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=strategy,
        precision=cast(Literal["32-true", "bf16-mixed", "16-mixed"], t.precision),  # Config's choices
        gradient_clip_val=t.grad_clip or None,
        check_val_every_n_epoch=t.val_every,
        log_every_n_steps=t.log_every,
        deterministic=True if t.accelerator == "cpu" else None,
        reload_dataloaders_every_n_epochs=1,
        callbacks=[adapters, resume_state, *([ProgressBar()] if t.progress else []), *callbacks],
        plugins=[AtomicCheckpointIO()],
        # ClipDataModule shards every split itself: training resumable mid-epoch, evaluation
        # without the repeated clips of torch's DistributedSampler.
        use_distributed_sampler=False,
        enable_progress_bar=t.progress,
        enable_model_summary=False,
        logger=logger or False,
        enable_checkpointing=False,  # Lightning's ModelCheckpoint: ResumeCheckpoint writes last.ckpt
        default_root_dir=str(out),
        num_sanity_val_steps=0,
    )
    try:
        trainer.fit(module, datamodule=data, ckpt_path=resume, weights_only=True)
    finally:
        close_logger(logger)
    if skip_log is not None and trainer.is_global_zero:
        print(read_skip_report(skip_log).format())
    return TrainResult(
        output_dir=out,
        best_checkpoint=out / "best.safetensors",
        best_val_top1=adapters.best_top1,
        best_epoch=adapters.best_epoch,
        history=module.history,
        finished=trainer.current_epoch >= t.epochs,
        paper_protocol=adapters.paper_protocol(),
    )
