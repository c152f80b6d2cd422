"""`velora export`: an adapter checkpoint -> one ONNX file that onnxruntime runs on its own.

    velora export runs/poker/best.safetensors model.onnx [--merge] [--opset 20]
    velora predict model.onnx /data/PokerEvent/<class>/<sample>    # onnxruntime, no torch model built

The file:
- inputs `rgb` and `events` (those of the model's modalities): uint8 frames (batch, T, 3, S, S), as
  the datasets give them; the normalisation is in the graph. The batch is dynamic; T
  (data.num_frames) and S (model.image_size) are fixed by the config.
- output `logits`: (batch, classes) float32.
- A model with both modalities holds its three graphs, both streams, RGB alone and events alone,
  in one file (velora.export.compose): an empty input (batch 0) is a missing sensor and selects
  the graph without that stream. A one-modality model has one input and one graph.
- metadata_props: format, velora_version, torch_version, opset, merged, cases, inputs, adapters
  (the adapter file's name and sha256), and the config, class names, info and weights source as
  JSON: `velora predict model.onnx` needs nothing else.

`merge` folds each stream's adapters into its own copy of the weights they touch
(velora.model.lora.fold_adapters): the graph has no low-rank branches, and the one batched product
of all streams becomes one product per stream. The M-shared LoRA of the high-level blocks stays a
low-rank pair: it adds to a block's output and has no frozen weight to fold into.

The export is torch.onnx.export with dynamo=True (torch.export, the ONNX translation, onnxscript's
optimizer), at the exporter's default opset unless one is given (MIN_OPSET or later). The file is
written under a temporary name, run by onnxruntime on fresh random clips of every case and
compared with PyTorch, then renamed into place: an interrupted export leaves nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from velora.errors import VeloraError
from velora.evaluation.onnx_recognizer import EXTRA, FORMAT
from velora.evaluation.package import model_file
from velora.model.adapter_file import AdapterCheckpoint, load_model
from velora.model.lora import fold_adapters
from velora.model.velora import VELoRA
from velora.model.weights_source import file_sha256

MIN_OPSET = 18  # torch's torch.export-based exporter writes opset 18 and later
TOLERANCE = 1e-4  # the check's bound on |onnxruntime - PyTorch| logits, fp32
MAX_PROTO_BYTES = 2**31 - 1  # protobuf's limit: larger models keep their weights in OUT.onnx.data


class ExportError(VeloraError, ValueError):
    """A checkpoint cannot be exported as asked (the option is named), or the output is unusable."""


@dataclass
class ExportReport:
    path: Path
    bytes: int  # the file's size (and its .data file's, for a model over 2 GB)
    opset: int
    cases: list[str]  # the graphs in the file: "rgb+events", "rgb", "events"
    merged: bool
    seconds: float
    max_abs_diff: dict[str, float] = field(default_factory=dict)  # case -> max |onnxruntime - PyTorch| logits


class ModalityCase(nn.Module):
    """The model on one set of present inputs: (rgb?, events?) uint8 -> logits (B, classes)."""

    def __init__(self, model: VELoRA):
        super().__init__()
        self.model = model

    def forward(self, rgb: torch.Tensor | None = None, events: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(rgb, events).logits


def require_onnx():
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch's exporter translates through it)
    except ImportError as error:
        raise ExportError(f"velora export needs {error.name}, which is not installed: {EXTRA}") from None
    return onnx


def model_cases(model: VELoRA) -> list[tuple[str, ...]]:
    """The input sets the file serves: both, RGB alone, events alone; or the one modality."""
    inputs = tuple("rgb" if m == "rgb" else "events" for m in ("rgb", "event") if m in model.modalities)
    return [inputs, ("rgb",), ("events",)] if len(inputs) == 2 else [inputs]


def export_onnx(
    checkpoint: str | Path,
    output: str | Path,
    *,
    merge: bool = False,
    opset: int | None = None,
    check: bool = True,
    weights: str | Path | None = None,
) -> ExportReport:
    """Export what velora.load accepts (a run folder, adapter file, package, hf:org/name) to `output`.

    merge: fold each stream's adapters into its own weights (see the module docstring).
    opset: the ai.onnx opset (default: the exporter's).
    check: run the written file with onnxruntime on random clips of each case against PyTorch
        (a warning above TOLERANCE); the differences are in the report.
    weights: the backbone weights, instead of the stored config's model.weights (see load_model).
    """
    start = time.perf_counter()
    output = Path(output)
    if output.suffix != ".onnx":
        raise ExportError(
            f"the output '{output}' must end in .onnx: velora.load and velora predict tell ONNX files by it"
        )
    onnx = require_onnx()
    newest = onnx.defs.onnx_opset_version()
    if opset is not None and not MIN_OPSET <= opset <= newest:
        raise ExportError(
            f"--opset {opset} is not supported: torch's exporter writes opset {MIN_OPSET} or later, and the installed "
            f"onnx knows opsets up to {newest}"
        )
    source = model_file(checkpoint)
    if source.suffix == ".onnx":
        raise ExportError(f"'{source}' is an ONNX file already; export the adapter checkpoint it came from")
    model, saved = load_model(source, weights=weights)
    if merge:
        fold_adapters(model)
    cfg = saved.config
    cases = model_cases(model)
    protos = {keys: export_case(model, keys, cfg.data.num_frames, cfg.model.image_size, opset) for keys in cases}
    if len(cases) == 1:
        proto = protos[cases[0]]
    else:
        from velora.export.compose import combine_cases

        proto = combine_cases(protos)
    label_file_metadata(proto, model, saved, source, cases, merge)
    diffs: dict[str, float] = {}

    def check_file(path: Path) -> None:
        diffs.update(parity(model, path, cases, cfg.data.num_frames, cfg.model.image_size))

    write_checked(proto, output, check_file if check else None)
    worst = max(diffs.values(), default=0.0)
    if worst > TOLERANCE:
        warnings.warn(f"{output}: onnxruntime's logits differ from PyTorch's by up to {worst:.2e}", stacklevel=2)
    files = (output, output.with_name(output.name + ".data"))
    return ExportReport(
        path=output,
        bytes=sum(p.stat().st_size for p in files if p.exists()),
        opset=written_opset(proto),
        cases=["+".join(keys) for keys in cases],
        merged=merge,
        seconds=time.perf_counter() - start,
        max_abs_diff=diffs,
    )


def written_opset(proto) -> int:
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def label_file_metadata(proto, model: VELoRA, saved: AdapterCheckpoint, source: Path, cases: list, merge: bool) -> None:
    """Write into `proto` what predicting from it needs and what it was made from (metadata_props,
    see the module docstring), the producer and a one-line description."""
    import onnx

    cfg = saved.config
    clip = f"uint8 (batch, {cfg.data.num_frames}, 3, {cfg.model.image_size}, {cfg.model.image_size})"
    inputs = {name: clip for name in cases[0]}
    if len(cases) > 1:
        inputs["missing sensor"] = "an empty array (batch 0)"
    onnx.helper.set_model_props(
        proto,
        {
            "format": FORMAT,
            "velora_version": velora_version(),
            "torch_version": torch.__version__,
            "opset": str(written_opset(proto)),
            "merged": "true" if merge else "false",
            "cases": ",".join("+".join(keys) for keys in cases),
            "inputs": json.dumps(inputs),
            "adapters": json.dumps({"file": source.name, "sha256": file_sha256(source)}),
            "config": json.dumps(cfg.to_dict()),
            "class_names": json.dumps(saved.class_names),
            "info": json.dumps(saved.info),
            "weights_source": json.dumps(model.weights_source),  # the weights inside this file
        },
    )
    proto.producer_name, proto.producer_version = "velora", velora_version()
    proto.doc_string = (
        f"VELoRA ({'+'.join(model.modalities)}, {len(saved.class_names)} classes) exported by velora "
        f"{velora_version()}. Inputs: {clip}, an empty array for a missing sensor; output: logits (batch, classes)."
    )


def export_case(model: VELoRA, keys: tuple[str, ...], frames: int, size: int, opset: int | None):
    """The ONNX model of one input set, with a dynamic batch (torch.onnx.export, dynamo)."""
    generator = torch.Generator().manual_seed(0)
    # Distinct tensors: torch.export would take one tensor given twice for one input.
    examples = {k: random_clips(2, frames, size, generator) for k in keys}
    batch = torch.export.Dim("batch")
    with warnings.catch_warnings():
        # The exporter says that the inputs share the batch dimension: they do.
        warnings.filterwarnings("ignore", message=".*shares the same shape constraints.*")
        program = torch.onnx.export(
            ModalityCase(model).eval(),
            (),
            kwargs=examples,
            input_names=list(keys),
            output_names=["logits"],
            dynamic_shapes={k: {0: batch} for k in keys},
            opset_version=opset,
            dynamo=True,
            verbose=False,
        )
    assert program is not None  # the dynamo exporter returns its program
    return program.model_proto


def write_checked(proto, output: Path, check: Callable[[Path], None] | None) -> None:
    """Write `proto` under a temporary name next to `output`, check(path) it, rename it into place."""
    import onnx

    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        path = tmp / output.name
        if proto.ByteSize() > MAX_PROTO_BYTES:
            onnx.save_model(proto, path, save_as_external_data=True, location=output.name + ".data")
        else:
            onnx.save_model(proto, path)
        if check is not None:
            check(path)
        for written in sorted(tmp.iterdir(), key=lambda p: p.suffix == ".onnx"):  # the .data file first
            os.replace(written, output.parent / written.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@torch.no_grad()
def parity(
    model: VELoRA, path: Path, cases: list[tuple[str, ...]], frames: int, size: int, batch: int = 3, seed: int = 1
) -> dict[str, float]:
    """Max |onnxruntime - PyTorch| logits of the file at `path`, per case, on random uint8 clips
    (batch, frames, 3, size, size); a batch unlike the export's example, to exercise the dynamic axis."""
    from velora.evaluation.onnx_recognizer import OnnxRecognizer

    recognizer = OnnxRecognizer(path)  # on the CPU, as velora.load runs the file
    generator = torch.Generator().manual_seed(seed)
    clips = {k: random_clips(batch, frames, size, generator) for k in recognizer.inputs}
    diffs = {}
    for keys in cases:
        expected = model(*(clips[k] if k in keys else None for k in ("rgb", "events"))).logits.numpy()
        got = recognizer.logits({k: clips[k] for k in keys}).numpy()
        diffs["+".join(keys)] = float(np.abs(got - expected).max())
    return diffs


def random_clips(batch: int, frames: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """Random uint8 frames (batch, frames, 3, size, size)."""
    return torch.randint(0, 256, (batch, frames, 3, size, size), dtype=torch.uint8, generator=generator)


def velora_version() -> str:
    from velora.version import __version__

    return __version__
