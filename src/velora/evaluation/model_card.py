"""The model card of a package (README.md, written by `velora package`): what a reader needs to judge
and reuse the adapters, from what the run recorded.

Task (classes, modalities, frames, size), dataset, split files and the selection protocol
(validation top-1; the test split is not used), the validation and test metrics with the command
that measures them, the trainable share (velora info's count, from the config alone), the
backbone's weights with their sha256 and licence, and how to load it.
"""

from __future__ import annotations

import json
from pathlib import Path

from velora.config import Config
from velora.model.adapter_file import AdapterCheckpoint
from velora.model.velora import count_parameters, meta_model


def weights_licence(source: dict) -> str:
    """The licence of the frozen backbone's weights, as far as velora knows it."""
    kind = source.get("kind")
    if kind == "none":
        return "none needed: the backbone is randomly initialised (seed 0), no pre-trained weights"
    if kind == "shipped":
        return "MIT: velora's own fractal-pretrained backbone, shipped with the package"
    if kind == "hub" and source.get("tag") == "openai":
        return "MIT: OpenAI's CLIP weights, under the licence of the CLIP repository (github.com/openai/CLIP)"
    if kind == "hub":
        hub_id = source.get("hub_id")
        return f"unknown to velora: see the model page of {hub_id} (https://huggingface.co/{hub_id})"
    return "unknown: local weights; state their licence before sharing this model"


def describe_weights(source: dict) -> str:
    kind = source.get("kind")
    if kind == "hub":
        return (
            f"hub `{source.get('hub_id')}` (tag `{source.get('tag')}`, file `{source.get('file')}`), "
            f"sha256 `{source.get('sha256', 'not recorded')}`"
        )
    if kind == "shipped":
        return f"shipped with velora: `{Path(source.get('path', '?')).name}`, sha256 `{source.get('sha256', '?')}`"
    if kind == "none":
        return "none: random initialisation (seed 0)"
    if kind == "local":
        digest = source.get("sha256") or ", ".join(f"{n} {d}" for n, d in source.get("files", {}).items())
        return f"local file `{Path(source.get('path', '?')).name}`, sha256 `{digest}`"
    return "not recorded (an adapter file written before velora recorded its weights)"


def percent(value) -> str:
    return f"{100 * value:.1f} %" if isinstance(value, (int, float)) else "-"


def model_card(
    checkpoint: AdapterCheckpoint,
    *,
    title: str,
    dataset: str | None = None,
    evaluation: dict | None = None,
    missing: dict[str, dict] | None = None,
    adapter_bytes: int = 0,
) -> str:
    """The README.md of a package: task, data and splits, selection protocol, metrics with the
    command that measures them, trainable share, the weights and their licence."""
    from velora.version import __version__

    cfg: Config = checkpoint.config
    m, d, lo, t = cfg.model, cfg.data, cfg.lora, cfg.train
    classes = len(checkpoint.class_names)
    source = checkpoint.weights_source
    total, trainable = count_parameters(meta_model(cfg))
    dataset = dataset or Path(d.root).name or "not recorded"
    modalities = " + ".join("RGB frames" if x == "rgb" else "event frames" for x in m.modalities)
    info = checkpoint.info
    epoch = info.get("epoch")
    selected = (
        f"epoch {epoch + 1} of {t.epochs} (step {info.get('global_step', '?')}), the best validation top-1"
        if isinstance(epoch, int)
        else "the best validation top-1 (epoch not recorded)"
    )
    front = ["---", "library_name: velora", "tags: [velora, lora, event-camera, rgb-event, video-classification]"]
    if source.get("kind") == "hub":
        front.append(f"base_model: {source.get('hub_id')}")
    front.append("---")
    lines = front + [
        "",
        f"# {title}",
        "",
        f"VELoRA adapters (velora {__version__}) for clip classification into {classes} classes from "
        f"{modalities}, on a frozen `{m.backbone}` backbone. Load and predict:",
        "",
        "```python",
        "import velora",
        f'recognizer = velora.load("hf:<org>/{title}")   # or the path of this folder',
        'print(recognizer.predict("path/to/clip_folder_or_recording.aedat4").topk)',
        "```",
        "",
        "## Task and data",
        "",
        "| | |",
        "| --- | --- |",
        f"| task | classify a clip into one of {classes} classes (`class_names.json`, label order) |",
        f"| inputs | {modalities}: {d.num_frames} frames per clip at {m.image_size} x {m.image_size} px |",
        f"| dataset | {dataset} (`data.root` at training: `{d.root}`, layout `{d.layout}`, format `{d.format}`) |",
        f"| splits | train `{d.train_labels}`, validation `{d.val_labels}`, test `{d.test_labels}` |",
        f"| protocol | the checkpoint is {selected}; the test split was not used for selection |",
        "",
        "## Metrics",
        "",
        "| split | modalities | top-1 | top-5 | mean class accuracy | clips |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| validation (selection) | {'+'.join(m.modalities)} | {percent(info.get('val_top1'))} | - | - | - |",
    ]
    reports = [("+".join(m.modalities), evaluation)] if evaluation else []
    reports += [(f"{mods} only (a sensor missing)", report) for mods, report in sorted((missing or {}).items())]
    for mods, report in reports:
        lines.append(
            f"| test | {mods} | {percent(report.get('top1'))} | {percent(report.get('top5'))} | "
            f"{percent(report.get('mean_class_accuracy'))} | {report.get('num_clips', '-')} |"
        )
    if not evaluation:
        lines.append("| test | - | not evaluated when packaged | | | |")
    lines += [
        "",
        "Measured by (the test split of the same dataset; `--modalities event` for a missing RGB sensor):",
        "",
        "```bash",
        "velora eval <this folder> --split test --data-root /path/to/dataset --output eval/",
        "```",
        "",
        "## Model",
        "",
        "| | |",
        "| --- | --- |",
        f"| backbone | `{m.backbone}` {json.dumps(m.backbone_args) if m.backbone_args else ''}, frozen |",
        f"| backbone weights | {describe_weights(source)} |",
        f"| licence of the backbone weights | {weights_licence(source)} |",
        f"| LoRA | rank {lo.rank}, alpha {lo.alpha}, targets {', '.join(lo.targets)} |",
        f"| structure | stream_path {m.stream_path}, fusion_block {m.fusion_block}, shared_lora {m.shared_lora}, "
        f"head {m.head} |",
        f"| trainable | {trainable:,d} of {total:,d} parameters ({100 * trainable / total:.2f} %); "
        f"`adapters.safetensors` {adapter_bytes / 1e6:.2f} MB |",
        f"| training | {t.epochs} epoch{'s' if t.epochs != 1 else ''}, batch {t.batch_size}, lr {t.lr}, seed {t.seed} "
        "(`config.yaml`) |",
        "",
        "The backbone is not in this folder: velora rebuilds it from `model.backbone` and `model.weights` of the "
        "stored config (`config.yaml`), the file recorded in `weights_source.json`, and warns when the weights it "
        "finds have another sha256. Where that file sits at another path: "
        '`velora.load(<this folder>, weights="/path/to/it")`. The licence of the dataset is not recorded by '
        "velora: check the dataset's terms before sharing predictions or adapters trained on it.",
        "",
        "Reproduce: `velora train --config config.yaml data.root=/path/to/dataset train.output_dir=runs/new`.",
        "",
    ]
    return "\n".join(lines)
