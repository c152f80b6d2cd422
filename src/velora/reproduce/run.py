"""`velora reproduce pokerevent|hardvs ROOT`: the paper's table on a user's machine, in one command.

Steps, each recorded in OUTPUT/reproduce.json with the velora command that does it, when it began,
how long it took and how it ended. A rerun of the same command skips the finished steps and
continues training from its resume checkpoint, so a kill or a bad file never costs finished work.

1. config   the shipped <dataset>_vitb16 config (--release: <dataset>_vitb16_release) with
            data.root=ROOT, train.output_dir=OUTPUT/run, eval.test_every_epoch=true, one device,
            then the overrides given (a rerun must give the same ones: the fields that differ are named)
2. split    a dataset that ships no validation list (PokerEvent) gets one, seeded: val_fraction of
            each class of train_label.txt, written to OUTPUT/split (the dataset is never written to)
3. check    every clip of train, val and test (every image decoded; --fast-check: headers only);
            any problem stops here with the full report, also in OUTPUT/data_check.txt
4. measure  the backbone's weight source, then a few training and evaluation steps on real batches:
            the expected wall time per epoch and in all. Without a GPU it stops here and asks for --cpu
5. train    velora train, resumed from OUTPUT/run/checkpoints/last.ckpt when a run was cut off
6. eval     the val-selected checkpoint on the full test split: one view, and with the config's
            test-time views (eval.views x eval.crops)
7. report   OUTPUT/report.md and OUTPUT/report.json (velora.reproduce.report)
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import os
import shlex
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from velora import __version__
from velora.config import Config, ConfigError, load_config
from velora.data.check import check_config
from velora.data.factory import label_file
from velora.data.split import TRAIN_SPLIT_FILE, VAL_FILE, split_train_val
from velora.errors import DataError
from velora.evaluation.evaluate import evaluate_model
from velora.model.adapter_file import load_model
from velora.model.velora import VELoRA, count_parameters
from velora.model.weights_source import describe_source
from velora.pretrain.train import cpu_description
from velora.reproduce.report import build_report, report_markdown
from velora.reproduce.throughput import device_name, estimate, estimate_lines, measure_throughput
from velora.training.checkpoint import read_resume_state
from velora.training.datamodule import ClipDataModule
from velora.training.run import announce_weights, train, write_atomic

CONFIGS = {"pokerevent": "pokerevent_vitb16", "hardvs": "hardvs_vitb16"}
SHIPPED_TRAIN_LIST = "train_label.txt"  # the training list both datasets ship
# Fields a rerun may change without starting over: how the data is read, where training runs, and
# the final evaluation's views. Any other difference would mix two experiments in one folder.
MAY_CHANGE = {
    "data.num_workers",
    "train.progress",
    "train.accelerator",
    "train.precision",
    "eval.views",
    "eval.crops",
    "eval.crop_fraction",
    "eval.average",
}


@dataclass
class ReproduceOptions:
    dataset: str  # a key of CONFIGS
    root: str
    output: str | None = None  # default: runs/reproduce_<config>
    release: bool = False
    cpu: bool = False
    fast_check: bool = False
    workers: int = 1  # processes decoding images in the check
    split_seed: int = 0
    val_fraction: float = 0.1
    overrides: Sequence[str] = field(default_factory=list)

    @property
    def config_name(self) -> str:
        return CONFIGS[self.dataset] + ("_release" if self.release else "")

    @property
    def output_dir(self) -> Path:
        return Path(self.output or Path("runs") / f"reproduce_{self.config_name}").resolve()

    def command(self) -> str:
        """The command line of these options (the output folder spelled out)."""
        words = ["velora", "reproduce", self.dataset, self.root, "--output", str(self.output_dir)]
        words += ["--release"] * self.release + ["--cpu"] * self.cpu + ["--fast-check"] * self.fast_check
        words += ["--workers", str(self.workers), "--split-seed", str(self.split_seed)]
        words += ["--val-fraction", f"{self.val_fraction:g}", *self.overrides]
        return shlex.join(words)


@dataclass
class ReproduceResult:
    status: str  # "done"; "needs_cpu": no GPU and no --cpu; "stopped": training ended before its last epoch
    output_dir: Path
    report: dict | None = None


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class Journal:
    """OUTPUT/reproduce.json: what is done and every step run, rewritten (atomically) at each change."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict = {"invocations": [], "commands": [], "done": {}}
        if path.is_file():
            try:
                self.data = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise DataError(
                    f"{path} is not the JSON velora reproduce writes ({error}); move it away to start over"
                ) from None

    @property
    def done(self) -> dict:
        return self.data["done"]

    def save(self) -> None:
        write_atomic(self.path, json.dumps(self.data, indent=1))

    @contextmanager
    def record(self, entries: str, **entry) -> Iterator[dict]:
        """Time a step (or the whole invocation) into data[entries]: its status is "done", "interrupted"
        (Ctrl-C, a kill's SystemExit) or "failed: <error>"; saved when it starts and when it ends."""
        entry = {**entry, "started": now(), "seconds": None, "status": "running"}
        self.data[entries].append(entry)
        self.save()
        start = time.perf_counter()
        try:
            yield entry
            entry["status"] = "done"
        except (KeyboardInterrupt, SystemExit):
            entry["status"] = "interrupted"
            raise
        except BaseException as error:
            entry["status"] = f"failed: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            raise
        finally:
            entry["seconds"] = round(time.perf_counter() - start, 1)
            self.save()

    def step(self, name: str, command: Sequence[str] | None):
        """record() of one step with the command that does it (None: a step with no command of its own)."""
        return self.record("commands", step=name, command=shlex.join(command) if command else None)


def reproduce(options: ReproduceOptions) -> ReproduceResult:
    """Run (or continue) the reproduction that `options` describe; see the module docstring."""
    if options.dataset not in CONFIGS:
        raise ConfigError(f"velora reproduce knows {', '.join(CONFIGS)}, not '{options.dataset}'")
    out = options.output_dir
    out.mkdir(parents=True, exist_ok=True)
    journal = Journal(out / "reproduce.json")
    journal.data.update(
        dataset=options.dataset, config_name=options.config_name, root=str(Path(options.root).resolve())
    )
    with journal.record("invocations", command=options.command()) as invocation:
        result = _reproduce(options, out, journal)
        invocation["result"] = result.status
    if result.status == "done":
        report = build_report(journal.data, _read_json(out / "run" / "paper_protocol.json"))
        write_atomic(out / "report.json", json.dumps(report, indent=1))
        write_atomic(out / "report.md", report_markdown(report))
        result.report = report
    return result


def _reproduce(options: ReproduceOptions, out: Path, journal: Journal) -> ReproduceResult:
    base = [
        f"data.root={Path(options.root).resolve()}",
        f"train.output_dir={out / 'run'}",
        "eval.test_every_epoch=true",
        "train.devices=1",
    ]
    if options.cpu:
        base += ["train.accelerator=cpu", "train.precision=32-true"]
    overrides = base + list(options.overrides)
    cfg = load_config(options.config_name, overrides)
    t = cfg.train
    if t.devices not in (1, "1") or t.num_nodes != 1:
        raise ConfigError(
            f"velora reproduce trains on one device (train.devices {t.devices!r}, train.num_nodes {t.num_nodes} given): "
            "leave them out, or train on several GPUs with velora train and this folder's run/config.yaml"
        )
    split = _validation_split(cfg, options, out, journal)
    if split:
        overrides = base + split + list(options.overrides)
        cfg = load_config(options.config_name, overrides)
    _check_same_experiment(cfg, journal, out)
    journal.data.update(config=cfg.to_dict(), hardware=hardware())
    journal.save()
    config_words = ["--config", options.config_name, *overrides]

    if "check" not in journal.done:
        _check_data(cfg, options, out, journal, config_words)

    device = torch.device("cuda" if torch.cuda.is_available() and not options.cpu else "cpu")
    run = out / "run"
    if "train" not in journal.done:
        last = run / "checkpoints" / "last.ckpt"
        resume = last if last.is_file() else None
        if not _measure(cfg, options, device, resume, journal):
            return ReproduceResult("needs_cpu", out)
        command = ["velora", "train", *config_words, *(["--resume", str(resume)] if resume else [])]
        with journal.step("train", command):
            result = train(cfg, resume=str(resume) if resume else None, announce=False)
        if not result.finished:
            print(
                f"training stopped before its last epoch (best so far: epoch {result.best_epoch}); "
                "rerun the same command to continue"
            )
            return ReproduceResult("stopped", out)
        journal.done["train"] = {
            "best_epoch": result.best_epoch,
            "best_val_top1": result.best_val_top1,
            "epochs": cfg.train.epochs,
            "device": device_name(device),
        }
        journal.save()

    if "eval" not in journal.done:
        best = run / "best.safetensors"
        views = [f"eval.{key}={value}" for key, value in cfg.to_dict()["eval"].items() if key != "test_every_epoch"]
        command = ["velora", "eval", str(best), "--output", str(out / "eval"), "--device", device.type, *views]
        with journal.step("eval", command):
            model, checkpoint = load_model(best, device)
            report = evaluate_model(
                model,
                checkpoint,
                best,
                split="test",
                output_dir=out / "eval",
                progress=cfg.train.progress,
                overrides=views,
            )
        total, trainable = count_parameters(model)
        journal.done["eval"] = {
            **{k: report[k] for k in ("top1", "top5", "mean_class_accuracy", "num_clips")},
            "views": report.get("views"),
            "parameters": {"total": total, "trainable": trainable},
            "weights": describe_source(checkpoint.weights_source),
        }
        journal.save()
    return ReproduceResult("done", out)


def _validation_split(cfg: Config, options: ReproduceOptions, out: Path, journal: Journal) -> list[str]:
    """Overrides that point the config at a validation split made here; [] when the dataset has its own."""
    val = label_file(cfg, "val")
    if val.is_file():
        journal.data["split"] = {"made": False, "val_labels": str(val), "sha256": sha256(val)}
        return []
    root = Path(cfg.data.root)
    folder = out / "split"
    files = {"val": folder / VAL_FILE, "train": folder / TRAIN_SPLIT_FILE}
    made = journal.data.get("split") or {}
    if made.get("made") and all(path.is_file() for path in files.values()):
        for name, path in files.items():
            if sha256(path) != made["sha256"][name]:
                raise DataError(
                    f"{path} changed since velora reproduce made it (its sha256 differs from {journal.path}); the "
                    "run was trained on the original: restore it, or use another --output to start over"
                )
    else:
        command = [
            "velora",
            "split",
            str(root),
            "--val-fraction",
            f"{options.val_fraction:g}",
            "--seed",
            str(options.split_seed),
            "--train-labels",
            SHIPPED_TRAIN_LIST,
            "--test-labels",
            cfg.data.test_labels,
            "--output",
            str(folder),
            "--force",
        ]
        with journal.step("split", command):
            folder.mkdir(parents=True, exist_ok=True)
            result = split_train_val(
                root,
                val_fraction=options.val_fraction,
                seed=options.split_seed,
                train_labels=SHIPPED_TRAIN_LIST,
                test_labels=cfg.data.test_labels,
                val_out=str(files["val"]),
                train_out=str(files["train"]),
                force=True,
            )
        journal.data["split"] = {
            "made": True,
            "source": str(root / SHIPPED_TRAIN_LIST),
            "val_fraction": options.val_fraction,
            "seed": options.split_seed,
            "files": {name: str(path) for name, path in files.items()},
            "sha256": {name: sha256(path) for name, path in files.items()},
            "train_clips": sum(t for t, _ in result.counts.values()),
            "val_clips": sum(v for _, v in result.counts.values()),
        }
        journal.save()
    return [f"data.train_labels={files['train']}", f"data.val_labels={files['val']}"]


def _check_same_experiment(cfg: Config, journal: Journal, out: Path) -> None:
    """A rerun continues the run in OUTPUT only with the same settings (MAY_CHANGE aside)."""
    before = journal.data.get("config")
    if before is None:
        return
    now_ = cfg.to_dict()
    differ = [
        f"{section}.{key}: {value!r} before, {now_[section].get(key)!r} now"
        for section, fields in before.items()
        for key, value in fields.items()
        if f"{section}.{key}" not in MAY_CHANGE and now_.get(section, {}).get(key) != value
    ]
    if differ:
        raise ConfigError(
            f"{out} holds a run with other settings ({'; '.join(differ)}); rerun with the options it was started "
            "with to continue it, or give another --output to start a new one"
        )


def _check_data(cfg: Config, options: ReproduceOptions, out: Path, journal: Journal, config_words: list[str]) -> None:
    command = ["velora", "check-data", *config_words, "--workers", str(options.workers)]
    with journal.step("check", command + ["--fast"] * options.fast_check):
        report = check_config(
            cfg,
            ("train", "val", "test"),
            decode=not options.fast_check,
            workers=options.workers,
            progress=cfg.train.progress,
        )
        text = report.format(max_per_kind=10**9)
        write_atomic(out / "data_check.txt", text + "\n")
        if not report.ok:
            print(text)
            raise DataError(
                f"the dataset at {cfg.data.root} has problems, each listed above with its file (also in "
                f"{out / 'data_check.txt'}): fix or remove those files, then rerun the same command; nothing was "
                "trained"
            )
    journal.done["check"] = {
        "clips": report.clip_counts,
        "decoded": not options.fast_check,
        "warnings": len(report.warnings),
    }
    journal.save()


def _measure(
    cfg: Config, options: ReproduceOptions, device: torch.device, resume: Path | None, journal: Journal
) -> bool:
    """Say where the weights come from, measure, print the expected wall time; False: no GPU and no --cpu."""
    data = ClipDataModule(cfg)
    model = VELoRA.from_config(cfg)
    announce_weights(model)
    quick = device.type == "cpu" and not options.cpu  # only to say what a CPU run (--cpu) would take
    if quick:
        batch, warmup, steps = 1, 1, 1
        cfg = copy.deepcopy(cfg)
        cfg.train.precision = "32-true"  # as --cpu sets it
    elif device.type == "cpu":
        batch, warmup, steps = cfg.train.batch_size, 1, 2
    else:
        # The warmup absorbs the loader's start, cuDNN's autotuning and the first kernel compilations;
        # the timed steps outlast the batches the workers load ahead (prefetch 4 each), so data loading
        # is timed at its steady pace.
        batch, warmup, steps = cfg.train.batch_size, 2, 5 + 4 * cfg.data.num_workers
    with journal.step("measure", None):
        throughput = measure_throughput(cfg, data, model, device, batch_size=batch, warmup=warmup, steps=steps)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    epochs_left = cfg.train.epochs - (read_resume_state(resume)["epoch"] if resume else 0)
    expected = estimate(throughput, cfg, data, max(1, epochs_left), views=views_per_clip(cfg))
    journal.data["throughput"] = {
        "device": throughput.device,
        "batch_size": throughput.batch_size,
        "precision": throughput.precision,
        "train_clips_per_s": round(1 / throughput.train_s_per_clip, 3),
        "eval_clips_per_s": round(1 / throughput.eval_s_per_clip, 3),
        "estimate": expected.as_dict(),
    }
    journal.save()
    for line in estimate_lines(throughput, expected):
        print(line, flush=True)
    if quick:
        print(
            "no GPU: torch sees no CUDA device here, and the expected wall time above is on this CPU. Rerun the "
            "same command with --cpu to train on the CPU anyway (finished steps are kept), or run it on a machine "
            "with a GPU.",
            flush=True,
        )
        return False
    return True


def views_per_clip(cfg: Config) -> int:
    """Views per clip of the final evaluation's multi-view figure (1: the single view only)."""
    return cfg.eval.views * cfg.eval.crops


def hardware() -> dict:
    info = {
        "cpu": cpu_description()["model"],
        "logical_cpus": os.cpu_count(),
        "torch": torch.__version__,
        "velora": __version__,
    }
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None
