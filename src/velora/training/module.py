"""The LightningModule: VELoRA's loss, optimizer and schedule in plain PyTorch.

Lightning supplies the engine (devices, DDP, mixed precision, checkpoint/resume plumbing);
everything that defines the method is here and in `velora.model.velora`.
"""

from __future__ import annotations

import random

import lightning as L
import torch
import torch.nn.functional as F

from velora.config import Config
from velora.model.adapter_file import migrate_keys
from velora.model.velora import VELoRA
from velora.training.datamodule import eval_splits
from velora.training.nonfinite import StepStats, nonfinite_flag, raise_if_nonfinite, skips_on_device
from velora.training.schedule import decay_groups, warmup_cosine

# The history name of the test top-1 recorded at every validation with eval.test_every_epoch: the
# paper's protocol (best epoch on the test set), for comparison with its figures, never for selection.
PAPER_TEST_TOP1 = "paper_protocol/test_top1"


class VELoRAModule(L.LightningModule):
    def __init__(self, cfg: Config, class_names: list[str]):
        super().__init__()
        self.cfg = cfg
        self.class_names = list(class_names)
        self.model = VELoRA.from_config(cfg)
        # Resume checkpoints hold only trainable tensors (see on_save_checkpoint).
        self.strict_loading = False
        self.history: dict[str, list[tuple[int, float]]] = {}
        self.eval_splits = eval_splits(cfg)  # the validation loop's dataloaders, in order
        self._eval_counts = self._zero_counts()
        self.stats = StepStats()
        self._lr_at: dict[int, float] = {}  # the learning rate of each log step, until recorded
        self.progress: dict[str, float] = {}  # host-side values for the progress bar (run.ProgressBar)

    # ------------------------------------------------------------------ steps
    def forward(self, batch: dict):
        return self.model(batch.get("rgb"), batch.get("events"))

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        # Dropout masks depend only on (seed, step, rank): a resumed run draws the same ones.
        torch.manual_seed((self.cfg.train.seed * 1_000_003 + self.global_step) * 64 + self.global_rank)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        assert "crop_box" not in batch, "ClipDataModule.on_after_batch_transfer did not apply the device crop"
        batch = self.drop_modalities(batch)
        out = self(batch)
        loss = self.model.loss(out, batch["label"])
        # Read on the host only at log steps and checkpoints (see StepStats): no GPU sync per step.
        self._loss_parts = torch.stack([loss.total, loss.ce, loss.recon]).detach().float()
        if self.global_step % self.cfg.train.log_every == 0:
            optimizer = self.optimizers()
            assert not isinstance(optimizer, list)  # configure_optimizers gives one
            self._lr_at[self.global_step] = optimizer.param_groups[0]["lr"]
        return loss.total

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Skip the update of a step whose loss or gradients are not finite, without a GPU sync.

        The flag goes to fused AdamW as `found_inf` (the mechanism torch's GradScaler uses), so
        the kernel leaves weights, moments and step count untouched. The run then stops at the
        next log step, checkpoint or validation (flush_stats), before anything is written.
        """
        on_device = skips_on_device(optimizer, self.trainer.precision_plugin)
        found = nonfinite_flag(self._loss_parts[0], self.model.parameters(), optimizer if on_device else None)
        self.stats.add(self.global_step, found, self._loss_parts)
        if not on_device:
            self.flush_stats()  # an optimizer that cannot skip on the device: check before the update

    def on_train_batch_end(self, outputs, batch: dict, batch_idx: int) -> None:
        if (self.global_step - 1) % self.cfg.train.log_every == 0:  # the step just taken was a log step
            self.flush_stats()

    def on_validation_start(self) -> None:
        self.flush_stats()

    def on_train_end(self) -> None:
        self.flush_stats()

    def flush_stats(self) -> None:
        """Read the steps since the last flush (one sync); raise on a non-finite one; record log steps."""
        rows = self.stats.drain(self.all_gather if self.trainer.world_size > 1 else None)
        raise_if_nonfinite(rows)
        for step, (_, loss, ce, recon) in rows:
            if step % self.cfg.train.log_every == 0:
                metrics = {
                    "train/loss": loss,
                    "train/ce": ce,
                    "train/recon": recon,
                    "lr": self._lr_at.pop(step, float("nan")),
                }
                for name, value in metrics.items():
                    self.record(name, value, step)
                if self.logger is not None:  # host values already: no device read (rank zero writes)
                    self.logger.log_metrics(metrics, step=step)
                self.progress.update({"loss": loss, "ce": ce, "recon": recon})

    def drop_modalities(self, batch: dict) -> dict:
        """With probability p each, drop the whole batch's RGB or event stream (never both).

        Dropping per batch keeps the training forward pass identical to inference with a
        missing sensor. The draw is seeded by (seed, step) so resumed runs repeat it.
        """
        p = self.cfg.model.modality_dropout
        if p <= 0 or "rgb" not in batch or "events" not in batch:
            return batch
        # Python's generator: a torch tensor here would be one more host read per step.
        draw = random.Random(self.cfg.train.seed * 1_000_003 + self.global_step)
        u = (draw.random(), draw.random())
        if u[0] < p:
            return {k: v for k, v in batch.items() if k != "rgb"}
        if u[1] < p:
            return {k: v for k, v in batch.items() if k != "events"}
        return batch

    def _zero_counts(self) -> list[list]:
        return [[0, 0] for _ in self.eval_splits]  # (correct, clips) per split

    def validation_step(self, batch: dict | None, batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch is None:  # every clip of the batch was unreadable and skipped (data.bad_clips = skip)
            return
        out = self(batch)
        labels = batch["label"]
        counts = self._eval_counts[dataloader_idx]
        counts[0] += (out.logits.argmax(-1) == labels).sum()
        counts[1] += labels.numel()
        if self.eval_splits[dataloader_idx] == "val":
            ce = F.cross_entropy(out.logits, labels)
            self.log("val/ce", ce, batch_size=labels.numel(), sync_dist=True, add_dataloader_idx=False)

    def on_validation_epoch_end(self) -> None:
        # Global accuracy: sum correct and counts over ranks before dividing.
        stats = torch.tensor([[float(c), float(n)] for c, n in self._eval_counts], device=self.device)  # (splits, 2)
        if self.trainer.world_size > 1:
            gathered = self.all_gather(stats)
            assert isinstance(gathered, torch.Tensor)  # a tensor gathers as one
            stats = gathered.reshape(-1, len(self.eval_splits), 2).sum(0)
        top1 = dict(zip(self.eval_splits, (stats[:, 0] / stats[:, 1].clamp(min=1)).tolist()))
        # Already global: the mean of equal values.
        self.log("val/top1", top1["val"], sync_dist=True, add_dataloader_idx=False)
        self.progress["val/top1"] = top1["val"]
        if "test" in top1:
            # The paper's protocol, for comparison only: nothing reads this name to select a checkpoint.
            self.log(PAPER_TEST_TOP1, top1["test"], sync_dist=True, add_dataloader_idx=False)
        if not self.trainer.sanity_checking:
            self.record("val/top1", top1["val"])
            if "test" in top1:
                self.record(PAPER_TEST_TOP1, top1["test"])
        self._eval_counts = self._zero_counts()

    def record(self, name: str, value: float, step: int | None = None) -> None:
        step = self.global_step if step is None else step
        self.history.setdefault(name, []).append((int(step), float(value)))

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        t = self.cfg.train
        # Fused AdamW (CUDA and CPU) takes the device-side skip flag of on_before_optimizer_step.
        fused = self.device.type in ("cuda", "cpu")
        groups = decay_groups(self.model, t.weight_decay, t.weight_decay_all)
        optimizer = torch.optim.AdamW(groups, lr=t.lr, fused=fused or None)
        total = int(self.trainer.estimated_stepping_batches)
        warmup = int(round(t.warmup_epochs * total / max(1, t.epochs)))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: warmup_cosine(step, warmup_steps=warmup, total_steps=total, min_ratio=t.min_lr / t.lr),
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self.flush_stats()  # never write the state after a non-finite step
        keep = {f"model.{k}" for k in self.model.trainable_state_dict()}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        checkpoint["velora_config"] = self.cfg.to_dict()
        checkpoint["velora_weights_source"] = self.model.weights_source
        checkpoint["velora_history"] = {k: [list(p) for p in v] for k, v in self.history.items()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = migrate_keys(checkpoint["state_dict"], prefix="model.")
        self.history = {k: [tuple(p) for p in v] for k, v in checkpoint.get("velora_history", {}).items()}
