"""The HE bundle checker: the child process that reads an owner's untrusted TenSEAL bytes.

- The manifest rules live in the shared format module, ``cloakroom_client/protocol/bundle.py``
  (:func:`validate_manifest`, pure Python). The web process uses them to refuse a bad manifest when the
  dataset is created, and this child uses them again before it reads any file.
- ``python -m marketplace.he.checker <dir>`` is the child, started by :mod:`marketplace.he.sandbox`. It is
  the only code on the server that deserialises an owner's TenSEAL context and ciphertexts. It limits its
  own address space and CPU time with ``resource.setrlimit`` before it imports TenSEAL, so a malicious or
  broken bundle can at worst kill this child (the parent sees a signal or a timeout), never the web or
  worker process. The parent starts it with ``subprocess.run`` (never a fork of a process that holds a
  TenSEAL context, which deadlocks). It runs without Django settings: importing its package loads only
  :mod:`marketplace.he.storage`, which reads no setting and touches no model at import.

The child prints exactly one JSON line on stdout: ``{"ok": true|false, "errors": [...], "checked": {...}}``.
Error messages name the file and the reason; they never contain bytes from the bundle, so nothing secret
can leak through them even when an owner uploads a context that carries a secret key.

The format itself is the shared contract in the owner CLI's bundle documentation (format v1).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import resource
import sys
from pathlib import Path
from typing import Any

from cloakroom_client.protocol.bundle import (
    CONTEXT_FILE,
    MANIFEST_FILE,
    MAX_ERRORS,
    MAX_MANIFEST_BYTES,
    ManifestError,
    manifest_files,
    validate_manifest,
)


def limit_resources(memory_bytes: int, cpu_seconds: int) -> None:
    """Cap this process's address space and CPU time before any untrusted byte is parsed."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
    # A crash must not leave a core file (it would hold the bundle's bytes) next to the bundle.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _coeff_bit_sizes(seal_context: Any) -> list[int]:
    """Recover the coeff modulus bit sizes from the SEAL modulus chain.

    TenSEAL 0.3.18 cannot hand the primes themselves to Python, but every level of the chain reports its
    total bit count, and each level drops one prime: the differences are the primes' sizes.
    """
    totals = []
    data = seal_context.key_context_data()
    while data is not None:
        totals.append(data.total_coeff_modulus_bit_count())
        data = data.next_context_data()
    totals.reverse()
    return [totals[0]] + [b - a for a, b in zip(totals, totals[1:])]


class _BundleRefused(Exception):
    """A check failed: ``errors`` are the child's answer, and nothing more of the bundle is read."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(errors)
        self.errors = errors


def _read_manifest(directory: Path) -> dict:
    """Read and validate manifest.json, refusing an oversized or unreadable one before parsing it."""
    manifest_path = directory / MANIFEST_FILE
    try:
        if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
            raise _BundleRefused(["manifest.json is too large."])
        return validate_manifest(json.loads(manifest_path.read_text("utf-8")))
    except ManifestError as exc:
        raise _BundleRefused([f"manifest.json: {exc}"]) from None
    except (OSError, ValueError) as exc:
        raise _BundleRefused([f"manifest.json cannot be read: {type(exc).__name__}."]) from None


def _check_file_sizes(directory: Path, manifest: dict) -> None:
    """Refuse the bundle unless every file the manifest lists is on disk with the size it declares."""
    errors = []
    for entry in manifest_files(manifest):
        path = directory / entry["file"]
        if not path.is_file():
            errors.append(f"{entry['file']} is missing.")
        elif path.stat().st_size != entry["bytes"]:
            errors.append(f"{entry['file']} has {path.stat().st_size} bytes; the manifest declares {entry['bytes']}.")
    if errors:
        raise _BundleRefused(errors[:MAX_ERRORS])


def _load_public_context(ts: Any, directory: Path, manifest: dict) -> Any:
    """Check context.bin's hash, parse it, and refuse it if it is private or not CKKS."""
    context_bytes = (directory / CONTEXT_FILE).read_bytes()
    if hashlib.sha256(context_bytes).hexdigest() != manifest["context"]["sha256"]:
        raise _BundleRefused(["context.bin does not match its sha256 in the manifest."])
    try:
        context = ts.context_from(context_bytes)
    except Exception as exc:  # noqa: BLE001 - any failure to parse is the owner's bundle, not our bug
        raise _BundleRefused(
            [f"context.bin is not a TenSEAL context (truncated or corrupt): {type(exc).__name__}."]
        ) from None
    del context_bytes

    if context.is_private() or context.has_secret_key():
        # Stop here: nothing more is read from a bundle that broke the one rule that protects the owner.
        raise _BundleRefused(
            [
                "context.bin carries a secret key. Upload only the public context (make_context_public()); "
                "the secret key must stay on your machine. Treat this key as exposed and encrypt again with a new one."
            ]
        )
    scheme = context.seal_context().data.key_context_data().parms().scheme()
    # The SEAL parameters report the scheme as TenSEAL's own enum; its name is the stable part.
    if getattr(scheme, "name", None) != "CKKS":
        raise _BundleRefused([f"context.bin uses the {getattr(scheme, 'name', scheme)} scheme; only CKKS is accepted."])
    return context


def _context_scale(context: Any) -> float | None:
    try:
        return context.global_scale
    except Exception:  # noqa: BLE001 - TenSEAL raises when no scale was set
        return None


def _check_context_parameters(context: Any, manifest: dict, scale: float, checked: dict[str, Any]) -> None:
    """Refuse a context whose parameters or keys differ from what the manifest and its job classes need.

    Every mismatch is reported together; ``checked`` records the degree and bit sizes found either way.
    """
    errors = []
    seal = context.seal_context().data
    degree = seal.key_context_data().parms().poly_modulus_degree()
    if degree != manifest["poly_modulus_degree"]:
        errors.append(
            f"context.bin has poly modulus degree {degree}; the manifest says {manifest['poly_modulus_degree']}."
        )
    bit_sizes = _coeff_bit_sizes(seal)
    if bit_sizes != manifest["coeff_mod_bit_sizes"]:
        errors.append(
            f"context.bin has coeff modulus bit sizes {bit_sizes}; the manifest says {manifest['coeff_mod_bit_sizes']}."
        )
    context_scale = _context_scale(context)
    if context_scale != scale:
        errors.append(
            f"context.bin has global scale {context_scale}; the manifest says 2^{manifest['global_scale_bits']}."
        )
    if context.has_galois_keys():
        errors.append(
            "context.bin carries Galois keys. They are not needed (the key holder sums the slots after "
            "decryption) and make the context ~20 times larger; serialize it with save_galois_keys=False."
        )
    if "product" in manifest["job_classes"] and not context.has_relin_keys():
        errors.append("context.bin has no relinearisation keys, which the 'product' job class needs.")
    checked["poly_modulus_degree"] = degree
    checked["coeff_mod_bit_sizes"] = bit_sizes
    if errors:
        raise _BundleRefused(errors[:MAX_ERRORS])


def _check_ciphertexts(
    ts: Any, context: Any, directory: Path, manifest: dict, scale: float, checked: dict[str, Any]
) -> list[str]:
    """Check every ciphertext file, one at a time so that memory stays flat whatever the bundle's size.

    Returns the problems found; stops reading at :data:`MAX_ERRORS` of them. ``checked`` counts the good files.
    """
    errors: list[str] = []
    levels = len(manifest["coeff_mod_bit_sizes"]) - 1
    for column in manifest["columns"]:
        for entry in column["files"]:
            problem = _check_ciphertext(ts, context, directory / entry["file"], manifest, levels, scale)
            if not problem:
                checked["ciphertexts"] += 1
                continue
            errors.append(f"{entry['file']} (column {column['name']!r}): {problem}")
            if len(errors) >= MAX_ERRORS:
                raise _BundleRefused(errors)
    return errors


def check_bundle(directory: Path) -> dict:
    """Check the bundle in ``directory``; return ``{"ok", "errors", "checked"}``. Imports TenSEAL lazily.

    The checks run in this order and the first that fails ends the check: the manifest, the files'
    sizes, the context (hash, parsing, no secret key, CKKS), its parameters and keys, the ciphertexts.
    """
    checked: dict[str, Any] = {"ciphertexts": 0}
    try:
        manifest = _read_manifest(directory)
        # Sizes (and, for the context, the hash) are checked again here: the files on disk are what is read.
        _check_file_sizes(directory, manifest)

        # Imported here, not at the top: only after the resource limits are set, and only for a bundle whose
        # manifest and file sizes passed, so TenSEAL never loads in a process that has not limited itself.
        import tenseal as ts

        context = _load_public_context(ts, directory, manifest)
        scale = 2.0 ** manifest["global_scale_bits"]
        _check_context_parameters(context, manifest, scale, checked)
        errors = _check_ciphertexts(ts, context, directory, manifest, scale, checked)
    except _BundleRefused as refused:
        return {"ok": False, "errors": refused.errors, "checked": checked}
    return {"ok": not errors, "errors": errors, "checked": checked}


def _check_ciphertext(ts: Any, context: Any, path: Path, manifest: dict, levels: int, scale: float) -> str | None:
    try:
        vector = ts.ckks_vector_from(context, path.read_bytes())
    except Exception as exc:  # noqa: BLE001 - a parse failure is a bad file, reported by name
        return f"not a CKKS ciphertext for this context (truncated or corrupt): {type(exc).__name__}."
    if vector.size() != manifest["slots"]:
        return f"packs {vector.size()} values; every ciphertext must fill all {manifest['slots']} slots."
    parts = vector.ciphertext()
    if len(parts) != 1:
        return f"holds {len(parts)} ciphertexts; expected one."
    ct = parts[0]
    if ct.poly_modulus_degree() != manifest["poly_modulus_degree"] or ct.coeff_modulus_size() != levels:
        return "was not made with the manifest's parameters (or not at the top level of the modulus chain)."
    if ct.size() != 2 or ct.is_transparent():
        return "is not a fresh encryption (wrong size or transparent)."
    if ct.scale != scale:
        return f"has scale 2^{math.log2(ct.scale) if ct.scale > 0 else 'invalid'}; expected 2^{manifest['global_scale_bits']}."
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m marketplace.he.checker", description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--memory-bytes", type=int, default=3 * 1024**3)
    parser.add_argument("--cpu-seconds", type=int, default=120)
    args = parser.parse_args(argv)
    limit_resources(args.memory_bytes, args.cpu_seconds)
    try:
        result = check_bundle(args.directory)
    except MemoryError:
        result = {"ok": False, "errors": ["The bundle needs more memory to read than the checker allows."]}
    except ImportError as exc:
        # Under the address-space limit a failed import is nearly always a failed allocation; say both.
        result = {
            "ok": False,
            "errors": [
                f"The checker could not load TenSEAL within its memory limit of {args.memory_bytes // 2**20} MiB "
                f"({type(exc).__name__}); the server's CLOAKROOM_BUNDLE_CHECK_MEMORY_BYTES may be too low."
            ],
        }
    except Exception as exc:  # noqa: BLE001 - report, in one line, without the bundle's bytes
        result = {"ok": False, "errors": [f"The bundle could not be read: {type(exc).__name__}."]}
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
