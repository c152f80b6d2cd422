"""model.weights: a local weights file builds the backbone with the file's tensors and normalisation."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file

from conftest import make_tiny_config
from velora.cli import main
from velora.model.backbone import BackboneError, normalization
from velora.model.velora import VELoRA


def tiny_timm_vit(seed: int):
    torch.manual_seed(seed)
    return timm.create_model(
        "vit_base_patch16_clip_quickgelu_224",
        pretrained=False,
        num_classes=0,
        img_size=32,
        embed_dim=32,
        depth=3,
        num_heads=2,
    )


def test_weights_file_is_loaded_into_the_shared_backbone(tmp_path):
    source = tiny_timm_vit(seed=7)  # not the seed of a random backbone
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "vit.safetensors"))
    model = VELoRA.from_config(make_tiny_config(model={"weights": str(tmp_path / "vit.safetensors")}))
    loaded = model.backbone.state_dict()
    for name, tensor in source.state_dict().items():
        assert torch.equal(loaded[name], tensor), name
    frozen = [p for n, p in model.backbone.named_parameters() if ".adapters." not in n]
    assert frozen and all(not p.requires_grad for p in frozen)


def test_convert_weights_round_trip_through_the_cli(tmp_path, capsys):
    source = tiny_timm_vit(seed=3)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "in.safetensors"))
    assert main(["convert-weights", str(tmp_path / "in.safetensors"), str(tmp_path / "out.safetensors")]) == 0
    assert "model.weights=" in capsys.readouterr().out
    model = VELoRA.from_config(make_tiny_config(model={"weights": str(tmp_path / "out.safetensors")}))
    assert torch.equal(model.backbone.pos_embed, source.pos_embed)


def test_the_weights_own_normalisation_is_used(tmp_path, monkeypatch):
    import velora.model.backbone as backbone

    source = tiny_timm_vit(seed=5)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "vit.safetensors"))
    real = backbone.load_state_dict_any

    def with_meta(path, allow_torchscript=False):
        state, meta = real(path, allow_torchscript=allow_torchscript)
        return state, {**meta, "mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}

    monkeypatch.setattr(backbone, "load_state_dict_any", with_meta)
    model = VELoRA.from_config(make_tiny_config(model={"weights": str(tmp_path / "vit.safetensors")}))
    assert normalization(model.backbone) == ((0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    assert torch.allclose(model.mean.flatten(), torch.tensor([0.1, 0.2, 0.3]))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_missing_or_code_running_weights_are_refused(tmp_path):
    with pytest.raises(BackboneError, match="does not exist"):
        VELoRA.from_config(make_tiny_config(model={"weights": str(tmp_path / "absent.safetensors")}))
    scripted = torch.jit.script(torch.nn.Linear(2, 2))
    scripted.save(str(tmp_path / "ViT-B-16.pt"))
    with pytest.raises(BackboneError, match="convert-weights"):
        VELoRA.from_config(make_tiny_config(model={"weights": str(tmp_path / "ViT-B-16.pt")}))
