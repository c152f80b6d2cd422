"""Non-finite training steps: skipped on the device, reported at the next read on the host.

A step whose loss or any gradient is NaN or infinite must not change the weights, and the run must
stop with the step named before anything is written after it. Checking on the host at every step
(`bool(torch.isfinite(loss))`) would make the CPU wait for the GPU at every step. Instead:

- `nonfinite_flag` computes the step's flag on the device and hands it to fused AdamW as
  `found_inf`, the mechanism torch's GradScaler uses: the kernel leaves weights, moments and the
  step count untouched when it is set;
- `StepStats` keeps each step's [flag, loss, ce, recon] on the device;
- the LightningModule drains them at log steps, before every checkpoint and before validation
  (one read for many steps), and `raise_if_nonfinite` stops the run there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


def skips_on_device(optimizer: torch.optim.Optimizer, precision_plugin) -> bool:
    """Whether `optimizer` can skip a flagged step itself: fused AdamW, with no GradScaler
    (under 16-mixed the scaler owns found_inf, and skips steps that overflow on its own)."""
    fused = any(group.get("fused") for group in optimizer.param_groups)
    return fused and getattr(precision_plugin, "scaler", None) is None


def nonfinite_flag(
    loss: torch.Tensor, parameters: Iterable[torch.nn.Parameter], optimizer: torch.optim.Optimizer | None = None
) -> torch.Tensor:
    """1.0 (on the device) when `loss` or any gradient of `parameters` is not finite, else 0.0.

    With `optimizer` (one that skips on the device), gradients are checked too and the flag
    becomes its `found_inf`, so its next step does nothing when the flag is set.
    """
    found = (~torch.isfinite(loss)).float()
    if optimizer is None:
        return found
    grads: dict[tuple, list[torch.Tensor]] = {}
    for p in parameters:
        if p.grad is not None:
            grads.setdefault((p.grad.device, p.grad.dtype), []).append(p.grad)
    for group in grads.values():  # sets found to 1 if any gradient has a nan or inf
        torch._amp_foreach_non_finite_check_and_unscale_(group, found, found.new_ones(()))
    # torch's Adam and AdamW read it with getattr(self, "found_inf", None); Optimizer does not declare it
    optimizer.found_inf = found  # type: ignore[attr-defined]
    return found


def raise_if_nonfinite(rows: list[tuple[int, list[float]]]) -> None:
    """Raise FloatingPointError naming the first flagged step of StepStats.drain's rows."""
    for step, (flag, loss, ce, recon) in rows:
        if flag:
            what = f"loss is {loss}" if not math.isfinite(loss) else f"gradients are not finite (loss {loss})"
            raise FloatingPointError(
                f"{what} at step {step} (ce {ce}, recon {recon}); lower train.lr or check the inputs. "
                "That step was not applied, and the last checkpoint is intact."
            )


class StepStats:
    """Per-step [non-finite flag, loss, ce, recon] kept on the device until a flush reads them at once."""

    def __init__(self):
        self.first_step = 0
        self.rows: list[torch.Tensor] = []

    def add(self, step: int, found: torch.Tensor, parts: torch.Tensor) -> None:
        if not self.rows:
            self.first_step = step
        self.rows.append(torch.cat([found.reshape(1), parts]))

    def drain(self, all_gather=None) -> list[tuple[int, list[float]]]:
        """(step, [flag, loss, ce, recon]) per step; under DDP the flag is any rank's, the losses the mean."""
        if not self.rows:
            return []
        table = torch.stack(self.rows)
        self.rows = []
        if all_gather is not None:
            ranks = all_gather(table)  # (world, steps, 4)
            table = torch.cat([ranks[..., :1].amax(0), ranks[..., 1:].mean(0)], dim=-1)
        return [(self.first_step + i, row) for i, row in enumerate(table.tolist())]
