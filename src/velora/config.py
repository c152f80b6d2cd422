"""One typed source of truth for configuration.

A run is described by `Config` (model, adapters, data, training, evaluation). It is loaded from YAML,
overridden from the command line with `section.field=value` pairs, validated once with every
problem listed, and saved inside every checkpoint (`Config.to_dict`).

The `help` text of every field is what `velora train --help` prints.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from collections.abc import Collection
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from velora.data.layouts import LAYOUTS
from velora.errors import VeloraError
from velora.events.representations import RGB_REPRESENTATIONS, WINDOWS
from velora.events.resize import EVENT_RESIZE


class ConfigError(VeloraError, ValueError):
    """A configuration file or override is wrong; the message lists every problem found."""


def _summary(function: Any) -> str:
    """A registered function's docstring as one line of help text."""
    return " ".join((function.__doc__ or "").split()).rstrip(".")


def field_choices(f: dataclasses.Field) -> tuple | None:
    """The values a config field accepts, or None for any; a registry's names are read when asked, so
    a representation registered after this module was imported is accepted too."""
    choices = f.metadata.get("choices")
    return tuple(choices) if choices is not None else None


def _f(default: Any, help: str, choices: Collection | None = None, **kw: Any) -> Any:
    metadata = {"help": help, "choices": choices}
    if isinstance(default, (list, dict)):
        return field(default_factory=partial(type(default), default), metadata=metadata, **kw)  # a copy each
    return field(default=default, metadata=metadata, **kw)


@dataclass
class LoRAConfig:
    rank: int = _f(4, "LoRA rank r of every adapter; 0 removes all adapters (frozen-backbone linear probe).")
    alpha: float = _f(8.0, "LoRA scale numerator: the update is (alpha / rank) * B A x.")
    dropout: float = _f(0.01, "Dropout on the adapter input (the original code used 0.01).")
    targets: list = _f(
        ["fc1", "fc2"],
        "Names of the Linear layers inside each Transformer block that get adapters: the MLP "
        "(fc1, fc2; as in the original code) and optionally attention (qkv, proj).",
    )


@dataclass
class ModelConfig:
    backbone: str = _f(
        "vit_base_patch16_clip_quickgelu_224.openai",
        "timm architecture of the frozen backbone, with the pretrained tag whose weights model.weights: hub "
        "fetches after a dot: vit_base_patch16_clip_quickgelu_224.openai is OpenAI's CLIP ViT-B/16, the paper's "
        "(hub repository timm/vit_base_patch16_clip_224.openai). Without a tag, hub means timm's default tag, which for "
        "this architecture is MetaCLIP, not OpenAI's (a warning says so).",
    )
    backbone_args: dict = _f(
        {},
        "Overrides passed to the timm constructor, e.g. {embed_dim: 128, depth: 4, num_heads: 4} "
        "for a tiny model with the same block structure.",
    )
    weights: str = _f(
        "none",
        "Pre-trained backbone weights: 'none' (random init, for tests and a weights-free demo), "
        "'hub' (timm's pretrained weights; needs network or a filled cache), 'shipped:<name>' (weights "
        "inside the package, e.g. shipped:fractal_vit_tiny64, the demo's fractal-pretrained ViT), or a local file or "
        "folder: timm .safetensors/.pth, an OpenAI/open_clip state dict (visual.* keys), or a Hugging "
        "Face CLIPVisionModel folder. Pickles load with weights_only; convert a TorchScript ViT-B-16.pt "
        "once with `velora convert-weights`.",
    )
    finetune_backbone: bool = _f(
        False,
        "Train every backbone weight too (the full fine-tuning baseline); default False keeps the "
        "backbone frozen and trains only adapters, fusion modules and head.",
    )
    modalities: list = _f(
        [],
        "Streams the model has adapters for: any of rgb, event (saved in every checkpoint). Empty: the "
        "data's (data.modalities), as configs written before this field meant. data.modalities may then "
        "name fewer, to train or evaluate with a sensor missing.",
    )
    image_size: int = _f(224, "Input height and width in pixels; frames are resized to it.")
    num_classes: int = _f(114, "Number of classes of the head (114 for PokerEvent, 300 for HARDVS).")
    high_level_blocks: int = _f(
        1,
        "How many of the backbone's last blocks are high-level (fusion) blocks; the others are "
        "low-level, modality-specific blocks.",
    )
    frame_diff: bool = _f(True, "Use the frame-difference stream (RGB diff + event diff of consecutive frames).")
    fusion_block: str = _f(
        "backbone_lora",
        "High-level fusion block: 'backbone_lora' = the backbone's own frozen block with a "
        "modality-shared LoRA (the paper's figure); 'random_trainable' = a randomly initialised, "
        "fully trainable block (the original code).",
        choices=("backbone_lora", "random_trainable"),
    )
    recon_weight: float = _f(1.0, "Weight of each cross-modal reconstruction MSE term; 0 disables them.")
    recon_decoder: str = _f(
        "linear",
        "Reconstruction decoder shared by both directions: 'linear' (LayerNorm + Linear D->D) or "
        "'block' (a random trainable ViT block + LayerNorm, as in the original code).",
        choices=("linear", "block"),
    )
    recon_detach_target: bool = _f(
        True,
        "Stop gradients through the reconstruction target (the original code did not), so the "
        "loss cannot be lowered by collapsing both modalities' features.",
    )
    head_pool: str = _f(
        "mean",
        "Token pooling before the linear head: 'cls' (the class token) or 'mean' (all tokens).",
        choices=("cls", "mean"),
    )
    head: str = _f(
        "linear",
        "Classification head: 'linear' (each modality's final tokens normed and pooled, concatenated, a "
        "Linear) or 'attention_last_tokens' (the released code: single-head self-attention over the "
        "[rgb; event] tokens, the two halves summed, the last 10 tokens (all, when there are fewer) flattened, a Linear).",
        choices=("linear", "attention_last_tokens"),
    )
    stream_path: str = _f(
        "low_blocks",
        "What each stream runs before fusion: 'low_blocks' (the backbone's blocks below the high-level ones, "
        "with the stream's LoRA; the paper's figure) or 'all_blocks_projected' (the released code: all blocks "
        "with the stream's LoRA, the final norm (ln_post), the frozen CLIP projection to its output width, a "
        "trainable Linear back to the width shared by the streams, and a learned embedding per modality; the "
        "top high_level_blocks blocks then run again, with the stream's LoRA, as the final blocks).",
        choices=("low_blocks", "all_blocks_projected"),
    )
    shared_lora: str = _f(
        "linear",
        "M-shared LoRA from the fused tokens into the final RGB and event blocks: 'linear' (one rank-r "
        "adapter D -> D per modality and high-level block) or 'mlp_bottleneck' (the released code: the fused "
        "tokens added back plus the final block's own fc1/fc2 LoRA of the stream as a bottleneck with the "
        "block's activation between, unscaled; needs stream_path all_blocks_projected and lora.targets fc1, fc2).",
        choices=("linear", "mlp_bottleneck"),
    )
    random_block: str = _f(
        "timm",
        "How the randomly initialised trainable blocks (fusion_block random_trainable, recon_decoder block) "
        "are built: 'timm' (timm's Block defaults: no qkv bias, no drop path, PyTorch's default Linear init) or "
        "'release' (the released code's ViT-B block: qkv bias, drop path 0.1, LayerNorm eps 1e-6, "
        "truncated-normal(0.02) weights).",
        choices=("timm", "release"),
    )
    normalization: str = _f(
        "weights",
        "How frames are normalised before the backbone: 'weights' (the mean and std the weights were trained "
        "with, CLIP's for CLIP) or 'half' (mean = std = 0.5 on every channel, as the released code's "
        "torchvision Normalize).",
        choices=("weights", "half"),
    )
    head_dropout: float = _f(0.0, "Dropout before the classification layer.")
    modality_dropout: float = _f(
        0.0,
        "Training only: probability, per batch, of dropping the RGB stream and, independently "
        "with the same probability, the event stream (never both), so a model degrades "
        "gracefully when a sensor is missing at inference.",
    )
    compile: bool = _f(
        False,
        "torch.compile each low-level backbone block (fuses LayerNorm, GELU, adds and the LoRA updates "
        "into few kernels; the first steps are slow while it compiles). Needs a C++ compiler on the CPU.",
    )
    grad_checkpointing: bool = _f(
        False,
        "Activation checkpointing of the low-level backbone blocks in training: keep only each "
        "block's input and recompute the rest in the backward pass (less memory, about one more "
        "forward pass of compute).",
    )


@dataclass
class DataConfig:
    root: str = _f("", "Dataset root in the PokerEvent layout (<class>/<sample>/<sample>_aps|_dvs/*.png).")
    format: str = _f(
        "folders",
        "layout frames: read PNG folders ('folders') or the packed, memory-mapped copy made by "
        "`velora convert packed` ('packed', much faster to load; see data.packed_root).",
        choices=("folders", "packed"),
    )
    packed_root: str = _f("", "data.format packed: the folder written by `velora convert packed`.")
    device_crop: bool = _f(
        True,
        "data.format packed: do the training random resized crop on the training device, one call "
        "per batch, instead of in the loader workers (keeps the loader at evaluation speed).",
    )
    layout: str = _f(
        "frames",
        "How the dataset sits on disk (velora.data.layouts): "
        + "; ".join(f"'{name}': {layout.description}" for name, layout in LAYOUTS.items())
        + ".",
        choices=LAYOUTS.keys(),  # a live view of the table
    )
    train_labels: str = _f("train_label.txt", "Training label file, relative to root.")
    val_labels: str = _f("val_label.txt", "Validation label file (model selection), relative to root.")
    test_labels: str = _f("test_label.txt", "Test label file (final evaluation only), relative to root.")
    num_frames: int = _f(8, "Frames T sampled per clip, in uniform segments.")
    modalities: list = _f(["rgb", "event"], "Modalities to load: any of rgb, event.")
    frame_sampling: str = _f(
        "segments",
        "Which T frames of a clip are read (layouts frames and recordings): 'segments' (the clip cut into T "
        "equal segments, one frame from each, in order, the same frames for RGB and events: random in training, "
        "segment centres in evaluation) or 'release' (the released code: RGB and events each draw an unordered "
        "random subset of T frames of their own folder, unpaired, with repeats only when it has fewer than T, in "
        "training and in evaluation too; evaluation draws are seeded by train.seed, so a rerun gives the same "
        "figure; packed data holds paired frames and draws from those). "
        "Independent draws pair an RGB frame with events of another moment and scramble the frame differences.",
        choices=("segments", "release"),
    )
    augmentation: str = _f(
        "clip",
        "Training augmentation (layouts frames and recordings): 'clip' (one random resized crop, data.crop_scale, "
        "and flip, data.hflip, for all frames of both modalities) or 'release' (the released code: every frame of "
        "each modality on its own, after the resize: padded by 10 black pixels, cropped back at a random place, "
        "flipped with probability 0.5). Evaluation never augments.",
        choices=("clip", "release"),
    )
    crop_scale: list = _f([0.8, 1.0], "Training random-resized-crop area range; [1, 1] disables it.")
    hflip: bool = _f(False, "Training horizontal flips. Off: a flip turns a left motion into a right one.")
    frame_pairing: str = _f(
        "number",
        "layout frames: which event frames go with each RGB frame, by the frame numbers in the file names: "
        "'number' (the event frame of the same number), 'accumulate' (the event frames after the previous "
        "RGB frame up to its own, combined into one image: for RGB stored every k-th frame, as in HARDVS) or "
        "'position' (the k-th of each folder, whatever the numbers). data.format packed: chosen when packing.",
        choices=("number", "accumulate", "position"),
    )
    frame_count_policy: str = _f(
        "error",
        "layout frames: frames that data.frame_pairing leaves without a partner: 'error' (stop, naming what "
        "the folders hold and the setting that fits) or 'min' (use the paired frames, leave the others "
        "out and warn; under 'position' the first min(n_rgb, n_event) of both).",
        choices=("error", "min"),
    )
    num_workers: int = _f(2, "DataLoader worker processes.")
    representation: str = _f(
        "event_image",
        "How a window of events becomes the 3-channel image the frozen ViT takes (layouts events, recordings, "
        "gesture; frame folders hold images already drawn): "
        + "; ".join(f"'{name}': {_summary(f)}" for name, f in RGB_REPRESENTATIONS.items())
        + ".",
        choices=RGB_REPRESENTATIONS.keys(),  # a live view of the registry
    )
    event_resize: str = _f(
        "keep_events",
        "How event images are brought to model.image_size: 'keep_events' (every event stays visible: each output "
        "pixel shows the most event-like pixel that falls in it, in its own colour; events read from recordings "
        "are drawn at the sensor's size first, as their PNG conversion is), 'nearest' (velora's "
        "choice before this field; from 346x260 to 224 it loses about one isolated event pixel in eight), "
        "'box' (area average: keeps them but blends them pale) or 'bilinear' (the released code's torchvision "
        "Resize, which blends too). Packed data records the choice it was packed with.",
        choices=EVENT_RESIZE,
    )
    event_window: str = _f(
        "fixed_count",
        "layouts events and gesture (and a model trained on them predicting from an event file): how a recording "
        "is cut into T windows: 'fixed_count' (equal event counts, so every image is equally dense), 'uniform' "
        "(equal durations from the first event to the last) or 'fixed_duration' (T windows of "
        "data.event_window_us each, placed at random in training and centred in evaluation).",
        choices=WINDOWS,
    )
    event_window_us: int = _f(0, "data.event_window fixed_duration: window length in microseconds.")
    sensor_size: list = _f([], "layout events: [width, height] of the sensor; empty: from the file or the events.")
    bad_clips: str = _f(
        "stop",
        "A clip that cannot be read: 'stop' (check the dataset before the first step and stop with "
        "the full report) or 'skip' (record it, train on, report the skipped files at the end).",
        choices=("stop", "skip"),
    )
    min_frames: int = _f(1, "Clips with fewer frames are problems for the pre-training check.")


@dataclass
class TrainConfig:
    output_dir: str = _f("runs/velora", "Folder for checkpoints, curves and reports.")
    epochs: int = _f(30, "Training epochs.")
    batch_size: int = _f(8, "Clips per batch per device.")
    lr: float = _f(1e-4, "Peak AdamW learning rate.")
    weight_decay: float = _f(1e-4, "AdamW weight decay (not applied to biases, norms and embeddings).")
    weight_decay_all: bool = _f(
        False,
        "Apply train.weight_decay to every trainable parameter, biases, norms and embeddings too, as the "
        "released code's AdamW does; default False decays matrices only.",
    )
    warmup_epochs: float = _f(1.0, "Linear warmup length in epochs, then cosine decay to min_lr.")
    min_lr: float = _f(1e-6, "Learning rate at the end of the cosine schedule.")
    grad_clip: float = _f(1.0, "Gradient norm clipping; 0 disables it.")
    seed: int = _f(0, "Seed for data order, augmentation, dropout and initialisation.")
    precision: str = _f(
        "32-true",
        "Lightning precision: '32-true' on CPU, 'bf16-mixed' on recent GPUs.",
        choices=("32-true", "bf16-mixed", "16-mixed"),
    )
    accelerator: str = _f("auto", "Lightning accelerator: auto, cpu, gpu.")
    devices: Any = _f("auto", "Devices per node (an int, a list of ids, or 'auto').")
    num_nodes: int = _f(1, "Machines taking part in data-parallel training.")
    strategy: str = _f("auto", "Lightning strategy: auto, ddp, ...")
    val_every: int = _f(1, "Validate every N epochs (model selection uses the val split only).")
    checkpoint_every_steps: int = _f(
        100,
        "Also write the resume checkpoint (checkpoints/last.ckpt) every N optimizer steps, not only at "
        "epoch ends; a killed run resumes there and loses at most N steps. 0: epoch ends only.",
    )
    log_every: int = _f(10, "Record training metrics every N steps; a NaN/inf step is reported there at the latest.")
    progress: bool = _f(True, "Show progress bars.")
    logger: str = _f(
        "csv",
        "Experiment tracking with Lightning's loggers: 'csv' (<output_dir>/logs/version_N/metrics.csv, offline), "
        "'tensorboard', 'wandb' (WANDB_MODE=offline keeps it on disk), 'mlflow' (MLFLOW_TRACKING_URI, else "
        "file:<output_dir>/mlruns) or 'none'. The resolved config is logged once, losses every log_every steps. "
        "tensorboard, wandb and mlflow need their extra: pip install 'velora-rgbe[tensorboard]' (or [wandb], [mlflow]).",
        choices=("csv", "tensorboard", "wandb", "mlflow", "none"),
    )


@dataclass
class EvalConfig:
    test_every_epoch: bool = _f(
        False,
        "Also score the test split after every validation, recorded as paper_protocol/test_top1 (history.json) "
        "and in paper_protocol.json: the paper's protocol (the best epoch on the test set), for comparison with "
        "its figures only. Never used to select a checkpoint: best.safetensors is chosen on the val split.",
    )
    views: int = _f(
        1,
        "Test-time temporal views per clip (mmaction's num_clips): view v of V takes the frame at the (2v+1)/2V "
        "point of each of the data.num_frames segments. With views x crops > 1, `velora eval` also reports the "
        "multi-view figure (scores averaged over all views) beside the single view (segment centres, whole frame).",
    )
    crops: int = _f(
        1,
        "Test-time spatial crops per temporal view: 1 (the whole frame), 3 (left, centre, right) or 5 (the four "
        "corners and the centre), each eval.crop_fraction of the frame's width and height.",
    )
    crop_fraction: float = _f(
        0.9,
        "Side of each test-time crop as a fraction of the frame's width and height (eval.crops 3 or 5); training's "
        "random resized crops (data.crop_scale 0.8-1 of the area) have sides of about 0.9 to 1.",
    )
    average: str = _f(
        "probabilities",
        "How the views' scores are combined: the mean of their class probabilities (softmax of each view's "
        "logits; mmaction's 'prob') or the mean of their logits ('score').",
        choices=("probabilities", "logits"),
    )


# The model fields where the released code's model differs from velora's default (configs/*_release.yaml).
RELEASE_MODEL = {
    "stream_path": "all_blocks_projected",
    "fusion_block": "random_trainable",
    "shared_lora": "mlp_bottleneck",
    "recon_decoder": "block",
    "recon_detach_target": False,
    "head": "attention_last_tokens",
    "random_block": "release",
}
# The input pipeline and optimizer fields where the released code differs (configs/*_release.yaml).
RELEASE_INPUTS = {
    "model": {"normalization": "half"},
    "data": {"frame_sampling": "release", "augmentation": "release", "event_resize": "bilinear"},
    "train": {"weight_decay_all": True},
}


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # Evaluation settings (checkpoints written before this section load with its defaults).
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        if not self.model.modalities:  # configs and checkpoints from before model.modalities existed
            self.model.modalities = list(self.data.modalities)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict, source: str = "config") -> Config:
        problems: list[str] = []
        cfg = _build(cls, raw, source, "", problems)  # fields with a wrong type keep their default
        problems.extend(validate(cfg))
        if problems:
            raise ConfigError(f"{len(problems)} problem(s) in {source}:\n  - " + "\n  - ".join(problems))
        return cfg


def stored_config(raw: dict, source: str) -> Config:
    """A config saved inside a checkpoint or an exported model, as the velora that saved it meant it.

    A field added since with a default other than the behaviour it replaced takes that behaviour
    when the saved config lacks it, so a model is evaluated on inputs read as in its training:
    data.event_resize (nearest for event images, area averaging for the other representations) and
    data.frame_pairing (position).
    """
    data = raw.get("data") if isinstance(raw, dict) else None
    if isinstance(data, dict):
        then = {}
        if "event_resize" not in data:
            then["event_resize"] = "nearest" if data.get("representation", "event_image") == "event_image" else "box"
        if "frame_pairing" not in data:
            then["frame_pairing"] = "position"
        raw = merge(raw, {"data": then})
    return Config.from_dict(raw, source)


def _build(cls: type, raw: Any, source: str, prefix: str, problems: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.append(f"'{prefix.rstrip('.') or 'top level'}' must be a mapping, got {raw!r}")
        return cls()
    values = {}
    for key, value in raw.items():
        name = f"{prefix}{key}"
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
            problems.append(f"unknown key '{name}'{hint} (valid keys here: {', '.join(fields)})")
            continue
        hint = hints[key]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            values[key] = _build(hint, value, source, f"{name}.", problems)
            continue
        coerced = _coerce(value, hint)
        if coerced is _BAD:
            kind = "a finite float" if hint is float else getattr(hint, "__name__", hint)
            problems.append(f"'{name}' must be {kind}, got {value!r}")
            continue
        choices = field_choices(fields[key])
        if choices and coerced not in choices:
            problems.append(f"'{name}' must be one of {', '.join(choices)}, got {value!r}")
            continue
        values[key] = coerced
    return cls(**values)


_BAD = object()


def _coerce(value: Any, hint: Any) -> Any:
    if hint is Any:
        return value
    if hint is bool:
        return value if isinstance(value, bool) else _BAD
    if hint is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _BAD
    if hint is float:
        if isinstance(value, str):  # PyYAML reads "1e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                return _BAD
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return float(value) if ok else _BAD
    if hint is str:
        return value if isinstance(value, str) else _BAD
    if hint is list:
        return list(value) if isinstance(value, (list, tuple)) else _BAD
    if hint is dict:
        return dict(value) if isinstance(value, dict) else _BAD
    return value


def validate(cfg: Config) -> list[str]:
    """Cross-field and range checks; returns every problem, empty when the config is sound."""
    p: list[str] = []
    m, lo, d, t = cfg.model, cfg.lora, cfg.data, cfg.train
    if lo.rank < 0:
        p.append(f"'lora.rank' must be >= 0, got {lo.rank}")
    if lo.rank > 0 and lo.alpha <= 0:
        p.append(f"'lora.alpha' must be > 0, got {lo.alpha}")
    if not 0 <= lo.dropout < 1:
        p.append(f"'lora.dropout' must be in [0, 1), got {lo.dropout}")
    if not lo.targets and lo.rank > 0:
        p.append("'lora.targets' is empty; name at least one Linear layer (e.g. fc1, fc2)")
    if m.image_size < 1:
        p.append(f"'model.image_size' must be positive, got {m.image_size}")
    if m.num_classes < 2:
        p.append(f"'model.num_classes' must be at least 2, got {m.num_classes}")
    if m.high_level_blocks < 1:
        p.append(f"'model.high_level_blocks' must be at least 1, got {m.high_level_blocks}")
    if m.recon_weight < 0:
        p.append(f"'model.recon_weight' must be >= 0, got {m.recon_weight}")
    if not 0 <= m.modality_dropout <= 0.5:
        p.append(f"'model.modality_dropout' must be in [0, 0.5], got {m.modality_dropout}")
    if not 0 <= m.head_dropout < 1:
        p.append(f"'model.head_dropout' must be in [0, 1), got {m.head_dropout}")
    for name, listed in (("model.modalities", m.modalities), ("data.modalities", d.modalities)):
        if not listed or any(x not in ("rgb", "event") for x in listed) or len(set(listed)) != len(listed):
            p.append(f"'{name}' must be a non-empty subset of [rgb, event], got {listed}")
    extra = [x for x in d.modalities if x not in m.modalities]
    if extra:
        p.append(
            f"'data.modalities' names {extra}, which the model has no adapters for (model.modalities "
            f"{m.modalities}); add them to model.modalities or leave them out of the data"
        )
    if m.shared_lora == "mlp_bottleneck" and lo.rank > 0:
        if m.stream_path != "all_blocks_projected" or not {"fc1", "fc2"} <= set(lo.targets):
            p.append(
                "'model.shared_lora' mlp_bottleneck uses the final block's own fc1 and fc2 adapters of each "
                "stream: set model.stream_path=all_blocks_projected and include fc1 and fc2 in lora.targets"
            )
    if d.num_frames < 1:
        p.append(f"'data.num_frames' must be at least 1, got {d.num_frames}")
    if (
        len(d.crop_scale) != 2
        or not all(isinstance(s, (int, float)) for s in d.crop_scale)
        or not (0 < min(d.crop_scale) and d.crop_scale[0] <= d.crop_scale[1] <= 1)
    ):
        p.append(f"'data.crop_scale' must be [low, high] with 0 < low <= high <= 1, got {d.crop_scale}")
    if d.format == "packed" and not d.packed_root:
        p.append("'data.format' packed needs data.packed_root (the output of `velora convert packed`)")
    if d.layout in LAYOUTS:  # an unknown name is reported with the choices
        p.extend(LAYOUTS[d.layout].problems(cfg))
    if d.event_window == "fixed_duration" and d.event_window_us <= 0:
        p.append("'data.event_window' fixed_duration needs data.event_window_us > 0 (microseconds)")
    if d.sensor_size and (len(d.sensor_size) != 2 or not all(isinstance(v, int) and v > 0 for v in d.sensor_size)):
        p.append(f"'data.sensor_size' must be [width, height] of positive ints or empty, got {d.sensor_size}")
    if d.num_workers < 0:
        p.append(f"'data.num_workers' must be >= 0, got {d.num_workers}")
    for name in ("epochs", "batch_size", "val_every", "log_every", "num_nodes"):
        if getattr(t, name) < 1:
            p.append(f"'train.{name}' must be at least 1, got {getattr(t, name)}")
    if t.lr <= 0:
        p.append(f"'train.lr' must be > 0, got {t.lr}")
    if t.min_lr < 0 or t.min_lr > t.lr:
        p.append(f"'train.min_lr' must be in [0, train.lr], got {t.min_lr}")
    if t.checkpoint_every_steps < 0:
        p.append(f"'train.checkpoint_every_steps' must be >= 0 (0: epoch ends only), got {t.checkpoint_every_steps}")
    e = cfg.eval
    if e.views < 1:
        p.append(f"'eval.views' must be at least 1, got {e.views}")
    if e.crops not in (1, 3, 5):
        p.append(f"'eval.crops' must be 1, 3 or 5, got {e.crops}")
    if not 0 < e.crop_fraction <= 1:
        p.append(f"'eval.crop_fraction' must be in (0, 1], got {e.crop_fraction}")
    if t.warmup_epochs < 0 or t.weight_decay < 0 or t.grad_clip < 0:
        p.append("'train.warmup_epochs', 'train.weight_decay' and 'train.grad_clip' must be >= 0")
    return p


def parse_overrides(pairs: list[str]) -> dict:
    """Turn ["train.lr=3e-4", "data.modalities=[rgb]"] into a nested dict (values parsed as YAML)."""
    nested: dict = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"override '{pair}' must look like section.field=value, e.g. train.lr=3e-4")
        key, text = pair.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"override key '{key}' must be section.field, e.g. train.epochs")
        try:
            value = yaml.safe_load(text)
        except (yaml.YAMLError, RecursionError) as exc:
            raise ConfigError(f"override '{pair}': value is not valid YAML ({exc})") from None
        nested.setdefault(parts[0], {})[parts[1]] = value
    return nested


def merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "backbone_args":
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def shipped_config_path(name: str) -> Path:
    """The path of a config shipped with the package, e.g. 'demo' or 'configs/demo.yaml'."""
    stem = Path(name).name.removesuffix(".yaml")
    return Path(str(resources.files("velora") / "configs" / f"{stem}.yaml"))


def resolve_config_path(name: str) -> Path:
    path = Path(name)
    if path.is_file():
        return path
    shipped = shipped_config_path(name)
    if shipped.is_file():
        return shipped
    available = sorted(p.stem for p in shipped.parent.glob("*.yaml"))
    raise ConfigError(
        f"config file '{name}' not found; give a path to a YAML file or one of the shipped "
        f"configs: {', '.join(available)}"
    )


def load_config(path: str | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (a path or a shipped name), apply `section.field=value` overrides, validate."""
    raw: dict = {}
    source = "defaults"
    if path:
        resolved = resolve_config_path(path)
        source = str(resolved)
        try:
            raw = yaml.safe_load(resolved.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested too deeply
            raise ConfigError(f"{resolved} is not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{resolved} must hold a mapping of sections (model, lora, data, train, eval)")
    if overrides:
        raw = merge(raw, parse_overrides(overrides))
        source += " + command-line overrides"
    return Config.from_dict(raw, source)


def describe_fields() -> str:
    """Every config field with its default and help text, for `--help`."""
    lines = []
    for section in dataclasses.fields(Config):
        lines.append(f"{section.name}:")
        assert callable(section.default_factory)  # each section is field(default_factory=its dataclass)
        for f in dataclasses.fields(section.default_factory()):
            default = f.default_factory() if callable(f.default_factory) else f.default
            lines.append(f"  {section.name}.{f.name} = {default!r}")
            lines.append(f"      {f.metadata.get('help', '')}")
    return "\n".join(lines)
