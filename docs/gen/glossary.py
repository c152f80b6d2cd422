"""The glossary (docs/glossary.md) and the links to it: each term is linked at its first use on a page.

An entry of docs/glossary.md is a `## Term` heading followed by `<!-- matches: REGEX -->`, the words that
name it in running text (a Python regular expression, matched whole-word). Code, links, headings and
HTML are never linked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from markdown.extensions.toc import slugify

PAGE = "glossary.md"
GLOSSARY = Path(__file__).resolve().parents[1] / PAGE

_ENTRY = re.compile(r"^## (?P<term>.+)\n<!-- matches: (?P<regex>.+?) -->$", re.M)
# Spans of a line that are never linked: inline code, links and images, HTML tags and comments, URLs.
_PROTECTED = re.compile(r"`[^`]*`|!?\[[^\]]*\]\([^)]*\)|<!--.*?-->|<[^>]*>|https?://\S+")
_FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass(frozen=True)
class Term:
    name: str
    anchor: str
    pattern: re.Pattern


def terms(text: str | None = None) -> list[Term]:
    """The glossary's entries, in page order."""
    text = GLOSSARY.read_text(encoding="utf-8") if text is None else text
    return [
        Term(m["term"], slugify(m["term"], "-"), re.compile(rf"(?<![\w/.-])(?:{m['regex']})(?![\w/-])"))
        for m in _ENTRY.finditer(text)
    ]


def _linkable_lines(lines: list[str]) -> list[int]:
    """Indices of the lines of running text: not in fenced or indented code, not headings, not HTML comments."""
    out, fenced, comment, previous_blank = [], False, False, True
    for i, line in enumerate(lines):
        if _FENCE.match(line):
            fenced = not fenced
        elif fenced:
            pass
        elif comment or line.lstrip().startswith("<!--") and "-->" not in line:
            comment = "-->" not in line
        elif line.startswith(("    ", "\t")) and previous_blank and not line.lstrip().startswith(("-", "*", "|")):
            pass  # an indented code block
        elif line.startswith("#"):
            pass
        else:
            out.append(i)
        previous_blank = not line.strip()
    return out


def _first_match(line: str, pattern: re.Pattern) -> re.Match | None:
    protected = [m.span() for m in _PROTECTED.finditer(line)]
    for match in pattern.finditer(line):
        if not any(start < match.end() and match.start() < end for start, end in protected):
            return match
    return None


def link_first_uses(markdown: str, glossary_url: str, entries: list[Term] | None = None) -> str:
    """`markdown` with the first use of every glossary term linked to `glossary_url#anchor`."""
    lines = markdown.split("\n")
    linkable = _linkable_lines(lines)
    for term in terms() if entries is None else entries:
        for i in linkable:
            match = _first_match(lines[i], term.pattern)
            if match:
                link = f"[{match.group(0)}]({glossary_url}#{term.anchor})"
                lines[i] = lines[i][: match.start()] + link + lines[i][match.end() :]
                break
    return "\n".join(lines)
