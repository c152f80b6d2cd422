"""Training contracts: schedule, CPU smoke run, adapter checkpoints, resume, determinism, eval/predict."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from safetensors import safe_open

import velora.training.run as run_module
from conftest import add_trainer_callback, fill_adapters, make_tiny_config, random_clip
from conftest import predict_topk as predict
from velora.cli import main
from velora.config import Config, ConfigError
from velora.data.factory import make_dataset
from velora.data.sampling import eval_views
from velora.errors import CheckpointError, DataError
from velora.evaluation.evaluate import evaluate, predict_views
from velora.evaluation.metrics import topk_accuracy
from velora.model.adapter_file import load_model, read_adapters, save_adapters
from velora.model.velora import VELoRA
from velora.model.weights_source import random_backbone_warning
from velora.training.checkpoint import read_resume_state
from velora.training.datamodule import ClipDataModule
from velora.training.module import VELoRAModule
from velora.training.run import train
from velora.training.schedule import decay_groups, warmup_cosine

CLASSES = 8


def run_config(root: Path, output: Path, *overrides: str, epochs: int = 2) -> Config:
    return make_tiny_config(*overrides, data={"root": str(root)}, train={"epochs": epochs, "output_dir": str(output)})


def adapters_equal(a: Path, b: Path) -> tuple[bool, float]:
    sa, sb = read_adapters(a).state, read_adapters(b).state
    assert sa.keys() == sb.keys()
    diff = max((sa[k] - sb[k]).abs().max().item() for k in sa)
    return all(torch.equal(sa[k], sb[k]) for k in sa), diff


def stop_after_first_epoch():
    """A patch for AdapterCheckpoints.on_validation_end: stop the run after epoch 0, as a crash would."""
    original = run_module.AdapterCheckpoints.on_validation_end

    def on_validation_end(callback, trainer, module):
        original(callback, trainer, module)
        if trainer.current_epoch == 0:
            trainer.should_stop = True

    return on_validation_end


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory):
    """A 2-epoch CPU run of the tiny model (LoRA dropout 0) and its in-memory module."""
    modules = []

    class Recording(VELoRAModule):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            modules.append(self)

    patch = pytest.MonkeyPatch()
    patch.setattr(run_module, "VELoRAModule", Recording)
    try:
        output = tmp_path_factory.mktemp("run")
        cfg = run_config(tiny_dataset, output)
        result = train(cfg)
    finally:
        patch.undo()
    return SimpleNamespace(cfg=cfg, result=result, output=output, module=modules[0])


# ---------------------------------------------------------------- schedule
def test_warmup_cosine_schedule():
    warmup, total, floor = 10, 100, 0.01
    lrs = [warmup_cosine(s, warmup_steps=warmup, total_steps=total, min_ratio=floor) for s in range(total + 5)]
    assert lrs[0] == pytest.approx(1 / warmup)
    assert all(a < b for a, b in zip(lrs[: warmup - 1], lrs[1:warmup])), "warmup must rise"
    assert lrs[warmup] == pytest.approx(1.0) and max(lrs) == pytest.approx(1.0)
    after = lrs[warmup : total + 1]
    assert all(a > b for a, b in zip(after, after[1:])), "cosine must decrease after warmup"
    assert lrs[total] == pytest.approx(floor)
    assert lrs[-1] == pytest.approx(floor), "flat after total_steps"
    mid = warmup + (total - warmup) // 2
    assert lrs[mid] == pytest.approx(floor + (1 - floor) / 2)
    no_warmup = warmup_cosine(0, warmup_steps=0, total_steps=total, min_ratio=floor)
    assert no_warmup == pytest.approx(1.0)


def test_weight_decay_skips_biases_norms_and_vectors(tiny_config):
    model = VELoRA.from_config(tiny_config())
    decay, no_decay = decay_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim < 2 for p in no_decay["params"])
    in_groups = {id(p) for g in (decay, no_decay) for p in g["params"]}
    assert in_groups == {id(p) for p in model.parameters() if p.requires_grad}


# ---------------------------------------------------------------- the weights, said before the first step
class FirstStep(Exception):
    """Raised by StopAtFirstStep."""


class StopAtFirstStep(L.Callback):
    """Reads what was printed before the first training step, then stops the run there."""

    def __init__(self, capsys):
        self.capsys, self.before_first_step = capsys, None

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.before_first_step = self.capsys.readouterr()
        raise FirstStep


def printed_before_first_step(cfg: Config, capsys):
    stop = StopAtFirstStep(capsys)
    with pytest.raises(FirstStep):
        train(cfg, callbacks=[stop])
    return stop.before_first_step


def test_train_says_its_weight_source_before_the_first_step(tiny_dataset, tmp_path, capsys):
    out = printed_before_first_step(run_config(tiny_dataset, tmp_path, "train.logger=none", epochs=1), capsys)
    assert "backbone weights: random initialisation" in out.out
    assert "warning" not in out.err, "a tiny test backbone trained from random weights is not a mistake"


def test_a_random_clip_sized_backbone_warns_in_one_line_naming_the_field(tiny_dataset, tmp_path, capsys):
    # CLIP ViT-B's width (768) with two blocks: the rule is the width, and two blocks keep it fast.
    cfg = make_tiny_config(
        data={"root": str(tiny_dataset)},
        model={"backbone_args": {"depth": 2}},
        train={"output_dir": str(tmp_path), "logger": "none"},
    )
    out = printed_before_first_step(cfg, capsys)
    assert "backbone weights: random initialisation" in out.out
    lines = [line for line in out.err.splitlines() if "model.weights" in line]
    assert len(lines) == 1 and "randomly initialised" in lines[0]
    assert "model.weights=hub" in lines[0] and "768-wide" in lines[0]


def test_the_random_backbone_rule():
    random, hub = {"kind": "none"}, {"kind": "hub", "sha256": "ab"}
    assert random_backbone_warning(random, 768) and random_backbone_warning(random, 1024)
    assert random_backbone_warning(random, 767) is None and random_backbone_warning(random, 128) is None
    assert random_backbone_warning(hub, 768) is None
    assert "\n" not in random_backbone_warning(random, 768)


# ---------------------------------------------------------------- the smoke run and its files
@pytest.mark.slow
def test_cpu_smoke_run_writes_the_expected_files(trained):
    out = trained.output
    for name in (
        "config.yaml",
        "best.safetensors",
        "last.safetensors",
        "checkpoints/last.ckpt",
        "history.json",
        "curves.png",
    ):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert Config.from_dict(yaml.safe_load((out / "config.yaml").read_text())) == trained.cfg
    history = json.loads((out / "history.json").read_text())
    steps_per_epoch = math.ceil(CLASSES * 3 / 4)
    assert [s for s, _ in history["train/loss"]] == list(range(2 * steps_per_epoch))
    assert [s for s, _ in history["val/top1"]] == [steps_per_epoch, 2 * steps_per_epoch]
    assert all(math.isfinite(v) for _, v in history["train/loss"])
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 0.0 <= trained.result.best_val_top1 <= 1.0 and trained.result.best_epoch in (0, 1)
    assert read_adapters(out / "last.safetensors").info["global_step"] == 2 * steps_per_epoch


@pytest.mark.slow
def test_the_papers_protocol_is_recorded_beside_and_changes_nothing(trained, tiny_dataset, tmp_path, capsys):
    # eval.test_every_epoch scores the test split at every validation, for comparison with the
    # paper's protocol: training, the history velora selects on and best.safetensors stay the same.
    out = tmp_path / "paper"
    assert (
        main(["train", "--config", write_config(run_config(tiny_dataset, out, "eval.test_every_epoch=true"), tmp_path)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "paper's protocol, for comparison only" in printed
    for name in ("best.safetensors", "last.safetensors"):
        same, diff = adapters_equal(trained.output / name, out / name)
        assert same, f"{name} differs by up to {diff:.3g} when the test split is also scored"
    history = json.loads((out / "history.json").read_text())
    assert history["val/top1"] == json.loads((trained.output / "history.json").read_text())["val/top1"]
    steps = math.ceil(CLASSES * 3 / 4)
    assert [s for s, _ in history["paper_protocol/test_top1"]] == [steps, 2 * steps]

    record = json.loads((out / "paper_protocol.json").read_text())
    assert "comparison" in record["note"] and "Nothing here was used to select" in record["note"]
    assert [row["epoch"] for row in record["epochs"]] == [0, 1]
    # Each recorded figure is the full test split's top-1 of that epoch's adapters.
    last = evaluate(out / "last.safetensors", output_dir=tmp_path / "eval", progress=False, plot=False)
    assert record["epochs"][1]["test_top1"] == pytest.approx(last["top1"])
    assert last["num_clips"] == CLASSES
    best = max(record["epochs"], key=lambda row: row["test_top1"])
    assert record["best_epoch_on_test"] == best
    assert record["val_selected_epoch"]["epoch"] == trained.result.best_epoch
    assert main(["eval", str(out / "best.safetensors"), "--output", str(tmp_path / "cli")]) == 0
    printed = capsys.readouterr().out
    assert f"top-1 {best['test_top1']:.2%} at epoch {best['epoch']}" in printed.split("paper's protocol")[1]


def write_config(cfg: Config, folder: Path) -> str:
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    return str(path)


def test_adapter_checkpoint_is_small_and_holds_only_trainable_tensors(trained):
    path = trained.output / "best.safetensors"
    assert path.stat().st_size < 1_000_000
    ckpt = read_adapters(path)
    expected = set(trained.module.model.trainable_state_dict())
    assert set(ckpt.state) == expected
    assert not [k for k in ckpt.state if k.startswith("backbone.") and ".adapters." not in k]
    assert ckpt.config == trained.cfg
    assert len(ckpt.class_names) == CLASSES
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata()["format"] == "velora-adapters/1"


def test_resume_checkpoint_holds_only_trainable_tensors(trained):
    ckpt = torch.load(trained.output / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    expected = {f"model.{k}" for k in trained.module.model.trainable_state_dict()}
    assert set(ckpt["state_dict"]) == expected
    assert Config.from_dict(ckpt["velora_config"]) == trained.cfg
    assert ckpt["optimizer_states"] and ckpt["lr_schedulers"]


def test_trained_adapters_round_trip_through_load_model(trained, tiny_dataset):
    trained_model = trained.module.model.eval()
    loaded, ckpt = load_model(trained.output / "last.safetensors")
    assert not loaded.training
    batch = torch.utils.data.default_collate([make_dataset(trained.cfg, "test")[i] for i in range(4)])
    with torch.no_grad():
        expected = trained_model(batch["rgb"], batch["events"]).logits
        got = loaded(batch["rgb"], batch["events"]).logits
    assert torch.equal(got, expected)
    # And training changed something: a fresh model gives other logits.
    with torch.no_grad():
        fresh = VELoRA.from_config(trained.cfg).eval()(batch["rgb"], batch["events"]).logits
    assert not torch.allclose(fresh, expected, atol=1e-4)


def test_save_and_load_adapters_round_trip(tiny_config, tmp_path):
    cfg = tiny_config(model={"fusion_block": "random_trainable", "recon_decoder": "block"})
    torch.manual_seed(3)
    model = VELoRA.from_config(cfg).eval()
    fill_adapters(model, seed=3)
    with torch.no_grad():
        model.head.weight.normal_()
    path = save_adapters(tmp_path / "a.safetensors", model, cfg, [f"c{i}" for i in range(CLASSES)], {"epoch": 4})
    loaded, ckpt = load_model(path)
    assert ckpt.info == {"epoch": 4} and ckpt.class_names[3] == "c3"
    clips = random_clip()
    with torch.no_grad():
        assert torch.equal(loaded(clips, clips).logits, model(clips, clips).logits)
    assert not (tmp_path / "a.safetensors.tmp").exists()


def test_checkpoint_that_does_not_fit_the_model_is_refused(tiny_config, tmp_path):
    cfg = tiny_config()
    path = save_adapters(
        tmp_path / "a.safetensors", VELoRA.from_config(tiny_config("lora.rank=0")), cfg, ["a"] * CLASSES
    )
    with pytest.raises(CheckpointError, match="does not fit the model"):
        load_model(path)
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_model(tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing.safetensors")


# ---------------------------------------------------------------- resume and determinism
@pytest.mark.slow
def test_resume_continues_from_the_last_checkpoint(tiny_dataset, tmp_path):
    # The literal workflow: a 1-epoch run, extended to 2 epochs. (Its adapters cannot equal an
    # uninterrupted 2-epoch run: the cosine schedule's length depends on train.epochs.)
    out = tmp_path / "run"
    train(run_config(tiny_dataset, out, epochs=1))
    first = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    steps = math.ceil(CLASSES * 3 / 4)
    assert first["global_step"] == steps
    before = read_adapters(out / "last.safetensors")

    result = train(run_config(tiny_dataset, out, epochs=2), resume=str(out / "checkpoints" / "last.ckpt"))
    after = read_adapters(out / "last.safetensors")
    assert after.info["global_step"] == 2 * steps and after.info["epoch"] == 1
    assert (
        torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"]
        == 2 * steps
    )
    assert not all(torch.equal(before.state[k], after.state[k]) for k in before.state), "the resumed epoch trained"
    history = result.history
    assert [s for s, _ in history["train/loss"]] == list(range(2 * steps)), "history continues across the resume"
    assert [s for s, _ in history["val/top1"]] == [steps, 2 * steps]


@pytest.mark.slow
@pytest.mark.parametrize("val_every", [1, 2], ids=["validated-epochs", "unvalidated-epochs"])
def test_resume_state_is_written_at_every_epoch_end(tiny_dataset, tmp_path, monkeypatch, val_every):
    # With no step checkpoints, a crash in epoch 3 must still resume from the end of epoch 2.
    out = tmp_path / "run"
    seen = []

    class ReadLastCkpt(L.Callback):
        def on_train_epoch_end(self, trainer, module):  # runs after ResumeCheckpoint's
            seen.append(read_resume_state(out / "checkpoints" / "last.ckpt")["global_step"])

    add_trainer_callback(monkeypatch, ReadLastCkpt())
    train(run_config(tiny_dataset, out, "train.checkpoint_every_steps=0", f"train.val_every={val_every}", epochs=3))
    steps = math.ceil(CLASSES * 3 / 4)
    assert seen == [steps, 2 * steps, 3 * steps]


@pytest.mark.slow
@pytest.mark.parametrize("lora_dropout", [0.0, 0.1])
def test_interrupted_and_resumed_run_equals_an_uninterrupted_run(
    trained, tiny_dataset, tmp_path, monkeypatch, lora_dropout
):
    # Interrupted inside a 2-epoch run, so both runs share one learning-rate schedule. With LoRA
    # dropout the resumed run must also continue the random stream of the dropout masks.
    overrides = (f"lora.dropout={lora_dropout}",)
    full, interrupted = tmp_path / "full", tmp_path / "interrupted"
    if lora_dropout == trained.cfg.lora.dropout:
        full = trained.output
    else:
        train(run_config(tiny_dataset, full, *overrides))
    with monkeypatch.context() as patch:
        patch.setattr(run_module.AdapterCheckpoints, "on_validation_end", stop_after_first_epoch())
        train(run_config(tiny_dataset, interrupted, *overrides))
    assert read_adapters(interrupted / "last.safetensors").info["epoch"] == 0
    train(run_config(tiny_dataset, interrupted, *overrides), resume=str(interrupted / "checkpoints" / "last.ckpt"))
    assert read_adapters(interrupted / "last.safetensors").info["global_step"] == 2 * math.ceil(CLASSES * 3 / 4)
    same, diff = adapters_equal(full / "last.safetensors", interrupted / "last.safetensors")
    assert same, f"resumed adapters differ from the uninterrupted run by up to {diff:.3g}"


@pytest.mark.slow
def test_same_seed_gives_identical_adapters(tiny_dataset, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        train(run_config(tiny_dataset, out, "lora.dropout=0.1", "model.modality_dropout=0.3"))
    same, diff = adapters_equal(a / "last.safetensors", b / "last.safetensors")
    assert same, f"two runs with one seed differ by up to {diff:.3g}"


@pytest.mark.slow
def test_other_seed_gives_other_adapters(trained, tiny_dataset, tmp_path):
    train(run_config(tiny_dataset, tmp_path, "train.seed=1"))
    same, _ = adapters_equal(trained.output / "last.safetensors", tmp_path / "last.safetensors")
    assert not same


def test_training_order_depends_only_on_seed_and_epoch(tiny_dataset):
    """Each epoch gets its own shuffle, and re-iterating an epoch's loader repeats it (resume-safe)."""
    data = ClipDataModule(run_config(tiny_dataset, Path("unused")))

    def order(epoch: int, iterations: int = 1) -> list[int]:
        steps = math.ceil(CLASSES * 3 / 4)  # at an epoch's start, as Lightning's restored counters say
        data.trainer = SimpleNamespace(current_epoch=epoch, global_step=epoch * steps, global_rank=0, world_size=1)
        loader = data.train_dataloader()
        for sampler in (loader.sampler, loader.batch_sampler):
            if hasattr(sampler, "set_epoch"):  # what Lightning does each epoch
                sampler.set_epoch(epoch)
        for _ in range(iterations - 1):
            list(loader.batch_sampler)
        return [i for batch in loader.batch_sampler for i in batch]

    assert sorted(order(0)) == list(range(CLASSES * 3))
    assert order(1) == order(1), "the same epoch must give the same order"
    assert order(1, iterations=2) == order(1), "the order must not depend on how often the loader was iterated"
    assert order(0) != order(1), "every epoch must reshuffle"


def test_modality_dropout_never_drops_both_and_is_seeded(tiny_config):
    module = VELoRAModule(tiny_config(model={"modality_dropout": 0.5}), [str(i) for i in range(CLASSES)])
    batch = {"rgb": random_clip(), "events": random_clip(), "label": torch.tensor([0, 1])}
    kept = []
    for step in range(40):
        module.cfg.train.seed = step  # global_step is 0 without a trainer; the seed varies the draw
        out = module.drop_modalities(batch)
        assert "rgb" in out or "events" in out
        assert module.drop_modalities(batch).keys() == out.keys(), "the draw depends on (seed, step) only"
        kept.append(tuple(sorted(k for k in out if k in ("rgb", "events"))))
    assert {("events",), ("rgb",), ("events", "rgb")} == set(kept)


# ---------------------------------------------------------------- eval and predict
def test_velora_eval_writes_the_report(trained, tmp_path, capsys):
    ckpt = trained.output / "best.safetensors"
    assert main(["eval", str(ckpt), "--output", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "eval_test.json").read_text())
    for key in ("top1", "top5", "per_class", "confusion_matrix"):
        assert key in report
    assert report["num_clips"] == CLASSES and report["split"] == "test"
    assert len(report["per_class"]) == CLASSES
    cm = report["confusion_matrix"]
    assert len(cm) == CLASSES and sum(map(sum, cm)) == CLASSES
    assert report["top1"] == pytest.approx(sum(cm[i][i] for i in range(CLASSES)) / CLASSES)
    assert report["top1"] <= report["top5"] <= 1.0
    assert (tmp_path / "confusion_test.png").read_bytes()[:4] == b"\x89PNG"
    assert "top-1" in capsys.readouterr().out

    # The report agrees with the model's own predictions.
    model, saved = load_model(ckpt)
    dataset = make_dataset(saved.config, "test")
    batch = torch.utils.data.default_collate([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        predictions = model(batch["rgb"], batch["events"]).logits.argmax(-1)
    assert report["top1"] == pytest.approx((predictions == batch["label"]).float().mean().item())


def test_velora_eval_reports_the_single_view_and_the_multi_view_figure(trained, tmp_path, capsys):
    ckpt = trained.output / "best.safetensors"
    assert main(["eval", str(ckpt), "--output", str(tmp_path), "eval.views=3", "eval.crops=3"]) == 0
    printed = capsys.readouterr().out
    assert "(one view: segment centres, whole frame)" in printed
    assert "9 views (3 temporal x 3 crops, probabilities averaged)" in printed
    report = json.loads((tmp_path / "eval_test.json").read_text())
    single = evaluate(ckpt, output_dir=tmp_path / "single", progress=False, plot=False)
    assert single["views"] is None and report["top1"] == single["top1"], "the single view is unchanged by views"

    # The multi-view figure: each clip's scores averaged over its 9 views, each view its own input.
    model, saved = load_model(ckpt)
    dataset = make_dataset(saved.config, "test")
    views = eval_views(3, 3, saved.config.eval.crop_fraction)
    logits = []
    for view in views:
        dataset.sampling = dataclasses.replace(dataset.sampling, view=view)
        batch = torch.utils.data.default_collate([dataset[i] for i in range(len(dataset))])
        with torch.no_grad():
            logits.append(model(batch["rgb"], batch["events"]).logits)
    logits = torch.stack(logits)  # (views, N, C)
    assert not torch.allclose(logits[0], logits[-1]), "the views must be different inputs"
    labels = batch["label"].numpy()
    by_probabilities = logits.softmax(-1).mean(0).numpy()
    assert report["views"]["top1"] == pytest.approx(topk_accuracy(by_probabilities, labels, 1))
    assert report["views"]["views"] == 9 and report["views"]["average"] == "probabilities"
    scores, _ = predict_views(model, make_dataset(saved.config, "test"), views, average="logits")
    assert np.allclose(scores, logits.mean(0).softmax(-1).numpy(), atol=1e-6)


def test_evaluate_without_rgb_on_a_two_modality_model(trained, tmp_path):
    report = evaluate(trained.output / "best.safetensors", modalities=["event"], output_dir=tmp_path, progress=False)
    assert report["modalities"] == ["event"] and report["num_clips"] == CLASSES
    # Its own files: a missing-sensor evaluation never overwrites the full one.
    assert (tmp_path / "eval_test_event.json").is_file() and not (tmp_path / "eval_test.json").exists()


def test_evaluate_rejects_a_modality_the_model_lacks(tiny_dataset, tmp_path):
    cfg = make_tiny_config(data={"root": str(tiny_dataset), "modalities": ["event"]})
    path = save_adapters(tmp_path / "event.safetensors", VELoRA.from_config(cfg), cfg, [str(i) for i in range(CLASSES)])
    with pytest.raises(DataError, match="trained on event and cannot use rgb"):
        evaluate(path, modalities=["rgb"], progress=False)


def test_predict_returns_top5_and_writes_a_panel(trained, tiny_dataset, tmp_path):
    sample = (tiny_dataset / "test_label.txt").read_text().split()[0]
    panel = tmp_path / "panel.png"
    top = predict(trained.output / "best.safetensors", tiny_dataset / sample, panel=panel, ground_truth="x")
    assert len(top) == 5
    names = read_adapters(trained.output / "best.safetensors").class_names
    assert all(name in names for name, _ in top) and len({n for n, _ in top}) == 5
    probs = [p for _, p in top]
    assert probs == sorted(probs, reverse=True)
    assert all(0 <= p <= 1 for p in probs) and sum(probs) <= 1 + 1e-6
    assert panel.read_bytes()[:4] == b"\x89PNG"
    events_only = predict(trained.output / "best.safetensors", tiny_dataset / sample, modalities=["event"])
    assert len(events_only) == 5 and events_only != top


def test_predict_on_a_raw_recording(trained, real_data_dir, tmp_path, capsys):
    # A new recording straight from the camera: sampled over its whole length, as training on the
    # recordings layout samples it (see RecordingDataset), with no conversion step.
    recording = real_data_dir / "davis346" / "street_davis346.aedat4"
    checkpoint = trained.output / "best.safetensors"
    panel = tmp_path / "panel.png"
    top = predict(checkpoint, recording, panel=panel)
    names = read_adapters(checkpoint).class_names
    assert len(top) == 5 and all(name in names for name, _ in top)
    assert panel.read_bytes()[:4] == b"\x89PNG"
    assert predict(checkpoint, recording) == top, "evaluation sampling is deterministic"
    assert main(["predict", str(checkpoint), str(recording)]) == 0
    assert top[0][0] in capsys.readouterr().out

    corrupt = tmp_path / "cut.aedat4"
    corrupt.write_bytes(recording.read_bytes()[:5000])
    with pytest.raises(DataError, match="cut.aedat4"):
        predict(checkpoint, corrupt)
    not_a_recording = tmp_path / "notes.txt"
    not_a_recording.write_text("hello")
    with pytest.raises(
        DataError, match=r"notes.txt: unsupported event file suffix '.txt'; supported suffixes: .*\.raw"
    ):
        predict(checkpoint, not_a_recording)
    with pytest.raises(DataError, match="does not exist"):
        predict(checkpoint, tmp_path / "missing.aedat4")


@pytest.mark.slow
def test_evaluate_on_raw_recordings_with_data_overrides(trained, real_data_dir, tmp_path, capsys):
    # A model trained on frame folders, evaluated on raw recordings of two of its classes: labels
    # follow the checkpoint's class names, not the order of the folders present.
    checkpoint = trained.output / "best.safetensors"
    names = read_adapters(checkpoint).class_names
    root = tmp_path / "recordings"
    for name in (names[5], names[2]):
        (root / "test" / name).mkdir(parents=True)
        (root / "test" / name / "street.aedat4").symlink_to(real_data_dir / "davis346" / "street_davis346.aedat4")
    overrides = ["data.layout=recordings", f"data.root={root}", "data.num_workers=0"]
    report = evaluate(checkpoint, split="test", overrides=overrides, output_dir=tmp_path / "eval", progress=False)
    support = {row["class"]: row["support"] for row in report["per_class"]}
    assert report["num_clips"] == 2 and support[names[5]] == 1 and support[names[2]] == 1
    assert sum(support.values()) == 2

    assert main(["eval", str(checkpoint), "--output", str(tmp_path / "cli"), *overrides]) == 0
    assert "test: 2 clips" in capsys.readouterr().out
    with pytest.raises(ConfigError, match=r"only data.\* and eval.\* settings can be changed at evaluation, not model"):
        evaluate(checkpoint, overrides=["model.image_size=64"], progress=False)
    with pytest.raises(ConfigError, match="data.nonsense"):
        evaluate(checkpoint, overrides=["data.nonsense=1"], progress=False)


# ---------------------------------------------------------------- data errors
def test_wrong_data_root_names_the_path(tiny_dataset, tmp_path, trained):
    missing = tmp_path / "no_such_dataset"
    with pytest.raises(DataError, match=str(missing)):
        train(make_tiny_config(data={"root": str(missing)}, train={"output_dir": str(tmp_path / "out")}))
    with pytest.raises(DataError, match=str(missing)):
        evaluate(trained.output / "best.safetensors", data_root=str(missing), progress=False)
    with pytest.raises(DataError, match="data.root is empty"):
        train(make_tiny_config(train={"output_dir": str(tmp_path / "out")}))


@pytest.mark.parametrize("num_classes", [10, 4])
def test_num_classes_mismatch_tells_the_right_value(tiny_dataset, tmp_path, num_classes):
    cfg = make_tiny_config(
        data={"root": str(tiny_dataset)}, model={"num_classes": num_classes}, train={"output_dir": str(tmp_path)}
    )
    with pytest.raises(DataError) as err:
        train(cfg)
    assert f"model.num_classes={CLASSES}" in str(err.value)
