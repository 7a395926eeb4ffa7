"""The status line a waiting job keeps on stderr.

On a terminal it is one line redrawn in place; anywhere else (a log file, a notebook, a pipe) a line is
written only when the status changes, so no log fills with carriage returns. Either way the last line
always ends with a newline, whether the wait ends in a result, an error or Ctrl-C, so that whatever is
written next starts on a line of its own.
"""

from __future__ import annotations

import sys
from typing import IO

BAR_WIDTH = 20


def job_status_text(job: dict, elapsed: float) -> str:
    """``job 12: running [#####.....] 3/10 parts   4.2s``: the bar only when the job reports progress."""
    text = f"job {job.get('id')}: {job.get('status', '?'):<12}"
    progress = job.get("progress")
    if isinstance(progress, dict) and progress.get("total"):
        done, total = int(progress.get("done") or 0), int(progress["total"])
        filled = min(BAR_WIDTH, BAR_WIDTH * done // total)
        text += f" [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total} parts"
    return f"{text} {elapsed:6.1f}s"


class StatusLine:
    """One line of status on ``stream`` (stderr by default); use it as a context manager, or call
    :meth:`close`, so the line is ended however the caller leaves."""

    def __init__(self, stream: IO[str] | None = None, *, enabled: bool = True):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        isatty = getattr(self.stream, "isatty", None)
        self.redraw = bool(isatty and isatty())
        self.open = False  # whether a line has been started and not yet ended
        self.width = 0
        self.last_key: object = None

    def show(self, text: str, key: object = None) -> None:
        """Show ``text``. Off a terminal it is written only when ``key`` (the status) has changed."""
        if not self.enabled:
            return
        if self.redraw:
            self.stream.write("\r" + text.ljust(self.width))
            self.width = max(self.width, len(text))
            self.open = True
        elif key is None or key != self.last_key:
            self.stream.write(text + "\n")
        self.last_key = key
        self.stream.flush()

    def close(self) -> None:
        """End the line, once."""
        if self.open:
            self.stream.write("\n")
            self.stream.flush()
            self.open = False

    def __enter__(self) -> StatusLine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
