"""The figures the README and the docs quote are what benchmarks/results/ holds: every figure block is
benchmarks/figures.py's rendering of its results file, labelled with the file, machine and date."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import figures  # noqa: E402


@pytest.mark.parametrize("page", figures.markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_figure_block_is_what_its_results_file_gives(page):
    text = page.read_text(encoding="utf-8")
    assert figures.render_blocks(text) == text, (
        f"{page.relative_to(REPO)}: a figure block differs from its results file; run "
        "`python benchmarks/figures.py` after re-measuring, never edit a block by hand"
    )


def test_every_figure_is_used_and_labelled_with_its_file_and_date():
    used = set()
    for page in figures.markdown_files():
        used |= {m["name"] for m in figures.BLOCK.finditer(page.read_text(encoding="utf-8"))}
    assert used == set(figures.FIGURES), f"unused renderers: {set(figures.FIGURES) - used}"
    for name, render in figures.FIGURES.items():
        text = render()
        cited = re.findall(r"`(benchmarks/results/[^`]+|src/velora/pretrained/[^`]+)`", text)
        assert cited and all((REPO / path).is_file() for path in cited), name
        assert re.search(r"\d{4}-\d{2}-\d{2}", text) or "pretrained" in cited[0], f"{name} gives no date"


def test_the_readme_timing_follows_ci_timing_json(monkeypatch):
    real = figures.load

    def remeasured(relative):
        data = real(relative)
        if relative == "ci_timing.json":
            data = {
                **data,
                "source": "",
                "date": "2027-01-02",
                "tests": {**data["tests"], "count": 701, "seconds": [200], "runs": 1},
            }
        return data

    monkeypatch.setattr(figures, "load", remeasured)
    text = figures.ci_timing()
    assert "2027-01-02" in text and "701 of them, take 3 min 20 s." in text
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert figures.render_blocks(readme) != readme  # a re-measure shows up as a stale block


def test_the_ci_timing_file_has_the_fields_the_readme_reads():
    timing = json.loads((figures.RESULTS / "ci_timing.json").read_text())
    assert {"date", "machine", "install_seconds", "demo", "tests", "fast_tests"} <= timing.keys()
    assert timing["tests"]["count"] > 0 and all(s > 0 for s in timing["tests"]["seconds"])


def test_durations_read_as_people_write_them():
    assert figures.duration(20) == "20 s" and figures.duration(120) == "2 min" and figures.duration(189) == "3 min 9 s"
    assert figures.span([189, 250]) == "3 min 9 s to 4 min 10 s" and figures.span([20]) == "20 s"


def test_an_unknown_block_is_an_error():
    with pytest.raises(KeyError, match="unknown figure block 'nope'"):
        figures.render_blocks("<!-- figures: nope -->\n<!-- /figures -->")
