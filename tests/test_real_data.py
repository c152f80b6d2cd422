"""The real recordings the suite carries are the files their SOURCES.md describes, byte for byte."""

from __future__ import annotations

import hashlib
import re

from conftest import REAL_DATA


def test_every_carried_recording_matches_its_recorded_sha256():
    listed = dict(
        (path, digest)
        for digest, path in re.findall(r"^([0-9a-f]{64})  (\S+)$", (REAL_DATA / "SOURCES.md").read_text(), re.M)
    )
    carried = {str(p.relative_to(REAL_DATA)) for p in REAL_DATA.rglob("*") if p.is_file() and p.name != "SOURCES.md"}
    assert carried == set(listed), "every carried file, and only those, has a sha256 line in SOURCES.md"
    for path, digest in listed.items():
        assert hashlib.sha256((REAL_DATA / path).read_bytes()).hexdigest() == digest, path
