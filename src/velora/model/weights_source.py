"""Where the backbone's weights come from, exactly: a hub file, a local file, the package, or none.

`model.backbone` is a timm architecture with an optional pretrained tag after a dot:
`vit_base_patch16_clip_quickgelu_224.openai` is OpenAI's CLIP ViT-B/16, the paper's weights. With
`model.weights: hub`, velora fetches the tag's one file from the Hugging Face hub itself
(`timm/vit_base_patch16_clip_224.openai`, `model.safetensors`, through the hub's cache; it honours
HF_HUB_OFFLINE, HF_HOME and HF_HUB_CACHE), then reads it like any local weights file. So every
source is a file on disk, and `velora info` and every checkpoint record which: the hub id, tag and
file with its sha256, or the local path with its sha256 (`weights_source`).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import timm

HUB_FILENAME = "model.safetensors"  # timm's own format of every timm hub repository
# OpenAI's original archives of the architectures the shipped configs use (TorchScript: converted
# once with `velora convert-weights --allow-torchscript`, see velora.model.weights).
OPENAI_ARCHIVES = {
    "vit_base_patch16_clip_quickgelu_224": "https://openaipublic.azureedge.net/clip/models/"
    "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
    "vit_base_patch16_clip_224": "https://openaipublic.azureedge.net/clip/models/"
    "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
}


class BackboneError(ValueError):
    """The backbone architecture or its weights cannot be loaded."""


@dataclass(frozen=True)
class HubWeights:
    """The hub file `model.weights: hub` stands for."""

    backbone: str  # the architecture, without its tag
    tag: str  # the pretrained tag (e.g. "openai")
    repo_id: str  # e.g. "timm/vit_base_patch16_clip_224.openai"
    filename: str = HUB_FILENAME

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo_id}/resolve/main/{self.filename}"


def split_backbone(name: str) -> tuple[str, str | None]:
    """`arch.tag` -> (arch, tag); a name without a dot has no tag. BackboneError for an unknown
    architecture or tag, listing what exists."""
    arch, _, tag = name.partition(".")
    if arch not in timm.list_models(arch):
        close = timm.list_models(f"*{arch.split('_')[0]}*")[:8]
        raise BackboneError(f"model.backbone '{name}' is not a timm architecture; similar names: {', '.join(close)}")
    if tag and f"{arch}.{tag}" not in timm.list_pretrained(f"{arch}.*"):
        tags = [n.partition(".")[2] for n in timm.list_pretrained(f"{arch}.*")]
        raise BackboneError(
            f"model.backbone '{name}': timm has no pretrained tag '{tag}' for {arch}; its tags are "
            f"{', '.join(tags) or 'none'}"
        )
    return arch, tag or None


def hub_weights(name: str) -> HubWeights:
    """The hub file of `model.backbone` `name` (its tag, else timm's default tag, with a warning
    naming it: for CLIP architectures timm's default is often not OpenAI's weights). No network."""
    arch, tag = split_backbone(name)
    cfg = timm.models.get_pretrained_cfg(f"{arch}.{tag}" if tag else arch)
    if cfg is None or not cfg.hf_hub_id:
        raise BackboneError(f"model.backbone '{name}' has no weights on the hub; give model.weights a local file")
    if tag is None:
        tag = cfg.tag
        warnings.warn(
            f"model.backbone '{name}' names no pretrained tag, so model.weights: hub means timm's default, "
            f"'{tag}' ({cfg.hf_hub_id}). Name the tag to be explicit, e.g. {arch}.openai for OpenAI's CLIP "
            "weights, the paper's.",
            stacklevel=2,
        )
    return HubWeights(backbone=arch, tag=tag, repo_id=cfg.hf_hub_id)


def hub_cache_dir() -> str | None:
    """The hub cache as the environment says now (huggingface_hub reads it once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() not in ("", "0", "false", "no")


def cached_hub_file(hub: HubWeights) -> Path | None:
    """The hub file in the local cache, or None: no network."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(hub.repo_id, hub.filename, cache_dir=hub_cache_dir())
    return Path(found) if isinstance(found, str) else None


def fetch_hub_file(hub: HubWeights) -> Path:
    """The hub file, from the cache or downloaded into it; BackboneError saying how to get it otherwise."""
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(hub.repo_id, hub.filename, cache_dir=hub_cache_dir(), local_files_only=hub_offline())
        return Path(path)
    except Exception as error:  # offline, no network, a proxy, an HTTP error: one message for all
        offline = "HF_HUB_OFFLINE is set and it is not in the cache"
        reason = offline if hub_offline() else f"{type(error).__name__}: {error}"
        archive = OPENAI_ARCHIVES.get(hub.backbone) if hub.tag == "openai" else None
        convert = (
            f" Or, from OpenAI's own archive ({archive}): velora convert-weights ViT-B-16.pt vit_b16_openai.safetensors "
            "--allow-torchscript, then model.weights=vit_b16_openai.safetensors."
            if archive else ""
        )
        raise BackboneError(
            f"model.weights: hub needs {hub.repo_id}/{hub.filename} ({reason}). Fetch that one file on a machine "
            f"with network ({hub.url}, or `hf download {hub.repo_id} {hub.filename}`), then either "
            f"put it anywhere and set model.weights=/path/to/{hub.filename}, or copy the Hugging Face cache "
            f"({hub_cache_dir() or '~/.cache/huggingface/hub'}) to this machine.{convert}"
        ) from None


def file_sha256(path: Path) -> str:
    path = Path(path).resolve()
    stat = path.stat()
    return _sha256(str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int) -> str:  # size and mtime: a changed file is hashed again
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def weights_source(weights: str, backbone: str, path: Path | None, hub: HubWeights | None = None) -> dict:
    """What a checkpoint records about its backbone's weights (JSON-able).

    weights: the config's model.weights; path: the file or folder read (None for 'none').
    """
    if weights == "none":
        return {"kind": "none", "backbone": backbone, "init": "random, seed 0"}
    source: dict = {"kind": "hub" if hub else "shipped" if weights.startswith("shipped:") else "local"}
    if hub:
        source.update(hub_id=hub.repo_id, tag=hub.tag, file=hub.filename)
    if path is None:  # a hub file not fetched yet (velora info)
        return source
    source["path"] = str(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES)
        source["files"] = {p.name: file_sha256(p) for p in files}
    else:
        source["sha256"] = file_sha256(path)
    return source


def resolve_source(weights: str, backbone: str) -> dict:
    """`weights_source` of a config without building the model or fetching anything (velora info):
    a hub file only if it is in the local cache already."""
    from velora.model.weights import resolve_weights

    if weights == "none":
        return weights_source(weights, backbone, None)
    if weights == "hub":
        hub = hub_weights(backbone)
        return weights_source(weights, backbone, cached_hub_file(hub), hub)
    path = resolve_weights(weights)
    if not path.exists():
        return {"kind": "local", "path": str(path), "missing": True}
    return weights_source(weights, backbone, path)


# A backbone at least as wide as CLIP's ViT-B (768) is "CLIP-sized": trained from random weights, it is
# almost always a config that forgot model.weights (the paper's figures need the pre-trained CLIP).
# Narrower models (the demo's 128-wide ViT, the tests' 32-wide one) are trained from random
# weights on purpose, so they get no warning.
CLIP_SIZED_WIDTH = 768


def random_backbone_warning(source: dict, width: int) -> str | None:
    """One line warning that a CLIP-sized backbone (width >= CLIP_SIZED_WIDTH) is random, saying
    which field to set; None when the weights are pre-trained or the backbone is smaller."""
    if source.get("kind") != "none" or width < CLIP_SIZED_WIDTH:
        return None
    return (
        f"warning: model.weights is none: the {width}-wide backbone is randomly initialised, not pre-trained, "
        "so accuracy will be far below the paper's; set model.weights=hub (the backbone tag's weights from the "
        "Hugging Face hub) or model.weights=/path/to/weights.safetensors"
    )


def describe_source(source: dict) -> str:
    """One line for `velora info` and reports."""
    kind = source.get("kind")
    if kind == "none":
        return "random initialisation (seed 0), no pre-training"
    if source.get("missing"):
        return f"local {source['path']} (missing: give an existing file)"
    digest = source.get("sha256") or ", ".join(f"{n} {d[:12]}" for n, d in source.get("files", {}).items())
    if kind == "hub":
        where = source.get("path") or "not in the local cache: fetched on first use"
        sha = f", sha256 {digest}" if digest else ""
        return f"hub {source['hub_id']} (tag {source['tag']}, file {source['file']}{sha}), {where}"
    if kind == "shipped":
        from velora.model.weights import shipped_manifest

        path = Path(source["path"])
        settings = shipped_manifest(path).get("settings", {})
        what = f"fractal-pretrained on {settings.get('num_categories', '?')} IFS categories" if settings else "pretrained"
        return f"shipped {what} (velora/pretrained/{path.name}, sha256 {digest})"
    return f"local {source['path']} (sha256 {digest})"
