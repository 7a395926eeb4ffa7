"""Where a prediction's ciphertexts live: ``predictions/<id>/`` in the private storage root, which no URL
serves. The folder holds the client's public context and ciphertexts until they are scored, then the
encrypted scores until the client downloads them; nothing in it can be read without the client's secret
key, and the folder is removed once the scores are delivered, on failure and on expiry.

Every file lands atomically (written under a temporary name, renamed when whole), so the worker never
reads a partial upload and the client never downloads partial scores.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from django.core.files.storage import default_storage

from cloakroom_client.protocol.inference import container_chunks

CONTEXT_FILE = "context.bin"
INPUT_FILE = "inputs.ct"
SCORES_FILE = "scores.ct"
CHUNK_BYTES = 1024 * 1024


def folder(prediction_id: int) -> Path:
    return Path(default_storage.path(f"predictions/{int(prediction_id)}"))


def _land(path: Path, chunks: Iterable[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    try:
        with open(temporary, "xb") as handle:
            for chunk in chunks:
                handle.write(chunk)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _read(stream: IO[bytes]) -> Iterable[bytes]:
    stream.seek(0)
    while chunk := stream.read(CHUNK_BYTES):
        yield chunk


def store_inputs(prediction_id: int, *, context: IO[bytes], ciphertexts: IO[bytes]) -> None:
    """The client's upload, copied into the prediction's folder."""
    _land(folder(prediction_id) / CONTEXT_FILE, _read(context))
    _land(folder(prediction_id) / INPUT_FILE, _read(ciphertexts))


def store_scores(prediction_id: int, blobs: Iterable[bytes]) -> None:
    """The encrypted scores as one container (cloakroom_client.protocol.inference), written as they come."""
    _land(folder(prediction_id) / SCORES_FILE, container_chunks(blobs))


def drop_inputs(prediction_id: int) -> None:
    for name in (CONTEXT_FILE, INPUT_FILE):
        (folder(prediction_id) / name).unlink(missing_ok=True)


def remove(prediction_id: int) -> None:
    """Everything of the prediction, gone (a missing folder is fine)."""
    shutil.rmtree(folder(prediction_id), ignore_errors=True)
