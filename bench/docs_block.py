"""The measured blocks of docs/BENCHMARKS.md, shared by the benchmarks that write one (``--update-docs``).

A block sits between two HTML comments inside its section, so that rewriting it replaces the numbers and
leaves the section's hand-written reading of them alone.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def update_block(path: Path, measured: str, *, begin: str, end: str, section: str) -> None:
    """Put ``measured`` (which starts with ``begin`` and ends with ``end``) in ``section``, replacing an
    earlier block (or appending the section at the end of the file)."""
    text = path.read_text()
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + measured + tail
    elif section in text:
        raise SystemExit(f"{path} has a {section!r} section without the measured block's markers")
    else:
        text = text.rstrip("\n") + f"\n\n{section}\n\n{measured}\n"
    path.write_text(text)


def run_stamp(root: Path = REPO_ROOT) -> str:
    """ "Run on <date> at commit <sha>", with "(with uncommitted changes)" when tracked files differ."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
    ).stdout
    return (
        f"Run on {time.strftime('%Y-%m-%d at %H:%M UTC', time.gmtime())} at commit {commit.stdout.strip()}"
        f"{' (with uncommitted changes)' if dirty.strip() else ''}"
    )
