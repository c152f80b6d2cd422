"""The `velora` command, run in-process: help, errors with exit code 2, info, train, demo, bench."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import make_tiny_config
from velora import __version__
from velora.cli import main
from velora.demo.report import SPREAD_FIELDS

SUBCOMMANDS = ["demo", "train", "eval", "predict", "export", "package", "bench", "info", "pretrain", "reproduce"]


def exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1


def write_tiny_config(path, **sections) -> str:
    path.write_text(yaml.safe_dump(make_tiny_config(**sections).to_dict()))
    return str(path)


def test_top_level_help_lists_every_command(capsys):
    assert exit_code(["--help"]) == 0
    out = capsys.readouterr().out
    for command in SUBCOMMANDS:
        assert command in out


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_subcommand_help(command, capsys):
    assert exit_code([command, "--help"]) == 0
    assert f"velora {command}" in capsys.readouterr().out


def test_version(capsys):
    assert exit_code(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_train_help_lists_config_fields_with_help_text(capsys):
    exit_code(["train", "--help"])
    out = capsys.readouterr().out
    for field in ("lora.rank", "model.fusion_block", "data.modalities", "train.lr", "model.recon_detach_target"):
        assert field in out
    assert "LoRA rank r of every adapter" in out


def test_no_command_is_a_usage_error(capsys):
    assert exit_code([]) == 2
    assert "usage:" in capsys.readouterr().err


def test_train_without_config_says_what_to_give():
    with pytest.raises(SystemExit) as err:
        main(["train"])
    assert "--config" in str(err.value.code)


def test_info_reports_trainable_parameters_and_adapter_size(capsys):
    assert main(["info", "--config", "pokerevent_vitb16"]) == 0
    out = capsys.readouterr().out
    trainable = int(re.search(r"^trainable\s+([\d,]+)", out, re.M).group(1).replace(",", ""))
    assert 1_000_000 < trainable < 3_000_000
    size = float(re.search(r"adapter checkpoint size: ([\d.]+) MB", out).group(1))
    assert 5 < size < 10
    assert size == pytest.approx(trainable * 4 / 1e6, abs=0.01)
    for part in ("RGB stream LoRA", "event stream LoRA", "frame-difference stream LoRA", "classification head"):
        assert part in out


def test_info_linear_probe_has_only_the_head_trainable(capsys):
    assert main(["info", "--config", "demo", "lora.rank=0"]) == 0
    out = capsys.readouterr().out
    assert "LoRA" not in out.split("part")[1].split("trainable")[0]
    head = int(re.search(r"classification head\s+([\d,]+)", out).group(1).replace(",", ""))
    trainable = int(re.search(r"^trainable\s+([\d,]+)", out, re.M).group(1).replace(",", ""))
    assert head == trainable == (2 * 128 + 1) * 8


def test_wrong_config_key_exits_2_naming_the_key(capsys):
    assert main(["info", "--config", "demo", "lora.rnak=8"]) == 2
    err = capsys.readouterr().err
    assert "lora.rnak" in err and "did you mean 'lora.rank'" in err
    assert "Traceback" not in err


def test_missing_config_file_exits_2(capsys, tmp_path):
    assert main(["info", "--config", str(tmp_path / "none.yaml")]) == 2
    err = capsys.readouterr().err
    assert "none.yaml" in err and "pokerevent_vitb16" in err


def test_eval_of_a_missing_checkpoint_exits_2(capsys, tmp_path):
    missing = tmp_path / "best.safetensors"
    assert main(["eval", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "does not exist" in err


def test_predict_with_a_missing_clip_exits_2(capsys, tmp_path):
    from velora.model.adapter_file import save_adapters
    from velora.model.velora import VELoRA

    cfg = make_tiny_config()
    ckpt = save_adapters(tmp_path / "a.safetensors", VELoRA.from_config(cfg), cfg, [str(i) for i in range(8)])
    assert main(["predict", str(ckpt), str(tmp_path / "no_clip")]) == 2
    assert "no_clip" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_train_then_predict(tiny_dataset, tmp_path, capsys):
    config = write_tiny_config(tmp_path / "tiny.yaml", data={"root": str(tiny_dataset)})
    out = tmp_path / "run"
    assert main(["train", "--config", config, f"train.output_dir={out}", "train.epochs=1"]) == 0
    assert "best val top-1" in capsys.readouterr().out
    assert (out / "best.safetensors").is_file()
    sample = (tiny_dataset / "val_label.txt").read_text().split()[0]
    panel = tmp_path / "panel.png"
    assert main(["predict", str(out / "best.safetensors"), str(tiny_dataset / sample), "--panel", str(panel)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("top-")]
    assert len(lines) == 5 and panel.is_file()

    # Several clips: the model loaded once, one panel row and one JSON record each; a clip in a
    # folder named after a class has that class as its ground truth.
    samples = [line.split()[0] for line in (tiny_dataset / "test_label.txt").read_text().splitlines()[:3]]
    predictions = tmp_path / "predictions.json"
    clips = [str(tiny_dataset / sample) for sample in samples]
    assert (
        main(["predict", str(out / "best.safetensors"), *clips, "--panel", str(panel), "--json", str(predictions)]) == 0
    )
    records = json.loads(predictions.read_text())
    assert [r["clip"] for r in records] == clips and all(len(r["topk"]) == 5 for r in records)
    assert [r["ground_truth"] for r in records] == [sample.split("/")[0] for sample in samples]
    single = main(["predict", str(out / "best.safetensors"), clips[1]])
    assert single == 0 and f"top-1: {records[1]['topk'][0][0]} " in capsys.readouterr().out


@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--compare", "--output", str(out)]) == 0
    report = out / "report"
    for name in ("metrics.json", "summary.md", "prediction_panel.png", "confusion.png", "curves.png"):
        assert (report / name).is_file() and (report / name).stat().st_size > 0, name
    metrics = json.loads((report / "metrics.json").read_text())
    variants = metrics["variants"]
    assert set(variants) == {"velora", "rgb_only", "event_only", "linear_probe", "random_backbone", "full_finetune"}
    for name, result in variants.items():
        # every variant carries its spread over training seeds (one seed: no standard deviation)
        assert all(field in result for field in SPREAD_FIELDS), name
        assert len(result["test_top1_per_seed"]) == len(result["seeds"]) == (3 if name == "velora" else 1), name
        assert result["test_top1_min"] <= result["test_top1"] <= result["test_top1_max"], name
        assert (result["test_top1_std"] is None) == (len(result["seeds"]) == 1), name
        assert result["test_clips"] == 16, name
        assert 0.0 <= result["test_top1"] <= result["test_top5"] <= 1.0, name
        assert Path(result["checkpoint"]).is_file(), name
    assert variants["velora"]["seeds"] == [0, 1, 2]
    assert (out / "runs" / "velora_seed2" / "best.safetensors").is_file()
    sweep = variants["full_finetune"]
    assert len(sweep["lr_sweep"]) >= 3 and sweep["chosen_lr"] in [row["lr"] for row in sweep["lr_sweep"]]
    best_val = max(row["best_val_top1"] for row in sweep["lr_sweep"])
    assert next(row for row in sweep["lr_sweep"] if row["lr"] == sweep["chosen_lr"])["best_val_top1"] == best_val
    assert variants["rgb_only"]["modalities"] == ["rgb"] and variants["event_only"]["modalities"] == ["event"]
    assert variants["linear_probe"]["trainable_parameters"] < variants["rgb_only"]["trainable_parameters"]
    assert variants["rgb_only"]["trainable_parameters"] < variants["velora"]["trainable_parameters"]
    assert variants["velora"]["trainable_fraction"] < 0.05 < 0.99 < variants["full_finetune"]["trainable_fraction"]
    assert variants["velora"]["backbone_source"].startswith("shipped fractal-pretrained")
    assert variants["random_backbone"]["backbone_source"].startswith("random initialisation")
    # matched test split: one modality alone is capped by the data, whatever the model learned
    assert metrics["caps"] == {"rgb": 0.5, "event": 0.25}
    assert variants["rgb_only"]["test_top1"] <= 0.5 and variants["event_only"]["test_top1"] <= 0.25
    assert len(metrics["class_names"]) == 8
    summary = (report / "summary.md").read_text()
    assert "VELoRA (RGB + event)" in summary and "frozen-backbone linear probe" in summary
    assert "full fine-tuning (lr " in summary and "chosen on the validation split" in summary
    assert "fractal, frozen" in summary and "random, frozen" in summary and "3 seeds" in summary


@pytest.mark.slow
def test_bench_reports_a_speedup(tmp_path, capsys):
    config = write_tiny_config(tmp_path / "tiny.yaml", data={"num_frames": 2})
    results = tmp_path / "bench.json"
    args = ["bench", "--config", config, "--steps", "1", "--batch-size", "2", "--original-batch-size", "1"]
    assert main([*args, "--peak-tflops", "0.5", "--json", str(results)]) == 0
    data = json.loads(results.read_text())
    by = {(r["style"], r["mode"]): r for r in data["rows"]}
    # The speed-up is our throughput over the original style's, per mode, from the same run.
    assert data["speedup"] == {
        m: pytest.approx(by["velora", m]["clips_per_s"] / by["original_style", m]["clips_per_s"])
        for m in ("train", "infer", "latency")
    }
    assert {(r["style"], r["mode"], r["batch_size"]) for r in data["rows"]} == {
        (s, m, 1 if m == "latency" or s == "original_style" else 2)
        for s in ("velora", "original_style")
        for m in ("train", "infer", "latency")
    }
    # MFU: the FLOP of a clip times clips per second, over the given peak.
    assert all(r["mfu"] == pytest.approx(r["flops_per_clip"] * r["clips_per_s"] / 0.5e12) for r in data["rows"])
    # One model, one FLOP count per clip and mode, whichever way it is executed.
    for m in ("train", "infer", "latency"):
        assert by["velora", m]["flops_per_clip"] == pytest.approx(by["original_style", m]["flops_per_clip"], rel=0.05)
    # The original style holds three copies of the frozen backbone, we hold one.
    assert data["frozen_weight_bytes"]["original_style"] == 3 * data["frozen_weight_bytes"]["velora"]
    assert data["sdpa"]["used"] in ("cpu_flash", "math") and data["sdpa"]["fused_attn"]
    out = capsys.readouterr().out
    assert "speed-up" in out and "MFU against 0.5 TFLOP/s" in out


@pytest.mark.slow
def test_bench_options_on_the_cpu(tmp_path, capsys):
    config = write_tiny_config(tmp_path / "tiny.yaml", data={"num_frames": 2})
    results = tmp_path / "bench.json"
    args = ["bench", "--config", config, "--steps", "1", "--batch-size", "1", "--no-original", "--modes", "train"]
    assert main([*args, "--checkpointing", "--json", str(results)]) == 0
    data = json.loads(results.read_text())
    assert data["grad_checkpointing"] and data["speedup"] == {}
    assert [(r["style"], r["mode"], r["mfu"]) for r in data["rows"]] == [("velora", "train", None)]  # no CPU peak
    assert "model.grad_checkpointing=true" in data["overrides"]
    assert main([*args, "--max-batch"]) == 2  # a GPU memory search
    assert main([*args, "--modes", "train,fly"]) == 2
    assert "--max-batch" in capsys.readouterr().err


def test_every_error_velora_raises_for_a_user_is_a_velora_error_the_cli_reports():
    import ast
    import importlib

    from velora.errors import VeloraError

    src = Path(__file__).resolve().parents[1] / "src" / "velora"
    found = []
    for path in src.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error") and node.name != "VeloraError":
                module = ".".join(("velora", *path.relative_to(src).with_suffix("").parts))
                found.append(getattr(importlib.import_module(module), node.name))
    internal = {"ProtocolError"}  # the DV network decoder's; the stream turns it into its summary's error
    assert len(found) >= 9
    assert [e.__name__ for e in found if e.__name__ not in internal and not issubclass(e, VeloraError)] == []


def test_train_on_a_root_that_does_not_exist_names_it(tmp_path, capsys):
    code = main(["train", "--config", "pokerevent_vitb16", "model.weights=none", f"data.root={tmp_path / 'missing'}"])
    assert code == 2
    assert f"data.root {tmp_path / 'missing'} does not exist" in capsys.readouterr().err


def test_no_parser_function_is_long_and_no_option_help_is_written_twice():
    """cli.py is a table of commands; each command's parser sits beside its code, and an option several
    commands share is declared once (velora.commands.common)."""
    import ast
    from collections import defaultdict

    import velora

    root = Path(velora.__file__).parent
    helps, long = defaultdict(list), []
    for path in [root / "cli.py", *sorted((root / "commands").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno + 1 > 80:
                long.append(f"{path.name}:{node.name}")
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    if keyword.arg == "help" and isinstance(keyword.value, ast.Constant):
                        helps[keyword.value.value].append(path.name)
    assert not long, f"functions over 80 lines: {long}"
    assert {text: files for text, files in helps.items() if len(files) > 1} == {}


@pytest.mark.slow  # a subprocess importing velora
def test_python_dash_m_velora_is_the_velora_command():
    # for a venv not activated or a --user install, whose `velora` script is not on PATH
    done = subprocess.run([sys.executable, "-m", "velora", "--version"], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout.strip()) == (0, f"velora {__version__}")
