"""Figures quoted in the README and the docs, rendered from the files under benchmarks/results/.

A Markdown file holds a figure block as

    <!-- figures: NAME -->
    ...the text render(NAME) gives, with the machine, date and file it comes from...
    <!-- /figures -->

`python benchmarks/figures.py` rewrites every block of README.md, docs/ and benchmarks/ from the result
files; `--check` only says which blocks differ (tests/test_figures.py fails on any). So a re-measured
results file changes the prose by one command, and a hand-edited figure fails CI.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BLOCK = re.compile(r"(<!-- figures: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /figures -->)", re.S)


def load(relative: str) -> dict:
    return json.loads((RESULTS / relative).read_text(encoding="utf-8"))


def cite(relative: str) -> str:
    return f"`benchmarks/results/{relative}`"


def duration(seconds: float) -> str:
    """20 s, 2 min, 3 min 9 s."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    return f"{minutes} min" + (f" {rest} s" if rest else "")


def span(values: list[float]) -> str:
    """One duration, or the range of several."""
    low, high = min(values), max(values)
    return duration(low) if round(low) == round(high) else f"{duration(low)} to {duration(high)}"


def ci_timing() -> str:
    """The times of the README's two commands (and the fast subset), from ci_timing.json."""
    t = load("ci_timing.json")
    tests, fast, demo = t["tests"], t["fast_tests"], t["demo"]
    about = "about " if demo.get("approximate") else ""
    runs = f" in {tests['runs']} fresh clones" if tests.get("runs", 1) > 1 else ""
    text = (
        f"Times on {t['machine']}, {t['date']} ({cite('ci_timing.json')}"
        + (f"; {t['source']}" if t.get("source") else "")
        + f"): the install takes {span(t['install_seconds'])}; the demo then runs in {about}{span(demo['seconds'])}, "
        f"with no network and no GPU; the tests, {tests['count']:,} of them, take {span(tests['seconds'])}{runs}. "
        f"While editing, `{fast['command']}` runs the fast subset ({fast['count']:,} tests, {span(fast['seconds'])}; "
        "everything but the training runs, exports, subprocesses, fuzzing and the type check, which CI runs too)."
    )
    return _wrap(text)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _backbone(result: dict) -> str:
    weights = result.get("backbone_weights", "none")
    origin = "random" if weights == "none" else "fractal" if weights.startswith("shipped:fractal") else "pretrained"
    return f"{origin}, {'trained' if result.get('backbone_trained') else 'frozen'}"


def demo_table() -> str:
    """The demo's table: every model of `velora demo --compare`, and whether `velora demo` agreed."""
    compare, default = load("issue12/demo_compare.json"), load("issue12/demo_default.json")
    variants = compare["metrics"]["variants"]
    caps = compare["metrics"]["caps"]
    cap = {"rgb_only": caps["rgb"], "event_only": caps["event"]}
    lines = [
        "| model | backbone | modalities | test top-1 | no RGB | no event | trainable params | share | train s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in variants.items():
        top1 = _pct(r["test_top1"])
        if r["test_top1_std"] is not None:
            seeds = ", ".join(f"{100 * x:.1f}" for x in r["test_top1_per_seed"])
            top1 = f"**{top1} +/- {100 * r['test_top1_std']:.1f}** ({len(r['seeds'])} seeds: {seeds})"
        if name in cap:
            top1 += f" (cap {100 * cap[name]:.0f} %)"
        lines.append(
            f"| {r['title']} | {_backbone(r)} | {'+'.join(r['modalities'])} | {top1} | "
            f"{_pct(r['test_top1_without_rgb'])} | {_pct(r['test_top1_without_event'])} | "
            f"{r['trainable_parameters']:,} | {100 * r['trainable_fraction']:.1f} % | {r['train_seconds']:.0f} |"
        )
    same = all(
        default["metrics"]["variants"][name]["test_top1_per_seed"] == variants[name]["test_top1_per_seed"]
        for name in default["metrics"]["variants"]
    )
    agree = "gave the same test figures" if same else "gave other test figures (see its file)"
    lines += [
        "",
        _wrap(
            f"`{compare['command'].split(' --output')[0]}` on {compare['machine_note']}, {compare['date']}: "
            f"{_clock(compare)} in all, data included ({cite('issue12/demo_compare.json')}). The default "
            f"`velora demo` trains the first three rows ({_clock(default)}; {cite('issue12/demo_default.json')}) "
            f"and {agree}: every training is seeded and runs on one thread ({compare['metrics']['machine']})."
        ),
    ]
    return "\n".join(lines)


def demo_findings() -> str:
    """What the demo's table shows, in points computed from the same file."""
    compare = load("issue12/demo_compare.json")
    v = compare["metrics"]["variants"]
    clips = v["velora"]["test_clips"]
    points = lambda a, b: f"{100 * (v[a]['test_top1'] - v[b]['test_top1']):.1f}"  # noqa: E731
    best_single = max(("rgb_only", "event_only"), key=lambda name: v[name]["test_top1"])
    sweep = " / ".join(f"{100 * s['best_val_top1']:.1f}" for s in v["full_finetune"]["lr_sweep"])
    lrs = " / ".join(f"{s['lr']:.0e}" for s in v["full_finetune"]["lr_sweep"])
    return _wrap(
        f"The test split has {clips} clips, so one clip is {100 / clips:.1f} points. Fused, VELoRA is "
        f"{points('velora', best_single)} points above the best single modality; it beats the linear probe by "
        f"{points('velora', 'linear_probe')} points and LoRA on a random backbone by {points('velora', 'random_backbone')} "
        f"(so the pre-trained features matter), and is {points('full_finetune', 'velora')} points below full "
        f"fine-tuning at its best learning rate (validation top-1 for {lrs}: {sweep} %) while training "
        f"{100 * v['velora']['trainable_fraction']:.1f} % of the parameters ({cite('issue12/demo_compare.json')}, "
        f"{compare['date']})."
    )


def shipped_backbone() -> str:
    """The demo's shipped backbone, from the manifest written beside it when it was built."""
    manifest = json.loads((REPO / "src/velora/pretrained/fractal_vit_tiny64.safetensors.json").read_text())
    settings = manifest["settings"]
    return _wrap(
        f"`src/velora/pretrained/fractal_vit_tiny64.safetensors`: {manifest['parameters'] / 1e6:.2f} M parameters, "
        f"{manifest['bytes'] / 1e6:.1f} MB fp32, pre-trained for {settings['steps']:,} steps of {settings['batch_size']} "
        f"images on {settings['num_categories']} fractal categories, {100 * manifest['final_held_out_top1']:.1f} % "
        f"held-out top-1 at the end, {duration(manifest['train_seconds'])} of training (torch {manifest['torch']}, timm "
        f"{manifest['timm']}, on a machine whose CPU the manifest does not record: it predates that field; its manifest, `fractal_vit_tiny64.safetensors.json` beside it, lists every setting and "
        "the learning curve)."
    )


def pretrain_rebuild() -> str:
    """Rebuilding the shipped backbone on this machine, and the demo with each rebuild."""
    rebuild = load("issue12/pretrain_rebuild.json")
    shipped, same, capped = rebuild["builds"]

    def demo(build: dict) -> dict:
        return build["demo"]

    def velora(build: dict) -> str:
        runs = demo(build)["velora"]
        return f"{100 * runs['test_top1']:.1f} % +/- {100 * runs['test_top1_std']:.1f}"

    return _wrap(
        f"Rebuilt on this project's 2-core machine ({same['cpu']['torch_cpu_capability']} kernels) the recipe "
        f"reached {100 * same['held_out_top1']:.1f} % held-out top-1 where the shipped file's manifest says "
        f"{100 * shipped['held_out_top1']:.1f} %, and with torch's kernels capped at AVX2 "
        f"(`ATEN_CPU_CAPABILITY=avx2`, standing for an older CPU) {100 * capped['held_out_top1']:.1f} %. The demo's "
        f"figures hold with either rebuilt backbone: VELoRA {velora(same)} and {velora(capped)} over 3 seeds, RGB only "
        f"{100 * demo(same)['rgb_only']['test_top1']:.1f} / {100 * demo(capped)['rgb_only']['test_top1']:.1f} %, "
        f"events only {100 * demo(same)['event_only']['test_top1']:.1f} / {100 * demo(capped)['event_only']['test_top1']:.1f} % "
        f"(`velora demo model.weights=FILE`). Each rebuild took {duration(same['train_seconds'])} here, two side by "
        f"side, one thread each ({cite('issue12/pretrain_rebuild.json')}, {rebuild['date']})."
    )


def event_resize() -> str:
    """How many event pixels each resize keeps, per recording, and what keep_events costs."""
    r = load("event_resize.json")
    lines = [
        "| recording | event pixels | nearest keeps | box keeps | bilinear keeps | keep_events keeps | keep_events ms per image |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, rec in r["recordings"].items():
        m = rec["methods"]
        lines.append(
            f"| {name} | {m['nearest']['event_pixels']:,} | "
            + " | ".join(f"{100 * m[k]['kept_share']:.1f} %" for k in ("nearest", "box", "bilinear", "keep_events"))
            + f" | {m['keep_events']['ms_per_image']:.2f} |"
        )
    lines += [
        "",
        _wrap(
            f'Event pixels of {r["window_ms"]:.0f} ms windows brought to {r["size"]} x {r["size"]}; "keeps": the share still '
            f"visible after resizing (box and bilinear keep them blended into pale colours). `{r['command']}` on "
            f"{r['machine']}, {r['date']} ({cite('event_resize.json')})."
        ),
    ]
    return "\n".join(lines)


def flops() -> str:
    """Model FLOP of one clip (T = 8, both modalities), velora's default and the released code's model."""
    f = load("flops_vitb16.json")
    titles = {"pokerevent_vitb16": "velora default", "pokerevent_vitb16_release": "released code's"}
    lines = ["| model | forward | training step |", "| --- | --- | --- |"]
    for name, r in f["configs"].items():
        lines.append(
            f"| {titles.get(name, name)} (`{name}`) | {r['forward'] / 1e12:.3f} TFLOP | {r['train_step'] / 1e12:.3f} TFLOP |"
        )
    lines += ["", _wrap(f"{f['machine']}, {f['date']} ({cite('flops_vitb16.json')}).")]
    return "\n".join(lines)


def _clock(result: dict) -> str:
    """'4m13.351s (time, real; ...)' -> '4 min 13 s'."""
    match = re.match(r"(\d+)m([\d.]+)s", result["wall_clock_including_imports"])
    return duration(60 * int(match[1]) + float(match[2]))


def _wrap(text: str, width: int = 105) -> str:
    words, lines, line = text.split(" "), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "\n".join([*lines, line])


def info_line(output: list[str], label: str) -> str:
    """The value column of `velora info`'s line that starts with `label`."""
    line = next(line for line in output if line.startswith(label))
    return line[len(label) :].strip()


def info_params() -> str:
    """ViT-B/16 on PokerEvent: parameters, trainable share and adapter size, from `velora info`."""
    info = load("info_pokerevent_vitb16.json")
    out = info["output"]
    trainable = info_line(out, "trainable")
    count, share = re.match(r"([\d,]+)\s+\(([\d.]+)% of all\)", trainable).groups()
    size = re.search(r"([\d.]+ MB)", info_line(out, "adapter checkpoint size")).group(1)
    release = re.search(r"released code's model ([\d,]+)", "\n".join(out)).group(1)
    return _wrap(
        f"`{info['command']}` (ViT-B/16, 114 classes): {info_line(out, 'total')} parameters, of which {count} "
        f"trainable ({share} %): {size} of fp32 adapters. The released code's model on the same task trains "
        f"{release} ({cite('info_pokerevent_vitb16.json')}, {info['date']})."
    )


FIGURES = {
    "ci_timing": ci_timing,
    "demo_table": demo_table,
    "demo_findings": demo_findings,
    "shipped_backbone": shipped_backbone,
    "pretrain_rebuild": pretrain_rebuild,
    "info_params": info_params,
    "event_resize": event_resize,
    "flops": flops,
}


def markdown_files() -> list[Path]:
    """Every hand-written Markdown file that may hold figure blocks."""
    files = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md")), *sorted((REPO / "benchmarks").rglob("*.md"))]
    return [f for f in files if f.is_file()]


def render_blocks(text: str) -> str:
    """`text` with every figure block rendered anew (an unknown name is an error)."""

    def one(match: re.Match) -> str:
        name = match["name"]
        if name not in FIGURES:
            raise KeyError(f"unknown figure block {name!r}; known: {', '.join(FIGURES)}")
        return f"{match[1]}{FIGURES[name]()}\n{match[4]}"

    return BLOCK.sub(one, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only list the files whose blocks differ; exit 1 if any")
    args = parser.parse_args(argv)
    stale = []
    for path in markdown_files():
        text = path.read_text(encoding="utf-8")
        rendered = render_blocks(text)
        if rendered != text:
            stale.append(path.relative_to(REPO))
            if not args.check:
                path.write_text(rendered, encoding="utf-8")
    verb = "differ" if args.check else "rewritten"
    print(f"{len(stale)} file(s) {verb}" + "".join(f"\n  {p}" for p in stale))
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
