"""aten ops dispatched per training step and per inference batch (each is at least one kernel
launch on a GPU in eager mode): a deterministic, load-independent measure of per-step overhead.

    python benchmarks/op_count.py --config demo --batch-size 4
Point PYTHONPATH at another checkout's src/ to count that version of the model.
"""

from __future__ import annotations

import argparse
import collections
import json

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from random_inputs import random_clips  # benchmarks/, beside this script


class OpCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[func.name()] += 1
        return func(*args, **(kwargs or {}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="demo")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("overrides", nargs="*", default=["model.weights=none"])
    args = p.parse_args()

    import velora
    from velora.config import load_config
    from velora.model.velora import VELoRA

    cfg = load_config(args.config, args.overrides)
    torch.manual_seed(0)
    model = VELoRA.from_config(cfg)
    rgb, events, labels = random_clips(cfg, args.batch_size)
    result = {"velora": velora.__file__, "batch_size": args.batch_size}
    model.train()
    with OpCounter() as train:
        out = model(rgb, events)
        (F.cross_entropy(out.logits, labels) + out.recon_loss).backward()
    model.eval()
    with OpCounter() as infer, torch.no_grad():
        model(rgb[:1], events[:1])
    result["train_step_ops"] = sum(train.counts.values())
    result["one_clip_inference_ops"] = sum(infer.counts.values())
    result["train_step_matmuls"] = sum(
        v for k, v in train.counts.items() if k.split("::")[-1] in ("mm", "addmm", "bmm")
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
