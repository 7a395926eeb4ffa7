"""Where an HE dataset's files live, and how they get there: the bundle folder and the sealed key.

Files live in the private storage root under ``he/<dataset id>/``, which no URL serves. They are not
encrypted again at rest: the ciphertexts are CKKS encryptions under the owner's key and the context is
public, so the platform holds nothing it could read, and a second layer would only cost time. The
escrowed key (``escrow.sealed``) sits in the same folder, sealed to the platform's key-encryption key.

Every write here lands atomically: a file is written beside its final place under a unique temporary
name and renamed into place only when whole and checked, so a reader (the checker, the escrow worker)
never sees a partial or wrong file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import IO, TYPE_CHECKING

from django.core.files.storage import default_storage

from cloakroom_client.protocol.bundle import MANIFEST_FILE
from config.exceptions import Conflict, ValidationFailed

if TYPE_CHECKING:
    # Only for annotations: the checker child imports this package without Django's app registry.
    from marketplace.models import Dataset

CHUNK_BYTES = 1024 * 1024
ESCROW_FILE = "escrow.sealed"
MAX_ESCROW_BYTES = 16 * 1024 * 1024


def bundle_folder(dataset: Dataset) -> Path:
    """The dataset's folder in the private storage root.

    The checker subprocess reads the bundle from a local folder, so this needs a filesystem storage;
    an object store would download the bundle to a scratch folder first.
    """
    return Path(default_storage.path(f"he/{dataset.pk}"))


def escrow_path(dataset: Dataset) -> Path:
    """Where the dataset's sealed secret key is kept while the owner has it escrowed."""
    return bundle_folder(dataset) / ESCROW_FILE


def present_files(dataset: Dataset) -> set[str]:
    """The names of the files in the dataset's folder (none when it has no folder yet)."""
    try:
        return set(os.listdir(bundle_folder(dataset)))
    except FileNotFoundError:
        return set()


def receive_file(folder: Path, name: str, stream: IO[bytes], *, size: int, sha256: str) -> int | None:
    """Stream one bundle file of ``size`` bytes into ``folder``; return the bytes received, or None
    when the file was already there (a re-upload, kept as it was).

    The body is written to a temporary file beside its final place, one chunk at a time (never whole
    in memory), while its length and sha256 are checked against ``size`` and ``sha256``. Only a file
    that matches is renamed into place (an atomic rename), so a rejected, interrupted or concurrent
    upload never leaves a partial or wrong file where the checker would read it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / name
    partial = folder / f".{name}.{uuid.uuid4().hex}.part"
    try:
        digest, received = hashlib.sha256(), 0
        with open(partial, "wb") as out:
            while received < size:
                chunk = stream.read(min(CHUNK_BYTES, size - received))
                if not chunk:
                    break
                received += len(chunk)
                digest.update(chunk)
                out.write(chunk)
        if received != size:
            raise ValidationFailed(
                f"{name}: received {received} of {size} bytes; the upload was cut short. Send it again.",
                code="incomplete_upload",
                fields={"body": [f"Received {received} of {size} bytes."]},
            )
        if digest.hexdigest() != sha256:
            raise ValidationFailed(
                f"{name} does not match its sha256 in the manifest; the file differs from the one encrypted.",
                code="hash_mismatch",
                fields={"body": ["The sha256 differs from the manifest's."]},
            )
        if final.exists():
            return None
        os.replace(partial, final)
    except FileNotFoundError:
        # The folder vanished under us: the bundle was rejected (and deleted) while this file arrived.
        raise Conflict("The bundle changed state during the upload; ask for its state.", code="bundle_changed")
    finally:
        partial.unlink(missing_ok=True)
    return received


def write_manifest(folder: Path, manifest: dict) -> None:
    """Put the checked manifest beside the files, where the checker child reads it."""
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")


def delete_bundle(folder: Path) -> None:
    """Delete a bundle's folder and everything in it (a rejected bundle keeps no file)."""
    shutil.rmtree(folder, ignore_errors=True)


def write_escrow(dataset: Dataset, blob: bytes) -> None:
    """Keep a sealed key, readable by this account only (mode 0600), replacing any earlier one atomically."""
    path = escrow_path(dataset)
    tmp = path.with_name(f".{ESCROW_FILE}.{uuid.uuid4().hex}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(blob)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def delete_escrow(dataset: Dataset) -> None:
    escrow_path(dataset).unlink(missing_ok=True)
