"""The shipped backbone: fractal categories, the pre-training recipe, the weights in the package."""

import hashlib
import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import make_tiny_config
from velora.cli import main
from velora.config import load_config
from velora.model.backbone import BackboneError, build_backbone, normalization
from velora.model.velora import VELoRA
from velora.model.weights import SHIPPED_DIR, resolve_weights
from velora.pretrain.config import PretrainConfig
from velora.pretrain.fractal import make_categories, render_images, render_masks
from velora.pretrain.train import pretrain

SHIPPED = "shipped:fractal_vit_tiny64"


# ---- fractal categories --------------------------------------------------------------------


def test_fractal_categories_and_images_are_deterministic():
    a, b = make_categories(6, seed=3, image_size=32), make_categories(6, seed=3, image_size=32)
    assert torch.equal(a.maps, b.maps) and torch.equal(a.probs, b.probs)
    assert not torch.equal(a.maps, make_categories(6, seed=4, image_size=32).maps)
    labels = torch.arange(6)
    first = render_images(a, labels, 32, torch.Generator().manual_seed(1))
    again = render_images(a, labels, 32, torch.Generator().manual_seed(1))
    assert first.shape == (6, 3, 32, 32) and torch.equal(first, again)
    assert 0.0 <= first.min() and first.max() <= 1.0
    assert torch.allclose(a.probs.sum(1), torch.ones(6))


def test_fractal_categories_are_distinct_and_fill_the_image():
    categories = make_categories(8, seed=0, image_size=32)
    masks = render_masks(categories, torch.arange(8), 32, torch.Generator().manual_seed(0), augment=False) > 0.5
    assert (masks.float().mean(dim=(1, 2)) >= 0.05).all()  # the filling-rate filter kept them visible
    for i in range(8):
        for j in range(i + 1, 8):
            iou = (masks[i] & masks[j]).sum() / (masks[i] | masks[j]).sum()
            assert iou < 0.9, (i, j, float(iou))


# ---- the recipe ------------------------------------------------------------------------------


def test_a_tiny_pretraining_run_writes_loadable_weights_and_a_manifest(tmp_path):
    out = tmp_path / "tiny.safetensors"
    cfg = PretrainConfig(
        output=str(out),
        embed_dim=32,
        depth=2,
        num_heads=2,
        image_size=32,
        num_categories=4,
        steps=3,
        batch_size=8,
        warmup_steps=1,
        val_images=8,
        log_every=1,
        threads=1,
    )
    manifest = pretrain(cfg, log=lambda line: None)
    stored = json.loads((tmp_path / "tiny.safetensors.json").read_text())
    assert stored["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest() == manifest["sha256"]
    assert stored["settings"]["steps"] == 3 and stored["settings"]["seed"] == 0
    assert "python -m velora.pretrain" in stored["command"] and len(stored["history"]) == 3
    assert stored["cpu"]["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert stored["cpu"]["machine"] and isinstance(stored["cpu"]["isa_flags"], list)
    tensors = load_file(str(out))
    assert not any(k.startswith("head.") for k in tensors)
    model = VELoRA.from_config(
        make_tiny_config(model={"weights": str(out), "backbone_args": {}, "high_level_blocks": 1})
    )
    assert len(model.backbone.blocks) == 2 and model.backbone.embed_dim == 32
    assert torch.equal(model.backbone.blocks[1].mlp.fc2.weight, tensors["blocks.1.mlp.fc2.weight"])


def test_a_rerun_writes_the_same_file(tmp_path):
    """Bit-identical on one machine: the same weights, and the same bytes around them (safetensors
    writes its metadata map in a random order, so the file holds one metadata key)."""
    digests = []
    for name in ("a", "b"):
        cfg = PretrainConfig(
            output=str(tmp_path / name / "tiny.safetensors"),
            embed_dim=32,
            depth=2,
            num_heads=2,
            image_size=32,
            num_categories=4,
            steps=2,
            batch_size=8,
            warmup_steps=1,
            val_images=8,
            log_every=1,
        )
        digests.append(pretrain(cfg, log=lambda line: None)["sha256"])
    assert digests[0] == digests[1]


# ---- the weights inside the package ------------------------------------------------------------


def test_shipped_weights_exist_are_small_and_match_their_manifest():
    path = resolve_weights(SHIPPED)
    assert path.parent == SHIPPED_DIR and path.is_file()
    assert path.stat().st_size <= 10_000_000
    manifest = json.loads(path.with_name(path.name + ".json").read_text())
    assert manifest["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert manifest["settings"]["image_size"] == load_config("demo").model.image_size
    assert "velora.pretrain" in manifest["command"]


def test_the_demo_config_loads_the_shipped_weights_and_their_normalisation():
    cfg = load_config("demo").model
    assert cfg.weights == SHIPPED
    backbone = build_backbone(cfg)
    tensors = load_file(str(resolve_weights(SHIPPED)))
    for name, value in backbone.state_dict().items():
        assert torch.equal(value, tensors[name].float()), name
    assert normalization(backbone) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert not any(p.requires_grad for p in backbone.parameters())


def test_an_unknown_shipped_name_lists_the_shipped_ones():
    with pytest.raises(BackboneError, match="fractal_vit_tiny64"):
        build_backbone(make_tiny_config(model={"weights": "shipped:imagenet"}).model)


# ---- full fine-tuning and velora info -----------------------------------------------------------


def test_full_finetuning_trains_the_backbone_and_the_default_freezes_it():
    frozen = VELoRA.from_config(make_tiny_config())
    tuned = VELoRA.from_config(make_tiny_config(model={"finetune_backbone": True}))

    def backbone_weights(model):  # the ViT's own weights, not the LoRA adapters injected into it
        return {f"backbone.{n}": p for n, p in model.backbone.named_parameters() if ".adapters." not in n}

    assert not any(p.requires_grad for p in backbone_weights(frozen).values())
    assert all(p.requires_grad for p in backbone_weights(tuned).values())
    backbone_names = set(backbone_weights(tuned))
    assert backbone_names <= set(tuned.trainable_state_dict())
    assert tuned.parameter_groups()["backbone"] > 0 and "backbone" not in frozen.parameter_groups()


def test_info_names_the_source_of_the_weights(capsys):
    assert main(["info", "--config", "demo"]) == 0
    out = capsys.readouterr().out
    digest = json.loads(resolve_weights(SHIPPED).with_suffix(".safetensors.json").read_text())["sha256"]
    assert "shipped fractal-pretrained" in out and "velora/pretrained/fractal_vit_tiny64.safetensors" in out
    assert digest[:16] in out
    assert main(["info", "--config", "demo", "model.weights=none"]) == 0
    assert "random initialisation" in capsys.readouterr().out
    assert main(["info", "--config", "demo", "model.finetune_backbone=true"]) == 0
    assert "full fine-tuning" in capsys.readouterr().out
