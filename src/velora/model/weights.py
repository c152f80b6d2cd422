"""Backbone weights from local files in the formats CLIP ViTs are shipped in, renamed to timm.

Every reader returns the same thing: a state dict in timm `VisionTransformer` naming and a
metadata dict describing the architecture those tensors need (image and patch size, width, depth,
heads) and the normalisation they were trained with, where the format records it.

Formats, detected from the file and its keys:
- timm: `.safetensors` or `.pth` with timm names (`module.` / `model.` prefixes are stripped), or a
  timm hub folder (`config.json` with `architecture` + `model.safetensors`).
- OpenAI CLIP / open_clip: state dicts with `visual.*` keys (`visual.conv1.weight`,
  `visual.transformer.resblocks.N...`), or an open_clip hub folder (`open_clip_config.json`).
- OpenAI's TorchScript archive (`ViT-B-16.pt` as cached by the `clip` package): only with
  `allow_torchscript=True`, because loading it runs code from the file.
- Hugging Face `CLIPVisionModel` / `CLIPModel` folders (`config.json` + `model.safetensors`).

Pickled files are read with `torch.load(weights_only=True)` only, so a file that would run code
when unpickled is refused. The OpenAI -> timm renaming follows timm's `_convert_openai_clip`
(timm/models/vision_transformer.py).
"""

from __future__ import annotations

import json
import math
import re
import sys
import zipfile
from functools import partial
from pathlib import Path

import torch
import torch.nn as nn

from velora.errors import VeloraError

# The statistics of OpenAI's CLIP training images; open_clip uses them for its OpenAI and most
# LAION checkpoints (open_clip.constants.OPENAI_DATASET_MEAN / _STD).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Key of the JSON metadata that `convert_weights` writes into the safetensors header.
HEADER_KEY = "velora_metadata"

OPENAI_SWAPS = (  # ordered: `ln_post` and `ln_pre` must be renamed before the generic `ln_`
    ("conv1", "patch_embed.proj"),
    ("positional_embedding", "pos_embed"),
    ("transformer.resblocks.", "blocks."),
    ("ln_pre", "norm_pre"),
    ("ln_post", "norm"),
    ("ln_", "norm"),
    ("in_proj_", "qkv."),
    ("out_proj", "proj"),
    ("mlp.c_fc", "mlp.fc1"),
    ("mlp.c_proj", "mlp.fc2"),
)

HF_SWAPS = (
    ("embeddings.patch_embedding", "patch_embed.proj"),
    ("pre_layrnorm", "norm_pre"),  # sic: the Hugging Face name has this typo
    ("post_layernorm", "norm"),
    ("encoder.layers.", "blocks."),
    ("self_attn.out_proj", "attn.proj"),
    ("layer_norm1", "norm1"),
    ("layer_norm2", "norm2"),
)

CONVERT_HINT = "velora convert-weights {path} OUT.safetensors --allow-torchscript"

# `model.weights: shipped:<name>` names <package>/pretrained/<name>.safetensors; its manifest
# <name>.safetensors.json (written by `velora pretrain`) holds the recipe and the sha256.
SHIPPED_PREFIX = "shipped:"
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "pretrained"


class WeightsError(VeloraError, ValueError):
    """A weights file cannot be read safely or is not a ViT checkpoint we know."""


def shipped_weights() -> list[str]:
    """Names of the weights inside the package (`model.weights: shipped:<name>`)."""
    return sorted(p.name.removesuffix(".safetensors") for p in SHIPPED_DIR.glob("*.safetensors"))


def resolve_weights(value: str) -> Path | None:
    """The file or folder a `model.weights` value names; None for 'none' and 'hub'."""
    if value in ("none", "hub"):
        return None
    if value.startswith(SHIPPED_PREFIX):
        name = value[len(SHIPPED_PREFIX) :]
        path = SHIPPED_DIR / f"{name}.safetensors"
        if not path.is_file():
            raise WeightsError(
                f"model.weights '{value}': no weights named '{name}' ship with this package; "
                f"shipped: {', '.join(SHIPPED_PREFIX + n for n in shipped_weights()) or 'none'}"
            )
        return path
    return Path(value)


def shipped_manifest(path: Path) -> dict:
    """The manifest next to a shipped weights file ({} if there is none)."""
    manifest = Path(f"{path}.json")
    return json.loads(manifest.read_text()) if manifest.is_file() else {}


def load_state_dict_any(path: str | Path, *, allow_torchscript: bool = False) -> tuple[dict[str, torch.Tensor], dict]:
    """Read ViT weights from `path` in any supported format -> (timm state dict, metadata).

    Metadata keys: `source_format` ('timm', 'openai_clip', 'hf_clip'), `image_size` and
    `patch_size` (pixels), `embed_dim`, `depth`, `num_heads`, `mlp_ratio`, `pre_norm`, `proj_dim`
    (width of the image-text projection, stored as `head.weight`), `act_layer` and
    `layer_norm_eps` (timm names; None where the format does not record them) and `mean` / `std`
    (RGB in [0, 1]; None where unknown).
    """
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"weights path '{path}' does not exist")
    if path.is_dir():
        return _load_folder(path)
    if _is_torchscript(path):
        return _load_torchscript(path, allow_torchscript)
    raw, header = _read_tensors(path)
    state, meta = _convert(raw, path)
    meta.update(header)
    return state, meta


def convert_state_dict(raw: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict]:
    """Rename a state dict in timm, OpenAI/open_clip or Hugging Face CLIP naming to timm's."""
    raw = _unwrap(raw)
    if any(k.startswith("visual.trunk.") for k in raw):  # open_clip with a timm image tower
        return _infer_metadata(_strip(raw, "visual.trunk."), "timm")
    if "visual.class_embedding" in raw:
        meta_extra = {}
        if "input_resolution" in raw:  # only OpenAI's own checkpoints carry these scalars
            meta_extra = {"act_layer": "quick_gelu", "layer_norm_eps": 1e-5}
        state, meta = _infer_metadata(openai_to_timm(raw), "openai_clip")
        meta.update(mean=list(CLIP_MEAN), std=list(CLIP_STD), **meta_extra)
        return state, meta
    if "vision_model.embeddings.class_embedding" in raw:
        return _infer_metadata(hf_to_timm(raw), "hf_clip")
    if "patch_embed.proj.weight" in raw:
        return _infer_metadata(raw, "timm")
    raise WeightsError(
        "weights are not a ViT checkpoint in timm, OpenAI/open_clip or Hugging Face CLIP naming; "
        f"first keys: {list(raw)[:6]}"
    )


def openai_to_timm(raw: dict[str, torch.Tensor], prefix: str = "visual.") -> dict[str, torch.Tensor]:
    """OpenAI / open_clip image-tower keys -> timm, as timm's `_convert_openai_clip` does it."""
    out = {}
    for key, value in raw.items():
        if not key.startswith(prefix):
            continue
        key = key[len(prefix) :]
        for old, new in OPENAI_SWAPS:
            key = key.replace(old, new)
        if key == "proj":  # (D, E) used as `x @ proj`; timm's head is Linear(D, E)
            out["head.weight"] = value.transpose(0, 1)
            out["head.bias"] = torch.zeros(value.shape[1], dtype=value.dtype)
            continue
        if key == "class_embedding":  # (D,) -> (1, 1, D)
            key, value = "cls_token", value.reshape(1, 1, -1)
        elif key == "pos_embed":  # (1 + P, D) -> (1, 1 + P, D)
            value = value.unsqueeze(0)
        out[key] = value
    return out


def hf_to_timm(raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Hugging Face `CLIPVisionModel` keys -> timm; separate q, k, v projections become one qkv."""
    out = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in raw.items():
        if key == "visual_projection.weight":  # nn.Linear(D, E) already, bias-free
            out["head.weight"] = value
            out["head.bias"] = torch.zeros(value.shape[0], dtype=value.dtype)
            continue
        if not key.startswith("vision_model.") or key.endswith("position_ids"):
            continue
        key = key[len("vision_model.") :]
        if key == "embeddings.class_embedding":
            out["cls_token"] = value.reshape(1, 1, -1)
            continue
        if key == "embeddings.position_embedding.weight":
            out["pos_embed"] = value.unsqueeze(0)
            continue
        match = re.fullmatch(r"encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)", key)
        if match:
            block, part, kind = match.groups()
            qkv.setdefault((block, kind), {})[part] = value
            continue
        for old, new in HF_SWAPS:
            key = key.replace(old, new)
        out[key] = value
    for (block, kind), parts in qkv.items():
        # timm splits qkv output as [q; k; v] along the first axis, each (D, ...)
        out[f"blocks.{block}.attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def timm_model_kwargs(meta: dict) -> dict:
    """Keyword arguments for `timm.create_model` / `VisionTransformer` that fit these weights."""
    kwargs = {k: meta[k] for k in ("patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio") if meta.get(k)}
    if meta.get("image_size"):
        kwargs["img_size"] = meta["image_size"]
    if meta.get("pre_norm"):
        kwargs["pre_norm"] = True
    if meta.get("act_layer"):
        kwargs["act_layer"] = meta["act_layer"]
    if meta.get("layer_norm_eps"):
        kwargs["norm_layer"] = partial(nn.LayerNorm, eps=meta["layer_norm_eps"])
    return kwargs


def convert_weights(src: str | Path, dst: str | Path, *, allow_torchscript: bool = False) -> dict:
    """Write the weights of `src` (any supported format) as timm-named safetensors at `dst`.

    The metadata goes into the safetensors header as JSON under `velora_metadata`, so loading
    `dst` later gives the same state dict and metadata without running any code. Returns the metadata.
    """
    from safetensors.torch import save_file

    dst = Path(dst)
    if dst.suffix != ".safetensors":
        raise WeightsError(f"convert-weights writes safetensors; name the output '*.safetensors', not '{dst}'")
    state, meta = load_state_dict_any(src, allow_torchscript=allow_torchscript)
    # safetensors refuses views that share storage; each tensor gets its own contiguous copy
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(dst), metadata={"format": "pt", HEADER_KEY: json.dumps(meta)})
    return meta


def _convert(raw: dict[str, torch.Tensor], path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """convert_state_dict, with every failure a WeightsError naming the file `raw` was read from."""
    try:
        return convert_state_dict(raw)
    except WeightsError as exc:
        raise WeightsError(f"'{path}': {exc}") from None
    except (IndexError, KeyError, RuntimeError, ValueError, ZeroDivisionError) as exc:  # a shape no ViT has
        raise WeightsError(
            f"'{path}': the tensors do not have the shapes of a ViT ({type(exc).__name__}: {exc})"
        ) from None


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive is a zip holding compiled code and `constants.pkl`."""
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/constants.pkl") or "/code/" in name for name in archive.namelist())
    except (zipfile.BadZipFile, UnicodeDecodeError, NotImplementedError):  # a damaged zip: torch.load then says why
        return False


def _load_torchscript(path: Path, allow: bool) -> tuple[dict[str, torch.Tensor], dict]:
    if not allow:
        raise WeightsError(
            f"'{path}' is a TorchScript archive; loading it runs code stored in the file, so it is "
            "refused by default. If you trust the file, convert it once to safetensors with "
            f"`{CONVERT_HINT.format(path=path)}` and use the .safetensors file."
        )
    print(
        f"warning: loading TorchScript archive '{path}' runs code from the file; do this only for files you trust",
        file=sys.stderr,
    )
    module = torch.jit.load(str(path), map_location="cpu")
    return convert_state_dict(dict(module.state_dict()))


def _read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors of a safetensors or weights-only pickle file, with metadata from its header."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                header = f.metadata() or {}
                raw = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as exc:
            raise WeightsError(f"cannot read '{path}' as safetensors: {exc}") from None
        try:
            metadata = json.loads(header.get(HEADER_KEY, "{}"))
        except json.JSONDecodeError as exc:
            raise WeightsError(f"'{path}': the {HEADER_KEY} entry of its header is not JSON ({exc})") from None
        if not isinstance(metadata, dict):
            raise WeightsError(f"'{path}': the {HEADER_KEY} entry of its header is not a JSON mapping")
        return raw, metadata
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(
            f"cannot read '{path}' as a weights-only PyTorch file (a pickle that would run code or "
            f"holds other objects is refused): {exc}"
        ) from None
    if not isinstance(raw, dict):
        raise WeightsError(f"'{path}' holds a {type(raw).__name__}, not a state dict")
    return raw, {}


def _unwrap(raw: dict) -> dict[str, torch.Tensor]:
    """The tensors of a training checkpoint, without DataParallel / EMA-wrapper prefixes."""
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(raw.get(key), dict):
            raw = raw[key]
            break
    raw = {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    for prefix in ("module.", "model."):
        if raw and all(k.startswith(prefix) for k in raw):
            raw = _strip(raw, prefix)
    return raw


def _strip(raw: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in raw.items() if k.startswith(prefix)}


def _infer_metadata(state: dict[str, torch.Tensor], source: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Architecture facts readable from the tensor shapes alone."""
    missing = [k for k in ("patch_embed.proj.weight", "pos_embed") if k not in state]
    if missing:
        raise WeightsError(f"{source} weights lack {missing}; is this the image tower of a ViT?")
    width, _, patch, _ = state["patch_embed.proj.weight"].shape  # (D, 3, p, p)
    tokens = state["pos_embed"].shape[1]
    prefix = 1 if "cls_token" in state else 0
    grid = math.isqrt(tokens - prefix)
    depth = len({int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
    fc1 = state.get("blocks.0.mlp.fc1.weight")
    meta = {
        "source_format": source,
        "image_size": grid * patch if grid * grid == tokens - prefix else None,
        "patch_size": patch,
        "embed_dim": width,
        "depth": depth,
        # OpenAI's and open_clip's rule (64 channels per head); the HF config overrides it.
        "num_heads": max(width // 64, 1) if source == "openai_clip" else None,
        "mlp_ratio": fc1.shape[0] / width if fc1 is not None else None,
        "pre_norm": "norm_pre.weight" in state,
        "proj_dim": state["head.weight"].shape[0] if "head.weight" in state else None,
        "act_layer": None,
        "layer_norm_eps": None,
        "mean": None,
        "std": None,
    }
    return state, meta


def _load_folder(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """A Hugging Face CLIP, open_clip or timm hub folder: weights plus JSON configs."""
    weights = next(
        (
            path / name
            for name in (
                "model.safetensors",
                "open_clip_model.safetensors",
                "pytorch_model.bin",
                "open_clip_pytorch_model.bin",
            )
            if (path / name).is_file()
        ),
        None,
    )
    if weights is None:
        raise WeightsError(
            f"folder '{path}' holds no model.safetensors, open_clip_model.safetensors or pytorch_model.bin"
        )
    raw, _ = _read_tensors(weights)
    state, meta = _convert(raw, weights)
    config = _read_json(path / "config.json")
    vision = config.get("vision_config", config)
    if meta["source_format"] == "hf_clip":
        # fallbacks are CLIPVisionConfig's defaults, which a sparse config.json may leave out
        meta.update(
            num_heads=vision.get("num_attention_heads", 12),
            act_layer=vision.get("hidden_act", "quick_gelu"),
            layer_norm_eps=vision.get("layer_norm_eps", 1e-5),
        )
        pre = _read_json(path / "preprocessor_config.json")
        if "image_mean" in pre:
            meta.update(mean=list(pre["image_mean"]), std=list(pre["image_std"]))
    elif "pretrained_cfg" in config:  # timm hub folder
        pretrained = config["pretrained_cfg"]
        meta.update(architecture=config.get("architecture"), mean=pretrained.get("mean"), std=pretrained.get("std"))
    open_clip_cfg = _read_json(path / "open_clip_config.json")
    if open_clip_cfg:
        model_cfg = open_clip_cfg.get("model_cfg", {})
        vision = model_cfg.get("vision_cfg", {})
        if "width" in vision:
            meta["num_heads"] = vision["width"] // vision.get("head_width", 64)
        if model_cfg:
            meta["act_layer"] = "quick_gelu" if model_cfg.get("quick_gelu") else "gelu"
        preprocess = open_clip_cfg.get("preprocess_cfg", {})
        if "mean" in preprocess:
            meta.update(mean=list(preprocess["mean"]), std=list(preprocess["std"]))
    return state, meta


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise WeightsError(f"'{path}' is not valid JSON: {exc}") from None
