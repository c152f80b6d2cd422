"""velora package: a run -> a folder that velora.load reads and that predicts as the run does, with a
model card; `hf:org/name` reads such a folder through the Hugging Face cache (no network in tests)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import timm
import torch
import yaml
from safetensors.torch import save_file

import velora
from conftest import fill_adapters, make_tiny_config, random_clip
from velora.cli import main
from velora.data.factory import make_dataset
from velora.errors import CheckpointError
from velora.evaluation import package as package_module
from velora.evaluation.model_card import weights_licence
from velora.evaluation.package import PackageError, write_package
from velora.model.adapter_file import read_adapters, save_adapters
from velora.model.backbone import BackboneError
from velora.model.velora import VELoRA

REPO = "velora-test/tiny-poker"
COMMIT = "a" * 40


@pytest.fixture(scope="module")
def evaluated_run(tiny_run, tmp_path_factory) -> Path:
    """A copy of the tiny run with its test evaluation (eval_test.json), as velora eval leaves it."""
    run = tmp_path_factory.mktemp("evaluated") / "run"
    shutil.copytree(tiny_run, run)
    velora.load(run).evaluate("test", progress=False)
    return run


def clips_of(recognizer, root: Path, n: int = 4) -> list[Path]:
    return [root / entry.sample for entry in make_dataset(recognizer.config, "test").entries[:n]]


def assert_same_predictions(a, b, clips) -> None:
    for x, y in zip(a.predict(clips, top_k=8), b.predict(clips, top_k=8)):
        assert x.topk == y.topk  # the same adapters on the same backbone: identical, not close


def test_a_package_loads_and_predicts_identically_to_its_run(evaluated_run, tiny_dataset, tmp_path):
    out = write_package(evaluated_run, tmp_path / "tiny-poker", dataset="tiny synthetic poker")
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "adapters.safetensors",
        "class_names.json",
        "config.yaml",
        "eval_test.json",
        "weights_source.json",
    ]
    saved = read_adapters(evaluated_run / "best.safetensors")
    assert (out / "adapters.safetensors").read_bytes() == (evaluated_run / "best.safetensors").read_bytes()
    assert json.loads((out / "class_names.json").read_text()) == saved.class_names
    assert json.loads((out / "weights_source.json").read_text()) == saved.weights_source
    assert yaml.safe_load((out / "config.yaml").read_text()) == yaml.safe_load(yaml.safe_dump(saved.config.to_dict()))
    packaged, run = velora.load(out), velora.load(evaluated_run)
    assert packaged.checkpoint == out / "adapters.safetensors" and packaged.class_names == run.class_names
    assert_same_predictions(packaged, run, clips_of(run, tiny_dataset))


def test_the_model_card_states_task_data_protocol_metrics_share_and_licence(evaluated_run, tmp_path):
    out = write_package(evaluated_run, tmp_path / "card", dataset="tiny synthetic poker")
    card = (out / "README.md").read_text()
    report = json.loads((evaluated_run / "eval_test.json").read_text())
    saved = read_adapters(evaluated_run / "best.safetensors")
    assert card.startswith("---\nlibrary_name: velora\n")
    assert "into 8 classes from RGB frames + event frames" in card
    assert "| dataset | tiny synthetic poker (`data.root` at training:" in card
    assert "| splits | train `train_label.txt`, validation `val_label.txt`, test `test_label.txt` |" in card
    assert f"epoch {saved.info['epoch'] + 1} of 1" in card and "the test split was not used for selection" in card
    assert f"| validation (selection) | rgb+event | {100 * saved.info['val_top1']:.1f} %" in card
    assert f"| test | rgb+event | {100 * report['top1']:.1f} % | {100 * report['top5']:.1f} %" in card
    assert "velora eval <this folder> --split test --data-root /path/to/dataset" in card
    trainable = sum(t.numel() for t in saved.state.values())
    assert f"| trainable | {trainable:,d} of " in card
    assert "none needed: the backbone is randomly initialised" in card  # the tiny run's weights: none
    # Evaluations with a sensor missing (the demo writes them to without_<absent>/) get rows and files.
    demo_like = tmp_path / "demo_like"
    shutil.copytree(evaluated_run, demo_like)
    missing = velora.load(demo_like).evaluate(
        "test", modalities=["event"], output_dir=demo_like / "without_rgb", progress=False
    )
    out = write_package(demo_like, tmp_path / "card2")
    assert f"| test | event only (a sensor missing) | {100 * missing['top1']:.1f} %" in (out / "README.md").read_text()
    assert json.loads((out / "eval_test_event.json").read_text())["top1"] == missing["top1"]
    # Without an evaluation the card says so instead of inventing numbers.
    bare = tmp_path / "bare"
    shutil.copytree(evaluated_run, bare)
    (bare / "eval_test.json").unlink()
    assert "not evaluated when packaged" in (write_package(bare, tmp_path / "card3") / "README.md").read_text()


@pytest.mark.parametrize(
    "source, licence",
    [
        ({"kind": "hub", "hub_id": "timm/vit_base_patch16_clip_224.openai", "tag": "openai"}, "MIT: OpenAI's CLIP"),
        ({"kind": "shipped", "path": "fractal_vit_tiny64.safetensors"}, "MIT: velora's own"),
        ({"kind": "hub", "hub_id": "timm/vit_base_patch16_clip_224.metaclip", "tag": "metaclip"}, "unknown to velora"),
        ({"kind": "local", "path": "/w/vit.safetensors", "sha256": "0" * 64}, "unknown: local weights"),
    ],
)
def test_the_licence_of_the_base_weights(source, licence):
    assert weights_licence(source).startswith(licence)


def hub_cache(cache: Path, package: Path, repo: str = REPO) -> Path:
    """A Hugging Face cache holding `package` as the main revision of model repository `repo`."""
    root = cache / f"models--{repo.replace('/', '--')}"
    shutil.copytree(package, root / "snapshots" / COMMIT)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(COMMIT)
    return root


def test_hf_ids_load_offline_from_a_prefilled_cache(evaluated_run, tiny_dataset, tmp_path, monkeypatch):
    package = write_package(evaluated_run, tmp_path / "tiny-poker")
    hub_cache(tmp_path / "cache", package)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    run = velora.load(evaluated_run)
    for spec in (f"hf:{REPO}", f"hf:{REPO}@{COMMIT}"):
        recognizer = velora.load(spec)
        snapshot = tmp_path / "cache" / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT
        assert recognizer.checkpoint == snapshot / "adapters.safetensors"
        assert_same_predictions(recognizer, run, clips_of(run, tiny_dataset, 2))
    # HF_HOME is read at the call too: its hub/ folder is the cache when HF_HUB_CACHE is not set.
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    hub_cache(tmp_path / "home" / "hub", package)
    assert velora.load(f"hf:{REPO}").checkpoint.is_relative_to(tmp_path / "home" / "hub")


def test_an_offline_miss_names_the_repository_and_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(CheckpointError) as error:
        velora.load(f"hf:{REPO}")
    message = str(error.value)
    assert f"cannot get {REPO} from the Hugging Face hub" in message and "HF_HUB_OFFLINE is set" in message
    assert str(tmp_path / "empty") in message and f"hf download {REPO}" in message
    for bad in ("hf:no-slash", "hf:a/b/c", f"hf:{REPO}@"):
        with pytest.raises(CheckpointError, match="is not a hub model id"):
            velora.load(bad)


def test_a_hub_folder_that_is_not_a_package_says_what_it_holds(tmp_path, monkeypatch):
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.safetensors").write_bytes(b"")
    hub_cache(tmp_path / "cache", other)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    holds = r"not a folder written by velora package: it has no adapters.safetensors \(it holds model.safetensors\)"
    with pytest.raises(CheckpointError, match=holds):
        velora.load(f"hf:{REPO}")


def test_bad_packaging_requests_are_refused_and_nothing_is_half_written(evaluated_run, tmp_path, monkeypatch, capsys):
    out = write_package(evaluated_run, tmp_path / "pkg")
    with pytest.raises(PackageError, match="exists; choose another folder or pass --force"):
        write_package(evaluated_run, out)
    with pytest.raises(PackageError, match="has no best.safetensors"):
        write_package(tmp_path, tmp_path / "x")
    with pytest.raises(PackageError, match="the run's own folder"):
        write_package(evaluated_run, evaluated_run, force=True)

    def broken(*args, **kwargs):
        raise RuntimeError("card failed")

    monkeypatch.setattr(package_module, "model_card", broken)
    with pytest.raises(RuntimeError, match="card failed"):
        write_package(evaluated_run, tmp_path / "new")
    with pytest.raises(RuntimeError, match="card failed"):
        write_package(evaluated_run, out, force=True)  # the old package stays as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]
    assert (out / "README.md").is_file()
    monkeypatch.undo()
    assert main(["package", str(evaluated_run), str(out), "--force", "--name", "poker-tiny"]) == 0
    assert (out / "README.md").read_text().count("# poker-tiny") == 1
    assert main(["package", str(evaluated_run), str(out)]) == 2
    assert "velora package: error:" in capsys.readouterr().err


def test_a_package_trained_on_a_local_file_loads_where_that_file_sits_elsewhere(tmp_path):
    def tiny_vit(seed: int, path: Path) -> Path:
        torch.manual_seed(seed)
        vit = timm.create_model(
            "vit_base_patch16_clip_quickgelu_224", num_classes=0, img_size=32, embed_dim=32, depth=3, num_heads=2
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(path))
        return path

    trained_on = tiny_vit(3, tmp_path / "training-machine" / "vit.safetensors")
    cfg = make_tiny_config(model={"weights": str(trained_on)})
    model = VELoRA.from_config(cfg).eval()
    fill_adapters(model)
    save_adapters(tmp_path / "run" / "best.safetensors", model, cfg, [str(i) for i in range(8)])
    package = write_package(tmp_path / "run", tmp_path / "pkg")
    card = (package / "README.md").read_text()
    assert "local file `vit.safetensors`, sha256 `" in card and "unknown: local weights" in card
    here = tmp_path / "here.safetensors"
    trained_on.rename(here)
    with pytest.raises(BackboneError, match="does not exist"):
        velora.load(package)
    recognizer = velora.load(package, weights=here)
    assert recognizer.config.model.weights == str(here)
    clip = random_clip(2)
    with torch.no_grad():
        assert torch.equal(recognizer.model(clip, clip.flip(0)).logits, model(clip, clip.flip(0)).logits)
    with pytest.warns(UserWarning, match="trained on backbone weights with sha256"):
        velora.load(package, weights=tiny_vit(4, tmp_path / "other.safetensors"))
    (tmp_path / "x.onnx").write_bytes(b"")
    with pytest.raises(CheckpointError, match="weights= is for adapter files"):
        velora.load(tmp_path / "x.onnx", weights=here)
