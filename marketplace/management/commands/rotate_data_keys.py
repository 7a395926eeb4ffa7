"""Re-encrypt every stored dataset file under the newest key in CLOAKROOM_DATA_KEYS.

Rotation: put a new key first in CLOAKROOM_DATA_KEYS (keep the old ones after it), run this
command, then drop the old keys. Each file is rewritten atomically (see storage.rotate_stored).
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from marketplace import storage
from marketplace.models import Dataset


class Command(BaseCommand):
    help = "Re-encrypt every stored dataset file under the first (newest) key in CLOAKROOM_DATA_KEYS."

    def handle(self, *args, **options):
        paths = list(Dataset.objects.exclude(file_path="").values_list("pk", "file_path"))
        rotated = unchanged = 0
        failed: list[str] = []
        for pk, path in paths:
            try:
                if storage.rotate_stored(path):
                    rotated += 1
                else:
                    unchanged += 1
            except FileNotFoundError:
                failed.append(f"dataset {pk}: its stored file is missing")
            except ImproperlyConfigured:
                raise
            except Exception:  # InvalidToken from MultiFernet.rotate: no listed key opens it
                failed.append(f"dataset {pk}: no key in CLOAKROOM_DATA_KEYS decrypts its file")
        self.stdout.write(f"Rotated {rotated} file(s) to the newest key; {unchanged} unchanged; {len(failed)} failed.")
        if failed:
            raise CommandError("Some files could not be re-encrypted:\n  " + "\n  ".join(failed))
