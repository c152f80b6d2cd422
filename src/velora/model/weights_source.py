"""Where the backbone's weights come from, exactly: a hub file, a local file, the package, or none.

`model.backbone` is a timm architecture with an optional pretrained tag after a dot:
`vit_base_patch16_clip_quickgelu_224.openai` is OpenAI's CLIP ViT-B/16, the paper's weights. With
`model.weights: hub`, velora fetches one file of the tag's repository on the Hugging Face hub itself
(`timm/vit_base_patch16_clip_224.openai`, through the hub's cache; it honours HF_HUB_OFFLINE,
HF_HOME and HF_HUB_CACHE): the first of HUB_FILENAMES the repository has, then reads it like any
local weights file. So every source is a file on disk, and `velora info` and every checkpoint
record which: the hub id, tag and file with its sha256, or the local path with its sha256
(`weights_source`).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import timm

from velora.errors import VeloraError

# The files a timm hub repository may hold for its tag, in the order they are tried: timm's own
# (safetensors, then the pickle timm's load_state_dict_from_hf falls back to), then open_clip's,
# which hold both towers (velora reads the image tower, as `velora convert-weights` does). Not
# every repository has every file, nor a model.safetensors.
HUB_FILENAMES = ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors", "open_clip_pytorch_model.bin")
# OpenAI's original archives of the architectures the shipped configs use (TorchScript: converted
# once with `velora convert-weights --allow-torchscript`, see velora.model.weights).
OPENAI_ARCHIVES = {
    "vit_base_patch16_clip_quickgelu_224": "https://openaipublic.azureedge.net/clip/models/"
    "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
    "vit_base_patch16_clip_224": "https://openaipublic.azureedge.net/clip/models/"
    "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
}


class BackboneError(VeloraError, ValueError):
    """The backbone architecture or its weights cannot be loaded."""


@dataclass(frozen=True)
class HubWeights:
    """The hub repository `model.weights: hub` stands for; its first file of HUB_FILENAMES is read."""

    backbone: str  # the architecture, without its tag
    tag: str | None  # the pretrained tag (e.g. "openai"); None where timm's default weights have none
    repo_id: str  # e.g. "timm/vit_base_patch16_clip_224.openai"

    def url(self, filename: str) -> str:
        return f"https://huggingface.co/{self.repo_id}/resolve/main/{filename}"


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
    """The hub cache as the environment says now, by huggingface_hub's rule (which it reads once, at
    import): HF_HUB_CACHE (or its old name HUGGINGFACE_HUB_CACHE), else HF_HOME/hub, else
    $XDG_CACHE_HOME/huggingface/hub; None (~/.cache/huggingface/hub) where none is set."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(name):
            return os.environ[name]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    if os.environ.get("XDG_CACHE_HOME"):
        return str(Path(os.environ["XDG_CACHE_HOME"]) / "huggingface" / "hub")
    return None


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() not in ("", "0", "false", "no")


def cached_hub_file(hub: HubWeights) -> Path | None:
    """The cached hub file `fetch_hub_file` would read, or None when it is not known without asking
    the hub: no network. Online, a file neither cached nor marked as missing from the repository
    (the cache's .no_exist) is asked for before the names after it."""
    from huggingface_hub import try_to_load_from_cache

    for filename in HUB_FILENAMES:
        found = try_to_load_from_cache(hub.repo_id, filename, cache_dir=hub_cache_dir())
        if isinstance(found, str):
            return Path(found)
        if found is None and not hub_offline():  # not the cache's mark of a file the repository lacks
            return None
    return None


def fetch_hub_file(hub: HubWeights) -> Path:
    """The first of HUB_FILENAMES the repository has, from the cache or downloaded into it (the
    cache's snapshots/<commit>/<file>: the path's name is the file's). Once the hub does not give a
    file (offline, no network, a proxy, an HTTP error) only cached files count. BackboneError listing
    every file tried and how to get one otherwise."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError

    cache_only = hub_offline()
    unreachable = "HF_HUB_OFFLINE is set" if cache_only else ""
    tried = []
    for filename in HUB_FILENAMES:
        try:
            return Path(hf_hub_download(hub.repo_id, filename, cache_dir=hub_cache_dir(), local_files_only=cache_only))
        except Exception as error:
            # The hub answered that the repository has no such file (a 404): try the next name.
            if isinstance(error, EntryNotFoundError) and not isinstance(error, LocalEntryNotFoundError):
                tried.append(f"{filename} (not in the repository)")
                continue
            tried.append(f"{filename} (not in the cache)")
            if not cache_only:
                cache_only, unreachable = True, f"the hub did not give {filename}: {type(error).__name__}: {error}"
    raise BackboneError(_hub_advice(hub, tried, unreachable))


def _hub_advice(hub: HubWeights, tried: list[str], unreachable: str) -> str:
    """What went wrong with each hub file, and the ways to get one."""
    names = ", ".join(tried)
    if not unreachable:  # the hub answered for every file: this repository has none velora reads
        return f"model.weights: hub found no weights in {hub.repo_id}; tried {names}. Give model.weights a local file."
    archive = OPENAI_ARCHIVES.get(hub.backbone) if hub.tag == "openai" else None
    convert = (
        f" Or, from OpenAI's own archive ({archive}): velora convert-weights ViT-B-16.pt vit_b16_openai.safetensors "
        "--allow-torchscript, then model.weights=vit_b16_openai.safetensors."
        if archive
        else ""
    )
    first = HUB_FILENAMES[0]
    return (
        f"model.weights: hub found no weights of {hub.repo_id} ({unreachable}); tried {names}. Fetch one of them "
        f"on a machine with network (`hf download {hub.repo_id} {first}`, "
        f"or {hub.url(first)}; the next name where the repository lacks it), then either put it anywhere and set "
        f"model.weights=/path/to/{first} (or the file you fetched), or copy the Hugging Face cache "
        f"({hub_cache_dir() or '~/.cache/huggingface/hub'}) to this machine.{convert}"
    )


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

    weights: the config's model.weights; path: the file or folder read (None for 'none', and for a
    hub file not fetched yet).
    """
    if weights == "none":
        return {"kind": "none", "backbone": backbone, "init": "random, seed 0"}
    source: dict = {"kind": "hub" if hub else "shipped" if weights.startswith("shipped:") else "local"}
    if hub:
        source.update(hub_id=hub.repo_id, tag=hub.tag)
        if path is None:  # no hub file fetched yet (velora info)
            return source
        source["file"] = path.name  # the hub cache keeps each file under its own name
    assert path is not None  # only 'none' and a hub file not fetched yet have none
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
    assert path is not None  # None only for 'none' and 'hub'
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
        if "path" not in source:
            files, hub = ", ".join(HUB_FILENAMES), f"hub {source['hub_id']} (tag {source['tag']})"
            if hub_offline():
                return (
                    f"{hub}, none of {files} in the local cache and HF_HUB_OFFLINE is set: a run stops, saying how "
                    "to get one"
                )
            return f"{hub}, not in the local cache: the first the repository has of {files} is fetched on first use"
        return f"hub {source['hub_id']} (tag {source['tag']}, file {source['file']}, sha256 {digest}), {source['path']}"
    if kind == "shipped":
        from velora.model.weights import shipped_manifest

        path = Path(source["path"])
        settings = shipped_manifest(path).get("settings", {})
        what = (
            f"fractal-pretrained on {settings.get('num_categories', '?')} IFS categories" if settings else "pretrained"
        )
        return f"shipped {what} (velora/pretrained/{path.name}, sha256 {digest})"
    return f"local {source['path']} (sha256 {digest})"
