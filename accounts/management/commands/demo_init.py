"""Write the demo's environment file, var/demo.env, once.

`make demo` runs this first, before any secret exists, so it runs with DEBUG=true in the
environment (the settings refuse to load without SECRET_KEY otherwise). The file holds a fresh
SECRET_KEY and a fresh Fernet key for encryption at rest; it is never overwritten, because a new
data key would make every dataset already stored under var/ unreadable.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet
from django.conf import settings
from django.core.management.base import BaseCommand

from cloakroom_client.protocol.escrow import new_kek

ENV_FILE_NAME = "demo.env"


def demo_env_text() -> str:
    """The demo's settings: new secrets plus the few values the demo wants. Nothing else is needed:
    with no DATABASE_URL the database is SQLite under var/, and with no broker URL the Celery broker
    is Kombu's filesystem transport under var/."""
    private_kek, public_kek = new_kek()
    lines = [
        "# Written once by `python manage.py demo_init` for `make demo`; never overwritten.",
        "# It holds the demo's secrets: keep it private (mode 0600) and out of version control.",
        "# Losing CLOAKROOM_DATA_KEYS makes the datasets stored under var/ unreadable.",
        f"SECRET_KEY={secrets.token_urlsafe(50)}",
        f"CLOAKROOM_DATA_KEYS={Fernet.generate_key().decode()}",
        "DEBUG=false",
        "ALLOWED_HOSTS=localhost,127.0.0.1",
        "CLOAKROOM_SIGNUP_CREDITS=1000",
        # Key escrow for HE datasets. In production only the escrow worker (queue keys) gets the
        # private half; the demo runs every process from this one file.
        f"CLOAKROOM_KEK_PRIVATE_KEY={private_kek}",
        f"CLOAKROOM_KEK_PUBLIC_KEY={public_kek}",
    ]
    return "\n".join(lines) + "\n"


def write_demo_env(var_dir: Path) -> tuple[Path, bool]:
    """Create ``var_dir`` and write ``demo.env`` in it unless it exists; returns (path, created).

    The file is created with O_EXCL and mode 0600 in one call, so it is never readable by others,
    not even for a moment, and two runs at once cannot both write it.
    """
    var_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = var_dir / ENV_FILE_NAME
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path, False
    with os.fdopen(fd, "w") as handle:
        handle.write(demo_env_text())
    return path, True


class Command(BaseCommand):
    help = "Create var/ and write var/demo.env (secrets for the demo) unless it already exists."

    def handle(self, *args, **options) -> None:
        path, created = write_demo_env(Path(settings.VAR_DIR))
        if created:
            self.stdout.write(self.style.SUCCESS(f"Wrote {path} (mode 0600) with a new SECRET_KEY and data key."))
        else:
            self.stdout.write(f"{path} already exists; keeping it (its data key decrypts the stored datasets).")
