"""The long fuzz run: every reader of tests/fuzz_targets.py, for N inputs or S seconds each.

    python benchmarks/fuzz.py --iterations 10000                 # every target
    python benchmarks/fuzz.py --seconds 60 --targets aedat4,npz  # some, by time

The properties and input strategies are those of the short run in tests/test_fuzz.py (one module,
tests/fuzz_targets.py). Per target it prints the inputs tried, the documented errors seen (by kind
of input, with their messages) and every undocumented exception or invalid result; each of those is
saved as a reproducer under --out (the input's bytes and a .txt with the traceback). A reader that
hangs or crashes the interpreter is caught by faulthandler: the input it was reading is the file
in <out>/work/<target>/.
"""

from __future__ import annotations

import argparse
import faulthandler
import re
import shutil
import sys
import time
import traceback
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import os  # noqa: E402

os.environ.setdefault("OMP_NUM_THREADS", "1")

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402

from fuzz_targets import TARGETS, Target, Undocumented, run_one  # noqa: E402

HANG_SECONDS = 60  # one input taking longer than this is reported as a hang


@dataclass
class Stats:
    iterations: int = 0
    valid: int = 0
    kinds: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)  # (kind, error type, message pattern) -> count
    bugs: list[tuple[str, str]] = field(default_factory=list)  # (description, message pattern)
    seconds: float = 0.0


def message_pattern(error: BaseException, folder: Path) -> str:
    """The error's message with the file and numbers abstracted, so equal causes count once."""
    text = str(error).replace(str(folder), "<dir>")
    text = re.sub(r"b'.*?'|b\".*?\"", "b'...'", " | ".join(line.strip() for line in text.splitlines()))
    return re.sub(r"-?\d+", "N", text)[:200]


def fuzz_target(
    target: Target,
    iterations: int,
    seconds: float,
    out: Path,
    base_seed: int = 0,
    batch: int = 100,
    progress: int = 0,
) -> Stats:
    """Fuzz one target; with `progress`, print a line of counts every `progress` inputs (a run
    stopped early then still says how far it got)."""
    stats = Stats()
    folder = out / "work" / re.sub(r"\W+", "_", target.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    strategy = target.inputs()

    def one(fuzz_input) -> None:
        stats.iterations += 1
        stats.kinds[fuzz_input.kind] += 1
        faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
        try:
            error = run_one(target, folder, fuzz_input.data)
        except Undocumented as bug:
            name = f"{folder.name}-{len(stats.bugs)}"
            (out / f"{name}.bin").write_bytes(fuzz_input.data)
            cause = "".join(traceback.format_exception(bug.__cause__ or bug))
            (out / f"{name}.txt").write_text(f"{target.name}, input kind {fuzz_input.kind}\n{bug}\n\n{cause}")
            stats.bugs.append((f"{bug} [{fuzz_input.kind}; reproducer {out / name}.bin]", message_pattern(bug, folder)))
            return
        finally:
            faulthandler.cancel_dump_traceback_later()
        if error is None:
            stats.valid += 1
        else:
            stats.errors[fuzz_input.kind, type(error).__name__, message_pattern(error, folder)] += 1

    options = settings(
        max_examples=batch,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    fuzz = given(strategy)(options(one))
    start, round_ = time.monotonic(), 0
    while stats.iterations < iterations and time.monotonic() - start < seconds:
        before = stats.iterations
        seed(base_seed * 1_000_003 + zlib.crc32(target.name.encode()) + round_)(fuzz)()  # each round new inputs
        round_ += 1
        if stats.iterations == before:
            break  # the strategy is exhausted
        if progress and stats.iterations // progress > before // progress:
            print(
                f"   .. {target.name}: {stats.iterations} inputs in {time.monotonic() - start:.0f} s, "
                f"{stats.valid} valid, {sum(stats.errors.values())} documented errors, {len(stats.bugs)} undocumented",
                flush=True,
            )
    stats.seconds = time.monotonic() - start
    return stats


def report(name: str, stats: Stats, top: int) -> str:
    lines = [
        f"== {name}: {stats.iterations} inputs in {stats.seconds:.0f} s, {stats.valid} read as valid data, "
        f"{sum(stats.errors.values())} documented errors, {len(stats.bugs)} undocumented"
    ]
    lines.append("   inputs by kind: " + ", ".join(f"{kind} {count}" for kind, count in sorted(stats.kinds.items())))
    by_kind: dict[str, list] = {}
    for (kind, error_type, message), count in stats.errors.most_common():
        by_kind.setdefault(kind, []).append((count, error_type, message))
    for kind in sorted(by_kind):
        for count, error_type, message in by_kind[kind][:top]:
            lines.append(f"   [{kind}] {count}x {error_type}: {message}")
    first_of: dict[str, str] = {}
    for bug, pattern in stats.bugs:
        first_of.setdefault(pattern, bug)
    counts = Counter(pattern for _, pattern in stats.bugs)
    lines.extend(f"   UNDOCUMENTED {counts[pattern]}x: {bug}" for pattern, bug in first_of.items())
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=10_000, help="inputs per target (default 10000)")
    parser.add_argument("--seconds", type=float, default=float("inf"), help="time limit per target")
    parser.add_argument("--targets", default="", help=f"comma-separated subset of: {', '.join(TARGETS)}")
    parser.add_argument("--out", type=Path, default=Path("fuzz-findings"), help="folder for reproducers")
    parser.add_argument("--seed", type=int, default=0, help="base random seed (another seed, other inputs)")
    parser.add_argument("--top", type=int, default=3, help="error messages shown per kind of input")
    parser.add_argument(
        "--progress",
        type=int,
        default=0,
        metavar="N",
        help="print the counts so far every N inputs (default: only at the end of each target)",
    )
    args = parser.parse_args()
    names = [name.strip() for name in args.targets.split(",") if name.strip()] or list(TARGETS)
    unknown = sorted(set(names) - set(TARGETS))
    if unknown:
        parser.error(f"unknown targets {unknown}; the targets are: {', '.join(TARGETS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    total_bugs = 0
    for name in names:
        stats = fuzz_target(TARGETS[name], args.iterations, args.seconds, args.out, args.seed, progress=args.progress)
        print(report(name, stats, args.top), flush=True)
        total_bugs += len(stats.bugs)
    print(f"undocumented exceptions in total: {total_bugs}")
    return 1 if total_bugs else 0


if __name__ == "__main__":
    sys.exit(main())
