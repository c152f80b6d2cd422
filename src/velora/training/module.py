"""The LightningModule: VELoRA's loss, optimizer and schedule in plain PyTorch.

Lightning supplies the engine (devices, DDP, mixed precision, checkpoint/resume plumbing);
everything that defines the method is here and in `velora.model.velora`.
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F

from velora.config import Config
from velora.model.velora import VELoRA
from velora.training.schedule import decay_groups, warmup_cosine


class VELoRAModule(L.LightningModule):
    def __init__(self, cfg: Config, class_names: list[str]):
        super().__init__()
        self.cfg = cfg
        self.class_names = list(class_names)
        self.model = VELoRA(cfg)
        # Resume checkpoints hold only trainable tensors (see on_save_checkpoint).
        self.strict_loading = False
        self.history: dict[str, list[tuple[int, float]]] = {}
        self._val_correct = self._val_count = 0

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
        ce = F.cross_entropy(out.logits, batch["label"])
        loss = ce + self.cfg.model.recon_weight * out.recon_loss
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss is {loss.item()} at step {self.global_step} (ce {ce.item()}, recon "
                f"{out.recon_loss.item()}); lower train.lr or check the inputs. The last checkpoint is intact."
            )
        n = batch["label"].shape[0]
        self.log_dict({"train/loss": loss, "train/ce": ce, "train/recon": out.recon_loss}, batch_size=n, prog_bar=True)
        if self.global_step % self.cfg.train.log_every == 0:
            losses = torch.stack([loss, ce, out.recon_loss]).detach().float()
            if self.trainer.world_size > 1:  # the global batch's loss: the mean over ranks' equal batches
                losses = self.all_gather(losses).reshape(-1, 3).mean(0)
            for name, value in zip(("train/loss", "train/ce", "train/recon"), losses.tolist()):
                self.record(name, value)
            self.record("lr", self.optimizers().param_groups[0]["lr"])
        return loss

    def drop_modalities(self, batch: dict) -> dict:
        """With probability p each, drop the whole batch's RGB or event stream (never both).

        Dropping per batch keeps the training forward pass identical to inference with a
        missing sensor. The draw is seeded by (seed, step) so resumed runs repeat it.
        """
        p = self.cfg.model.modality_dropout
        if p <= 0 or "rgb" not in batch or "events" not in batch:
            return batch
        g = torch.Generator().manual_seed(self.cfg.train.seed * 1_000_003 + self.global_step)
        u = torch.rand(2, generator=g)
        if u[0] < p:
            return {k: v for k, v in batch.items() if k != "rgb"}
        if u[1] < p:
            return {k: v for k, v in batch.items() if k != "events"}
        return batch

    def validation_step(self, batch: dict | None, batch_idx: int) -> None:
        if batch is None:  # every clip of the batch was unreadable and skipped (data.bad_clips = skip)
            return
        out = self(batch)
        labels = batch["label"]
        self._val_correct += (out.logits.argmax(-1) == labels).sum()
        self._val_count += labels.numel()
        self.log("val/ce", F.cross_entropy(out.logits, labels), batch_size=labels.numel(), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        # Global accuracy: sum correct and counts over ranks before dividing.
        stats = torch.tensor([float(self._val_correct), float(self._val_count)], device=self.device)
        stats = self.all_gather(stats).reshape(-1, 2).sum(0) if self.trainer.world_size > 1 else stats
        top1 = (stats[0] / stats[1].clamp(min=1)).item()
        self.log("val/top1", top1, prog_bar=True, sync_dist=True)  # already global: the mean of equal values
        if not self.trainer.sanity_checking:
            self.record("val/top1", top1)
        self._val_correct = self._val_count = 0

    def record(self, name: str, value: float) -> None:
        self.history.setdefault(name, []).append((int(self.global_step), float(value)))

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        t = self.cfg.train
        fused = torch.cuda.is_available() and self.cfg.train.accelerator != "cpu"
        optimizer = torch.optim.AdamW(decay_groups(self.model, t.weight_decay), lr=t.lr, fused=fused or None)
        total = int(self.trainer.estimated_stepping_batches)
        warmup = int(round(t.warmup_epochs * total / max(1, t.epochs)))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: warmup_cosine(step, warmup_steps=warmup, total_steps=total, min_ratio=t.min_lr / t.lr),
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        keep = {f"model.{k}" for k in self.model.trainable_state_dict()}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        checkpoint["velora_config"] = self.cfg.to_dict()
        checkpoint["velora_history"] = {k: [list(p) for p in v] for k, v in self.history.items()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = {k: [tuple(p) for p in v] for k, v in checkpoint.get("velora_history", {}).items()}
