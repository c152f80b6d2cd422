"""Supervised pre-training of a small ViT on fractal categories (the backbone `velora demo` ships with).

    python -m velora.pretrain --output fractal_vit.safetensors      (or `velora pretrain ...`)

The ViT is the demo backbone: timm's CLIP ViT-B/16 architecture (pre-norm, class token, QuickGELU)
with a smaller width and depth, trained at the demo's image size. Images are rendered on the fly
(`velora.pretrain.fractal`), so the run needs no data on disk and every step sees new images.

Writes `<output>` (timm-named safetensors without the classifier, with the architecture, the
normalisation and this recipe in its `velora_metadata` header, so `model.weights` loads it like
any other weights file) and `<output>.json`, a manifest with the command, settings, timing and
the file's sha256.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import cast

import timm
import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed

from velora.model.weights import HEADER_KEY
from velora.pretrain.config import PretrainConfig, add_arguments, config_from_args, recipe_flags
from velora.pretrain.fractal import make_categories, render_images

MEAN = STD = (0.5, 0.5, 0.5)  # fractal images are uniform random colours: mid-gray centre


def build_model(cfg: PretrainConfig) -> torch.nn.Module:
    return timm.create_model(
        cfg.backbone,
        pretrained=False,
        num_classes=cfg.num_categories,
        img_size=cfg.image_size,
        embed_dim=cfg.embed_dim,
        depth=cfg.depth,
        num_heads=cfg.num_heads,
        # mean of the final-norm tokens, as VELoRA's head pools (model.head_pool: mean)
        global_pool="avg",
        fc_norm=False,
    )


def lr_at(step: int, cfg: PretrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))


def normalise(images: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return (images - mean) / std


@torch.no_grad()
def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    correct = sum(
        (model(normalise(images[i : i + 256])).argmax(-1) == labels[i : i + 256]).sum().item()
        for i in range(0, len(labels), 256)
    )
    model.train()
    return correct / len(labels)


def pretrain(cfg: PretrainConfig, log=print) -> dict:
    """Run the recipe; write the weights and the manifest; return the manifest."""
    output = Path(cfg.output)
    if output.suffix != ".safetensors":
        raise ValueError(f"--output must name a *.safetensors file, got '{output}'")
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    categories = make_categories(cfg.num_categories, cfg.seed, cfg.image_size)
    model = build_model(cfg)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "pos_embed" not in n and "cls_token" not in n]
    other = [
        p for n, p in model.named_parameters() if not (p.ndim >= 2 and "pos_embed" not in n and "cls_token" not in n)
    ]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}], lr=cfg.lr
    )
    # Separate streams: training images never repeat the held-out ones.
    train_gen = torch.Generator().manual_seed(cfg.seed * 1000 + 1)
    val_gen = torch.Generator().manual_seed(cfg.seed * 1000 + 2)
    val_labels = torch.arange(cfg.val_images) % cfg.num_categories
    val_images = render_images(categories, val_labels, cfg.image_size, val_gen, cfg.rotation, cfg.bright_on_dark)

    start, cpu_start = time.perf_counter(), time.process_time()
    history = []
    model.train()
    for step in range(cfg.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        labels = torch.randint(0, cfg.num_categories, (cfg.batch_size,), generator=train_gen)
        images = render_images(categories, labels, cfg.image_size, train_gen, cfg.rotation, cfg.bright_on_dark)
        loss = F.cross_entropy(model(normalise(images)), labels, label_smoothing=cfg.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            val = accuracy(model, val_images, val_labels)
            elapsed = time.perf_counter() - start
            history.append(
                {
                    "step": step + 1,
                    "loss": round(loss.item(), 4),
                    "val_top1": round(val, 4),
                    "seconds": round(elapsed, 1),
                }
            )
            log(f"step {step + 1}/{cfg.steps}  loss {loss.item():.3f}  held-out top-1 {val:.1%}  {elapsed:.0f} s")
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return write_weights(model, cfg, output, seconds, cpu_seconds, history)


def write_weights(
    model: torch.nn.Module, cfg: PretrainConfig, output: Path, seconds: float, cpu_seconds: float, history: list
) -> dict:
    """Backbone tensors (no classifier) + metadata header -> `output`; manifest -> `output`.json."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items() if not k.startswith("head.")}
    recipe = dataclasses.asdict(cfg)
    recipe.pop("output")
    # timm types a ViT's patch_embed as any Module; its patch embeddings keep patch_size (h, w)
    patch_embed = cast(PatchEmbed, model.get_submodule("patch_embed"))
    meta = {
        "source_format": "timm",
        "image_size": cfg.image_size,
        "patch_size": patch_embed.patch_size[0],
        "embed_dim": cfg.embed_dim,
        "depth": cfg.depth,
        "num_heads": cfg.num_heads,
        "mlp_ratio": 4.0,
        "pre_norm": True,
        "act_layer": "quick_gelu",
        "mean": list(MEAN),
        "std": list(STD),
        "pretrain": {"data": f"fractal IFS categories ({cfg.num_categories}), rendered on the fly", **recipe},
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    # One metadata key: safetensors writes its metadata map in a random order, so two keys gave
    # two possible files (two sha256) for the same weights.
    save_file(state, str(output), metadata={HEADER_KEY: json.dumps(meta)})
    manifest = {
        "file": output.name,
        "sha256": sha256(output),
        "bytes": output.stat().st_size,
        "parameters": sum(v.numel() for v in state.values()),
        "command": "python -m velora.pretrain " + " ".join(recipe_flags(cfg)),
        "settings": recipe,
        "train_seconds": round(seconds, 1),  # wall clock
        "train_cpu_seconds": round(cpu_seconds, 1),  # of this process: less than wall on a shared machine
        "final_held_out_top1": history[-1]["val_top1"] if history else None,
        "history": history,
        "torch": torch.__version__,
        "timm": timm.__version__,
        # Float results depend on the kernels the CPU runs: a rerun on this CPU (same capability,
        # same versions, --threads as recorded) writes the same file; another CPU may not.
        "cpu": cpu_description(),
    }
    Path(f"{output}.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


# Instruction-set flags of /proc/cpuinfo that change which float kernels torch, MKL and oneDNN run.
ISA_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16")
# Variables that cap the instruction set of torch's own kernels, MKL and oneDNN below the CPU's.
ISA_ENV = ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")


def cpu_description() -> dict:
    """The CPU a build ran on, as far as float results depend on it: model, torch's kernel capability, ISA flags."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:  # not Linux
        pass
    return {
        "model": model,
        "machine": platform.machine(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "isa_flags": [flag for flag in ISA_FLAGS if flag in flags],
        "isa_limits": {name: os.environ[name] for name in ISA_ENV if name in os.environ},
        "logical_cpus": os.cpu_count(),
    }


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m velora.pretrain", description=__doc__.split("\n\n")[0])
    cfg = config_from_args(add_arguments(parser).parse_args(argv))
    manifest = pretrain(cfg, log=lambda line: print(line, flush=True))
    print(
        f"wrote {cfg.output} ({manifest['bytes'] / 1e6:.2f} MB, sha256 {manifest['sha256'][:16]}...) in {manifest['train_seconds']:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
