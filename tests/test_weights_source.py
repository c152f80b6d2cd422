"""model.weights: hub means the paper's OpenAI CLIP file, named and recorded exactly; no network in tests."""

from __future__ import annotations

import hashlib
import re
import warnings
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from conftest import make_tiny_config
from velora.cli import main
from velora.config import load_config
from velora.model.adapter_file import load_model, read_adapters, save_adapters
from velora.model.backbone import BackboneError
from velora.model.velora import VELoRA
from velora.model.weights_source import hub_weights, split_backbone

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "velora" / "configs"
OPENAI = "timm/vit_base_patch16_clip_224.openai"
TINY_ARGS = {"embed_dim": 32, "depth": 3, "num_heads": 2}


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS.glob("*.yaml")))
def test_every_shipped_config_names_its_weights_explicitly(name):
    cfg = load_config(name)
    if cfg.model.weights != "hub":  # the demo ships its own backbone
        assert cfg.model.weights.startswith("shipped:")
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an untagged name would warn about timm's default tag
        hub = hub_weights(cfg.model.backbone)
    assert (hub.repo_id, hub.tag, hub.filename) == (OPENAI, "openai", "model.safetensors")


def test_an_untagged_name_says_which_weights_hub_would_mean():
    with pytest.warns(UserWarning, match=r"timm's default, 'metaclip_2pt5b'.*\.openai for OpenAI's CLIP"):
        assert hub_weights("vit_base_patch16_clip_quickgelu_224").repo_id == "timm/vit_base_patch16_clip_224.metaclip_2pt5b"


def test_unknown_architectures_and_tags_list_what_exists():
    with pytest.raises(BackboneError, match="not a timm architecture"):
        split_backbone("vit_base_patch16_clip_gelu_224")
    with pytest.raises(BackboneError, match=r"no pretrained tag 'openai2'.*openai"):
        split_backbone("vit_base_patch16_clip_quickgelu_224.openai2")


def tiny_hub_cache(cache: Path, seed: int = 11) -> Path:
    """A Hugging Face cache holding a tiny ViT as the hub file of the OpenAI tag."""
    torch.manual_seed(seed)
    vit = timm.create_model("vit_base_patch16_clip_quickgelu_224", num_classes=0, img_size=32, **TINY_ARGS)
    snapshot = cache / "models--timm--vit_base_patch16_clip_224.openai" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(snapshot / "model.safetensors"))
    return snapshot / "model.safetensors"


def hub_config(tmp_path):
    return make_tiny_config(model={"backbone": "vit_base_patch16_clip_quickgelu_224.openai", "weights": "hub"})


def test_offline_without_the_file_one_error_names_it_where_to_put_it_and_the_conversion(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    with pytest.raises(BackboneError) as error:
        VELoRA.from_config(hub_config(tmp_path))
    message = str(error.value)
    assert f"{OPENAI}/model.safetensors" in message and "HF_HUB_OFFLINE is set" in message
    assert "model.weights=/path/to/model.safetensors" in message and str(tmp_path / "empty_cache") in message
    assert "velora convert-weights ViT-B-16.pt" in message and "--allow-torchscript" in message
    assert "openaipublic.azureedge.net/clip/models/5806e77c" in message


def test_a_cached_hub_file_builds_offline_and_every_checkpoint_records_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    hub_file = tiny_hub_cache(tmp_path / "cache")
    digest = hashlib.sha256(hub_file.read_bytes()).hexdigest()
    cfg = hub_config(tmp_path)
    model = VELoRA.from_config(cfg)
    from safetensors.torch import load_file

    assert torch.equal(model.backbone.pos_embed, load_file(str(hub_file))["pos_embed"]), "the hub file's weights"
    source = model.weights_source
    assert (source["kind"], source["hub_id"], source["tag"], source["file"], source["sha256"]) == (
        "hub", OPENAI, "openai", "model.safetensors", digest)
    path = save_adapters(tmp_path / "a.safetensors", model, cfg, [str(i) for i in range(8)])
    assert read_adapters(path).weights_source == source
    # velora info names the tag and the sha256 without building the model from the file.
    config = tmp_path / "hub.yaml"
    config.write_text(
        "model: {backbone: vit_base_patch16_clip_quickgelu_224.openai, weights: hub, image_size: 32, num_classes: 8,"
        " backbone_args: {embed_dim: 32, depth: 3, num_heads: 2}}\nlora: {rank: 2, alpha: 4.0}\n"
    )
    assert main(["info", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"hub {OPENAI} \(tag openai, file model.safetensors, sha256 {digest}\)", out)


def test_a_local_file_is_recorded_with_its_path_and_sha256_and_a_changed_file_warns(tmp_path):
    torch.manual_seed(3)
    vit = timm.create_model("vit_base_patch16_clip_quickgelu_224", num_classes=0, img_size=32, **TINY_ARGS)
    weights = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(weights))
    cfg = make_tiny_config(model={"weights": str(weights)})
    model = VELoRA.from_config(cfg)
    assert model.weights_source == {
        "kind": "local", "path": str(weights), "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()
    }
    path = save_adapters(tmp_path / "a.safetensors", model, cfg, [str(i) for i in range(8)])
    torch.manual_seed(4)  # other weights at the same path: the adapters no longer fit them
    other = timm.create_model("vit_base_patch16_clip_quickgelu_224", num_classes=0, img_size=32, **TINY_ARGS)
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(weights))
    with pytest.warns(UserWarning, match="trained on backbone weights with sha256"):
        load_model(path)
