"""Data-parallel training: 2 CPU processes (gloo, launched by torchrun) against 1 process.

The two runs see the same global batch (2 x 4 clips vs 1 x 8), so DDP's averaged gradients equal
the single process's up to float summation order; the loss trajectories agree within LOSS_TOLERANCE.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import make_tiny_config
from velora.evaluation.evaluate import evaluate
from velora.training.checkpoint import read_resume_state
from velora.training.datamodule import EpochShuffleSampler, ShardSampler
from velora.training.run import train

LOSS_TOLERANCE = 1e-4  # absolute, on losses of about 2-5; the observed difference is 2.4e-7


def ddp_config(root: Path, output: Path, **train_section):
    return make_tiny_config(data={"root": str(root)}, train={"epochs": 2, "output_dir": str(output), **train_section})


@pytest.mark.parametrize("length, world", [(24, 2), (25, 2), (7, 3), (2, 4)])
def test_training_shards_cover_the_epoch_and_have_equal_lengths(length, world):
    shards = []
    for rank in range(world):
        sampler = EpochShuffleSampler(length, seed=3, rank=rank, world_size=world)
        sampler.set_epoch(1)
        shards.append(list(sampler))
    assert len({len(s) for s in shards}) == 1, "every rank must run the same number of steps"
    assert all(len(s) == len(EpochShuffleSampler(length, 3, r, world)) for r, s in enumerate(shards))
    seen = [i for s in shards for i in s]
    assert set(seen) == set(range(length))
    assert len(seen) - length < world, "padding repeats fewer clips than there are ranks"
    # Interleaved, the shards are the 1-process order: a global batch holds the same clips.
    one = EpochShuffleSampler(length, seed=3)
    one.set_epoch(1)
    interleaved = [shards[k % world][k // world] for k in range(length)]
    assert interleaved == list(one)


def test_training_shard_resumes_mid_epoch():
    full = list(EpochShuffleSampler(25, seed=0, rank=1, world_size=2))
    sampler = EpochShuffleSampler(25, seed=0, rank=1, world_size=2, skip=lambda epoch: 5)
    assert list(sampler) == full[5:]
    assert len(sampler) == len(full), "the epoch's length stays whole so Lightning's counters keep their meaning"


@pytest.mark.parametrize("length, world", [(8, 2), (9, 2), (5, 4), (2, 3)])
def test_evaluation_shards_hold_every_clip_exactly_once(length, world):
    seen = [i for rank in range(world) for i in ShardSampler(length, rank, world)]
    assert sorted(seen) == list(range(length))


def test_this_torch_has_the_gloo_backend_the_cpu_runs_need():
    # Every torch wheel for Linux, macOS and Windows has it; the CPU data-parallel runs below fail
    # (not skip) without it.
    assert torch.distributed.is_gloo_available(), "this torch build has no gloo backend; install torch from its wheels"


@pytest.mark.slow
def test_two_processes_follow_one_process_with_the_same_global_batch(tiny_dataset, tmp_path):
    one = train(ddp_config(tiny_dataset, tmp_path / "one", batch_size=8))

    two_dir = tmp_path / "two"
    config = tmp_path / "two.yaml"
    cfg = ddp_config(tiny_dataset, two_dir, batch_size=4, strategy="ddp", devices=2)
    config.write_text(yaml.safe_dump(cfg.to_dict()))
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run(
        [*launch, "-m", "velora.cli", "train", "--config", str(config)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.count("best val top-1") == 1, "only rank zero reports"

    two = json.loads((two_dir / "history.json").read_text())
    steps = [s for s, _ in one.history["train/loss"]]
    assert [s for s, _ in two["train/loss"]] == steps == list(range(6))
    diff = max(abs(a - b) for (_, a), (_, b) in zip(one.history["train/loss"], two["train/loss"]))
    print(f"2-process vs 1-process loss: max difference {diff:.3g} over {len(steps)} steps")
    assert diff < LOSS_TOLERANCE, f"2-process loss differs from 1-process loss by {diff:.3g}"

    # One set of files, written once by rank zero, none half-written.
    files = sorted(str(p.relative_to(two_dir)) for p in two_dir.rglob("*") if p.is_file())
    assert files == [
        "best.safetensors",
        "checkpoints/last.ckpt",
        "config.yaml",
        "curves.png",
        "history.json",
        "last.safetensors",
        "logs/version_0/hparams.yaml",
        "logs/version_0/metrics.csv",  # one logger: one version, not one per rank
    ]
    # The val accuracy recorded during training is the global one: it equals a 1-process
    # evaluation of the same adapters on the whole val split.
    recorded = two["val/top1"][-1][1]
    assert recorded == pytest.approx(evaluate(two_dir / "last.safetensors", split="val", progress=False)["top1"])


NAN_ON_RANK_ONE = """
import os, sys
from velora.cli import main
from velora.training.module import VELoRAModule

forward = VELoRAModule.forward

def nan_on_rank_one(module, batch):
    out = forward(module, batch)
    if module.global_rank == 1 and module.global_step == 3:  # the first step of epoch 1, one rank only
        out.logits = out.logits * float("nan")
    return out

VELoRAModule.forward = nan_on_rank_one
sys.exit(main(["train", "--config", sys.argv[1]]))
"""


@pytest.mark.slow
def test_a_nan_on_one_rank_stops_every_rank_at_the_same_point(tiny_dataset, tmp_path):
    # The non-finite check is deferred to log steps and checkpoints; each rank must reach the same
    # verdict there (a rank that stopped alone would leave the others waiting in a collective).
    out = tmp_path / "run"
    config = tmp_path / "nan.yaml"
    cfg = ddp_config(tiny_dataset, out, batch_size=4, strategy="ddp", devices=2, log_every=2, checkpoint_every_steps=0)
    config.write_text(yaml.safe_dump(cfg.to_dict()))
    script = tmp_path / "nan_on_rank_one.py"
    script.write_text(NAN_ON_RANK_ONE)
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run([*launch, str(script), str(config)], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert done.stderr.count("loss is nan at step 3") == 2, f"both ranks stop on it:\n{done.stderr[-4000:]}"
    state = read_resume_state(out / "checkpoints" / "last.ckpt")
    assert state["global_step"] == 3 and all(torch.isfinite(v).all() for v in state["state_dict"].values())
