"""Mutation testing of velora's core modules with mutmut: does each module's own test suite notice
a small plausible bug planted in it?

    python benchmarks/mutation.py run                       # every module below, in this order
    python benchmarks/mutation.py run --modules lora,evt    # some of them
    python benchmarks/mutation.py recheck lora              # after adding tests: rerun the survivors
    python benchmarks/mutation.py recheck lora --no-rerun   # only find the tests that kill them
    python benchmarks/mutation.py report                    # write benchmarks/results/mutation.md
    python benchmarks/mutation.py plants                    # plant issue 24's bugs again; what fails

Run it with a Python that has mutmut and the project's test dependencies (not the project's own
venv; mutmut is not one of its dependencies):

    python3 -m venv .mutvenv
    .mutvenv/bin/pip install -c constraints.txt -e ".[test]" mutmut==3.8.1
    nice -n 19 .mutvenv/bin/python benchmarks/mutation.py run > mutation.log 2>&1 &

Each module runs on its own, against its own fast tests (MODULES), in a scratch copy of the
committed src/ and tests/ (HEAD) under --work (mutmut writes its mutants/ folder there, never into
the checkout), with one worker process. mutmut runs, for each mutant, only the tests that call the mutated function. The
numba-compiled decoding loops run as plain Python (NUMBA_DISABLE_JIT), so that mutmut's wrapper
around each function works inside them.

`run` keeps each module's outcome in benchmarks/results/mutation/<module>.json: the mutants, their
status, and for each survivor its diff. `recheck` copies the checkout's current tests (working tree) into the
scratch copy, reruns the survivors and records, for each one now killed, the tests that kill it.
`report` renders mutation.md from those files and from benchmarks/mutation_notes.yaml, which says
for each survivor no test can kill why it is equivalent (changes no observable behaviour), and
lists the hand-planted bugs and the tests that catch them.

mutmut does not mutate decorated functions (properties, @torch.no_grad() methods, context
managers); the report lists those of each module as not mutated.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "mutation"
REPORT = REPO / "benchmarks" / "results" / "mutation.md"
NOTES = REPO / "benchmarks" / "mutation_notes.yaml"

# module (under src/velora) -> its own fast tests, in the order a run goes through them (most
# important first: a run cut short still covers the model, sampling and the decoders).
MODULES: dict[str, tuple[str, list[str]]] = {
    "lora": ("model/lora.py", ["tests/test_lora.py", "tests/test_model.py"]),
    "velora": (
        "model/velora.py",
        ["tests/test_model.py", "tests/test_release_model.py", "tests/test_speed_options.py"],
    ),
    "fusion": ("model/fusion.py", ["tests/test_model.py", "tests/test_release_model.py"]),
    "heads": ("model/heads.py", ["tests/test_model.py", "tests/test_release_model.py"]),
    "sampling": ("data/sampling.py", ["tests/test_sampling.py", "tests/test_data.py", "tests/test_release_inputs.py"]),
    "evt": ("events/evt.py", ["tests/test_prophesee.py"]),
    "window": ("stream/window.py", ["tests/test_stream_window.py", "tests/test_stream_window_timestamps.py"]),
    "representations": (
        "events/representations.py",
        ["tests/test_representations.py", "tests/test_event_only.py", "tests/test_event_benchmarks.py"],
    ),
    "resize": ("events/resize.py", ["tests/test_event_resize.py"]),
    "adapter_file": (
        "model/adapter_file.py",
        ["tests/test_adapter_file.py", "tests/test_old_checkpoints.py", "tests/test_faults.py"],
    ),
    # stored_config (old checkpoints' fields) is also exercised through test_event_resize and test_old_checkpoints
    "config": (
        "config.py",
        [
            "tests/test_config.py",
            "tests/test_config_rules.py",
            "tests/test_event_resize.py",
            "tests/test_old_checkpoints.py",
        ],
    ),
    "prophesee": ("events/prophesee.py", ["tests/test_prophesee.py", "tests/test_prophesee_rules.py"]),
    "aedat4": ("events/aedat4.py", ["tests/test_readers.py", "tests/test_aedat4_rules.py"]),
    "aedat_legacy": ("events/aedat_legacy.py", ["tests/test_aedat_legacy.py", "tests/test_aedat_legacy_rules.py"]),
    "csv_events": ("events/csv_events.py", ["tests/test_csv_events.py", "tests/test_csv_rules.py"]),
    "eventstream": ("events/eventstream.py", ["tests/test_eventstream.py"]),
    "readers": ("events/readers.py", ["tests/test_readers_rules.py", "tests/test_readers.py", "tests/test_fuzz.py"]),
    "columns": (
        "events/columns.py",
        ["tests/test_readers_rules.py", "tests/test_readers.py", "tests/test_csv_rules.py", "tests/test_fuzz.py"],
    ),
    "backbone": (
        "model/backbone.py",
        [
            "tests/test_backbone_weights.py",
            "tests/test_backbone_rules.py",
            "tests/test_weights.py",
            "tests/test_weights_source.py",
            "tests/test_model.py",
            "tests/test_pretrain.py",
        ],
    ),
    "weights": (
        "model/weights.py",
        # the rules first: killing_tests stops at the first failure, and test_weights.py is the slow one
        ["tests/test_weights_rules.py", "tests/test_weights.py", "tests/test_backbone_weights.py"],
    ),
    "weights_source": (
        "model/weights_source.py",
        ["tests/test_weights_source.py", "tests/test_weights_source_rules.py"],
    ),
}

KILL_TIMEOUT_S = 300  # rerunning a module's tests with one mutant: longer means a loop that never ends

# mutmut's exit codes (mutmut.stats.status_by_exit_code), grouped for the report.
DETECTED = {"killed", "timeout", "caught by type check", "segfault"}
UNDETECTED = {"survived", "no tests"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="run mutmut on the modules, one after the other")
    run_p.add_argument("--modules", default=",".join(MODULES), help="comma-separated names of MODULES")
    run_p.add_argument("--work", type=Path, default=Path("/tmp/velora-mutation"), help="scratch folder")
    run_p.add_argument("--resume", action="store_true", help="go on with a module's interrupted run in --work")
    re_p = sub.add_parser("recheck", help="rerun a module's survivors against the current tests")
    re_p.add_argument("module", choices=list(MODULES))
    co_p = sub.add_parser("collect", help="record a module's run that was stopped before its end, as far as it went")
    co_p.add_argument("module", choices=list(MODULES))
    co_p.add_argument("--work", type=Path, default=Path("/tmp/velora-mutation"))
    re_p.add_argument("--work", type=Path, default=Path("/tmp/velora-mutation"))
    re_p.add_argument(
        "--no-rerun", action="store_true", help="keep mutmut's last statuses; only find the killing tests"
    )
    re_p.add_argument("--keys", default="", help="comma-separated survivors to recheck (default: every open one)")
    sub.add_parser("report", help="write benchmarks/results/mutation.md")
    sub.add_parser("plants", help="plant the bugs of mutation_notes.yaml again, one at a time; list what fails")
    args = parser.parse_args()

    if args.command == "run":
        for name in args.modules.split(","):
            run_module(name, args.work / name, resume=args.resume)
            write_report()
    elif args.command == "recheck":
        keys = [k for k in args.keys.split(",") if k]
        recheck(args.module, args.work / args.module, rerun=not args.no_rerun, keys=keys)
        write_report()
    elif args.command == "collect":
        collect(args.module, args.work / args.module, minutes=None)
        write_report()
    elif args.command == "plants":
        raise SystemExit(check_plants())
    else:
        write_report()


def check_plants() -> int:
    """Each plant of mutation_notes.yaml applied to a scratch copy of src/ and its tests run there
    (the checkout is never edited); 1 when a plant no test catches, or whose code is gone."""
    import tempfile

    notes = yaml.safe_load(NOTES.read_text()) or {}
    missed = 0
    for plant in notes.get("plants") or []:
        with tempfile.TemporaryDirectory() as scratch:
            shutil.copytree(REPO / "src", Path(scratch) / "src", ignore=shutil.ignore_patterns("__pycache__"))
            target = Path(scratch) / "src" / "velora" / plant["file"]
            source = target.read_text()
            if source.count(plant["old"]) != 1:
                print(f"GONE    {plant['plant']}: the planted code is not in {plant['file']} once; update the plant")
                missed += 1
                continue
            target.write_text(source.replace(plant["old"], plant["new"]))
            env = dict(os.environ, PYTHONPATH=str(Path(scratch) / "src"), NUMBA_CACHE_DIR=str(Path(scratch) / "numba"))
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    "--tb=no",
                    "-rf",
                    "-m",
                    "not slow",
                    *plant["run"],
                ],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
            )
            failed = re.findall(r"^FAILED (\S+)", out.stdout, flags=re.MULTILINE)
            print(f"{'caught' if failed else 'MISSED'}  {plant['plant']}: {len(failed)} failing", flush=True)
            for test in failed:
                print(f"        {test}")
            missed += not failed
    return 1 if missed else 0


# ------------------------------------------------------------------------------------------------ run
def mutmut_env() -> dict[str, str]:
    env = dict(os.environ, NUMBA_DISABLE_JIT="1", OMP_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)  # the mutated copy must be the velora that tests import
    return env


def prepare(name: str, work: Path, tests: list[str]) -> None:
    """A scratch copy of src/ and tests/ with a pyproject.toml that points mutmut at one module."""
    path = MODULES[name][0]
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    # The committed sources and tests (HEAD), not the working tree: edits made while a long run
    # goes on do not leak into the modules it has not started yet.
    # configs: the link to src/velora/configs that tests/test_config.py compares the shipped files with.
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "HEAD", "src", "tests", "configs"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(work)], input=archive, check=True)
    settings = {
        "source_paths": ["src"],
        "only_mutate": [f"src/velora/{path}"],
        "pytest_add_cli_args_test_selection": tests,
        "pytest_add_cli_args": ["-m", "not slow", "-p", "no:cacheprovider", "-x", "-q"],
        "process_isolation": "forkserver",  # torch is not fork-safe once it has run
        "use_git_change_detection": False,
        "also_copy": [
            "configs"
        ],  # mutmut copies src/ and tests/ into its mutants/ folder; the config tests read this too
        "use_setproctitle": False,
        # A mutant's tests get 2 x 5 x (their measured time + 1 s) of CPU time (mutmut's default: 15 x):
        # mutants that loop forever (a mask never emptied) are then caught in seconds, not minutes.
        "timeout_multiplier": 5.0,
    }
    toml = "\n".join(f"{key} = {json.dumps(value)}" for key, value in settings.items())
    pyproject = (REPO / "pyproject.toml").read_text()
    (work / "pyproject.toml").write_text(f"{pyproject}\n[tool.mutmut]\n{toml}\n")


def run_module(name: str, work: Path, resume: bool = False) -> None:
    path, tests = MODULES[name]
    committed = subprocess.run(["git", "-C", str(REPO), "ls-files", "tests"], capture_output=True, text=True).stdout
    tests = [t for t in tests if t in committed.split()]  # a test file added later joins at recheck
    print(f"== {name}: src/velora/{path} against {' '.join(tests)}", flush=True)
    if resume and (work / "mutants").is_dir():
        print("   resuming: mutants with a result keep it", flush=True)
    else:
        prepare(name, work, tests)
    start = time.monotonic()
    with open(work / "mutmut.log", "a") as log:
        code = subprocess.call(
            [sys.executable, "-m", "mutmut", "run", "--max-children", "1"],
            cwd=work,
            env=mutmut_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    minutes = (time.monotonic() - start) / 60
    print(f"   mutmut exited {code} after {minutes:.1f} min (log: {work / 'mutmut.log'})", flush=True)
    collect(name, work, minutes, code)


def collect(name: str, work: Path, minutes: float | None, code: int | None = None) -> None:
    """Save what mutmut found for module `name` in `work` (mutants not reached stay 'not checked')."""
    path = MODULES[name][0]
    config = (work / "pyproject.toml").read_text()
    tests = json.loads(re.search(r"^pytest_add_cli_args_test_selection = (.*)$", config, flags=re.MULTILINE).group(1))
    statuses = read_statuses(name, work)
    survivors = {k: {"diff": mutant_diff(work, k), "status": s} for k, s in statuses.items() if s in UNDETECTED}
    record = {
        "module": f"src/velora/{path}",
        "tests": tests,
        "mutmut_exit": code,
        "minutes": round(minutes, 1) if minutes is not None else "stopped before its end",
        "statuses": statuses,
        "survivors": survivors,
        "not_mutated": decorated_functions(REPO / "src" / "velora" / path),
    }
    save(name, record)
    counts = {s: list(statuses.values()).count(s) for s in sorted(set(statuses.values()))}
    print(f"   {len(statuses)} mutants: {counts}", flush=True)


def read_statuses(name: str, work: Path) -> dict[str, str]:
    from mutmut.stats import status_by_exit_code

    meta = work / "mutants" / "src" / "velora" / (MODULES[name][0] + ".meta")
    if not meta.is_file():
        return {}
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    return {key: status_by_exit_code[code] for key, code in sorted(codes.items(), key=lambda kv: mutant_order(kv[0]))}


def mutant_order(key: str) -> tuple[str, int]:
    function, _, number = key.rpartition("__mutmut_")
    return function, int(number)


def mutant_diff(work: Path, key: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "mutmut", "show", key], cwd=work, env=mutmut_env(), capture_output=True, text=True
    )
    lines = [
        line for line in out.stdout.splitlines() if line.startswith(("-", "+")) and not line.startswith(("---", "+++"))
    ]
    return "\n".join(lines)


def decorated_functions(path: Path) -> list[str]:
    """Functions mutmut leaves alone: decorated ones other than @staticmethod / @classmethod."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.decorator_list:
            plain = (
                len(node.decorator_list) == 1
                and isinstance(node.decorator_list[0], ast.Name)
                and node.decorator_list[0].id in ("staticmethod", "classmethod")
            )
            if not plain:
                names.append(node.name)
    return sorted(set(names))


# ------------------------------------------------------------------------------------------------ recheck
def recheck(name: str, work: Path, rerun: bool = True, keys: list[str] | None = None) -> None:
    """Rerun the first run's survivors against the checkout's current tests; record who kills them."""
    record = load(name)
    # A survivor an earlier recheck saw killed stays killed: tests are only ever added. One killed
    # without a test named (killing_tests found none then) is looked at again.
    names = [
        k for k, entry in record["survivors"].items() if entry.get("now") not in DETECTED or not entry.get("killed_by")
    ]
    if keys:  # only these (full names, or the part after the module's path)
        names = [k for k in names if k in keys or k.rsplit(".", 1)[-1] in keys]
    if not names:
        print(f"{name}: no survivors")
        return
    for folder in (work / "tests", work / "mutants" / "tests") if rerun else ():
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(REPO / "tests", folder, ignore=shutil.ignore_patterns("__pycache__"))
    path, tests = MODULES[name]
    current = [t for t in tests if (REPO / t).is_file()]
    if not rerun:
        current = record.get("rechecked_with", current)
    if rerun:
        with open(work / "mutmut-recheck.log", "a") as log:
            subprocess.call(
                [sys.executable, "-m", "mutmut", "run", "--max-children", "1", *names],
                cwd=work,
                env=mutmut_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
    statuses = read_statuses(name, work)
    detected = [key for key in names if statuses.get(key) in DETECTED]
    found = killing_tests(work, detected, current) if detected else {}
    for key in names:
        now = statuses.get(key, "not checked")
        entry = record["survivors"][key]
        entry["now"] = now
        entry["killed_by"] = found.get(key, [])
        if now not in DETECTED:
            print(f"{key}: {now}", flush=True)
    record["rechecked_with"] = current
    save(name, record)


def killing_tests(work: Path, keys: list[str], tests: list[str]) -> dict[str, list[str]]:
    """For each mutant of `keys`, the first test that fails with it active ([] if none does).

    benchmarks/mutation_killer.py imports the test dependencies once and forks a child per mutant:
    a fresh pytest per mutant spent most of its 10-20 s importing torch and Lightning.
    """
    env = dict(mutmut_env(), PYTHONPATH="src", TORCHINDUCTOR_CACHE_DIR=str(work / "inductor-cache"))
    command = [sys.executable, str(REPO / "benchmarks" / "mutation_killer.py"), "--timeout", str(KILL_TIMEOUT_S)]
    found: dict[str, list[str]] = {}
    with subprocess.Popen(
        [*command, "--tests", *tests, "--", *keys], cwd=work / "mutants", env=env, stdout=subprocess.PIPE, text=True
    ) as killer:
        assert killer.stdout is not None
        for line in killer.stdout:
            if line.startswith("{"):
                result = json.loads(line)
                found[result["key"]] = result["killed_by"]
                print(f"{result['key']}: killed {' '.join(result['killed_by'])}", flush=True)
    if killer.returncode:  # a mutant it did not report would otherwise read as killed by no test
        raise SystemExit(f"benchmarks/mutation_killer.py ended with status {killer.returncode}; see its output above")
    return found


# ------------------------------------------------------------------------------------------------ report
def save(name: str, record: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")


def load(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def verdict(key: str, entry: dict, equivalent: dict[str, str]) -> str:
    """What became of a first-run survivor: equivalent, cuda (CUDA-only), killed (a test fails with it, or the
    notes say which test fails with it where mutmut's trampoline does not stand in the way) or open."""
    if entry.get("now") in DETECTED and entry.get("killed_by"):
        return "killed"  # a test names it: killed, whatever a note says
    if key in equivalent:
        if equivalent[key].startswith("Killed outside mutmut"):
            return "killed"
        return "cuda" if equivalent[key].startswith("CUDA-only") else "equivalent"
    return "open"


def write_report() -> None:
    notes = (yaml.safe_load(NOTES.read_text()) if NOTES.is_file() else None) or {}
    equivalent = notes.get("equivalent") or {}
    rows, sections, not_run = [], [], []
    for name, (path, _) in MODULES.items():
        if not (RESULTS / f"{name}.json").is_file():
            not_run.append(f"`{path}`")
            continue
        record = load(name)
        statuses = list(record["statuses"].values())
        total = len(statuses)
        killed = sum(s in DETECTED for s in statuses)
        survived = sum(s in UNDETECTED for s in statuses)
        other = total - killed - survived
        # A survivor explained as equivalent counts as such whatever a rerun said (a rerun under load
        # can time out); one counts as killed now only with a test that fails with it.
        verdicts = [verdict(key, entry, equivalent) for key, entry in record["survivors"].items()]
        now_killed, equiv, cuda = (verdicts.count(v) for v in ("killed", "equivalent", "cuda"))
        open_ = survived - now_killed - equiv - cuda
        non_equivalent = total - other - equiv  # of the mutants checked
        score = (killed + now_killed) / non_equivalent if non_equivalent else 1.0
        rows.append(
            f"| `{path}` | {total} | {killed} | {survived} | {now_killed} | {equiv} | {cuda} | {open_} | {other} | "
            f"{100 * score:.1f} % |"
        )
        lines = [
            f"### `{path}`",
            "",
            f"Tests: {', '.join(f'`{t}`' for t in record.get('rechecked_with', record['tests']))} "
            f"(`-m 'not slow'`); "
            + (
                f"run took {record['minutes']} min."
                if isinstance(record["minutes"], (int, float))
                else "the run was stopped before its end."
            ),
            "",
        ]
        if record["not_mutated"]:
            lines += [f"Not mutated (decorated): {', '.join(f'`{n}`' for n in record['not_mutated'])}.", ""]
        if record["survivors"]:
            lines += [
                "| mutant | change | first run | now | killed by / why equivalent |",
                "| --- | --- | --- | --- | --- |",
            ]
            for key, entry in record["survivors"].items():
                short = key.rpartition(".")[2]
                change = " / ".join(line.strip() for line in entry["diff"].splitlines()).replace("|", "\\|")
                kind = verdict(key, entry, equivalent)
                if kind == "cuda":
                    why = equivalent[key]
                elif kind == "equivalent":
                    why = f"equivalent: {equivalent[key]}"
                elif kind == "killed" and key in equivalent:  # killed outside mutmut, said in the notes
                    why = equivalent[key]
                elif kind == "killed":
                    why = "<br>".join(f"`{t}`" for t in entry["killed_by"])
                else:
                    why = "**open**"
                lines.append(f"| `{short}` | `{change[:300]}` | {entry['status']} | {entry.get('now', '-')} | {why} |")
            lines.append("")
        sections.append("\n".join(lines))
    text = [
        "# Mutation testing of the core modules",
        "",
        "Written by `benchmarks/mutation.py report` from `benchmarks/results/mutation/*.json` (the runs) and",
        "`benchmarks/mutation_notes.yaml` (why each equivalent survivor changes no observable behaviour; the plants).",
        "Command: `nice -n 19 .mutvenv/bin/python benchmarks/mutation.py run`, then `... recheck <module>` after",
        "adding tests; mutmut 3.8.1, one worker, each module against its own fast tests.",
        "",
        "Columns: mutants mutmut made; killed in the first run (a timeout counts as killed); survived the first",
        "run (including mutants no selected test reaches); of those, killed by the tests added since (recheck);",
        "equivalent; CUDA-only (no difference on a CPU, a failure on a GPU: not killable here, counted as not",
        "killed); still open; other (suspicious, or not checked when a run was cut short); score = killed (first",
        "run + now) / non-equivalent mutants checked.",
        "",
        "| module | mutants | killed | survived | now killed | equivalent | CUDA-only | open | other | score |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
    ]
    if not_run:
        text += [f"Not run: {', '.join(not_run)}.", ""]
    if notes.get("runs"):
        text += ["## How these runs went", "", notes["runs"].strip(), ""]
    plants = notes.get("plants") or []
    if plants:
        text += [
            "## Planted bugs",
            "",
            notes.get("plants_intro", "").strip(),
            "",
            "| plant | where | failing tests |",
            "| --- | --- | --- |",
        ]
        text += [f"| {p['plant']} | `{p['where']}` | {'<br>'.join(f'`{t}`' for t in p['tests'])} |" for p in plants]
        text.append("")
    text += ["## Survivors by module", "", *sections]
    REPORT.write_text("\n".join(text).rstrip() + "\n")


if __name__ == "__main__":
    main()
