"""Running untrusted TenSEAL bytes in a sandboxed child process: the bundle checker, from the web process,
and a prediction's scoring (compute/inference/scorer.py), from an ``he`` worker.

:func:`run_bundle_check` starts ``python -m marketplace.he.checker`` (:mod:`marketplace.he.checker`) with
a bare environment, memory and CPU limits and a wall-clock timeout, and turns whatever happens to the
child (an answer, a crash, a hang) into ``{"ok", "errors"}`` for the owner.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

logger = logging.getLogger(__name__)

CHECKER_MODULE = "marketplace.he.checker"


@dataclass(frozen=True)
class Outcome:
    """How a sandboxed child ended: its process, or why there is none (``stopped``: a timeout or a signal)."""

    completed: subprocess.CompletedProcess | None
    stopped: str = ""


def run_sandboxed(module: str, args: list[str], *, timeout: float, memory_bytes: int) -> Outcome:
    """Run ``python -m module args... --memory-bytes M --cpu-seconds S`` in a fresh subprocess with a bare
    environment (no settings, none of the platform's secrets) and a wall-clock timeout. The child sets
    its own address-space and CPU limits before it touches untrusted bytes (see checker.py), so what it
    reads can at worst kill it: a timeout or a signal comes back as ``stopped``, never as an exception."""
    command = [
        sys.executable,
        "-m",
        module,
        *args,
        "--memory-bytes",
        str(memory_bytes),
        "--cpu-seconds",
        str(max(1, math.ceil(timeout))),
    ]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(settings.BASE_DIR),
        "PYTHONDONTWRITEBYTECODE": "1",
        "LANG": "C.UTF-8",
        # One thread each: fewer threads reserve less address space under the child's memory limit.
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }
    try:
        completed = subprocess.run(
            command,
            capture_output=True,
            timeout=timeout,
            cwd=str(settings.BASE_DIR),
            env=env,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Outcome(None, f"took longer than {timeout:g} s and was stopped")
    if completed.returncode < 0:
        try:
            name = signal.Signals(-completed.returncode).name
        except ValueError:
            name = f"signal {-completed.returncode}"
        logger.warning("sandboxed %s stopped by %s", module, name)
        return Outcome(None, f"crashed ({name})")
    return Outcome(completed)


def last_json_line(completed: subprocess.CompletedProcess) -> dict | None:
    """The child's last stdout line as a JSON object, or None."""
    lines = completed.stdout.decode("utf-8", "replace").strip().splitlines()
    try:
        answer = json.loads(lines[-1])
    except (IndexError, ValueError):
        return None
    return answer if isinstance(answer, dict) else None


def run_bundle_check(folder: Path) -> dict:
    """Run ``python -m marketplace.he.checker <folder>`` in a fresh subprocess; return ``{"ok", "errors"}``.

    The child sets its own address-space and CPU limits before it touches the bundle, and the wall-clock
    timeout kills it if it hangs, so no bundle can crash or hang the calling process. The child gets a
    bare environment: it needs no settings and must never see the platform's secrets.
    """
    timeout = settings.CLOAKROOM_BUNDLE_CHECK_TIMEOUT
    outcome = run_sandboxed(
        CHECKER_MODULE, [str(folder)], timeout=timeout, memory_bytes=settings.CLOAKROOM_BUNDLE_CHECK_MEMORY_BYTES
    )
    if outcome.completed is None and outcome.stopped.startswith("took"):
        return {
            "ok": False,
            "errors": [
                f"Checking the bundle took longer than {timeout} s and was stopped; the files may be malformed."
            ],
        }
    if outcome.completed is None:
        name = outcome.stopped.removeprefix("crashed (").removesuffix(")")
        return {
            "ok": False,
            "errors": [
                f"Reading the bundle crashed the checker ({name}): a file is malformed, or needs more memory "
                "or CPU time than allowed."
            ],
        }
    return _answer(outcome.completed, folder)


def _answer(completed: subprocess.CompletedProcess, folder: Path) -> dict:
    """The child's one JSON line, or a refusal when it stopped without a well-formed answer."""
    result = last_json_line(completed)
    try:
        if result is None:
            raise ValueError("no answer")
        ok, errors = result["ok"], result["errors"]
        if not isinstance(ok, bool) or not isinstance(errors, list):
            raise ValueError("bad shape")
    except (ValueError, KeyError, TypeError):
        logger.warning("bundle checker for %s exited %s without a result", folder.name, completed.returncode)
        return {"ok": False, "errors": ["The checker could not read the bundle (it stopped without an answer)."]}
    if completed.returncode != 0 and ok:
        return {"ok": False, "errors": ["The checker failed while reading the bundle."]}
    return {"ok": ok, "errors": [str(e)[:1000] for e in errors]}
