"""MkDocs hooks (mkdocs.yml `hooks:`): what the site holds besides the hand-written pages of docs/.

- on_files: the generated references (commands from the parsers, configuration from the dataclasses, one
  API page per package for mkdocstrings), and the benchmark pages and their result files, read from
  benchmarks/ where they live (benchmarks/README.md is the benchmarks' index page).
- on_page_markdown: every glossary term is linked to its entry at its first use on a page; the benchmark
  pages' links into docs/ (`../docs/glossary.md`, right where they lie in the repository) point to the
  site's pages.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path, PurePosixPath

from mkdocs.structure.files import File, Files

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

import glossary  # noqa: E402
import reference  # noqa: E402

BENCHMARKS = reference.REPO / "benchmarks"
# Benchmark files the site shows: the pages, and the result files they cite.
RESULT_SUFFIXES = {".md", ".json", ".jsonl", ".txt"}


def benchmark_files() -> dict[str, Path]:
    """Site path -> file under benchmarks/: README.md as the index, the other pages, every result file."""
    out = {"benchmarks/index.md": BENCHMARKS / "README.md"}
    for page in sorted(BENCHMARKS.glob("*.md")):
        if page.name != "README.md":
            out[f"benchmarks/{page.name}"] = page
    for result in sorted((BENCHMARKS / "results").rglob("*")):
        if result.is_file() and result.suffix in RESULT_SUFFIXES:
            out[f"benchmarks/{result.relative_to(BENCHMARKS).as_posix()}"] = result
    return out


def on_files(files: Files, config) -> Files:
    generated = {
        "reference/commands.md": reference.commands_page(),
        "reference/config.md": reference.config_page(),
        **reference.api_pages(),
    }
    for uri, text in generated.items():
        files.append(File.generated(config, uri, content=text))
    for uri, path in benchmark_files().items():
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    uri = page.file.src_uri
    if uri.startswith("benchmarks/"):
        markdown = re.sub(r"\]\(((?:\.\./)+)docs/", r"](\1", markdown)
    if uri == glossary.PAGE or uri.startswith("reference/"):
        return markdown
    depth = len(PurePosixPath(uri).parts) - 1
    return glossary.link_first_uses(markdown, "../" * depth + glossary.PAGE)
