"""The backbone's rules one at a time: the width of the kept projection (from backbone_args, from
the weights' head, or 2/3 of the width), a head of another width replaced by the seeded stand-in,
the tag's normalisation, what a state dict that does not fit says, and each error whole.

tests/test_model.py and tests/test_weights_source.py build backbones for the model; this file pins
what they leave open (each test here was written for a mutant of velora.model.backbone that
survived them, see benchmarks/results/mutation.md).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.data import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from conftest import make_tiny_config
from velora.model import backbone as backbone_module
from velora.model.backbone import BackboneError, build_backbone, load_backbone_weights, normalization, read_weights

TINY_ARGS = {"embed_dim": 48, "depth": 1, "num_heads": 2}


def backbone_config(**model):
    return make_tiny_config(model={"backbone_args": TINY_ARGS, **model}).model


def vit_file(path: Path, head: int = 0, seed: int = 3) -> Path:
    torch.manual_seed(seed)
    vit = timm.create_model("vit_base_patch16_clip_quickgelu_224", num_classes=head, img_size=32, **TINY_ARGS)
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(path))
    return path


def test_the_projection_is_two_thirds_of_the_width_unless_a_width_is_given():
    assert build_backbone(backbone_config(), keep_projection=True).head.weight.shape == (32, 48)
    args = {**TINY_ARGS, "num_classes": 20}
    assert build_backbone(backbone_config(backbone_args=args), keep_projection=True).head.weight.shape == (20, 48)
    assert isinstance(build_backbone(backbone_config()).head, torch.nn.Identity)  # no projection kept


def test_the_weights_head_is_kept_at_its_width_and_replaced_at_another(tmp_path):
    path = vit_file(tmp_path / "vit.safetensors", head=24)
    file_head = read_weights(path)[0]["head.weight"]
    kept = build_backbone(backbone_config(weights=str(path)), keep_projection=True)
    assert torch.equal(kept.head.weight, file_head)
    args = {**TINY_ARGS, "num_classes": 20}
    stand_in = build_backbone(backbone_config(weights=str(path), backbone_args=args), keep_projection=True)
    again = build_backbone(backbone_config(weights=str(path), backbone_args=args), keep_projection=True)
    assert stand_in.head.weight.shape == (20, 48) and torch.equal(stand_in.head.weight, again.head.weight)
    assert torch.equal(stand_in.blocks[0].attn.qkv.weight, kept.blocks[0].attn.qkv.weight)  # the rest is the file's


def test_a_tag_gives_its_normalisation_and_a_model_without_one_the_default():
    tagged = build_backbone(backbone_config(backbone="vit_base_patch16_clip_quickgelu_224.openai"))
    assert normalization(tagged) == (tuple(OPENAI_CLIP_MEAN), tuple(OPENAI_CLIP_STD))
    assert tagged.weights_source == {"kind": "none", "backbone": "vit_base_patch16_clip_quickgelu_224.openai",
                                     "init": "random, seed 0"}  # fmt: skip
    half = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert normalization(SimpleNamespace()) == half and normalization(SimpleNamespace(pretrained_cfg=None)) == half


def test_backbone_arguments_timm_refuses_name_themselves():
    cfg = backbone_config(backbone_args={**TINY_ARGS, "wings": 2})
    with pytest.raises(BackboneError) as caught:
        build_backbone(cfg)
    message = str(caught.value)
    assert message.startswith(f"model.backbone_args {cfg.backbone_args} not accepted by {cfg.backbone}: ")
    assert "wings" in message


def test_a_missing_weights_path_lists_what_model_weights_takes(tmp_path):
    with pytest.raises(BackboneError) as caught:
        read_weights(tmp_path / "nowhere.safetensors")
    assert str(caught.value) == (
        f"model.weights '{tmp_path / 'nowhere.safetensors'}' does not exist; give a weights file or folder (timm "
        ".safetensors/.pth, OpenAI/open_clip state dict, Hugging Face CLIP folder), 'shipped:<name>', 'hub' or 'none'"
    )


def tiny_vit(head: int = 0):
    return timm.create_model("vit_base_patch16_clip_quickgelu_224", num_classes=head, img_size=32, **TINY_ARGS)


def test_a_head_is_dropped_unless_kept_and_a_missing_head_is_allowed(tmp_path):
    model = tiny_vit(head=10)
    state = tiny_vit(head=7).state_dict()  # a head of another width
    load_backbone_weights(model, state, tmp_path / "w.safetensors")  # dropped: no size mismatch
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_backbone_weights(model, state, tmp_path / "w.safetensors", keep_head=True)
    without_head = {k: v for k, v in state.items() if not k.startswith("head.")}
    load_backbone_weights(model, without_head, tmp_path / "w.safetensors", keep_head=True)  # the model's head stays


@pytest.mark.parametrize("count, more", [(5, ""), (6, "...")])
def test_a_state_that_does_not_fit_lists_five_names_of_each_kind(tmp_path, count, more):
    model = tiny_vit()
    state = model.state_dict()
    names = [k for k in state if k.startswith("blocks.0.")][:count]  # in the model's order, as torch lists them
    state = {k: v for k, v in state.items() if k not in names}
    state.update({f"extra.{k}": torch.zeros(1) for k in range(count)})
    path = tmp_path / "other.safetensors"
    with pytest.raises(BackboneError) as caught:
        load_backbone_weights(model, state, path)
    assert str(caught.value) == (
        f"'{path}' does not match VisionTransformer: missing {names[:5]}{more}, unexpected "
        f"{[f'extra.{k}' for k in range(5)]}{more}"
    )
    only_missing = {k: v for k, v in model.state_dict().items() if k != names[0]}
    with pytest.raises(BackboneError, match=r"missing \['blocks.0"):
        load_backbone_weights(model, only_missing, path)


def test_a_mismatching_weights_file_is_named_when_the_backbone_is_built(tmp_path):
    path = vit_file(tmp_path / "vit.safetensors")
    cfg = backbone_config(weights=str(path), backbone_args={"embed_dim": 48, "depth": 2, "num_heads": 2})
    with pytest.raises(BackboneError, match=f"^'{path}' does not match VisionTransformer: missing"):
        build_backbone(cfg)


def test_with_no_width_anywhere_the_projection_is_two_thirds_of_vit_b16s_768():
    # random weights and backbone_args without embed_dim: the architecture's own width, 768
    cfg = make_tiny_config(model={"weights": "none", "backbone_args": {"depth": 1}}).model
    assert build_backbone(cfg, keep_projection=True).head.weight.shape == (512, 768)


def test_a_hub_file_without_a_projection_gets_a_stand_in_two_thirds_of_its_own_width(tmp_path, monkeypatch):
    # a hub file is read with the named architecture's kwargs (not the file's), so only its
    # metadata knows the width: vit_tiny is 192 wide, so the stand-in is 128 wide, not 512
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", num_classes=0, img_size=32, depth=1)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(path))
    monkeypatch.setattr(backbone_module, "fetch_hub_file", lambda hub: path)
    cfg = make_tiny_config(
        model={"backbone": "vit_tiny_patch16_224.augreg_in21k", "weights": "hub", "backbone_args": {"depth": 1}}
    ).model
    model = build_backbone(cfg, keep_projection=True)
    assert model.head.weight.shape == (128, 192)
    torch.testing.assert_close(model.blocks[0].attn.qkv.weight, vit.blocks[0].attn.qkv.weight)


def test_the_tag_picks_timms_configuration_and_so_the_normalisation():
    # vit_small_patch16_224's default tag is normalised with 0.5; its .dino tag with ImageNet's statistics
    cfg = make_tiny_config(
        model={"backbone": "vit_small_patch16_224.dino", "weights": "none", "backbone_args": TINY_ARGS}
    ).model
    assert normalization(build_backbone(cfg)) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_an_architecture_that_is_not_a_plain_vit_is_refused_by_name():
    cfg = make_tiny_config(model={"backbone": "eva02_tiny_patch14_224.mim_in22k", "weights": "none"}).model
    with pytest.raises(BackboneError) as exc:
        build_backbone(cfg)
    assert str(exc.value) == "model.backbone 'eva02_tiny_patch14_224.mim_in22k' is not a plain VisionTransformer"
