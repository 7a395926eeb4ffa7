"""Re-encrypt every stored dataset file under the newest key in CLOAKROOM_DATA_KEYS.

Rotation: put a new key first in CLOAKROOM_DATA_KEYS (keep the old ones after it), run this
command, then drop the old keys. Each file is rewritten atomically (see storage.rotate_stored),
so the command can be interrupted and run again: a file already under the newest key is simply
re-encrypted once more. It stays thin: the storage module does the cryptography, the model
only says which files exist.
"""

from __future__ import annotations

from cryptography.fernet import InvalidToken
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from marketplace import storage
from marketplace.models import Dataset


class Command(BaseCommand):
    help = "Re-encrypt every stored dataset file under the first (newest) key in CLOAKROOM_DATA_KEYS."

    def handle(self, *args, **options) -> None:
        paths = list(Dataset.objects.exclude(file_path="").order_by("pk").values_list("pk", "file_path"))
        rotated = 0
        failed: list[str] = []
        for pk, path in paths:
            try:
                storage.rotate_stored(path)
            except ImproperlyConfigured as exc:
                # No usable key at all: every file would fail the same way, so stop at once.
                raise CommandError(str(exc)) from None
            except FileNotFoundError:
                failed.append(f"dataset {pk}: its stored file is missing")
            except InvalidToken:
                failed.append(f"dataset {pk}: no key in CLOAKROOM_DATA_KEYS decrypts its file")
            else:
                rotated += 1
        self.stdout.write(f"Rotated {rotated} file(s) to the newest key; {len(failed)} failed.")
        if failed:
            raise CommandError(
                "Some files could not be re-encrypted (they are left as they were):\n  " + "\n  ".join(failed)
            )
