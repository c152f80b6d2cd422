"""How far a value travels through the packages: the cross-package calls of two everyday paths.

1. a config to the loss: `train()` on a tiny config and dataset (one epoch);
2. a checkpoint to a prediction: `predict_clips()` of a saved adapter file on one clip.

Every call from a function of one velora module into a function of another is traced with
sys.settrace, in order. The walk is the sequence of distinct moves in the order they first happen,
counted twice: between files (velora/data/clips.py -> velora/data/labels.py) and between packages
(velora.data -> velora.model). A move is "up" when it enters a higher layer than the one it leaves
(layers, top first: command line and demo; training and evaluation, side by side; data and
model; events; config and errors): a value that travels down the layers makes no up moves.

    PYTHONPATH=src python benchmarks/walk.py [--json out.json]

Run it on two commits (e.g. a `git worktree` of the older one, with PYTHONPATH pointing at its
src/) to compare layouts; the recorded figures are in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYER = {
    "cli": 0,
    "demo": 0,
    "info": 0,
    "bench": 0,
    "pretrain": 0,
    "evaluation": 1,
    "training": 1,
    "data": 2,
    "model": 2,
    "events": 3,
    "config": 4,
    "errors": 4,
}


def module(filename: str) -> str | None:
    """The velora module path of `filename` ("data/clips"), else None (not velora's code)."""
    parts = Path(filename).with_suffix("").parts
    folders = parts[:-1]  # model/velora.py: the package folder, not the file named velora
    if "velora" not in folders:
        return None
    rest = parts[len(folders) - folders[::-1].index("velora") :]
    return "/".join(rest) if rest and rest[0] in LAYER else None


def trace_walk(run) -> dict:
    """The ordered distinct cross-file and cross-package moves made while `run()` runs."""
    moves: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()

    def tracer(frame, event, arg):
        if event != "call" or frame.f_back is None:
            return None
        callee, caller = module(frame.f_code.co_filename), module(frame.f_back.f_code.co_filename)
        if callee and caller and callee != caller and (caller, callee) not in seen:
            seen.add((caller, callee))
            moves.append((caller, callee))
        return None

    sys.settrace(tracer)
    try:
        run()
    finally:
        sys.settrace(None)
    result = {}
    for level, key in (("files", lambda m: m), ("packages", lambda m: m.split("/")[0])):
        walk = list(dict.fromkeys((key(a), key(b)) for a, b in moves if key(a) != key(b)))
        up = [(a, b) for a, b in walk if LAYER[b.split("/")[0]] < LAYER[a.split("/")[0]]]
        crossings = [(a, b) for a, b in walk if {a.split("/")[0], b.split("/")[0]} == {"training", "data"}]
        result[level] = {
            "moves": len(walk),
            "up": len(up),
            "training_data_crossings": len(crossings),
            "walk": [f"{a} -> {b}" for a, b in walk],
            "up_moves": [f"{a} -> {b}" for a, b in up],
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write the walks as JSON")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "tests"))
    import torch

    from conftest import make_tiny_config  # the tests' tiny config
    from velora.demo.generate import generate_demo_dataset
    from velora.training.run import train

    try:  # before issue #13
        from velora.evaluation.evaluate import predict_clips
    except ImportError:  # since: what `velora predict` runs
        import velora

        def predict_clips(checkpoint, clips):
            return velora.load(checkpoint).predict(clips)

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        generate_demo_dataset(
            root,
            clips_per_class={"train": 1, "val": 1, "test": 1},
            image_size=32,
            frames_range=(4, 5),
            progress=False,
            workers=1,
        )
        cfg = make_tiny_config(data={"root": str(root)}, train={"output_dir": str(Path(tmp) / "run")})
        walks = {"config to loss (velora train)": trace_walk(lambda: train(cfg))}
        clip = next(p for p in sorted(root.glob("*/*")) if p.is_dir())
        checkpoint = Path(tmp) / "run" / "best.safetensors"
        walks["checkpoint to prediction (velora predict)"] = trace_walk(lambda: predict_clips(checkpoint, [clip]))
    for name, walk in walks.items():
        for level, found in walk.items():
            print(
                f"{name}: {found['moves']} moves between {level}, {found['up']} of them up, "
                f"{found['training_data_crossings']} between training/ and data/"
            )
            print("  up: " + (", ".join(found["up_moves"]) or "none"))
    if args.json:
        Path(args.json).write_text(json.dumps(walks, indent=1))


if __name__ == "__main__":
    main()
