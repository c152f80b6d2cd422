"""The README and the documentation site hold: the site builds in strict mode with its generated
references, the Python examples and the cheap commands run, every other `velora ...` line parses with
its overrides valid, every path named exists, and the glossary links its terms."""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from velora.cli import COMMANDS, build_parser, main
from velora.config import Config, load_config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "docs" / "gen"))
import glossary  # noqa: E402
import reference  # noqa: E402

README = REPO / "README.md"
DOCS = sorted((REPO / "docs").rglob("*.md"))
BENCHMARK_PAGES = sorted((REPO / "benchmarks").rglob("*.md"))
CHEAP = "<!-- cheap commands: run by tests/test_docs.py -->"
# Files a page may name before they exist: benchmarks/results/mutation.md comes with the mutation-testing work.
PENDING: set[str] = set()  # paths a page may name before the run that writes them has been made
STREET = REPO / "tests" / "data" / "real" / "davis346" / "street_davis346.aedat4"


def pages() -> list[Path]:
    return [README, *DOCS]


def fenced_blocks(text: str, language: str) -> list[tuple[str, str]]:
    """(the line before the block, the block's text) of every ```language block."""
    return [
        (m["before"], m["body"])
        for m in re.finditer(rf"(?P<before>[^\n]*)\n```{language}\n(?P<body>.*?)```", text, re.S)
    ]


def command_lines(block: str) -> list[str]:
    """A shell block's lines, continuations joined, comments cut."""
    joined = block.replace("\\\n", " ")
    return [
        line.split(" #")[0].strip()
        for line in joined.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


# -- the site ------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_site_builds_in_strict_mode_with_its_generated_references(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"), "-d", str(site)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    commands = (site / "reference" / "commands" / "index.html").read_text()
    assert all(f"velora {name}</h2>" in commands or f">velora {name}<" in commands for name in COMMANDS)
    config = (site / "reference" / "config" / "index.html").read_text()
    assert "data.event_window" in config and "fixed_count" in config
    api = (site / "reference" / "api" / "evaluation" / "index.html").read_text()
    assert "Recognizer" in api and "predict" in api  # rendered from the docstrings
    assert (site / "benchmarks" / "results" / "ci_timing.json").is_file()
    assert (site / "assets" / "velora-framework.jpg").is_file()


def test_the_command_reference_has_every_command_and_option():
    page = reference.commands_page()
    for name, parser in reference.subcommand_parsers().items():
        assert f"## velora {name}\n" in page
        for action in parser._actions:
            for option in action.option_strings:
                assert option in page, f"velora {name} {option} missing from the command reference"


def test_the_config_reference_has_every_field_with_its_help_and_every_shipped_config():
    page = reference.config_page()
    for section in fields(Config):
        for f in fields(section.default_factory()):
            row = next((line for line in page.splitlines() if line.startswith(f"| `{section.name}.{f.name}` |")), None)
            assert row is not None, f"{section.name}.{f.name}"
            assert f.metadata["help"].split(".")[0].replace("|", "\\|") in row
    for name in reference.shipped_configs():
        assert f"### {name}\n" in page


def test_every_module_of_the_package_has_an_api_page():
    documented = {module for group, _ in reference.API_GROUPS for module in reference.api_modules(group)}
    package = REPO / "src" / "velora"
    for file in package.rglob("*.py"):
        parts = file.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if not any(p.startswith("_") for p in parts):
            assert ".".join(parts) in documented, ".".join(parts)


# -- the README ----------------------------------------------------------------------------------------------------


def test_the_readme_says_what_velora_is_then_gives_the_two_commands_ci_runs():
    lines = README.read_text().splitlines()
    top = "\n".join(lines[:12])
    assert "velora recognises" in top
    install_and_demo = "python3 -m venv .venv && .venv/bin/pip install -c constraints.txt -e . && .venv/bin/velora demo"
    assert install_and_demo in lines[:12]
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    test_command = next(line for line in lines[:12] if "pytest" in line)
    assert ci == test_command, "the README's test command is the one .ci/run runs"
    assert len(lines) <= 170, f"the README is {len(lines)} lines; the rest belongs in docs/"


def test_the_readme_names_every_shipped_config():
    text = README.read_text()
    sentence = re.search(r"shipped config \((.*?)\)", text, re.S)[1]
    named = set(re.findall(r"`(\w+)`", sentence))
    for name in reference.shipped_configs():
        base = name.removesuffix("_release")
        assert name in named or (base in named and "`_release` twins" in sentence), name


def test_the_reproduce_guide_quotes_the_published_figures_the_report_uses():
    from velora.reproduce.report import PUBLISHED

    text = (REPO / "docs" / "guides" / "reproduce.md").read_text()
    for figures in PUBLISHED.values():
        for value in figures.values():
            assert f"{value:.2f} %" in text


# -- examples and commands -----------------------------------------------------------------------------------------


@pytest.fixture
def sandbox(tmp_path, tiny_run, tiny_dataset, monkeypatch):
    """A folder as after `velora demo` (the tiny run and dataset in its places) with a real DAVIS346
    recording as recording.aedat4; the current directory for the examples."""
    demo = tmp_path / "velora-demo"
    (demo / "runs").mkdir(parents=True)
    shutil.copytree(tiny_run, demo / "runs" / "velora")  # commands write into the run folder
    os.symlink(tiny_dataset, demo / "data")
    os.symlink(STREET, tmp_path / "recording.aedat4")
    os.symlink(REPO / "tests", tmp_path / "tests")  # the real recordings, named as from the repository root
    monkeypatch.chdir(tmp_path)
    return tmp_path


def python_examples() -> list[tuple[str, str]]:
    return [
        (f"{page.relative_to(REPO)} #{i}", body)
        for page in pages()
        for i, (_, body) in enumerate(fenced_blocks(page.read_text(), "python"))
    ]


@pytest.mark.parametrize("where, code", python_examples(), ids=[where for where, _ in python_examples()])
def test_the_python_examples_run(where, code, sandbox, capsys):
    exec(compile(code, where, "exec"), {"__name__": "__example__"})
    assert capsys.readouterr().out  # every example prints what it shows


def cheap_blocks() -> list[tuple[str, list[str]]]:
    """(page, lines) of every shell block marked as cheap: run in order, later lines use what earlier ones wrote."""
    out = []
    for page in pages():
        for before, body in fenced_blocks(page.read_text(), "bash"):
            if before.strip() == CHEAP:
                out.append((str(page.relative_to(REPO)), command_lines(body)))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("where, lines", cheap_blocks(), ids=[where for where, _ in cheap_blocks()])
def test_the_cheap_commands_run_as_written(where, lines, sandbox):
    for line in lines:
        argv = shlex.split(line)
        assert argv[0] == "velora", f"{where}: a cheap block holds velora commands only: {line}"
        expanded = [match for token in argv[1:] for match in (sorted(glob.glob(token)) if "*" in token else [token])]
        assert main(expanded) == 0, f"{where}: {line}"


def test_the_guides_have_cheap_commands():
    blocks = cheap_blocks()
    assert sum(len(lines) for _, lines in blocks) >= 10 and {where for where, _ in blocks} >= {
        "docs/guides/predict.md",
        "docs/guides/streaming.md",
        "docs/guides/export.md",
        "docs/getting-started.md",
    }


def velora_lines() -> list[tuple[str, str, bool]]:
    """Every `velora ...` command the pages show: (page, line, whole), whole for the lines of shell blocks,
    which must parse as they stand; inline code may name a command with some of its arguments only."""
    out = []
    for page in [*pages(), *BENCHMARK_PAGES]:
        text = page.read_text()
        candidates = [(line, True) for _, body in fenced_blocks(text, "bash") for line in command_lines(body)]
        candidates += [(span, False) for span in re.findall(r"`((?:\.venv/bin/)?velora [^`]+)`", text)]
        for line, whole in candidates:
            line = re.sub(r"^.*?-m velora\.cli ", "velora ", " ".join(line.split()))  # torchrun ... -m velora.cli train
            line = re.sub(r"^\.venv/bin/velora ", "velora ", line)
            if line.startswith("velora ") and "..." not in line and "[" not in line and "|" not in line:
                out.append((str(page.relative_to(REPO)), line.split(" && ")[0], whole))
    return out


PLACEHOLDER = re.compile(r"^[A-Z][A-Z_.]*$")


def check_overrides(config: str | None, overrides: list[str]) -> None:
    if config and PLACEHOLDER.match(config):
        config = None
    if config or overrides:
        load_config(config, overrides)  # a ConfigError names a field or value that does not exist


@pytest.mark.parametrize("where, line, whole", velora_lines(), ids=[line for _, line, _ in velora_lines()])
def test_every_velora_command_line_parses_and_its_overrides_are_valid(where, line, whole):
    argv = shlex.split(line)[1:]
    if not whole:  # a command named in prose: its options and overrides exist
        name = argv[0]
        if PLACEHOLDER.match(name):
            return
        assert name in COMMANDS, f"{where}: no command `velora {name}`"
        parser = reference.subcommand_parsers()[name]
        options = {o for action in parser._actions for o in action.option_strings}
        unknown = [t for t in argv[1:] if t.startswith("--") and t.split("=")[0] not in options]
        assert not unknown, f"{where}: `velora {name}` has no option {unknown}"
        config = argv[argv.index("--config") + 1] if "--config" in argv[:-1] else None
        check_overrides(config, [t for t in argv[1:] if re.match(r"^[a-z_]+\.[a-z_]+=", t)])
        return
    try:
        args, extra = build_parser().parse_known_args(argv)
    except SystemExit as exit:
        assert exit.code == 0, f"{where}: velora does not accept `{line}`"
        return  # --help
    overrides = [*getattr(args, "overrides", []), *extra]
    assert all("=" in o and not o.startswith("-") for o in overrides), (
        f"{where}: unknown arguments in `{line}`: {extra}"
    )
    check_overrides(getattr(args, "config", None), overrides)


def test_the_command_line_check_can_fail():
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["stream", "a.aedat4", "run", "--reuse-tokens"])
    with pytest.raises(Exception, match="event_windw"):
        load_config(None, ["data.event_windw=uniform"])


# -- paths, links, glossary ----------------------------------------------------------------------------------------

ROOTS = ("src/", "tests/", "benchmarks/", "docs/", "scripts/", "configs/", ".ci/")


def named_paths(text: str) -> list[str]:
    """Repository paths in inline code and in shell blocks (a `src/...`, `tests/...`, ... token)."""
    roots = "|".join(map(re.escape, ROOTS))
    tokens = re.findall(r"`([^`\s]+)`", text) + re.findall(rf"(?<![\w/.(-])((?:{roots})[\w./*-]+)", text)
    return sorted({t.split("::")[0].rstrip(".,:;)") for t in tokens if t.startswith(ROOTS)})  # a::b: a test's id


@pytest.mark.parametrize("page", [*pages(), *BENCHMARK_PAGES], ids=lambda p: str(p.relative_to(REPO)))
def test_every_path_a_page_names_exists(page):
    text = page.read_text()
    missing = [p for p in named_paths(text) if p not in PENDING and not glob.glob(str(REPO / p))]
    if page.is_relative_to(REPO / "benchmarks"):  # results/... from the benchmark pages' own folder
        results = {t.rstrip(".,:;)") for t in re.findall(r"`(results/[^`\s{<]+)`", text)}
        missing += [p for p in results if not glob.glob(str(REPO / "benchmarks" / p))]
    assert not missing, f"{page.relative_to(REPO)} names paths that do not exist: {missing}"
    # a package path is written from the repository root: src/velora/..., not velora/...
    bare = re.findall(r"`(velora/[\w/]+\.\w+)`", text)
    assert not bare, f"{page.relative_to(REPO)}: write these with their src/ prefix: {bare}"


def test_every_link_of_the_readme_reaches_a_file_and_heading():
    from markdown.extensions.toc import slugify

    for target in re.findall(r"\]\(([^)\s]+)\)", README.read_text()):
        if target.startswith("http"):
            continue
        path, _, anchor = target.partition("#")
        file = REPO / path
        assert file.exists(), target
        if anchor:
            headings = re.findall(r"^#+ (.+)$", file.read_text(), re.M)
            assert anchor in {slugify(h, "-") for h in headings}, target


def test_the_glossary_links_each_term_once_outside_code():
    entries = glossary.terms()
    assert len({t.anchor for t in entries}) == len(entries) > 20
    names = {t.name for t in entries}
    assert {"APS", "Event image", "M-shared LoRA", "MFU", "p95 latency", "Real-time factor"} <= names
    text = "MFU is high.\n\n```\nMFU in code\n```\n\n`MFU` and MFU again, and [MFU](x.md)."
    linked = glossary.link_first_uses(text, "glossary.md", [t for t in entries if t.name == "MFU"])
    assert linked.count("(glossary.md#mfu)") == 1 and linked.startswith("[MFU](glossary.md#mfu) is high.")
    assert "MFU in code" in linked and "`MFU` and MFU again" in linked
    not_first = glossary.link_first_uses("`MFU` then MFU.", "g.md", [t for t in entries if t.name == "MFU"])
    assert not_first == "`MFU` then [MFU](g.md#mfu)."
