"""model.weights: hub means the paper's OpenAI CLIP file, named and recorded exactly; no network in tests.

A repository on the hub may hold its tag's weights in any of four files (HUB_FILENAMES): timm's
names in model.safetensors or pytorch_model.bin, or open_clip's (both towers, OpenAI's `visual.*`
names) in open_clip_model.safetensors or open_clip_pytorch_model.bin. The tests write a tiny ViT in
each layout into a Hugging Face cache laid out as huggingface_hub lays it out, and read it offline.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import warnings
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

from conftest import HUB_COMMIT, make_tiny_config, write_hub_cache
from velora.cli import main
from velora.config import load_config
from velora.model.adapter_file import load_model, read_adapters, save_adapters
from velora.model.backbone import BackboneError, build_backbone, normalization
from velora.model.velora import VELoRA
from velora.model.weights_source import (
    HUB_FILENAMES,
    describe_source,
    fetch_hub_file,
    hub_weights,
    resolve_source,
    split_backbone,
)

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
    assert (hub.repo_id, hub.tag) == (OPENAI, "openai")


def test_an_untagged_name_says_which_weights_hub_would_mean():
    with pytest.warns(UserWarning, match=r"timm's default, 'metaclip_2pt5b'.*\.openai for OpenAI's CLIP"):
        assert (
            hub_weights("vit_base_patch16_clip_quickgelu_224").repo_id
            == "timm/vit_base_patch16_clip_224.metaclip_2pt5b"
        )


def test_unknown_architectures_and_tags_list_what_exists():
    with pytest.raises(BackboneError, match="not a timm architecture"):
        split_backbone("vit_base_patch16_clip_gelu_224")
    with pytest.raises(BackboneError, match=r"no pretrained tag 'openai2'.*openai"):
        split_backbone("vit_base_patch16_clip_quickgelu_224.openai2")


def tiny_clip_vit(seed: int = 11, arch: str = "vit_base_patch16_clip_quickgelu_224", **args) -> dict[str, torch.Tensor]:
    """A tiny CLIP ViT's tensors in timm names, with a CLIP projection head (16 wide, zero bias, as
    timm's conversion of CLIP's bias-free projection leaves it)."""
    torch.manual_seed(seed)
    vit = timm.create_model(arch, num_classes=16, img_size=32, **{**TINY_ARGS, **args})
    with torch.no_grad():
        for p in vit.parameters():  # LayerNorm gains and biases away from their initial 1 and 0
            p.add_(0.1 * torch.randn_like(p))
        vit.head.bias.zero_()
    return {k: v.clone() for k, v in vit.state_dict().items()}


TIMM_TO_OPENAI = (  # timm's names -> OpenAI's / open_clip's, the inverse of timm's _convert_openai_clip
    (r"patch_embed\.proj\.", "conv1."),
    (r"norm_pre\.", "ln_pre."),
    (r"norm\.", "ln_post."),
    (r"blocks\.(\d+)\.norm(\d)\.", r"transformer.resblocks.\1.ln_\2."),
    (r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)", r"transformer.resblocks.\1.attn.in_proj_\2"),
    (r"blocks\.(\d+)\.attn\.proj\.", r"transformer.resblocks.\1.attn.out_proj."),
    (r"blocks\.(\d+)\.mlp\.fc1\.", r"transformer.resblocks.\1.mlp.c_fc."),
    (r"blocks\.(\d+)\.mlp\.fc2\.", r"transformer.resblocks.\1.mlp.c_proj."),
)


def open_clip_tensors(timm_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same image tower as an open_clip file holds it (`visual.*`), beside a text tower whose
    names (`transformer.resblocks.*`, `positional_embedding`) are the image tower's without the prefix."""
    out = {}
    for key, value in timm_state.items():
        if key == "cls_token":
            out["visual.class_embedding"] = value.reshape(-1)  # (1, 1, D) -> (D,)
        elif key == "pos_embed":
            out["visual.positional_embedding"] = value[0]  # (1, 1 + P, D) -> (1 + P, D)
        elif key == "head.weight":
            out["visual.proj"] = value.t().contiguous()  # Linear(D, E) -> (D, E), used as x @ proj
        elif key != "head.bias":  # zero: CLIP's projection has none
            for pattern, name in TIMM_TO_OPENAI:
                renamed, found = re.subn(f"^{pattern}", name, key)
                if found:
                    out[f"visual.{renamed}"] = value
                    break
            else:
                raise KeyError(f"no OpenAI name for {key}")
    text = torch.Generator().manual_seed(5)
    for key, shape in {
        "token_embedding.weight": (64, 24),
        "positional_embedding": (7, 24),
        "ln_final.weight": (24,),
        "transformer.resblocks.0.attn.in_proj_weight": (72, 24),
        "transformer.resblocks.0.mlp.c_fc.weight": (96, 24),
        "text_projection": (24, 16),
        "logit_scale": (),
    }.items():
        out[key] = torch.randn(shape, generator=text)
    return out


def hub_layout(filename: str, timm_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors `filename` of a timm hub repository holds: timm's names, or open_clip's."""
    return open_clip_tensors(timm_state) if filename.startswith("open_clip_") else timm_state


def hub_config(**model):
    return make_tiny_config(model={"backbone": "vit_base_patch16_clip_quickgelu_224.openai", "weights": "hub", **model})


def offline_cache(monkeypatch, cache: Path) -> Path:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def write_info_config(path: Path, backbone: str = "vit_base_patch16_clip_quickgelu_224.openai") -> str:
    path.write_text(
        f"model: {{backbone: {backbone}, weights: hub, image_size: 32, num_classes: 8,"
        " backbone_args: {embed_dim: 32, depth: 3, num_heads: 2}}\nlora: {rank: 2, alpha: 4.0}\n"
    )
    return str(path)


def test_offline_without_any_hub_file_one_error_lists_them_where_to_put_one_and_the_conversion(tmp_path, monkeypatch):
    offline_cache(monkeypatch, tmp_path / "empty_cache")
    with pytest.raises(BackboneError) as error:
        VELoRA.from_config(hub_config())
    message = str(error.value)
    assert OPENAI in message and "HF_HUB_OFFLINE is set" in message
    listed = re.findall(r"(\S+) \(not in the cache\)", message)
    assert (
        listed
        == list(HUB_FILENAMES)
        == ["model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    )
    assert f"hf download {OPENAI} model.safetensors" in message
    assert "model.weights=/path/to/model.safetensors" in message and str(tmp_path / "empty_cache") in message
    assert "velora convert-weights ViT-B-16.pt" in message and "--allow-torchscript" in message
    assert "openaipublic.azureedge.net/clip/models/5806e77c" in message
    info = describe_source(resolve_source("hub", "vit_base_patch16_clip_quickgelu_224.openai"))
    assert f"none of {', '.join(HUB_FILENAMES)} in the local cache and HF_HUB_OFFLINE is set" in info


def test_a_cached_hub_file_builds_offline_and_every_checkpoint_records_it(tmp_path, monkeypatch, capsys):
    cache = offline_cache(monkeypatch, tmp_path / "cache")
    hub_file = write_hub_cache(cache, OPENAI, {"model.safetensors": tiny_clip_vit()})["model.safetensors"]
    digest = hashlib.sha256(hub_file.read_bytes()).hexdigest()
    cfg = hub_config()
    model = VELoRA.from_config(cfg)

    assert torch.equal(model.backbone.pos_embed, load_file(str(hub_file))["pos_embed"]), "the hub file's weights"
    source = model.weights_source
    assert (source["kind"], source["hub_id"], source["tag"], source["file"], source["sha256"]) == (
        "hub",
        OPENAI,
        "openai",
        "model.safetensors",
        digest,
    )
    path = save_adapters(tmp_path / "a.safetensors", model, cfg, [str(i) for i in range(8)])
    assert read_adapters(path).weights_source == source
    # velora info names the tag and the sha256 without building the model from the file.
    assert main(["info", "--config", write_info_config(tmp_path / "hub.yaml")]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"hub {OPENAI} \(tag openai, file model.safetensors, sha256 {digest}\)", out)


def test_each_hub_layout_alone_builds_the_same_backbone_and_is_named_with_its_sha256(tmp_path, monkeypatch, capsys):
    timm_state = tiny_clip_vit()
    info_config = write_info_config(tmp_path / "hub.yaml")
    built = {}
    for filename in HUB_FILENAMES:
        cache = offline_cache(monkeypatch, tmp_path / filename)
        # the files before this one are marked as missing, as an online fetch of this one leaves the cache
        before = HUB_FILENAMES[: HUB_FILENAMES.index(filename)]
        hub_file = write_hub_cache(cache, OPENAI, {filename: hub_layout(filename, timm_state)}, lacks=before)[filename]
        digest = hashlib.sha256(hub_file.read_bytes()).hexdigest()

        backbone = build_backbone(hub_config().model, keep_projection=True)

        assert backbone.weights_source == {
            "kind": "hub",
            "hub_id": OPENAI,
            "tag": "openai",
            "file": filename,
            "path": str(hub_file),
            "sha256": digest,
        }
        assert main(["info", "--config", info_config]) == 0
        weights_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("weights"))
        assert f"(tag openai, file {filename}, sha256 {digest}), {hub_file}" in weights_line
        built[filename] = backbone

    for filename, backbone in built.items():
        state = backbone.state_dict()
        assert state.keys() == timm_state.keys(), filename
        for key, tensor in timm_state.items():
            assert torch.equal(state[key], tensor), f"{filename}: {key}"
        assert repr(backbone) == repr(built["model.safetensors"]), f"{filename}: another architecture"
        assert normalization(backbone) == normalization(built["model.safetensors"]), filename


def test_the_named_architecture_and_its_tag_decide_whatever_an_open_clip_file_suggests(tmp_path, monkeypatch):
    # LAION's ViT-L/14 tag is normalised with mean = std = 0.5 and uses GELU; an open_clip file does
    # not record either, and one with OpenAI's `input_resolution` entry reads as QuickGELU.
    repo, tiny_l14 = "timm/vit_large_patch14_clip_224.laion2b", {"patch_size": 16}
    tensors = open_clip_tensors(tiny_clip_vit(arch="vit_large_patch14_clip_224", **tiny_l14))
    tensors["input_resolution"] = torch.tensor(224)
    offline_cache(monkeypatch, tmp_path / "cache")
    write_hub_cache(tmp_path / "cache", repo, {"open_clip_model.safetensors": tensors})

    cfg = make_tiny_config(
        model={
            "backbone": "vit_large_patch14_clip_224.laion2b",
            "weights": "hub",
            "backbone_args": {**TINY_ARGS, **tiny_l14},
        }
    )
    backbone = build_backbone(cfg.model)

    assert backbone.weights_source["file"] == "open_clip_model.safetensors"
    assert normalization(backbone) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert type(backbone.blocks[0].mlp.act) is torch.nn.GELU


def test_velora_info_names_the_file_a_run_would_read(tmp_path, monkeypatch):
    cache = offline_cache(monkeypatch, tmp_path / "cache")
    hub_file = write_hub_cache(cache, OPENAI, {"pytorch_model.bin": tiny_clip_vit()})["pytorch_model.bin"]
    backbone = "vit_base_patch16_clip_quickgelu_224.openai"
    assert resolve_source("hub", backbone)["path"] == str(hub_file)  # offline only cached files count

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # online, model.safetensors is asked for first
    assert describe_source(resolve_source("hub", backbone)) == (
        f"hub {OPENAI} (tag openai), not in the local cache: the first the repository has of model.safetensors, "
        "pytorch_model.bin, open_clip_model.safetensors, open_clip_pytorch_model.bin is fetched on first use"
    )
    no_exist = cache / f"models--{OPENAI.replace('/', '--')}" / ".no_exist" / HUB_COMMIT
    no_exist.mkdir(parents=True)
    (no_exist / "model.safetensors").touch()  # as the hub's answer that the repository lacks it leaves the cache
    assert resolve_source("hub", backbone)["file"] == "pytorch_model.bin"


class RunsCommand:
    """A pickle whose loading would run a shell command (one that only creates a file)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def test_a_pytorch_model_bin_that_would_run_code_is_refused_unrun(tmp_path, monkeypatch):
    cache = offline_cache(monkeypatch, tmp_path / "cache")
    marker = tmp_path / "ran"
    evil = {**tiny_clip_vit(), "payload": RunsCommand(marker)}
    hub_file = write_hub_cache(cache, OPENAI, {"pytorch_model.bin": evil})["pytorch_model.bin"]
    assert not marker.exists()  # writing the pickle ran nothing

    with pytest.raises(BackboneError, match="weights-only") as error:
        build_backbone(hub_config().model)
    assert str(hub_file) in str(error.value) and "system" in str(error.value)
    assert not marker.exists()


class FakeHub:
    """huggingface_hub.hf_hub_download against a repository holding `repository` (None: the hub
    cannot be reached), with `cached` in the local cache; it records each request."""

    def __init__(self, folder: Path, repository: tuple[str, ...] | None, cached: tuple[str, ...] = ()):
        self.folder, self.repository, self.cached, self.requests = folder, repository, cached, []

    def __call__(self, repo_id, filename, *, cache_dir=None, local_files_only=False):
        from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError

        self.requests.append((filename, local_files_only))
        if filename in self.cached or (not local_files_only and self.repository and filename in self.repository):
            path = self.folder / filename
            path.write_bytes(filename.encode())
            return str(path)
        if local_files_only or self.repository is None:
            raise LocalEntryNotFoundError("cannot find the requested files in the disk cache")
        raise EntryNotFoundError(f"404: {filename} is not in {repo_id}")


def test_online_a_file_the_repository_lacks_means_the_next_name(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    hub = FakeHub(tmp_path, repository=("open_clip_pytorch_model.bin",))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub)
    assert (
        fetch_hub_file(hub_weights("vit_base_patch16_clip_quickgelu_224.openai")).name == "open_clip_pytorch_model.bin"
    )
    assert hub.requests == [(name, False) for name in HUB_FILENAMES]

    hub = FakeHub(tmp_path, repository=())
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub)
    with pytest.raises(BackboneError) as error:
        fetch_hub_file(hub_weights("vit_base_patch16_clip_quickgelu_224.openai"))
    assert re.findall(r"(\S+) \(not in the repository\)", str(error.value)) == list(HUB_FILENAMES)
    assert "Give model.weights a local file" in str(error.value)


def test_once_the_hub_is_unreachable_only_cached_files_count(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    hub = FakeHub(tmp_path, repository=None, cached=("open_clip_model.safetensors",))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub)
    assert (
        fetch_hub_file(hub_weights("vit_base_patch16_clip_quickgelu_224.openai")).name == "open_clip_model.safetensors"
    )
    assert hub.requests == [
        ("model.safetensors", False),
        ("pytorch_model.bin", True),
        ("open_clip_model.safetensors", True),
    ]

    hub = FakeHub(tmp_path, repository=None)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub)
    with pytest.raises(BackboneError) as error:
        fetch_hub_file(hub_weights("vit_base_patch16_clip_quickgelu_224.openai"))
    message = str(error.value)
    assert re.findall(r"(\S+) \(not in the cache\)", message) == list(HUB_FILENAMES)
    assert (
        "the hub did not give model.safetensors: LocalEntryNotFoundError" in message
        and f"hf download {OPENAI}" in message
    )


@pytest.mark.slow
def test_velora_train_reads_a_cached_pytorch_model_bin_and_records_it(tiny_dataset, tmp_path, monkeypatch):
    import json

    from velora.training.checkpoint import read_resume_state

    cache = offline_cache(monkeypatch, tmp_path / "cache")
    hub_file = write_hub_cache(cache, OPENAI, {"pytorch_model.bin": tiny_clip_vit()}, lacks=("model.safetensors",))[
        "pytorch_model.bin"
    ]
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps(hub_config().to_dict()))  # JSON is YAML
    out = tmp_path / "run"

    assert main(["train", "--config", str(config), f"data.root={tiny_dataset}", f"train.output_dir={out}"]) == 0

    recorded = read_adapters(out / "best.safetensors").weights_source
    assert (recorded["kind"], recorded["file"], recorded["path"]) == ("hub", "pytorch_model.bin", str(hub_file))
    assert recorded["sha256"] == hashlib.sha256(hub_file.read_bytes()).hexdigest()
    assert read_resume_state(out / "checkpoints" / "last.ckpt")["velora_weights_source"] == recorded


def test_a_local_file_is_recorded_with_its_path_and_sha256_and_a_changed_file_warns(tmp_path):
    torch.manual_seed(3)
    vit = timm.create_model("vit_base_patch16_clip_quickgelu_224", num_classes=0, img_size=32, **TINY_ARGS)
    weights = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(weights))
    cfg = make_tiny_config(model={"weights": str(weights)})
    model = VELoRA.from_config(cfg)
    assert model.weights_source == {
        "kind": "local",
        "path": str(weights),
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
    }
    path = save_adapters(tmp_path / "a.safetensors", model, cfg, [str(i) for i in range(8)])
    torch.manual_seed(4)  # other weights at the same path: the adapters no longer fit them
    other = timm.create_model("vit_base_patch16_clip_quickgelu_224", num_classes=0, img_size=32, **TINY_ARGS)
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(weights))
    with pytest.warns(UserWarning, match="trained on backbone weights with sha256"):
        load_model(path)
