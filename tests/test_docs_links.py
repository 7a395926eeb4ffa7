"""The documentation stands on its own: no pointer to notes outside the repository, no broken links.

A user's clone holds only this repository, so nothing in its Markdown files or templates may send a
reader to a team note kept beside it, and every relative link in the README and docs/ must resolve.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIPPED_DIRS = {".venv", "var", ".git", "node_modules"}
# Spelled in pieces so that this file does not itself show up when someone greps for them.
FORBIDDEN = ("../" + "shared", "DESIGN" + ".md", "STYLE" + ".md")

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
# [text](target) and ![alt](target), with an optional "title" after the target.
INLINE_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
# [label]: target (reference definitions).
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def repository_files(predicate) -> list[Path]:
    found = []
    for path in ROOT.rglob("*"):
        relative = path.relative_to(ROOT)
        if any(part in SKIPPED_DIRS for part in relative.parts):
            continue
        if path.is_file() and predicate(relative):
            found.append(path)
    return sorted(found)


def is_markdown_or_template(relative: Path) -> bool:
    return relative.suffix.lower() == ".md" or "templates" in relative.parts[:-1]


def documentation() -> list[Path]:
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [p for p in docs if p.is_file()]


def relative_links(markdown: str) -> list[str]:
    """Every link target that is neither a URL (http:, mailto: ...) nor an anchor on the same page."""
    prose = INLINE_CODE.sub("", FENCE.sub("", markdown))
    targets = INLINE_LINK.findall(prose) + REFERENCE.findall(prose)
    return [t for t in targets if not SCHEME.match(t) and not t.startswith("#")]


def test_the_walk_finds_the_documentation_and_the_templates():
    names = {p.relative_to(ROOT).as_posix() for p in repository_files(is_markdown_or_template)}
    assert {"README.md", "docs/ARCHITECTURE.md", "docs/PRIVACY.md", "templates/base.html"} <= names


@pytest.mark.parametrize(
    "path", repository_files(is_markdown_or_template), ids=lambda p: p.relative_to(ROOT).as_posix()
)
def test_no_file_points_outside_the_repository_to_team_notes(path):
    text = path.read_text(encoding="utf-8", errors="replace")
    for needle in FORBIDDEN:
        lines = [n for n, line in enumerate(text.splitlines(), 1) if needle in line]
        assert not lines, f"{path.relative_to(ROOT)} mentions {needle!r} on line(s) {lines}"


def test_the_link_finder_reads_the_forms_used_here():
    sample = (
        'See [the map](docs/ARCHITECTURE.md#layout), ![a shot](docs/screenshots/x.png "title"),\n'
        "<http://127.0.0.1:8000/>, [a site](https://example.org), [here](#top) and `[not](a-link.md)`.\n"
        "```\n[nor](this.md)\n```\n[ref]: ../README.md\n"
    )
    assert relative_links(sample) == ["docs/ARCHITECTURE.md#layout", "docs/screenshots/x.png", "../README.md"]


@pytest.mark.parametrize("path", documentation(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_points_at_a_file_that_exists(path):
    broken = []
    for target in relative_links(path.read_text(encoding="utf-8")):
        file_part = unquote(target.split("#", 1)[0].split("?", 1)[0])
        if not file_part:
            continue
        resolved = (path.parent / file_part).resolve()
        if not resolved.exists():
            broken.append(target)
        elif ROOT not in resolved.parents and resolved != ROOT:
            broken.append(f"{target} (outside the repository)")
    assert not broken, f"{path.relative_to(ROOT)}: broken relative links: {broken}"
