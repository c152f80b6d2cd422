"""Shared fixtures: a tiny VELoRA config, a tiny synthetic dataset, the real recordings.

The tiny model has CLIP ViT-B/16's block structure (pre-norm blocks with qkv/proj/fc1/fc2, QuickGELU)
at embed_dim 32, depth 3, on 32 x 32 frames (2 x 2 patches + class token = 5 tokens), so a forward
pass of a few clips takes milliseconds on a CPU.
"""

from __future__ import annotations

import copy
import hashlib
import os
from pathlib import Path

# Tiny tensors gain nothing from intra-op threads, and on a shared CI machine thread contention
# makes each op ~1000x slower. Set before torch loads so spawned children (velora bench) inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# torch.compile's kernels go to a cache of this test session's own, not the machine's shared
# /tmp/torchinductor_<user>: kernels left there by other runs (another ATEN_CPU_CAPABILITY, another
# torch build) have crashed the process with "free(): invalid pointer" when loaded again.
if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="velora-tests-inductor-")
    atexit.register(shutil.rmtree, os.environ["TORCHINDUCTOR_CACHE_DIR"], ignore_errors=True)

import lightning as L  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from velora.config import Config, merge, parse_overrides  # noqa: E402

torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]
# Real recordings the suite carries (provenance and licences: tests/data/real/SOURCES.md).
REAL_DATA = REPO_ROOT / "tests" / "data" / "real"

TINY = {
    "model": {
        "backbone": "vit_base_patch16_clip_quickgelu_224",
        "backbone_args": {"embed_dim": 32, "depth": 3, "num_heads": 2},
        "weights": "none",
        "image_size": 32,
        "num_classes": 8,
        "high_level_blocks": 1,
    },
    "lora": {"rank": 2, "alpha": 4.0, "dropout": 0.0, "targets": ["fc1", "fc2"]},
    "data": {"num_frames": 3, "num_workers": 0},
    "train": {
        "epochs": 1,
        "batch_size": 4,
        "lr": 5.0e-3,
        "min_lr": 1.0e-5,
        "warmup_epochs": 0.0,
        "accelerator": "cpu",
        "devices": 1,
        "progress": False,
        "log_every": 1,
        "seed": 0,
    },
}


def make_tiny_config(*overrides: str, **sections: dict) -> Config:
    """The tiny config, updated by `section.field=value` strings and/or per-section dicts.

    make_tiny_config("lora.rank=0", model={"frame_diff": False}, data={"root": "/x"})
    """
    raw = copy.deepcopy(TINY)
    for section, values in sections.items():
        raw = merge(raw, {section: values})
    if overrides:
        raw = merge(raw, parse_overrides(list(overrides)))
    return Config.from_dict(raw, source="tiny test config")


@pytest.fixture(autouse=True)
def torch_determinism_restored():
    """Put torch's deterministic-algorithms switches back after each test: a Lightning Trainer with
    deterministic=True (CPU training) turns them on for the whole process, and a later test would
    run under them unasked (torch.compile's CPU kernels built for AVX2 then give NaN, as seen with
    ATEN_CPU_CAPABILITY=avx2)."""
    enabled, warn_only = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    fill = torch.utils.deterministic.fill_uninitialized_memory
    yield
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
    torch.utils.deterministic.fill_uninitialized_memory = fill


@pytest.fixture
def tiny_config():
    """A factory: tiny_config("lora.rank=0", model={...}) -> Config of a tiny model."""
    return make_tiny_config


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A PokerEvent-layout synthetic dataset: 8 classes, 3/1/1 clips per class, 32 px, 4-5 frames."""
    from velora.demo.generate import generate_demo_dataset

    root = tmp_path_factory.mktemp("tiny_dataset")
    info = generate_demo_dataset(
        root,
        clips_per_class={"train": 3, "val": 1, "test": 1},
        image_size=32,
        frames_range=(4, 5),
        progress=False,
        workers=1,
    )
    assert len(info.class_names) == 8
    return root


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real event-camera recordings in tests/data/real (a test failure when absent: they are
    part of the test suite, never silently skipped)."""
    assert REAL_DATA.is_dir(), (
        f"real recordings not found at {REAL_DATA}: they are part of the repository, restore them with git"
    )
    return REAL_DATA


def assert_items_equal(a: dict, b: dict) -> None:
    """Two dataset items (dicts of tensors and ints) are equal, dtype included."""
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


def random_clip(batch: int = 2, frames: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Random uint8 frames (B, T, 3, H, W)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, frames, 3, size, size), dtype=torch.uint8, generator=g)


def fill_adapters(model: torch.nn.Module, seed: int = 0, scale: float = 0.1) -> None:
    """Give every LoRA B matrix (and A) non-zero random values, so adapters change outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("lora_b") or name.endswith("lora_a"):
                p.copy_(torch.randn(p.shape, generator=g) * scale)


def add_trainer_callback(monkeypatch, callback: L.Callback) -> None:
    """Every Lightning Trainer built for the rest of the test also runs `callback`, after its own."""
    init = L.Trainer.__init__

    def with_callback(self, *args, callbacks=(), **kwargs):
        init(self, *args, callbacks=[*callbacks, callback], **kwargs)

    monkeypatch.setattr(L.Trainer, "__init__", with_callback)


class PerStep(L.Callback):
    """What lands in `found` (filled during training) grouped by training step, in `per_step`.

    A step runs from its batch's start to the next batch's start in the same epoch; an epoch's
    last step, which also holds validation and the epoch-end checkpoint, is not counted.
    """

    def __init__(self):
        self.found: list = []
        self.per_step: dict[int, list] = {}
        self._step: int | None = None
        self._start = 0
        self._batch_idx = -1

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if self._step is not None and batch_idx == self._batch_idx + 1:
            self.per_step[self._step] = self.found[self._start :]
        self._step, self._start, self._batch_idx = trainer.global_step, len(self.found), batch_idx

    def on_train_epoch_end(self, trainer, module) -> None:
        self._step, self._batch_idx = None, -1


def predict_topk(checkpoint, clip, ground_truth: str | None = None, **options) -> list[tuple[str, float]]:
    """The top-k (name, probability) pairs of one clip, through the public API (velora.load)."""
    import velora

    truths = None if ground_truth is None else [ground_truth]
    return velora.load(checkpoint).predict(clip, ground_truths=truths, **options).topk


@pytest.fixture(scope="session")
def tiny_run(tiny_dataset, tmp_path_factory) -> Path:
    """The output folder of a 1-epoch training run of the tiny model on the tiny dataset (a run
    folder with best.safetensors), shared by the tests of what comes after training."""
    from velora.training.run import train

    out = tmp_path_factory.mktemp("tiny_run")
    train(make_tiny_config(data={"root": str(tiny_dataset)}, train={"output_dir": str(out), "logger": "none"}))
    return out


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A skip fails the test, except where a CUDA GPU is missing (tests/test_gpu.py): a missing test
    dependency (the `test` extra of pyproject.toml) must fail the run, not pass it with fewer tests."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if "CUDA" not in reason:
            report.outcome = "failed"
            report.longrepr = (
                f"skipped: {reason}\nOnly CUDA-only tests may skip; install the test dependencies "
                '(pip install -e ".[test]") or fix the test.'
            )


def columns(events) -> list[tuple[int, int, int, int]]:
    """The events of an EventStream as (t, x, y, p) rows, for comparing with rows written by hand."""
    return list(zip(events.t.tolist(), events.x.tolist(), events.y.tolist(), events.p.tolist(), strict=True))


def error_of(call, *args, **kwargs) -> str:
    """The whole message of the DataError that `call(*args, **kwargs)` must raise."""
    from velora.errors import DataError

    with pytest.raises(DataError) as caught:
        call(*args, **kwargs)
    return str(caught.value)


HUB_COMMIT = "3f1c2a" + "0" * 34  # a commit hash of a hub repository


def write_hub_cache(cache: Path, repo_id: str, files: dict, lacks: tuple[str, ...] = ()) -> dict[str, Path]:
    """A Hugging Face cache as huggingface_hub writes it: refs/main holds the commit, each file is a
    blob named by its sha256 that snapshots/<commit>/<file> links to, and .no_exist/<commit>/<file>
    marks a file the hub answered the repository lacks. files: file name -> its bytes, or tensors
    (saved as safetensors for a .safetensors name, else with torch.save). Returns the snapshot path
    of each file."""
    from safetensors.torch import save_file

    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(HUB_COMMIT)
    (repo / "blobs").mkdir()
    snapshot = repo / "snapshots" / HUB_COMMIT
    snapshot.mkdir(parents=True)
    paths = {}
    for name, content in files.items():
        staged = repo / "blobs" / f"incoming-{name}"
        if isinstance(content, bytes):
            staged.write_bytes(content)
        elif name.endswith(".safetensors"):
            save_file({k: v.contiguous() for k, v in content.items()}, str(staged))
        else:
            torch.save(content, staged)
        blob = staged.rename(repo / "blobs" / hashlib.sha256(staged.read_bytes()).hexdigest())
        (snapshot / name).symlink_to(Path("..", "..", "blobs", blob.name))
        paths[name] = snapshot / name
    for name in lacks:
        (repo / ".no_exist" / HUB_COMMIT).mkdir(parents=True, exist_ok=True)
        (repo / ".no_exist" / HUB_COMMIT / name).touch()
    return paths
