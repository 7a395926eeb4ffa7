"""Publish an HE bundle (the output of ``cloakroom he encrypt``): create the dataset, upload, check, publish.

The upload is resumable: the server keeps every file it has accepted, and :func:`publish_bundle` asks it
which files are still missing before sending any, so running it again after an interruption sends only
the rest. Files are streamed from disk (the open file is the request body), never read whole.

This module reads the bundle directory only: ``manifest.json``, ``context.bin`` (the public context) and
the ciphertexts. It never opens the keystore, where the secret key stays.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import IO, Any

from cloakroom_client import he
from cloakroom_client.client import Client

METADATA_FIELDS = ("title", "description", "epsilon_cap", "delta_cap", "price_per_epsilon", "row_count_public")
UPLOAD_TIMEOUT = 600.0
BLOCK = 1024 * 1024


class _Progress:
    """A one-line progress bar on stderr: bytes sent of the bundle's total, and the current file."""

    def __init__(self, total: int, done: int, enabled: bool, stream: IO[str] | None = None):
        self.total = max(total, 1)
        self.done = done
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self.label = ""
        self._last = 0.0

    def advance(self, count: int) -> None:
        self.done += count
        self.draw()

    def draw(self, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1 and self.done < self.total:
            return
        self._last = now
        fraction = min(self.done / self.total, 1.0)
        filled = int(fraction * 30)
        bar = "#" * filled + "-" * (30 - filled)
        mib = self.done / 1024**2
        self.stream.write(f"\rupload [{bar}] {fraction:6.1%} {mib:8.1f} MiB {self.label:<16}")
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self.draw(force=True)
            self.stream.write("\n")
            self.stream.flush()


class _ProgressReader:
    """The open file as a request body: ``requests`` streams it by ``read`` and sizes it by ``len``."""

    def __init__(self, handle: IO[bytes], size: int, progress: _Progress):
        self._handle = handle
        self._size = size
        self._progress = progress

    def __len__(self) -> int:
        return self._size

    def __iter__(self):
        # Needed for requests to treat this as a stream; http.client sends it through read().
        while chunk := self.read(BLOCK):
            yield chunk

    def read(self, size: int = -1) -> bytes:
        chunk = self._handle.read(size)
        self._progress.advance(len(chunk))
        return chunk


def _metadata_body(metadata: dict) -> dict:
    body: dict[str, Any] = {k: metadata[k] for k in METADATA_FIELDS if k in metadata}
    for key in ("epsilon_cap", "delta_cap", "price_per_epsilon"):
        if key in body:
            body[key] = str(body[key])  # money and budget travel as decimal strings, never floats
    return body


def publish_bundle(
    client: Client,
    bundle_dir: str | os.PathLike,
    metadata: dict,
    progress: bool = True,
    keystore: str | os.PathLike | None = None,
) -> dict:
    """Create (or find again) the HE dataset for the bundle in ``bundle_dir``, upload what the server is
    missing, have it checked, and publish it unless ``metadata["publish"]`` is false.

    ``metadata`` holds ``title`` and ``epsilon_cap`` and ``price_per_epsilon`` (and optionally
    ``description``, ``delta_cap``, ``row_count_public``, ``publish``). Returns the dataset as the server
    last described it. Raises :class:`cloakroom_client.CloakroomError` with the server's reason when the
    bundle is refused (a bad manifest, a file that does not match it, or a failed check).

    When this machine's keystore (``keystore``, default as for ``cloakroom he encrypt``) holds the
    bundle's key, the epsilon cap is recorded there too: the key agent enforces it on its own.
    """
    folder = Path(bundle_dir)
    with open(folder / "manifest.json", encoding="utf-8") as handle:
        manifest = json.load(handle)
    _record_cap(manifest, metadata, keystore)

    dataset = client.create_he_dataset({**_metadata_body(metadata), "manifest": manifest})
    dataset_id = int(dataset["id"])
    if dataset["bundle_status"] == "uploading":
        state = client.bundle_state(dataset_id)
        bar = _Progress(state["bytes_total"], state["bytes_present"], progress)
        bar.draw(force=True)
        try:
            _upload_missing(client, dataset_id, folder, state, bar)
            bar.label = "done"
        finally:
            bar.finish()  # the line ends with a newline even when an upload fails, before the error is printed
        if progress:
            sys.stderr.write("checking the bundle on the server...\n")
        dataset = client.complete_bundle(dataset_id, timeout=UPLOAD_TIMEOUT)
    if metadata.get("publish", True) and dataset["status"] == "draft":
        client.publish(dataset_id)
        dataset = client.bundle_state(dataset_id)
    return dataset


def _upload_missing(client: Client, dataset_id: int, folder: Path, state: dict, bar: _Progress) -> None:
    """Upload every file of the bundle the server does not hold yet, in the manifest's order."""
    missing = set(state["missing"])
    for entry in state["files"]:
        name = entry["file"]
        if name not in missing:
            continue
        bar.label = name
        with open(folder / name, "rb") as handle:
            # The length sent is the file's own: if it disagrees with the manifest the server says so
            # at once, instead of waiting for bytes that will never come.
            size = os.fstat(handle.fileno()).st_size
            client.put_bundle_file(dataset_id, name, _ProgressReader(handle, size, bar), timeout=UPLOAD_TIMEOUT)


def _record_cap(manifest: dict, metadata: dict, keystore: str | os.PathLike | None) -> None:
    """Write the owner's epsilon cap beside the bundle's key, when the key is on this machine."""
    bundle_id = manifest.get("bundle_id")
    if "epsilon_cap" not in metadata or not isinstance(bundle_id, str):
        return
    try:
        if he.secret_key_path(bundle_id, keystore).exists():
            he.write_policy(bundle_id, metadata["epsilon_cap"], keystore)
    except he.HEError:
        return
