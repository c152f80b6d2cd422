"""The `velora` command: demo, train, eval, predict, stream, export, package, bench, info, check-data, split,
convert, convert-weights, pretrain.

Every command that takes a config accepts `--config FILE` (a YAML path or a shipped name:
demo, pokerevent_vitb16, hardvs_vitb16) followed by `section.field=value` overrides.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

from velora import __version__

def _expected_errors() -> tuple[type[Exception], ...]:
    from velora.config import ConfigError
    from velora.errors import CheckpointError, DataError, OutputError
    from velora.evaluation.package import PackageError
    from velora.export.onnx import ExportError
    from velora.model.backbone import BackboneError
    from velora.model.lora import LoRAError
    from velora.model.weights import WeightsError
    from velora.stream.sources import SourceError

    # FloatingPointError: a NaN or infinite training loss (VELoRAModule.training_step).
    return (
        ConfigError, DataError, BackboneError, LoRAError, CheckpointError, WeightsError, FileNotFoundError,
        FloatingPointError, ExportError, PackageError, SourceError, OutputError,
    )


def _add_config(p: argparse.ArgumentParser, default: str | None) -> None:
    p.add_argument(
        "--config",
        default=default,
        help=f"YAML config: a path or a shipped name (demo, pokerevent_vitb16, hardvs_vitb16). Default: {default}",
    )
    p.add_argument("overrides", nargs="*", metavar="section.field=value", help="config overrides, e.g. train.lr=3e-4")


def _add_weights(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--weights", metavar="FILE",
        help="backbone weights instead of the checkpoint's model.weights (a model trained on a local file that is "
        "elsewhere here; its sha256 is checked)",
    )


def build_parser() -> argparse.ArgumentParser:
    from velora.config import describe_fields

    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="velora",
        description="VELoRA: LoRA adaptation of a frozen ViT for RGB + event-camera clip recognition.",
        formatter_class=fmt,
    )
    parser.add_argument("--version", action="version", version=f"velora {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "demo",
        help="offline demo: synthetic RGB-Event data, train VELoRA and baselines, report",
        description=textwrap.dedent(
            """\
            Build a synthetic RGB-Event dataset in the PokerEvent layout (DVS-simulated events), train
            VELoRA (three training seeds) and the RGB-only and event-only baselines, evaluate them on the
            test split and write a report folder. --compare adds the frozen-backbone linear probe, LoRA on
            a random backbone and full fine-tuning (learning rate chosen on the validation split). The
            backbone is the fractal-pretrained ViT that ships with the package. Needs no network; the
            trainings run side by side, one per CPU core."""
        ),
        formatter_class=fmt,
    )
    p.add_argument("--output", default="velora-demo", help="folder for data, runs and the report (default: velora-demo)")
    p.add_argument("--quick", action="store_true", help="a tiny dataset and one epoch: checks the pipeline in under a minute")
    p.add_argument(
        "--compare", action="store_true",
        help="also train the linear probe, LoRA on a random backbone and full fine-tuning (a learning-rate sweep)",
    )
    p.add_argument(
        "--variants",
        help="comma-separated models to train instead of velora,rgb_only,event_only (--compare adds its three); "
        "the released code's model: release, release_stream_path, release_shared_lora, release_head, "
        "release_random_blocks; ablations: fusion_random, recon_block, recon_attached, head_cls, no_frame_diff, no_recon, "
        "modality_dropout",
    )
    p.add_argument("--seeds", type=int, default=3, help="training seeds of VELoRA, for the spread (default: 3)")
    p.add_argument("--workers", type=int, help="trainings at once (default: one per CPU core)")
    _add_config(p, "demo")

    p = sub.add_parser(
        "train",
        help="train adapters on a dataset",
        description="Train VELoRA adapters; model selection on the validation split.\n\nConfig fields:\n"
        + describe_fields(),
        formatter_class=fmt,
    )
    p.add_argument("--resume", metavar="CKPT", help="resume from <output_dir>/checkpoints/last.ckpt of an earlier run")
    _add_config(p, None)

    p = sub.add_parser("eval", help="evaluate a checkpoint: top-1/top-5, per-class accuracy, confusion matrix")
    p.add_argument("checkpoint", help="adapter checkpoint (.safetensors) written by velora train")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--data-root", help="dataset root (default: the one stored in the checkpoint)")
    p.add_argument("--modalities", help="comma-separated subset of rgb,event (e.g. event: a missing RGB sensor)")
    p.add_argument("--output", help="folder for eval_<split>.json and confusion_<split>.png (default: next to the checkpoint)")
    p.add_argument("--device", default="cpu")
    _add_weights(p)
    p.add_argument(
        "overrides", nargs="*", metavar="data.field=value",
        help="data settings other than the checkpoint's, e.g. data.layout=recordings data.num_workers=8",
    )

    p = sub.add_parser("predict", help="top-5 classes of one clip, optionally with an image panel")
    p.add_argument(
        "checkpoint",
        help="adapter checkpoint (.safetensors), run folder, package folder, hf:org/name, or an ONNX file written by "
        "velora export (.onnx: run by onnxruntime)",
    )
    p.add_argument(
        "clips", nargs="+", metavar="clip",
        help="clip folder <sample>/ holding <sample>_aps/ and <sample>_dvs/ frames, or a raw .aedat4 recording; "
        "for a model trained on event files (data.layout events), one event file. Several clips: one panel row each",
    )
    p.add_argument("--json", metavar="FILE", help="write the predictions (and ground truths) as JSON")
    p.add_argument("--modalities", help="comma-separated subset of rgb,event")
    p.add_argument("--panel", metavar="PNG", help="write a prediction panel (RGB frames, event frames, top-5)")
    p.add_argument("--device", default="cpu")
    _add_weights(p)

    p = sub.add_parser(
        "export",
        help="write a checkpoint as one ONNX file (inputs rgb, events; dynamic batch) for onnxruntime",
        description="Export a trained model to ONNX: inputs rgb and events, uint8 (batch, T, 3, S, S) with a dynamic "
        "batch (T and S are the config's); output logits (batch, classes). A model with both modalities holds its "
        "three graphs (both, RGB alone, events alone) in one file: an empty input (batch 0) is a missing sensor. "
        "The config, class names, weights source, opset and velora version are in the file's metadata, so "
        "`velora predict OUT.onnx CLIP` needs nothing else. After writing, the file is run by onnxruntime against "
        "PyTorch on random clips of every case and the largest logit difference is printed.",
    )
    p.add_argument("checkpoint", help="adapter checkpoint (.safetensors), run folder, package folder or hf:org/name")
    p.add_argument("output", help="the .onnx file to write")
    p.add_argument(
        "--merge", action="store_true",
        help="fold each stream's LoRA into its own copy of the weights it touches: no low-rank branches in the graph",
    )
    p.add_argument("--opset", type=int, help="ai.onnx opset to write (18 or later; default: torch's exporter's)")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime-against-PyTorch check")
    _add_weights(p)

    p = sub.add_parser(
        "package",
        help="a training run -> a folder to share (adapters, config, class names, model card) that velora.load reads",
        description="Write OUT_DIR with the run's best adapters (adapters.safetensors), config.yaml, class_names.json, "
        "weights_source.json (the base weights' id and sha256) and a README.md model card (task, data, splits, "
        "selection protocol, metrics with the eval command, trainable share, licence of the base weights). "
        "velora.load(OUT_DIR) loads it; uploaded to the Hugging Face hub, velora.load('hf:org/name') does.",
    )
    p.add_argument("run", help="a training run's folder (with best.safetensors) or one of its adapter files")
    p.add_argument("out_dir", help="the folder to write (must not exist, unless --force)")
    p.add_argument("--name", help="the model card's title (default: OUT_DIR's name)")
    p.add_argument("--dataset", help="the dataset's name in the model card (default: the name of data.root's folder)")
    p.add_argument("--force", action="store_true", help="replace OUT_DIR if it exists")

    p = sub.add_parser(
        "stream",
        help="live recognition: a sliding window over a recording, a DV network stream or a camera",
        description=textwrap.dedent(
            """\
            Predict continuously from SOURCE with a sliding window of the last T APS frames and the events
            between them (T + 1 frames give the model's T samples, exactly as predict reads a recording),
            every --hop frames or milliseconds. Each window prints its time range, top-k and latency (from
            the receipt of the window's last event to its prediction); Ctrl-C or the end of the stream prints
            a summary: windows, mean and p95 latency, real-time factor.

            SOURCE:
              FILE.aedat4               a recording, replayed as fast as possible (--realtime: at its own pace);
                                        other event files replay their events alone
              tcp://HOST:PORT[,PORT]    DV network servers (DV's TCP output, dv-processing's NetworkWriter):
                                        the events port and, for APS frames, the frames port
              camera: | camera:SERIAL   a camera through dv-processing (pip install dv-processing)
            Without APS frames the windows are event-only (T x --frame-ms) and an RGB + event model takes
            its missing-modality path. A tcp:// or camera: source that goes away is reconnected
            (--reconnect); no window spans the gap, and the summary and --jsonl record it."""
        ),
        formatter_class=fmt,
    )
    p.add_argument("source", help="a recording file, tcp://HOST:PORT[,PORT], or camera:[SERIAL]")
    p.add_argument("checkpoint", help="adapter checkpoint (.safetensors) or a training run's folder")
    p.add_argument("--realtime", action="store_true",
                   help="replay a recording at its own pace (default: as fast as possible)")
    p.add_argument("--hop", default="1", help="predict every N frames (2) or milliseconds (100ms); default 1 frame")
    p.add_argument("--frames", type=int, metavar="T",
                   help="samples per window, T + 1 APS frames (default: the model's data.num_frames)")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--jsonl", metavar="FILE", help="also write each window (and the summary, last) as a JSON line")
    p.add_argument("--resize", action="store_true", help="accept a sensor of another size than the model's training "
                   "data: frames and event images are resized to the model's size, as predict does")
    p.add_argument("--frame-ms", type=float, default=40.0,
                   help="event-only windows: milliseconds per sample (default 40)")
    p.add_argument("--frame-timeout", type=float, default=1.0, metavar="S",
                   help="seconds of events without an APS frame before event-only windows (default 1)")
    p.add_argument("--timeout", type=float, default=5.0, metavar="S",
                   help="seconds of silence that count as a stall (default 5)")
    p.add_argument("--reconnect", type=float, default=60.0, metavar="S",
                   help="tcp:// and camera: sources that go away (a DV restart, a cut cable, an unplugged camera) are "
                   "reconnected for up to S seconds; the windows restart after the gap (default 60)")
    p.add_argument("--no-reconnect", action="store_true",
                   help="do not reconnect: a lost or closed source ends the stream")
    p.add_argument("--all-windows", action="store_true", help="live sources: predict every window, even late ones "
                   "(default: a window is skipped when a newer one is ready before it was predicted)")
    p.add_argument("--max-windows", type=int, metavar="N", help="stop after N windows (predicted or skipped late)")
    p.add_argument("--reuse-frames", action="store_true", help="keep each sample's low-level tokens for the next "
                   "windows: about twice as fast predicting every frame, equal up to float rounding (PyTorch models)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads for the forward pass (default 1: one small "
                   "window at a time gains little from more, and the reading threads need a core)")

    p = sub.add_parser(
        "bench",
        help="training/inference throughput vs an original-style execution",
        description="Time VELoRA's batched execution against the original code's execution (one image per "
        "backbone call, three fp32 backbone copies) with the same model config, in one run.",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--steps", type=int, default=5, help="timed steps per measurement (after warmup)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument(
        "--peak-tflops", type=float, help="peak FLOP rate for MFU (default on CUDA: the card's dense bf16 peak "
        "from a table; on the CPU MFU is printed only with this)"
    )
    p.add_argument("--compile", action="store_true", help="model.compile: torch.compile the low-level blocks")
    p.add_argument("--checkpointing", action="store_true", help="model.grad_checkpointing: activation checkpointing")
    p.add_argument("--max-batch", action="store_true", help="CUDA: double the training batch until out of memory")
    p.add_argument("--no-original", action="store_true", help="skip the original-style execution")
    p.add_argument("--original-batch-size", type=int, help="the original style's batch (default: --batch-size)")
    p.add_argument(
        "--modes", default="train,infer,latency", help="comma-separated: train, infer, latency (one clip, median)"
    )
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    _add_config(p, "demo")

    p = sub.add_parser(
        "convert",
        help="raw .aedat4 recordings -> PokerEvent frame folders, or a dataset -> the packed format",
        description="recordings SRC OUT: <SRC>/<class>/<recording>.aedat4 -> PokerEvent sample folders "
        "(APS frames + event images of the events between consecutive frames).\n"
        "packed OUT --config CFG: the config's dataset (train/val/test label files) -> pre-resized uint8 "
        "clips in memory-mapped shards with an index; train from it with data.format=packed "
        "data.packed_root=OUT.\nBoth resume after an interruption and skip finished work on a rerun.",
        formatter_class=fmt,
    )
    p.add_argument("kind", choices=("recordings", "packed"))
    p.add_argument("paths", nargs="+", metavar="PATH", help="recordings: SRC OUT; packed: OUT")
    p.add_argument("--config", help="packed: the config whose data.root, model.image_size and data.modalities to pack")
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="section.field=value")
    p.add_argument("--image-size", type=int, help="recordings: resize to S x S (default: sensor size)")
    p.add_argument("--skip-bad", action="store_true", help="recordings: list unreadable recordings and go on")
    p.add_argument("--event-window-ms", type=float, default=33.333,
                   help="recordings without APS frames (.raw, .dat, ...): one event image per this many ms")
    p.add_argument("--workers", type=int, default=0, help="packed: processes decoding PNGs")
    p.add_argument("--verify", action="store_true", help="packed: re-read every clip and check its CRC")

    p = sub.add_parser(
        "convert-weights",
        help="CLIP/open_clip/Hugging Face/timm/TorchScript ViT weights -> timm-named .safetensors",
        description="Convert backbone weights once into timm-named safetensors (with their normalisation in "
        "the header), then point model.weights at the result. A TorchScript archive (OpenAI's ViT-B-16.pt) "
        "runs code when loaded: it is read only with --allow-torchscript, for files you trust.",
    )
    p.add_argument("source", help="weights file or folder")
    p.add_argument("output", help="the .safetensors file to write")
    p.add_argument("--allow-torchscript", action="store_true", help="load a TorchScript archive (runs code from it)")

    p = sub.add_parser(
        "check-data",
        help="walk a dataset and report every problem (missing folders, unreadable images, bad labels, ...)",
        description="Check a dataset before a long run: label lines, clip and modality folders, every image "
        "decoded (or headers only with --fast), frame counts and sizes, labels in range, class counts. "
        "Either a folder on its own (ROOT: each label file's layout is told from its lines), or the dataset "
        "of a config, read exactly as training reads it (--config, with data.*/model.num_classes overrides, "
        "e.g. data.root=/data/poker). Exit code 1 when anything is wrong.",
    )
    p.add_argument("root", nargs="?", help="dataset folder (PokerEvent/HARDVS frame layout, or event files with a "
                   "labels file); leave it out with --config")
    p.add_argument("--splits", default="train,val,test", help="--config: splits to check, those whose label files "
                   "exist (default train,val,test)")
    p.add_argument("--fast", action="store_true", help="read image headers only, do not decode")
    p.add_argument("--workers", type=int, default=1, help="processes decoding images")
    p.add_argument("--max-shown", type=int, default=20, help="problems shown per kind")
    _add_config(p, None)

    p = sub.add_parser(
        "split",
        help="carve a validation split out of a training list (stratified by class, deterministic)",
        description="Write <ROOT>/val_label.txt with --val-fraction of each class of the training list and "
        "<ROOT>/train_split_label.txt with the rest; the training and test lists are never changed, and a "
        "sample the test list holds goes to neither output. Train with data.train_labels=train_split_label.txt "
        "(the shipped PokerEvent configs do). Refuses to overwrite without --force.",
    )
    p.add_argument("root", help="dataset root holding the training list")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of each class for validation (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="which samples are drawn (default 0)")
    p.add_argument("--train-labels", default="train_label.txt", help="the training list (default train_label.txt)")
    p.add_argument("--test-labels", default="test_label.txt", help="the test list, read for overlaps only")
    p.add_argument("--force", action="store_true", help="overwrite the lists it writes")
    p.add_argument(
        "--from-folders", action="store_true",
        help="a dataset of class folders of event files with no lists (N-Caltech101): write train/val/test_label.txt "
        "and classes.txt, each class split --val-fraction / --test-fraction / the rest",
    )
    p.add_argument("--test-fraction", type=float, default=0.2, help="--from-folders: share of each class for test")

    p = sub.add_parser("info", help="parameters per part and adapter checkpoint size for a config")
    _add_config(p, "pokerevent_vitb16")

    from velora.pretrain.config import add_arguments

    p = sub.add_parser(
        "pretrain",
        help="pre-train a small ViT backbone on fractal images (the recipe of the demo's shipped weights)",
        description="Supervised pre-training on formula-driven fractal categories (FractalDB-style, no data "
        "download), writing timm-named safetensors plus a <output>.json manifest; use the result with "
        "model.weights=<output>.",
    )
    add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # argparse takes a positional list in one run: `velora eval CKPT --split val data.x=1`
        # leaves data.x=1 over. Overrides may come anywhere on the line.
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return COMMANDS[args.command](args)
    except _expected_errors() as exc:
        print(f"velora {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _split(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def cmd_demo(args) -> int:
    from velora.demo.run import run_demo

    run_demo(
        args.output, config=args.config, overrides=args.overrides, quick=args.quick, compare=args.compare,
        variants=_split(args.variants), seeds=args.seeds, workers=args.workers,
    )
    return 0


def cmd_train(args) -> int:
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    from velora.config import load_config
    from velora.training.run import train

    if not args.config and not args.overrides:
        raise SystemExit("velora train: give --config FILE and/or section.field=value overrides (see --help)")
    result = train(load_config(args.config, args.overrides), resume=args.resume)
    if rank_zero_only.rank == 0:  # under torchrun / SLURM every rank runs this
        print(f"best val top-1 {result.best_val_top1:.2%} at epoch {result.best_epoch}: {result.best_checkpoint}")
    return 0


def cmd_eval(args) -> int:
    import velora

    report = velora.load(args.checkpoint, device=args.device, weights=args.weights).evaluate(
        split=args.split, data_root=args.data_root, modalities=_split(args.modalities), output_dir=args.output,
        overrides=args.overrides,
    )
    print(f"{args.split}: {report['num_clips']} clips, top-1 {report['top1']:.2%}, top-5 {report['top5']:.2%}, "
          f"mean class accuracy {report['mean_class_accuracy']:.2%}")
    return 0


def cmd_predict(args) -> int:
    import velora

    recognizer = velora.load(args.checkpoint, device=args.device, weights=args.weights)
    results = recognizer.predict(args.clips, modalities=_split(args.modalities), panel=args.panel)
    for result in results:
        if len(results) > 1:
            truth = f" (folder: {result.ground_truth})" if result.ground_truth else ""
            print(f"{result.source}{truth}")
        for rank, (name, prob) in enumerate(result.topk, 1):
            print(f"{'  ' if len(results) > 1 else ''}top-{rank}: {name} ({prob:.3f})")
    if args.json:
        Path(args.json).write_text(json.dumps([r.as_dict() for r in results], indent=1))
        print(f"predictions: {args.json}")
    if args.panel:
        print(f"panel: {args.panel}")
    return 0


def cmd_export(args) -> int:
    from velora.export.onnx import TOLERANCE, export_onnx

    report = export_onnx(
        args.checkpoint, args.output, merge=args.merge, opset=args.opset, check=not args.no_check, weights=args.weights
    )
    kind = "LoRA merged" if report.merged else "LoRA branches kept"
    print(
        f"wrote {report.path} ({report.bytes / 1e6:.2f} MB, opset {report.opset}, {kind}; graphs: "
        f"{', '.join(report.cases)}) in {report.seconds:.0f} s"
    )
    for case, diff in report.max_abs_diff.items():
        verdict = "ok" if diff <= TOLERANCE else f"ABOVE {TOLERANCE:g}"
        print(f"  {case:>10s}: max |onnxruntime - PyTorch| logit {diff:.1e} ({verdict})")
    print(f"run it with: velora predict {report.path} CLIP")
    return 0


def cmd_package(args) -> int:
    from velora.evaluation.package import write_package

    out = write_package(args.run, args.out_dir, force=args.force, name=args.name, dataset=args.dataset)
    print(f"wrote {out}: {', '.join(sorted(p.name for p in out.iterdir()))}")
    print(f"load it with velora.load('{out}'); after uploading to the Hugging Face hub, velora.load('hf:<org>/<name>')")
    return 0


def cmd_stream(args) -> int:
    from velora.stream.run import parse_hop

    live = args.source.startswith(("tcp://", "camera:"))
    problems = []
    if args.realtime and live:
        problems.append("--realtime replays a recording at its own pace; a tcp:// or camera: source is live already")
    try:
        hop_frames, hop_ms = parse_hop(args.hop)
    except ValueError as error:
        problems.append(str(error))
    for name in ("frames", "top_k", "max_windows", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            problems.append(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    for name in ("frame_ms", "frame_timeout", "timeout", "reconnect"):
        if not getattr(args, name) > 0:
            problems.append(f"--{name.replace('_', '-')} must be greater than 0, got {getattr(args, name)}")
    if problems:
        print("velora stream: " + "; ".join(problems), file=sys.stderr)
        return 2
    try:
        return _stream(args, hop_frames, hop_ms)
    except KeyboardInterrupt:  # while loading or connecting; once streaming, Ctrl-C ends with the summary
        print("velora stream: interrupted before the stream started", file=sys.stderr)
        return 130


def _stream(args, hop_frames: int, hop_ms: float | None) -> int:
    import torch

    import velora
    from velora.stream import StreamOptions, open_source, run_stream

    torch.set_num_threads(args.threads)
    options = StreamOptions(
        num_frames=args.frames, hop_frames=hop_frames, hop_ms=hop_ms, top_k=args.top_k, frame_period_ms=args.frame_ms,
        frame_timeout_s=args.frame_timeout, resize=args.resize, all_windows=args.all_windows,
        max_windows=args.max_windows, timeout_s=args.timeout, reuse_frames=args.reuse_frames,
        reconnect_s=None if args.no_reconnect else args.reconnect,
    )
    recognizer = velora.load(args.checkpoint, device=args.device)

    def notify(message: str) -> None:
        print(f"velora stream: {message}", file=sys.stderr, flush=True)

    source = open_source(args.source, realtime=args.realtime)
    summary = run_stream(
        recognizer, source, options, on_window=lambda p: print(p.line(), flush=True), notify=notify, jsonl=args.jsonl,
    )
    print(summary.text())
    if args.jsonl:
        print(f"windows: {args.jsonl}")
    if summary.error:
        print(f"velora stream: error: {summary.error}", file=sys.stderr)
        return 1
    return 0


def cmd_bench(args) -> int:
    from velora.bench.run import run_bench

    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    unknown = [m for m in modes if m not in ("train", "infer", "latency")]
    if unknown or not modes:
        print(f"velora bench: --modes {args.modes!r}: use some of train, infer, latency", file=sys.stderr)
        return 2
    if args.max_batch and not args.device.startswith("cuda"):
        print("velora bench: --max-batch searches up to the GPU's memory; use it with --device cuda", file=sys.stderr)
        return 2
    results = run_bench(
        args.config, args.overrides, device=args.device, batch_size=args.batch_size, steps=args.steps,
        precision=args.precision, peak_tflops=args.peak_tflops, compile=args.compile,
        checkpointing=args.checkpointing, max_batch=args.max_batch, original=not args.no_original,
        original_batch_size=args.original_batch_size, modes=modes,
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


def cmd_convert(args) -> int:
    from velora.config import ConfigError

    if args.kind == "recordings":
        from velora.data.convert import convert_recordings

        if len(args.paths) != 2:
            raise ConfigError("velora convert recordings needs SRC and OUT")
        stats = convert_recordings(
            args.paths[0], args.paths[1], image_size=args.image_size, skip_bad=args.skip_bad,
            event_window_us=max(1, round(args.event_window_ms * 1000)),
        )
        print(f"{stats.recordings} recordings, {stats.frames} frames, {stats.events} events in {stats.seconds:.1f} s "
              f"({stats.events_per_s:,.0f} events/s, {stats.frames_per_s:,.1f} frames/s)")
        for failure in stats.failures:
            print(f"failed: {failure}")
        return 1 if stats.failures else 0

    from pathlib import Path

    from velora.config import load_config
    from velora.data.packed import PackedClipDataset, pack_dataset

    if len(args.paths) != 1 or not args.config:
        raise ConfigError("velora convert packed needs OUT and --config CFG")
    cfg = load_config(args.config, args.overrides)
    d = cfg.data
    root = Path(d.root)
    splits = {
        split: name for split, name in (("train", d.train_labels), ("val", d.val_labels), ("test", d.test_labels))
        if (root / name).is_file()
    }
    stats = pack_dataset(
        root, args.paths[0], splits=splits, image_size=cfg.model.image_size, modalities=tuple(d.modalities),
        event_resize=d.event_resize, frame_pairing=d.frame_pairing, frame_count_policy=d.frame_count_policy,
        workers=args.workers,
    )
    print(stats)
    if args.verify:
        for split in splits:
            PackedClipDataset(args.paths[0], split).verify()
        print("verified")
    print(f"train from it with: data.format=packed data.packed_root={args.paths[0]}")
    return 0


def cmd_convert_weights(args) -> int:
    from velora.model.weights import convert_weights

    meta = convert_weights(args.source, args.output, allow_torchscript=args.allow_torchscript)
    print(json.dumps(meta, indent=1, default=str))
    print(f"wrote {args.output}; use it with model.weights={args.output}")
    return 0


def cmd_check_data(args) -> int:
    from velora.config import ConfigError, load_config
    from velora.data.check import check_config, check_dataset

    if args.root and "=" in args.root and not Path(args.root).exists():  # argparse took an override for ROOT
        args.overrides, args.root = [args.root, *args.overrides], None
    if args.config or args.overrides:
        if args.root:
            raise ConfigError(
                f"give the dataset folder '{args.root}' or --config, not both; with a config set data.root={args.root}"
            )
        cfg = load_config(args.config, args.overrides)
        report = check_config(
            cfg, _split(args.splits) or [], decode=not args.fast, workers=args.workers, progress=True, missing_ok=True
        )
    elif args.root:
        report = check_dataset(args.root, decode_images=not args.fast, workers=args.workers)
    else:
        raise ConfigError("velora check-data needs a dataset folder or --config FILE (see --help)")
    print(report.format(max_per_kind=args.max_shown))
    return 0 if report.ok else 1


def cmd_split(args) -> int:
    from velora.data.split import split_folders, split_train_val

    if args.from_folders:
        result = split_folders(
            args.root, val_fraction=args.val_fraction, test_fraction=args.test_fraction, seed=args.seed, force=args.force
        )
    else:
        result = split_train_val(
            args.root, val_fraction=args.val_fraction, seed=args.seed, train_labels=args.train_labels,
            test_labels=args.test_labels, force=args.force,
        )
    print(result.format())
    return 0


def cmd_pretrain(args) -> int:
    from velora.pretrain.config import config_from_args
    from velora.pretrain.train import pretrain

    cfg = config_from_args(args)
    manifest = pretrain(cfg, log=lambda line: print(line, flush=True))
    print(f"wrote {cfg.output} ({manifest['bytes'] / 1e6:.2f} MB, sha256 {manifest['sha256'][:16]}) in {manifest['train_seconds']:.0f} s")
    return 0


def cmd_info(args) -> int:
    from velora.config import load_config
    from velora.info import describe

    print(describe(load_config(args.config, args.overrides)))
    return 0


COMMANDS = {
    "demo": cmd_demo,
    "train": cmd_train,
    "eval": cmd_eval,
    "predict": cmd_predict,
    "stream": cmd_stream,
    "export": cmd_export,
    "package": cmd_package,
    "bench": cmd_bench,
    "info": cmd_info,
    "check-data": cmd_check_data,
    "split": cmd_split,
    "convert": cmd_convert,
    "convert-weights": cmd_convert_weights,
    "pretrain": cmd_pretrain,
}

if __name__ == "__main__":
    sys.exit(main())
