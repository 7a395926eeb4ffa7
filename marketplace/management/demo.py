"""What the demo's set-up commands share: the command line that runs ``manage.py`` with the demo's
settings, and whether the collected static files are still those the sources would give.

``make demo`` keeps the demo's secrets in ``<CLOAKROOM_VAR_DIR>/demo.env`` and runs every management
command through honcho, which reads that file; a bare ``python manage.py ...`` has no SECRET_KEY and
refuses to start. So any command line the demo prints for a person to paste goes through honcho too.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import sys
from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles.finders import get_finders

from accounts.management.commands.demo_init import ENV_FILE_NAME

# Written into STATIC_ROOT after a successful collectstatic: the fingerprint of the sources it read.
STATIC_FINGERPRINT_NAME = ".demo-sources.sha256"


def shown_path(path: Path) -> str:
    """``path`` as a person would type it from the current folder: relative when it lies inside it."""
    path = Path(os.path.abspath(path))
    try:
        text = str(path.relative_to(Path.cwd()))
    except ValueError:
        text = str(path)
    return shlex.quote(text)


def demo_env_file() -> Path | None:
    """The demo's environment file, when this installation was set up by ``make demo``."""
    path = Path(settings.VAR_DIR) / ENV_FILE_NAME
    return path if path.is_file() else None


def manage_command(*args: str) -> str:
    """A shell command line that runs ``manage.py <args>`` with the settings this process has.

    With the demo's environment file it is the Makefile's own form (honcho, from the same virtual
    environment as this Python, reading the file); without one the settings come from the environment
    already (Docker Compose, a deployment), and plain ``python manage.py`` is right.
    """
    manage = shown_path(Path(settings.BASE_DIR) / "manage.py")
    words = " ".join(args)
    env_file = demo_env_file()
    if env_file is None:
        return f"python {manage} {words}"
    python = Path(sys.executable)
    honcho = python.with_name("honcho")
    honcho_text = shown_path(honcho) if honcho.exists() else "honcho"
    return f"{honcho_text} -e {shown_path(env_file)} run {shown_path(python)} {manage} {words}"


def static_sources_fingerprint() -> str:
    """A digest of every file collectstatic would read (its path, size and modification time) and of
    the storage it would write with. Equal digests mean a new collectstatic would write the same files."""
    digest = hashlib.sha256(settings.STORAGES["staticfiles"]["BACKEND"].encode())
    entries = []
    for finder in get_finders():
        for path, storage in finder.list([]):
            stat = os.stat(storage.path(path))
            prefix = getattr(storage, "prefix", None) or ""
            entries.append(f"{prefix}/{path}\0{stat.st_size}\0{stat.st_mtime_ns}")
    for entry in sorted(entries):
        digest.update(entry.encode() + b"\n")
    return digest.hexdigest()


def static_fingerprint_path() -> Path:
    return Path(settings.STATIC_ROOT) / STATIC_FINGERPRINT_NAME
