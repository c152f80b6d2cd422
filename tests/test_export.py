"""velora export: one ONNX file with named inputs and a dynamic batch, which onnxruntime runs within
1e-4 of PyTorch in every modality case, merged or not; `velora predict model.onnx` builds no model."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

import velora
from conftest import fill_adapters, make_tiny_config, random_clip
from velora.cli import main
from velora.config import RELEASE_MODEL
from velora.data.factory import make_dataset
from velora.errors import CheckpointError, DataError
from velora.evaluation.onnx_recognizer import OnnxRecognizer
from velora.export import onnx as export_module
from velora.export.onnx import ExportError, export_onnx
from velora.model.adapter_file import load_model, save_adapters
from velora.model.velora import VELoRA

TOLERANCE = 1e-4
# The released code's model at the tiny size (as in test_release_model.py).
TINY_VIT = {"embed_dim": 32, "depth": 3, "num_heads": 2}
RELEASE = dict(RELEASE_MODEL, high_level_blocks=1, backbone_args={**TINY_VIT, "num_classes": 24})
PIP = r"pip install 'velora-rgbe\[onnx\]'"
CASES = {"rgb+events": ("rgb", "events"), "rgb": ("rgb",), "events": ("events",)}


def strengthen(model: VELoRA, seed: int = 0) -> VELoRA:
    """Adapters and absent embeddings far from their start, so that every path changes the logits."""
    fill_adapters(model, seed=seed, scale=0.2)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        model.absent_rgb.copy_(torch.randn(model.absent_rgb.shape, generator=g))
        model.absent_event.copy_(torch.randn(model.absent_event.shape, generator=g))
    return model


@pytest.fixture(scope="module")
def checkpoint(tiny_run, tmp_path_factory) -> Path:
    """The tiny run's model with strong adapters, as an adapter file."""
    model, saved = load_model(tiny_run / "best.safetensors")
    path = tmp_path_factory.mktemp("export") / "strong.safetensors"
    return save_adapters(path, strengthen(model), saved.config, saved.class_names, saved.info)


@pytest.fixture(scope="module")
def exported(checkpoint) -> dict[bool, export_module.ExportReport]:
    """The checkpoint exported with its LoRA branches (False) and merged (True)."""
    folder = checkpoint.parent
    return {merge: export_onnx(checkpoint, folder / f"model_{merge}.onnx", merge=merge) for merge in (False, True)}


def logits_of(session: ort.InferenceSession, clips: dict[str, torch.Tensor], keys: tuple[str, ...]) -> np.ndarray:
    shape = next(iter(clips.values())).shape
    empty = np.zeros((0, *shape[1:]), np.uint8)
    return session.run(["logits"], {k: clips[k].numpy() if k in keys else empty for k in ("rgb", "events")})[0]


@pytest.mark.slow
@pytest.mark.parametrize("merge", [False, True], ids=["lora", "merged"])
def test_onnxruntime_equals_pytorch_in_every_modality_case_and_batch(exported, checkpoint, tiny_dataset, merge):
    report = exported[merge]
    assert report.cases == list(CASES) and report.merged is merge
    assert max(report.max_abs_diff.values()) <= TOLERANCE, report.max_abs_diff  # the export's own check
    model, saved = load_model(checkpoint)  # the LoRA model itself, not the folded one that was exported
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    items = [make_dataset(saved.config, "test")[i] for i in range(5)]
    real = {k: torch.stack([item[k] for item in items]) for k in ("rgb", "events")}
    for clips in (real, {k: random_clip(1, 3, 32, seed=i) for i, k in enumerate(("rgb", "events"))}):
        for case, keys in CASES.items():
            with torch.no_grad():
                expected = model(*(clips[k] if k in keys else None for k in ("rgb", "events"))).logits.numpy()
            got = logits_of(session, clips, keys)
            assert got.shape == expected.shape
            assert np.abs(got - expected).max() <= TOLERANCE, (case, np.abs(got - expected).max())
    # The cases differ: a missing stream is skipped, not fed as zeros.
    outs = [logits_of(session, real, keys) for keys in CASES.values()]
    assert not np.allclose(outs[0], outs[1], atol=1e-3) and not np.allclose(outs[0], outs[2], atol=1e-3)


@pytest.mark.slow
def test_the_file_names_its_inputs_and_records_what_predict_needs(exported, checkpoint):
    model, saved = load_model(checkpoint)
    for merge, report in exported.items():
        proto = onnx.load(str(report.path))
        graph = proto.graph
        assert [i.name for i in graph.input] == ["rgb", "events"] and [o.name for o in graph.output] == ["logits"]
        for value in graph.input:
            dims = value.type.tensor_type.shape.dim
            assert value.type.tensor_type.elem_type == TensorProto.UINT8
            assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, 3, 32, 32]
        meta = {p.key: p.value for p in proto.metadata_props}
        opset = next(o.version for o in proto.opset_import if o.domain == "")
        assert meta["format"] == "velora-onnx/1" and meta["velora_version"] == velora.__version__
        assert meta["opset"] == str(opset) == str(report.opset) and opset >= export_module.MIN_OPSET
        assert meta["merged"] == str(merge).lower() and meta["cases"] == "rgb+events,rgb,events"
        assert json.loads(meta["class_names"]) == saved.class_names
        assert json.loads(meta["config"]) == json.loads(json.dumps(saved.config.to_dict()))
        assert json.loads(meta["weights_source"]) == saved.weights_source
        assert json.loads(meta["adapters"])["file"] == checkpoint.name
    onnx.checker.check_model(onnx.load(str(exported[True].path)), full_check=True)


@pytest.mark.slow
def test_velora_predict_runs_the_onnx_file_without_building_the_model(
    exported, checkpoint, tiny_dataset, monkeypatch, tmp_path, capsys
):
    torch_recognizer = velora.load(checkpoint)
    dataset = make_dataset(torch_recognizer.config, "test")
    clips = [tiny_dataset / entry.sample for entry in dataset.entries[:4]]
    expected = torch_recognizer.predict(clips, top_k=8)
    expected_events = torch_recognizer.predict(clips[:2], top_k=8, modalities=["event"])

    def no_model(*args, **kwargs):
        raise AssertionError("an ONNX prediction built a VELoRA module")

    monkeypatch.setattr(VELoRA, "__init__", no_model)
    for report in exported.values():
        recognizer = velora.load(report.path)
        assert isinstance(recognizer, OnnxRecognizer) and recognizer.class_names == torch_recognizer.class_names
        assert "opset" in repr(recognizer) and recognizer.weights_source == torch_recognizer.weights_source
        for got, want in zip(recognizer.predict(clips, top_k=8), expected):
            assert got.labels == want.labels and got.scores == pytest.approx(want.scores, abs=1e-5)
        for got, want in zip(recognizer.predict(clips[:2], top_k=8, modalities=["event"]), expected_events):
            assert got.scores == pytest.approx(want.scores, abs=1e-5)
    out = tmp_path / "top.json"
    assert main(["predict", str(exported[True].path), str(clips[0]), "--json", str(out)]) == 0
    assert json.loads(out.read_text())[0]["topk"][0][0] == expected[0].label
    assert f"top-1: {expected[0].label}" in capsys.readouterr().out
    with pytest.raises(CheckpointError, match="velora eval runs on the adapter file"):
        velora.load(exported[False].path).evaluate("test")


@pytest.mark.slow
def test_the_released_codes_model_exports_merged_and_a_one_modality_model_has_one_input(tmp_path, monkeypatch):
    """The release's M-shared path calls the fc1/fc2 adapters directly: folding keeps them working."""
    cfg = make_tiny_config(model=RELEASE)
    model = strengthen(VELoRA.from_config(cfg))
    path = save_adapters(tmp_path / "release.safetensors", model, cfg, [str(i) for i in range(8)])
    report = export_onnx(path, tmp_path / "release.onnx", merge=True)
    assert max(report.max_abs_diff.values()) <= TOLERANCE, report.max_abs_diff
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    clips = {"rgb": random_clip(2, seed=5), "events": random_clip(2, seed=6)}
    with torch.no_grad():
        expected = model.eval()(clips["rgb"], clips["events"]).logits.numpy()
    assert np.abs(logits_of(session, clips, ("rgb", "events")) - expected).max() <= TOLERANCE

    cfg = make_tiny_config(data={"modalities": ["event"]})
    model = strengthen(VELoRA.from_config(cfg))
    path = save_adapters(tmp_path / "event.safetensors", model, cfg, [str(i) for i in range(8)])
    report = export_onnx(path, tmp_path / "event.onnx", opset=18)  # the oldest opset the exporter writes
    assert report.cases == ["events"] and report.opset == 18 and max(report.max_abs_diff.values()) <= TOLERANCE
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["events"]

    # A failure after the file is written (here: its check) leaves nothing behind.
    before = sorted(p.name for p in tmp_path.iterdir())

    def broken(*args, **kwargs):
        raise RuntimeError("check failed")

    monkeypatch.setattr(export_module, "parity", broken)
    with pytest.raises(RuntimeError, match="check failed"):
        export_onnx(path, tmp_path / "again.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# ---------------------------------------------------------------------------- bad input, each one error
def foreign_onnx(path: Path) -> Path:
    """A valid ONNX file that velora did not write."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def test_unsupported_export_options_are_named_and_nothing_is_written(tiny_run, tmp_path, capsys):
    with pytest.raises(ExportError, match=r"--opset 13 is not supported: .* opset 18 or later"):
        export_onnx(tiny_run, tmp_path / "a.onnx", opset=13)
    with pytest.raises(ExportError, match=r"--opset 99 is not supported.*installed onnx knows opsets up to \d+"):
        export_onnx(tiny_run, tmp_path / "a.onnx", opset=99)
    with pytest.raises(ExportError, match=r"must end in \.onnx"):
        export_onnx(tiny_run, tmp_path / "a.pt")
    with pytest.raises(ExportError, match="is an ONNX file already"):
        export_onnx(foreign_onnx(tmp_path / "foreign.onnx"), tmp_path / "b.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.onnx"]
    assert main(["export", str(tiny_run), str(tmp_path / "c.onnx"), "--opset", "12"]) == 2
    assert "velora export: error: --opset 12 is not supported" in capsys.readouterr().err


def test_a_missing_onnx_package_names_the_pip_command(tiny_run, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def without(*blocked):
        def importer(name, *args, **kwargs):
            if name.split(".")[0] in blocked:
                raise ModuleNotFoundError(f"No module named '{name}'", name=name)
            return real_import(name, *args, **kwargs)

        return importer

    monkeypatch.setattr(builtins, "__import__", without("onnxscript"))
    with pytest.raises(ExportError, match=rf"needs onnxscript, which is not installed: {PIP}"):
        export_onnx(tiny_run, tmp_path / "a.onnx")
    monkeypatch.setattr(builtins, "__import__", without("onnxruntime"))
    with pytest.raises(CheckpointError, match=rf"needs onnxruntime, which is not installed: {PIP}"):
        velora.load(foreign_onnx(tmp_path / "f.onnx"))


def test_load_gives_one_clear_error_for_each_wrong_file(tmp_path):
    with pytest.raises(CheckpointError, match="not one written by velora export"):
        velora.load(foreign_onnx(tmp_path / "foreign.onnx"))
    (tmp_path / "garbage.onnx").write_bytes(b"\x00not a model" * 10)
    with pytest.raises(CheckpointError, match="is not a readable ONNX file"):
        velora.load(tmp_path / "garbage.onnx")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match=r"not a model file velora can load \(suffix '.txt'\).*hf:org/name"):
        velora.load(tmp_path / "notes.txt")
    with pytest.raises(CheckpointError, match="does not exist"):
        velora.load(tmp_path / "missing.onnx")
    (tmp_path / "fake.safetensors").write_bytes(b"12345678")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        velora.load(tmp_path / "fake.safetensors")


def test_an_onnx_file_with_corrupt_velora_metadata_says_so(tmp_path):
    path = foreign_onnx(tmp_path / "m.onnx")
    proto = onnx.load(str(path))
    helper.set_model_props(proto, {"format": "velora-onnx/1", "config": "{not json", "class_names": "[]"})
    onnx.save(proto, str(path))
    with pytest.raises(CheckpointError, match="corrupt velora metadata"):
        velora.load(path)


@pytest.mark.slow
def test_velora_stream_runs_the_onnx_file_and_gives_the_windows_pytorch_gives(exported, checkpoint, real_data_dir):
    """`velora stream RECORDING model.onnx`: the stream's windows through onnxruntime, as through PyTorch."""
    from velora.stream import StreamOptions, open_source, run_stream

    street = str(real_data_dir / "davis346" / "street_davis346.aedat4")
    windows = {}
    for name, recognizer in (("torch", velora.load(checkpoint)), ("onnx", velora.load(exported[True].path))):
        got = []
        summary = run_stream(
            recognizer,
            open_source(street),
            StreamOptions(resize=True, top_k=8),
            on_window=got.append,
            notify=lambda text: None,
        )
        assert summary.error is None and summary.windows == len(got) > 0, name
        windows[name] = got
    assert len(windows["onnx"]) == len(windows["torch"])
    for a, b in zip(windows["torch"], windows["onnx"]):
        assert [label for label, _ in a.topk] == [label for label, _ in b.topk]
        assert [score for _, score in b.topk] == pytest.approx([score for _, score in a.topk], abs=1e-5)
    # the graph's clip length is fixed at export: another one is refused by name
    with pytest.raises(DataError, match="fixed when it was exported"):
        run_stream(
            velora.load(exported[True].path),
            open_source(street),
            StreamOptions(resize=True, num_frames=1),
            on_window=lambda window: None,
            notify=lambda text: None,
        )
