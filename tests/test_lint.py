"""The code passes its linters: ruff's checks and format on everything Python in the repository, and the
type checker (mypy) on the package. Their settings are in pyproject.toml; their versions are pinned in
constraints.txt, so a newer release cannot fail a clean checkout. Run as tests so that the README's
test command, which CI runs, runs them too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYTHON_FOLDERS = ["src", "tests", "benchmarks", "docs"]


def run(*command: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *command], cwd=REPO, capture_output=True, text=True, **kwargs)


def test_ruff_finds_nothing():
    out = run("ruff", "check", "--no-cache", *PYTHON_FOLDERS)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_code_is_formatted():
    out = run("ruff", "format", "--check", "--no-cache", *PYTHON_FOLDERS)
    assert out.returncode == 0, "run `ruff format`:\n" + out.stdout + out.stderr


@pytest.mark.slow
def test_the_type_checker_passes_on_the_package(tmp_path):
    out = run("mypy", "--cache-dir", str(tmp_path / "mypy_cache"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("Success: no issues found"), out.stdout
