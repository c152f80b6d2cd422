"""The weights readers' rules one at a time, on state dicts made by hand: the metadata read off the
tensor shapes (every key, every value), each format's renaming corner, each hub-folder layout and
its config files, the shipped weights, the keyword arguments timm gets, and each error whole.

tests/test_weights.py checks every format against its reference implementation (open_clip,
transformers, timm); this file pins what those round trips leave open (each test here was written
for a mutant of velora.model.weights that survived them, see benchmarks/results/mutation.md).

Shapes: width D = 8, 4 x 4 patches on a 2 x 2 grid (8 x 8 pixel images), 2 blocks, MLP 3 x D,
image-text projection 6 wide.
"""

from __future__ import annotations

import json
import zipfile
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save_file

import velora
from velora.model import weights as weights_module
from velora.model.weights import (
    WeightsError,
    convert_state_dict,
    convert_weights,
    load_state_dict_any,
    resolve_weights,
    shipped_manifest,
    shipped_weights,
    timm_model_kwargs,
)

D, PATCH, GRID, MLP, PROJ = 8, 4, 2, 24, 6
OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]  # OpenAI CLIP's training statistics, written out
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]


def ones(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.ones(shape, dtype=dtype)


def timm_state(
    *, cls: bool = True, tokens: int | None = None, blocks: int = 2, pre_norm: bool = False, head: bool = True
):
    """timm names: patch_embed, pos_embed, (cls_token), blocks.N, (norm_pre), (head)."""
    state = {
        "patch_embed.proj.weight": ones(D, 3, PATCH, PATCH),
        "pos_embed": ones(1, tokens if tokens is not None else GRID * GRID + cls, D),
    }
    if cls:
        state["cls_token"] = ones(1, 1, D)
    for b in range(blocks):
        state[f"blocks.{b}.norm1.weight"] = ones(D)
    state["blocks.0.mlp.fc1.weight"] = ones(MLP, D)
    if pre_norm:
        state["norm_pre.weight"] = ones(D)
    if head:
        state["head.weight"] = ones(PROJ, D)
    return state


def openai_state(*, width: int = D, resolution: bool = False, dtype: torch.dtype = torch.float32):
    """OpenAI CLIP / open_clip names (`visual.*`), one block."""
    state = {
        "visual.class_embedding": ones(width, dtype=dtype),
        "visual.positional_embedding": ones(GRID * GRID + 1, width, dtype=dtype),
        "visual.conv1.weight": ones(width, 3, PATCH, PATCH, dtype=dtype),
        "visual.ln_pre.weight": ones(width, dtype=dtype),
        "visual.transformer.resblocks.0.mlp.c_fc.weight": ones(4 * width, width, dtype=dtype),
        "visual.proj": ones(width, PROJ, dtype=dtype),
    }
    if resolution:
        state["input_resolution"] = torch.tensor(GRID * PATCH)
    return state


def hf_state(*, projection_first: bool = False, dtype: torch.dtype = torch.float32):
    """Hugging Face CLIPVisionModelWithProjection names, one block, with the position_ids buffer."""
    state = {
        "vision_model.embeddings.class_embedding": ones(D, dtype=dtype),
        "vision_model.embeddings.position_embedding.weight": ones(GRID * GRID + 1, D, dtype=dtype),
        "vision_model.embeddings.position_ids": torch.arange(GRID * GRID + 1)[None],
        "vision_model.embeddings.patch_embedding.weight": ones(D, 3, PATCH, PATCH, dtype=dtype),
        "vision_model.pre_layrnorm.weight": ones(D, dtype=dtype),
        "vision_model.encoder.layers.0.self_attn.q_proj.weight": torch.full((D, D), 1.0, dtype=dtype),
        "vision_model.encoder.layers.0.self_attn.k_proj.weight": torch.full((D, D), 2.0, dtype=dtype),
        "vision_model.encoder.layers.0.self_attn.v_proj.weight": torch.full((D, D), 3.0, dtype=dtype),
        "vision_model.encoder.layers.0.mlp.fc1.weight": ones(2 * D, D, dtype=dtype),
    }
    projection = {"visual_projection.weight": ones(PROJ, D, dtype=dtype)}
    return {**projection, **state} if projection_first else {**state, **projection}


def meta_of(**changes) -> dict:
    """The whole metadata of timm_state(), with `changes`."""
    meta = {
        "source_format": "timm",
        "image_size": GRID * PATCH,
        "patch_size": PATCH,
        "embed_dim": D,
        "depth": 2,
        "num_heads": None,
        "mlp_ratio": 3.0,
        "pre_norm": False,
        "proj_dim": PROJ,
        "act_layer": None,
        "layer_norm_eps": None,
        "mean": None,
        "std": None,
    }
    return {**meta, **changes}


def write(path: Path, state: dict, metadata: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        save_file(state, str(path), metadata=metadata)
    else:
        torch.save(state, path)
    return path


def error_of(path, **kwargs) -> str:
    with pytest.raises(WeightsError) as exc:
        load_state_dict_any(path, **kwargs)
    return str(exc.value)


# --- the metadata read off the shapes ----------------------------------------------------------


def test_every_metadata_key_of_a_timm_state_dict():
    assert convert_state_dict(timm_state())[1] == meta_of()
    assert convert_state_dict(timm_state(pre_norm=True, head=False))[1] == meta_of(pre_norm=True, proj_dim=None)


def test_the_image_size_counts_the_class_token_only_when_there_is_one():
    assert convert_state_dict(timm_state(cls=False))[1]["image_size"] == 8  # 4 tokens: a 2 x 2 grid
    assert convert_state_dict(timm_state(cls=True))[1]["image_size"] == 8  # 5 tokens, the first the class
    # 9 tokens with a class token is 8 patches: no square grid, so no image size
    assert convert_state_dict(timm_state(tokens=9))[1]["image_size"] is None


def test_the_mlp_ratio_is_fc1_rows_over_the_width_and_none_without_an_mlp():
    state = timm_state()
    assert convert_state_dict(state)[1]["mlp_ratio"] == 3.0
    del state["blocks.0.mlp.fc1.weight"]
    assert convert_state_dict(state)[1]["mlp_ratio"] is None


def test_heads_follow_openais_64_channels_rule_only_for_openai_weights():
    assert convert_state_dict(openai_state(width=8))[1]["num_heads"] == 1  # at least one head
    assert convert_state_dict(openai_state(width=64))[1]["num_heads"] == 1
    assert convert_state_dict(openai_state(width=128))[1]["num_heads"] == 2
    assert convert_state_dict(timm_state())[1]["num_heads"] is None  # timm's files do not say


def test_openai_weights_bring_clip_statistics_and_their_own_scalars_bring_quickgelu():
    state, meta = convert_state_dict(openai_state())
    common = dict(source_format="openai_clip", depth=1, mlp_ratio=4.0, pre_norm=True, num_heads=1)
    assert meta == meta_of(**common, mean=OPENAI_MEAN, std=OPENAI_STD)
    assert convert_state_dict(openai_state(resolution=True))[1] == meta_of(
        **common, mean=OPENAI_MEAN, std=OPENAI_STD, act_layer="quick_gelu", layer_norm_eps=1e-5
    )
    assert state["head.weight"].shape == (PROJ, D)  # `x @ proj` became Linear(D, E)


def test_an_open_clip_timm_trunk_is_read_as_timm():
    state = timm_state()
    wrapped = {f"visual.trunk.{k}": v for k, v in state.items()} | {"text.token_embedding.weight": ones(3, 2)}
    got, meta = convert_state_dict(wrapped)
    assert list(got) == list(state)
    assert meta == meta_of()


def test_training_checkpoints_are_unwrapped_under_each_known_key_and_prefix():
    state = timm_state()
    for key in ("state_dict", "model", "state_dict_ema"):
        got, meta = convert_state_dict({key: {f"module.{k}": v for k, v in state.items()}, "epoch": 3})
        assert list(got) == list(state), key
    # entries that are not tensors (an epoch counter, an optimizer's numbers) are dropped
    got, _ = convert_state_dict({**state, "epoch": 3, "lr": 0.1})
    assert list(got) == list(state)


def test_hugging_face_renaming_corners():
    state, meta = convert_state_dict(hf_state(projection_first=True))
    assert "position_ids" not in " ".join(state)
    assert sorted(state) == sorted(
        [
            "cls_token",
            "pos_embed",
            "patch_embed.proj.weight",
            "norm_pre.weight",
            "blocks.0.attn.qkv.weight",
            "blocks.0.mlp.fc1.weight",
            "head.weight",
            "head.bias",
        ]
    )
    qkv = state["blocks.0.attn.qkv.weight"]  # q, k, v stacked along the output rows
    assert qkv.shape == (3 * D, D)
    assert qkv[:D].eq(1).all() and qkv[D : 2 * D].eq(2).all() and qkv[2 * D :].eq(3).all()
    assert meta == meta_of(source_format="hf_clip", depth=1, mlp_ratio=2.0, pre_norm=True)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_the_zero_head_bias_has_the_projections_dtype(dtype):
    for raw in (openai_state(dtype=dtype), hf_state(dtype=dtype)):
        state, _ = convert_state_dict(raw)
        assert state["head.bias"].dtype == dtype
        assert torch.equal(state["head.bias"], torch.zeros(PROJ, dtype=dtype))


# --- errors, each whole ---------------------------------------------------------------------------


def test_a_missing_path_is_named():
    assert error_of("/nonexistent/vit.safetensors") == "weights path '/nonexistent/vit.safetensors' does not exist"


def test_a_state_dict_without_a_position_embedding_says_which_tensor_is_missing(tmp_path):
    state = timm_state()
    del state["pos_embed"]
    path = write(tmp_path / "vit.safetensors", state)
    assert error_of(path) == f"'{path}': timm weights lack ['pos_embed']; is this the image tower of a ViT?"


def test_a_tensor_of_a_shape_no_vit_has_is_named_with_the_file(tmp_path):
    path = write(tmp_path / "vit.safetensors", {**timm_state(), "patch_embed.proj.weight": ones(D, 48)})
    assert error_of(path) == (
        f"'{path}': the tensors do not have the shapes of a ViT "
        "(ValueError: not enough values to unpack (expected 4, got 2))"
    )


def test_unknown_naming_lists_the_first_six_keys_and_the_file(tmp_path):
    path = write(tmp_path / "other.safetensors", {f"k{i}": ones(1) for i in range(8)})
    assert error_of(path) == (
        f"'{path}': weights are not a ViT checkpoint in timm, OpenAI/open_clip or Hugging Face CLIP naming; "
        "first keys: ['k0', 'k1', 'k2', 'k3', 'k4', 'k5']"
    )


def test_safetensors_header_errors_are_whole(tmp_path):
    path = write(tmp_path / "a.safetensors", timm_state(), {"velora_metadata": "{not json"})
    assert error_of(path) == (
        f"'{path}': the velora_metadata entry of its header is not JSON "
        "(Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"
    )
    path = write(tmp_path / "b.safetensors", timm_state(), {"velora_metadata": "[1, 2]"})
    assert error_of(path) == f"'{path}': the velora_metadata entry of its header is not a JSON mapping"
    path = tmp_path / "c.safetensors"
    path.write_bytes(b"\x01\x02")
    assert error_of(path).startswith(f"cannot read '{path}' as safetensors: ")


def test_a_pickle_of_something_else_than_a_dict_is_named(tmp_path):
    path = write(tmp_path / "list.pth", [ones(2)])
    assert error_of(path) == f"'{path}' holds a list, not a state dict"


@pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:FutureWarning")
def test_the_torchscript_refusal_is_whole_and_convert_weights_refuses_by_default(tmp_path):
    path = tmp_path / "ViT-B-16.pt"
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), str(path))
    message = (
        f"'{path}' is a TorchScript archive; loading it runs code stored in the file, so it is refused by default. "
        "If you trust the file, convert it once to safetensors with "
        f"`velora convert-weights {path} OUT.safetensors --allow-torchscript` and use the .safetensors file."
    )
    assert error_of(path) == message
    with pytest.raises(WeightsError) as exc:
        convert_weights(path, tmp_path / "out.safetensors")
    assert str(exc.value) == message


@pytest.mark.parametrize("member", ["archive/constants.pkl", "archive/code/__torch__.py"])
def test_either_torchscript_member_marks_an_archive(tmp_path, member):
    path = tmp_path / "scripted.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"")
        archive.writestr(member, b"")
    assert error_of(path).startswith(f"'{path}' is a TorchScript archive;")


def test_a_zip_with_a_broken_directory_is_left_to_torch_load_to_explain(tmp_path):
    path = tmp_path / "vit.pth"
    torch.save(timm_state(), path)
    data = bytearray(path.read_bytes())
    start = data.index(b"PK\x01\x02")  # the first central-directory record: zipfile can no longer list it
    data[start : start + 4] = b"XXXX"
    path.write_bytes(bytes(data))
    assert zipfile.is_zipfile(path)
    assert error_of(path).startswith(f"cannot read '{path}' as a weights-only PyTorch file")


def test_code_running_pickles_are_refused_even_where_torch_would_load_them(tmp_path, monkeypatch):
    class Marks:
        def __reduce__(self):
            return open, (str(tmp_path / "ran"), "w")

    path = tmp_path / "evil.pth"
    torch.save({**timm_state(), "payload": Marks()}, path)
    # torch < 2.6 defaults to weights_only=False, and this variable restores that default on newer torch
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    assert "weights-only" in error_of(path)
    assert not (tmp_path / "ran").exists()


def test_a_pickle_saved_from_a_gpu_loads_on_the_cpu(tmp_path, monkeypatch):
    path = tmp_path / "gpu.pth"
    with monkeypatch.context() as m:  # tag the storages as CUDA ones, as a GPU run writes them
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(timm_state(), path)
    state, _ = load_state_dict_any(path)
    assert {t.device.type for t in state.values()} == {"cpu"}


# --- hub folders ---------------------------------------------------------------------------------


def test_an_empty_folder_names_the_files_it_looked_for(tmp_path):
    assert error_of(tmp_path) == (
        f"folder '{tmp_path}' holds no model.safetensors, open_clip_model.safetensors or pytorch_model.bin"
    )


@pytest.mark.parametrize("name", ["pytorch_model.bin", "open_clip_pytorch_model.bin"])
def test_pickled_hub_files_are_found(tmp_path, name):
    write(tmp_path / name, openai_state())
    assert load_state_dict_any(tmp_path)[1]["source_format"] == "openai_clip"


def test_a_folders_errors_name_the_file_inside_it(tmp_path):
    weights = write(tmp_path / "model.safetensors", {"encoder.weight": ones(2)})
    assert error_of(tmp_path).startswith(f"'{weights}': weights are not a ViT checkpoint")
    write(tmp_path / "model.safetensors", timm_state())
    (tmp_path / "config.json").write_text("{")
    assert error_of(tmp_path) == (
        f"'{tmp_path / 'config.json'}' is not valid JSON: Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1)"
    )


def test_a_hugging_face_folder_takes_heads_activation_and_eps_from_its_config_or_clips_defaults(tmp_path):
    write(tmp_path / "model.safetensors", hf_state())
    vision = {"num_attention_heads": 2, "hidden_act": "gelu", "layer_norm_eps": 1e-6}
    (tmp_path / "config.json").write_text(json.dumps({"vision_config": vision}))
    meta = load_state_dict_any(tmp_path)[1]
    assert (meta["num_heads"], meta["act_layer"], meta["layer_norm_eps"]) == (2, "gelu", 1e-6)
    (tmp_path / "config.json").write_text("{}")  # CLIPVisionConfig's defaults
    meta = load_state_dict_any(tmp_path)[1]
    assert (meta["num_heads"], meta["act_layer"], meta["layer_norm_eps"]) == (12, "quick_gelu", 1e-5)
    assert (meta["mean"], meta["std"]) == (None, None)  # no preprocessor_config.json


def test_a_timm_hub_folder_records_its_architecture_and_statistics(tmp_path):
    write(tmp_path / "model.safetensors", timm_state())
    config = {"architecture": "vit_tiny_test", "pretrained_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.2, 0.1]}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert load_state_dict_any(tmp_path)[1] == meta_of(
        architecture="vit_tiny_test", mean=[0.5, 0.5, 0.5], std=[0.25, 0.2, 0.1]
    )


def open_clip_folder(path: Path, config: dict) -> Path:
    write(path / "open_clip_model.safetensors", openai_state(width=128))
    (path / "open_clip_config.json").write_text(json.dumps(config))
    return path


def test_an_open_clip_config_sets_heads_from_width_and_head_width(tmp_path):
    # the shapes alone say 128 // 64 = 2 heads; the config decides
    folder = open_clip_folder(tmp_path, {"model_cfg": {"vision_cfg": {"width": 128, "head_width": 32}}})
    assert load_state_dict_any(folder)[1]["num_heads"] == 4
    folder = open_clip_folder(tmp_path, {"model_cfg": {"vision_cfg": {"width": 192}}})  # head_width 64
    assert load_state_dict_any(folder)[1]["num_heads"] == 3


def test_an_open_clip_config_says_which_gelu(tmp_path):
    folder = open_clip_folder(tmp_path, {"model_cfg": {"quick_gelu": True}})
    assert load_state_dict_any(folder)[1]["act_layer"] == "quick_gelu"
    for model_cfg in ({"quick_gelu": False}, {"embed_dim": 6}):
        folder = open_clip_folder(tmp_path, {"model_cfg": model_cfg})
        assert load_state_dict_any(folder)[1]["act_layer"] == "gelu"


def test_an_open_clip_config_may_hold_only_one_of_its_sections(tmp_path):
    folder = open_clip_folder(tmp_path, {"preprocess_cfg": {"mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}})
    meta = load_state_dict_any(folder)[1]
    assert (meta["mean"], meta["std"], meta["num_heads"], meta["act_layer"]) == (
        [0.1, 0.2, 0.3],
        [0.4, 0.5, 0.6],
        2,
        None,
    )
    folder = open_clip_folder(tmp_path, {"model_cfg": {"vision_cfg": {"width": 128, "head_width": 16}}})
    meta = load_state_dict_any(folder)[1]
    assert (meta["mean"], meta["std"], meta["num_heads"]) == (OPENAI_MEAN, OPENAI_STD, 8)


# --- converting, shipped weights, timm's arguments ------------------------------------------------


def test_convert_weights_makes_the_folder_and_writes_the_header_safetensors_expects(tmp_path):
    src = write(tmp_path / "vit.pth", timm_state())
    dst = tmp_path / "new" / "deeper" / "vit.safetensors"
    meta = convert_weights(src, dst)
    with safe_open(str(dst), framework="pt") as f:
        assert f.metadata() == {"format": "pt", "velora_metadata": json.dumps(meta_of())}
    assert meta == meta_of()


def test_none_and_hub_name_no_file_and_anything_else_is_a_path():
    assert resolve_weights("none") is None
    assert resolve_weights("hub") is None
    assert resolve_weights("None") == Path("None")
    assert resolve_weights("weights/vit.safetensors") == Path("weights/vit.safetensors")


def test_shipped_names_resolve_inside_the_package():
    pretrained = Path(velora.__file__).resolve().parent / "pretrained"
    assert shipped_weights() == ["fractal_vit_tiny64"]
    assert resolve_weights("shipped:fractal_vit_tiny64") == pretrained / "fractal_vit_tiny64.safetensors"
    with pytest.raises(WeightsError) as exc:
        resolve_weights("shipped:nope")
    assert str(exc.value) == (
        "model.weights 'shipped:nope': no weights named 'nope' ship with this package; shipped: shipped:fractal_vit_tiny64"
    )


def test_the_shipped_list_is_the_safetensors_files_of_the_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(weights_module, "SHIPPED_DIR", tmp_path)
    with pytest.raises(WeightsError, match=r"ship with this package; shipped: none$"):
        resolve_weights("shipped:a")
    for name in ("b.safetensors", "a.safetensors", "a.safetensors.json", "notes.txt"):
        (tmp_path / name).write_text("{}")
    assert shipped_weights() == ["a", "b"]
    with pytest.raises(WeightsError, match=r"shipped: shipped:a, shipped:b$"):
        resolve_weights("shipped:c")


def test_a_shipped_manifest_is_the_json_beside_the_file(tmp_path):
    weights = tmp_path / "w.safetensors"
    assert shipped_manifest(weights) == {}
    (tmp_path / "w.safetensors.json").write_text('{"sha256": "ab"}')
    assert shipped_manifest(weights) == {"sha256": "ab"}


def test_timm_gets_exactly_the_architecture_the_metadata_records():
    meta = meta_of(pre_norm=True, num_heads=2, act_layer="quick_gelu", layer_norm_eps=1e-6)
    kwargs = timm_model_kwargs(meta)
    norm = kwargs.pop("norm_layer")
    assert kwargs == {
        "patch_size": PATCH,
        "embed_dim": D,
        "depth": 2,
        "num_heads": 2,
        "mlp_ratio": 3.0,
        "img_size": GRID * PATCH,
        "pre_norm": True,
        "act_layer": "quick_gelu",
    }
    assert isinstance(norm, partial) and norm.func is nn.LayerNorm and norm.keywords == {"eps": 1e-6}
    # what the metadata leaves unknown (None) or false is left to timm's defaults
    assert timm_model_kwargs(meta_of(image_size=None, mlp_ratio=None)) == {
        "patch_size": PATCH,
        "embed_dim": D,
        "depth": 2,
    }
