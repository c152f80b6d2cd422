"""Every weights format loads into the same timm ViT as its reference implementation computes.

Tiny checkpoints with random weights (width 128, 2 heads, 2 blocks, 32 x 32 images, 16 x 16 patches)
are written in each format; token features after the final LayerNorm (and the projected class
token) of our timm model must equal those of open_clip (OpenAI / open_clip state dicts and a traced
TorchScript archive) and of Hugging Face transformers (CLIPVisionModel folders).
"""

from __future__ import annotations

import json
import warnings

import pytest
import timm
import torch
import torch.nn as nn
from safetensors.torch import save_file
from timm.models.vision_transformer import _convert_openai_clip

from velora.model.weights import (
    CLIP_MEAN,
    WeightsError,
    convert_weights,
    load_state_dict_any,
    timm_model_kwargs,
)

WIDTH, HEADS, LAYERS, IMAGE, PATCH, PROJ = 128, 2, 2, 32, 16, 64
BACKBONE = "vit_base_patch16_clip_quickgelu_224"  # velora's default; its CLIP norm and QuickGELU


def randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Perturb every parameter, so LayerNorm gains and zero-initialised biases are tested too."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return module.eval()


def timm_from(state: dict, meta: dict) -> nn.Module:
    """Velora's backbone architecture with the checkpoint's dims, weights loaded strictly."""
    model = timm.create_model(BACKBONE, pretrained=False, num_classes=meta["proj_dim"] or 0, **timm_model_kwargs(meta))
    model.load_state_dict(state, strict=True)
    return model.eval()


def images(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(1))


def timm_outputs(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        tokens = model.forward_features(x)  # (N, 1 + P, D) after the final norm
        return tokens, model.forward_head(tokens)  # (N, E): projected class token


class OpenAIStyle(nn.Module):
    """Key layout of OpenAI's CLIP (`visual.*`), with the scalars its TorchScript archive carries."""

    def __init__(self):
        super().__init__()
        from open_clip import transformer as open_clip_transformer  # a test dependency: missing fails

        self.visual = randomize(
            open_clip_transformer.VisionTransformer(
                image_size=IMAGE,
                patch_size=PATCH,
                width=WIDTH,
                layers=LAYERS,
                heads=HEADS,
                mlp_ratio=4.0,
                output_dim=PROJ,
                act_layer=open_clip_transformer.QuickGELU,
            )
        )
        self.register_buffer("input_resolution", torch.tensor(IMAGE))

    def forward(self, x):
        return self.visual(x)


def open_clip_outputs(model: OpenAIStyle, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """open_clip's tokens after ln_post (captured by a hook) and its projected pooled output."""
    captured = []
    handle = model.visual.ln_post.register_forward_hook(lambda m, args, out: captured.append(out))
    try:
        with torch.no_grad():
            pooled = model(x)
    finally:
        handle.remove()
    return captured[0], pooled


@pytest.fixture(scope="module")
def openai_model() -> OpenAIStyle:
    torch.manual_seed(0)
    return OpenAIStyle().eval()


def assert_same_model(ours, reference):
    for got, want in zip(ours, reference):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_open_clip_state_dict_matches_open_clip(tmp_path, openai_model, suffix):
    state = {k: v for k, v in openai_model.state_dict().items() if k != "input_resolution"}
    path = tmp_path / f"open_clip{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:  # an open_clip training checkpoint: wrapped and with DataParallel's prefix
        torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)

    loaded, meta = load_state_dict_any(path)

    assert meta["source_format"] == "openai_clip"
    assert (meta["image_size"], meta["patch_size"], meta["embed_dim"], meta["depth"]) == (IMAGE, PATCH, WIDTH, LAYERS)
    assert meta["mean"] == list(CLIP_MEAN) and meta["proj_dim"] == PROJ
    # width // 64 is OpenAI's rule for heads; the tiny model follows it
    assert meta["num_heads"] == HEADS
    x = images()
    assert_same_model(timm_outputs(timm_from(loaded, meta), x), open_clip_outputs(openai_model, x))


def test_openai_renaming_equals_timms_own(openai_model):
    from velora.model.weights import openai_to_timm

    state = openai_model.state_dict()
    ours, theirs = openai_to_timm(state), _convert_openai_clip(state, model=None)
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key


@pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:FutureWarning")
def test_torchscript_refused_by_default_and_equal_when_allowed(tmp_path, openai_model, capsys):
    path = tmp_path / "ViT-B-16.pt"
    with warnings.catch_warnings():
        # tracing warns about open_clip's Python control flow; the traced graph is exact for this size
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(openai_model, images(1), check_trace=False)
    traced.save(str(path))

    with pytest.raises(WeightsError, match="velora convert-weights .* --allow-torchscript"):
        load_state_dict_any(path)

    loaded, meta = load_state_dict_any(path, allow_torchscript=True)
    assert "runs code from the file" in capsys.readouterr().err
    assert meta["act_layer"] == "quick_gelu"  # OpenAI's own archives are QuickGELU models
    x = images()
    assert_same_model(timm_outputs(timm_from(loaded, meta), x), open_clip_outputs(openai_model, x))

    out = tmp_path / "vit.safetensors"
    converted_meta = convert_weights(path, out, allow_torchscript=True)
    again, again_meta = load_state_dict_any(out)  # no option needed: safetensors runs no code
    assert again_meta == converted_meta == meta
    assert again.keys() == loaded.keys() and all(torch.equal(again[k], loaded[k]) for k in again)


@pytest.mark.parametrize("kind", ["CLIPVisionModelWithProjection", "CLIPModel"])
def test_hugging_face_folder_matches_transformers(tmp_path, kind):
    import transformers  # a test dependency: missing fails

    vision = dict(
        hidden_size=WIDTH,
        intermediate_size=4 * WIDTH,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        image_size=IMAGE,
        patch_size=PATCH,
        projection_dim=PROJ,
    )
    torch.manual_seed(0)
    if kind == "CLIPModel":  # the full image-text model: text tower ignored, vision_config nested
        text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
        config = transformers.CLIPConfig(vision_config=vision, text_config=text, projection_dim=PROJ)
        hf = randomize(transformers.CLIPModel(config))
    else:
        hf = randomize(transformers.CLIPVisionModelWithProjection(transformers.CLIPVisionConfig(**vision)))
    hf.save_pretrained(tmp_path)
    mean, std = [0.1, 0.2, 0.3], [0.4, 0.5, 0.6]
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"image_mean": mean, "image_std": std}))

    loaded, meta = load_state_dict_any(tmp_path)

    assert meta["source_format"] == "hf_clip"
    assert (meta["num_heads"], meta["act_layer"], meta["mean"], meta["std"]) == (HEADS, "quick_gelu", mean, std)
    x = images()
    with torch.no_grad():
        out = hf.vision_model(pixel_values=x)
        # last_hidden_state is the encoder output; CLIP's post_layernorm is applied outside it
        reference = hf.vision_model.post_layernorm(out.last_hidden_state), hf.visual_projection(out.pooler_output)
    assert_same_model(timm_outputs(timm_from(loaded, meta), x), reference)


def test_open_clip_hub_folder_reads_its_config(tmp_path, openai_model):
    state = {k: v.contiguous() for k, v in openai_model.state_dict().items() if k != "input_resolution"}
    save_file(state, str(tmp_path / "open_clip_model.safetensors"))
    config = {
        "model_cfg": {"quick_gelu": True, "vision_cfg": {"width": WIDTH, "head_width": WIDTH // HEADS}},
        "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
    }
    (tmp_path / "open_clip_config.json").write_text(json.dumps(config))

    loaded, meta = load_state_dict_any(tmp_path)

    assert (meta["num_heads"], meta["act_layer"]) == (HEADS, "quick_gelu")
    assert (meta["mean"], meta["std"]) == ([0.5, 0.5, 0.5], [0.25, 0.25, 0.25])
    x = images()
    assert_same_model(timm_outputs(timm_from(loaded, meta), x), open_clip_outputs(openai_model, x))


def test_timm_checkpoints_round_trip(tmp_path):
    torch.manual_seed(0)
    model = randomize(
        timm.create_model(
            BACKBONE,
            pretrained=False,
            num_classes=0,
            img_size=IMAGE,
            patch_size=PATCH,
            embed_dim=WIDTH,
            depth=LAYERS,
            num_heads=HEADS,
        )
    )
    state = model.state_dict()
    save_file(state, str(tmp_path / "vit.safetensors"))
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}}, tmp_path / "vit.pth")

    for name in ("vit.safetensors", "vit.pth"):
        loaded, meta = load_state_dict_any(tmp_path / name)
        assert meta["source_format"] == "timm"
        dims = meta["image_size"], meta["patch_size"], meta["embed_dim"], meta["depth"]
        assert dims == (IMAGE, PATCH, WIDTH, LAYERS)
        assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)


class WritesMarker:
    """A pickle whose loading would create a file: a harmless stand-in for running code."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"patch_embed.proj.weight": torch.zeros(1), "payload": WritesMarker(marker)}, path)

    with pytest.raises(WeightsError, match="weights-only"):
        load_state_dict_any(path)
    assert not marker.exists()


def test_unknown_keys_and_bad_output_name_are_explained(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"encoder.weight": torch.zeros(2)}, str(path))
    with pytest.raises(WeightsError, match="not a ViT checkpoint.*encoder.weight"):
        load_state_dict_any(path)
    with pytest.raises(WeightsError, match=r"\*\.safetensors"):
        convert_weights(path, tmp_path / "out.pth")
