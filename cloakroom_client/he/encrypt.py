"""Encrypt a CSV into a bundle directory (format v1) on the owner's machine, its key to the keystore.

A CSV is checked against the declared schema (:mod:`cloakroom_client.he.schema`), and every
encoded column is packed into CKKS vectors (TenSEAL) that fill all the slots of a ciphertext, the
last one padded with zeros. See :mod:`cloakroom_client.he` for what the bundle holds.

TenSEAL is imported inside :func:`encrypt_csv` only, so that the ``cloakroom`` command and the SDK
import without the ``he`` extra. A process that holds a TenSEAL context must never fork (it
deadlocks), so nothing here uses ``multiprocessing`` with fork.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cloakroom_client.he.keystore import manifest_copy_path, write_private, write_secret
from cloakroom_client.he.params import build_context, choose_parameters, public_context_bytes, secret_context_bytes
from cloakroom_client.he.schema import encoded_columns, encoded_count, parse_schema, read_checked_csv
from cloakroom_client.protocol.bundle import CONTEXT_FILE, FORMAT, MAX_CHUNKS, MAX_COLUMNS, VERSION, column_file_name
from cloakroom_client.protocol.bundle import MANIFEST_FILE as MANIFEST
from cloakroom_client.protocol.errors import HEError


class Progress:
    """A one-line progress bar on stderr, redrawn at most ten times a second."""

    def __init__(self, total: int, label: str, *, enabled: bool = True, stream: Any = None) -> None:
        self.total = max(int(total), 1)
        self.label = label
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.done = 0
        self.start = time.monotonic()
        self._drawn = 0.0
        self._drawn_done = -1

    def update(self, step: int = 1) -> None:
        self.done += step
        now = time.monotonic()
        if self.enabled and (now - self._drawn >= 0.1 or self.done >= self.total):
            self._drawn = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        fraction = min(self.done / self.total, 1.0)
        width = 30
        filled = int(fraction * width)
        elapsed = now - self.start
        eta = elapsed / fraction - elapsed if fraction > 0 else 0.0
        self._drawn_done = self.done
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {fraction * 100:5.1f}% "
            f"{self.done}/{self.total}  {elapsed:5.1f}s elapsed, {eta:5.1f}s left"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            if self._drawn_done != self.done:
                self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()


def _write_new(path: Path, data: bytes) -> dict:
    with open(path, "xb") as handle:
        handle.write(data)
    return {"file": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _new_out_dir(out_dir: str | os.PathLike) -> tuple[Path, bool]:
    """The bundle directory, made if need be; True with it when this call created it."""
    out = Path(out_dir)
    created = not out.exists()
    if not created and (not out.is_dir() or any(out.iterdir())):
        raise HEError(f"{out} must be a new or empty directory")
    out.mkdir(parents=True, exist_ok=True)
    return out, created


def _encrypt_columns(
    encrypt: Callable[[list[float]], bytes],
    encoded: Iterable[tuple[dict, np.ndarray]],
    shape: tuple[int, int],
    out: Path,
    written: list[Path],
    bar: Progress,
) -> list[dict]:
    """The manifest's columns, each ciphertext written as soon as it is made and then dropped.

    ``shape`` is (slots per ciphertext, ciphertexts per column). Every path is appended to
    ``written`` before the next is made, so the caller can remove them all if anything fails.
    """
    slots, chunks = shape
    manifest_columns = []
    block = np.zeros(slots, dtype=float)
    for index, (entry, values) in enumerate(encoded):
        files = []
        for chunk in range(chunks):
            part = values[chunk * slots : (chunk + 1) * slots]
            block[: len(part)] = part
            block[len(part) :] = 0.0  # the tail of the last chunk is zero padding
            data = encrypt(block.tolist())
            path = out / column_file_name(index, chunk)
            files.append(_write_new(path, data))
            written.append(path)
            del data
            bar.update()
        entry["files"] = files
        manifest_columns.append(entry)
    return manifest_columns


def _write_manifest(manifest: dict, out: Path, written: list[Path], keystore: str | os.PathLike | None) -> None:
    # The manifest is written last and atomically: a bundle with a manifest is a complete one.
    temporary = out / (MANIFEST + ".tmp")
    written.append(temporary)
    temporary.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, out / MANIFEST)
    written[-1] = out / MANIFEST
    # The owner's own copy, beside the key: the key agent plans every job from it and never from
    # the server's word.
    write_private(manifest_copy_path(manifest["bundle_id"], keystore), json.dumps(manifest, indent=2) + "\n")


def _remove_partial(written: list[Path], secret_path: Path | None, out: Path, created_dir: bool) -> None:
    """Remove what a failed encryption wrote, the secret key included, and the directory it made."""
    for path in written:
        path.unlink(missing_ok=True)
    if secret_path is not None:
        secret_path.unlink(missing_ok=True)
    if created_dir:
        try:
            out.rmdir()
        except OSError:
            pass


def encrypt_csv(
    csv_path: str | os.PathLike,
    schema: Any,
    out_dir: str | os.PathLike,
    job_classes: Iterable[str] | str = ("sum",),
    keystore: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict:
    """Encrypt a CSV into a bundle directory (format v1) and put its secret key in the keystore.

    ``schema`` is the list of declared columns the API takes (or a metadata object holding it).
    The CSV is refused, before any key is made, if it does not fit the schema. ``out_dir`` must be
    new or empty. Each ciphertext is written as soon as it is made and then dropped, so memory does
    not grow with the data. If anything fails, every file written so far (secret key included) is
    removed. Returns the manifest.
    """
    import tenseal as ts  # lazily: see the module's docstring

    columns = parse_schema(schema)
    params = choose_parameters(job_classes)
    slots = params["slots"]
    typed, rows, clipped = read_checked_csv(csv_path, columns)
    n_columns = encoded_count(columns)
    chunks = math.ceil(rows / slots)
    if n_columns > MAX_COLUMNS:
        raise HEError(f"the schema expands to {n_columns} encrypted columns; at most {MAX_COLUMNS} fit a bundle")
    if chunks > MAX_CHUNKS:
        raise HEError(f"{rows} rows need {chunks} ciphertexts per column; at most {MAX_CHUNKS} fit a bundle")
    out, created_dir = _new_out_dir(out_dir)
    for name, count in clipped.items():
        if progress:
            sys.stderr.write(f"note: column {name!r}: {count} value(s) clipped to the declared bounds\n")

    bundle_id = uuid.uuid4().hex
    written: list[Path] = []
    secret_path: Path | None = None
    try:
        ctx = build_context(params["job_classes"])
        # The keystore is written first so that a keystore that cannot be written fails fast,
        # before minutes of encryption; it is removed again if the bundle is not completed.
        secret_path = write_secret(bundle_id, secret_context_bytes(ctx, params["job_classes"]), keystore)

        context_entry = _write_new(out / CONTEXT_FILE, public_context_bytes(ctx, params["job_classes"]))
        written.append(out / CONTEXT_FILE)

        bar = Progress(n_columns * chunks, "encrypting", enabled=progress)
        try:
            manifest_columns = _encrypt_columns(
                lambda block: ts.ckks_vector(ctx, block).serialize(),
                encoded_columns(columns, typed),
                (slots, chunks),
                out,
                written,
                bar,
            )
        finally:
            bar.close()  # the line ends with a newline even when encryption fails, before the error is printed

        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "bundle_id": bundle_id,
            "scheme": "ckks",
            "poly_modulus_degree": params["poly_modulus_degree"],
            "coeff_mod_bit_sizes": params["coeff_mod_bit_sizes"],
            "global_scale_bits": params["global_scale_bits"],
            "job_classes": params["job_classes"],
            "slots": slots,
            "rows": rows,
            "context": context_entry,
            "columns": manifest_columns,
        }
        _write_manifest(manifest, out, written, keystore)
    except BaseException:
        _remove_partial(written, secret_path, out, created_dir)
        raise
    return manifest


def bundle_stats(manifest: Mapping) -> dict[str, Any]:
    """Sizes of a bundle: ciphertext bytes per packed slot (the format's density, independent of
    the row count), per true value (padding included), and the public context's size."""
    files = [f for column in manifest["columns"] for f in column["files"]]
    total = sum(f["bytes"] for f in files)
    values = len(manifest["columns"]) * manifest["rows"]
    return {
        "ciphertexts": len(files),
        "ciphertext_bytes": total,
        "bytes_per_slot": total / (len(files) * manifest["slots"]) if files else 0.0,
        "bytes_per_value": total / values if values else 0.0,
        "context_bytes": manifest["context"]["bytes"],
    }


def load_manifest(bundle_dir: str | os.PathLike) -> dict:
    path = Path(bundle_dir) / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HEError(f"{path}: no manifest (is this a bundle written by `cloakroom he encrypt`?)")
