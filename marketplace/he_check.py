"""The HE bundle checker: manifest rules, and a child process that reads the untrusted TenSEAL bytes.

Two parts live here on purpose:

- :func:`validate_manifest` is pure Python (no Django, no TenSEAL). The web process uses it to refuse a
  bad manifest when the dataset is created, and the child uses it again before it reads any file.
- ``python -m marketplace.he_check <dir>`` is the child. It is the only code on the server that
  deserialises an owner's TenSEAL context and ciphertexts. It limits its own address space and CPU time
  with ``resource.setrlimit`` before it imports TenSEAL, so a malicious or broken bundle can at worst kill
  this child (the parent sees a signal or a timeout), never the web or worker process. The parent starts it
  with ``subprocess.run`` (never a fork of a process that holds a TenSEAL context, which deadlocks).

The child prints exactly one JSON line on stdout: ``{"ok": true|false, "errors": [...], "checked": {...}}``.
Error messages name the file and the reason; they never contain bytes from the bundle, so nothing secret
can leak through them even when an owner uploads a context that carries a secret key.

The format itself is the shared contract in the owner CLI's bundle documentation (format v1).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

FORMAT = "cloakroom-he-bundle"
VERSION = 1
CONTEXT_FILE = "context.bin"
MANIFEST_FILE = "manifest.json"
COLUMN_KINDS = ("numeric", "indicator", "boolean")
MAX_COLUMNS = 1000  # column indexes have three digits in file names
MAX_CHUNKS = 10000  # chunk indexes have four digits in file names
MAX_NAME_LENGTH = 100
MAX_CATEGORY_LENGTH = 200
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MAX_ERRORS = 20

# The only parameter sets the server accepts (128-bit security), keyed by the job classes they serve.
# Sums need a shallow modulus chain; one multiplication needs one more level.
ALLOWED_PARAMETERS: dict[tuple[str, ...], dict[str, Any]] = {
    ("sum",): {"poly_modulus_degree": 4096, "coeff_mod_bit_sizes": [40, 20, 40], "global_scale_bits": 20},
    ("product", "sum"): {
        "poly_modulus_degree": 8192,
        "coeff_mod_bit_sizes": [60, 40, 40, 60],
        "global_scale_bits": 40,
    },
}

_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class ManifestError(ValueError):
    """The manifest breaks the format; ``problems`` maps a dotted field path to its reasons."""

    def __init__(self, problems: dict[str, list[str]]):
        super().__init__("; ".join(f"{k}: {v[0]}" for k, v in problems.items()))
        self.problems = problems


def column_file_name(column_index: int, chunk_index: int) -> str:
    return f"c{column_index:03d}.{chunk_index:04d}.ct"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def _file_entry(entry: Any, expected_name: str, path: str, problems: dict[str, list[str]]) -> dict | None:
    if not isinstance(entry, dict):
        problems.setdefault(path, []).append("Must be an object with file, bytes and sha256.")
        return None
    ok = True
    if entry.get("file") != expected_name:
        problems.setdefault(f"{path}.file", []).append(f"Must be {expected_name!r} (the format names every file).")
        ok = False
    size = entry.get("bytes")
    if not _is_int(size) or size <= 0:
        problems.setdefault(f"{path}.bytes", []).append("Must be a whole number of bytes greater than 0.")
        ok = False
    digest = entry.get("sha256")
    if not isinstance(digest, str) or not _HEX64.match(digest):
        problems.setdefault(f"{path}.sha256", []).append("Must be 64 lowercase hexadecimal characters.")
        ok = False
    return {"file": expected_name, "bytes": size, "sha256": digest} if ok else None


def validate_manifest(manifest: Any, *, max_file_bytes: int | None = None, max_total_bytes: int | None = None) -> dict:
    """Check a manifest against format v1 and return it normalised (only the keys the format defines).

    Raises :class:`ManifestError` naming every problem found. Size limits, when given, are checked on
    the bytes the manifest declares, so an oversized bundle is refused before a byte of it is sent.
    """
    problems: dict[str, list[str]] = {}

    def fail(path: str, reason: str) -> None:
        problems.setdefault(path, []).append(reason)

    if not isinstance(manifest, dict):
        raise ManifestError({"manifest": ["Must be a JSON object."]})
    if manifest.get("format") != FORMAT:
        fail("format", f"Must be {FORMAT!r}.")
    if manifest.get("version") != VERSION or not _is_int(manifest.get("version")):
        fail("version", f"Only version {VERSION} is supported.")
    bundle_id = manifest.get("bundle_id")
    if not isinstance(bundle_id, str) or not _HEX32.match(bundle_id):
        fail("bundle_id", "Must be a UUID4 in 32 lowercase hexadecimal characters.")
    if manifest.get("scheme") != "ckks":
        fail("scheme", "Only the CKKS scheme is accepted.")

    job_classes = manifest.get("job_classes")
    parameters = None
    if (
        not isinstance(job_classes, list)
        or not all(isinstance(j, str) for j in job_classes)
        or len(set(job_classes)) != len(job_classes)
        or tuple(sorted(job_classes)) not in ALLOWED_PARAMETERS
    ):
        fail("job_classes", 'Must be ["sum"] or ["sum", "product"].')
    else:
        parameters = ALLOWED_PARAMETERS[tuple(sorted(job_classes))]
        for key, wanted in parameters.items():
            if manifest.get(key) != wanted or isinstance(manifest.get(key), bool):
                fail(
                    key,
                    f"Must be {wanted} for job classes {sorted(job_classes)}; the allowed parameter sets are "
                    "N=4096 [40, 20, 40] scale 2^20 (sum) and N=8192 [60, 40, 40, 60] scale 2^40 (sum, product).",
                )

    slots = manifest.get("slots")
    degree = manifest.get("poly_modulus_degree")
    if not _is_int(slots) or not _is_int(degree) or slots != degree // 2:
        fail("slots", "Must be half of poly_modulus_degree.")
        slots = None
    rows = manifest.get("rows")
    if not _is_int(rows) or rows <= 0:
        fail("rows", "Must be a whole number greater than 0.")
        rows = None
    chunks = math.ceil(rows / slots) if rows and slots else None
    if chunks is not None and chunks > MAX_CHUNKS:
        fail("rows", f"Too many rows: a column may have at most {MAX_CHUNKS} ciphertext files.")
        chunks = None

    context = _file_entry(manifest.get("context"), CONTEXT_FILE, "context", problems)

    columns_out: list[dict] = []
    columns = manifest.get("columns")
    if not isinstance(columns, list) or not columns:
        fail("columns", "Must be a non-empty list.")
        columns = []
    elif len(columns) > MAX_COLUMNS:
        fail("columns", f"At most {MAX_COLUMNS} columns.")
        columns = []
    seen: set[str] = set()
    for i, column in enumerate(columns):
        path = f"columns.{i}"
        if not isinstance(column, dict):
            fail(path, "Must be an object.")
            continue
        name, source, kind = column.get("name"), column.get("source"), column.get("kind")
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH:
            fail(f"{path}.name", f"Must be a non-blank string of at most {MAX_NAME_LENGTH} characters.")
            name = None
        elif name in seen:
            fail(f"{path}.name", f"Repeats the column name {name!r}.")
        else:
            seen.add(name)
        if not isinstance(source, str) or not source.strip() or len(source) > MAX_NAME_LENGTH:
            fail(f"{path}.source", f"Must be a non-blank string of at most {MAX_NAME_LENGTH} characters.")
            source = None
        if kind not in COLUMN_KINDS:
            fail(f"{path}.kind", f"Must be one of {', '.join(COLUMN_KINDS)}.")
        lower, upper = column.get("lower"), column.get("upper")
        category = None
        if kind == "numeric":
            if not _is_number(lower) or not _is_number(upper):
                fail(f"{path}.lower", "A numeric column needs declared, finite lower and upper bounds.")
            elif lower >= upper:
                fail(f"{path}.upper", "Must be greater than lower.")
            if name is not None and source is not None and name != source:
                fail(f"{path}.source", "A numeric column's source is its own name.")
        elif kind in ("indicator", "boolean"):
            if lower != 0 or upper != 1 or not _is_number(lower) or not _is_number(upper):
                fail(f"{path}.lower", f"An {kind} column has lower 0 and upper 1.")
            if kind == "indicator":
                category = column.get("category")
                if not isinstance(category, str) or not category.strip() or len(category) > MAX_CATEGORY_LENGTH:
                    fail(f"{path}.category", "An indicator column names its category.")
                elif name is not None and source is not None and name != f"{source}={category}":
                    fail(f"{path}.name", f"Must be {source}={category} (source=category).")
            elif name is not None and source is not None and name != source:
                fail(f"{path}.source", "A boolean column's source is its own name.")
        files = column.get("files")
        files_out: list[dict] = []
        if not isinstance(files, list):
            fail(f"{path}.files", "Must be a list of ciphertext files.")
        elif chunks is not None and len(files) != chunks:
            fail(
                f"{path}.files",
                f"Has {len(files)} files; {rows} rows at {slots} slots per ciphertext need {chunks}.",
            )
        else:
            for j, entry in enumerate(files):
                checked = _file_entry(entry, column_file_name(i, j), f"{path}.files.{j}", problems)
                if checked is not None:
                    files_out.append(checked)
        out = {"name": name, "source": source, "kind": kind, "lower": lower, "upper": upper, "files": files_out}
        if kind == "indicator":
            out["category"] = category
        columns_out.append(out)

    if problems:
        raise ManifestError(problems)

    all_files = [context, *(f for c in columns_out for f in c["files"])]
    if max_file_bytes is not None:
        for entry in all_files:
            if entry["bytes"] > max_file_bytes:
                fail("bytes", f"{entry['file']} declares {entry['bytes']} bytes; the limit is {max_file_bytes}.")
                break
    total = sum(entry["bytes"] for entry in all_files)
    if max_total_bytes is not None and total > max_total_bytes:
        fail("bytes", f"The bundle declares {total} bytes in all; the limit is {max_total_bytes}.")
    if problems:
        raise ManifestError(problems)

    return {
        "format": FORMAT,
        "version": VERSION,
        "bundle_id": bundle_id,
        "scheme": "ckks",
        "poly_modulus_degree": degree,
        "coeff_mod_bit_sizes": list(parameters["coeff_mod_bit_sizes"]),
        "global_scale_bits": parameters["global_scale_bits"],
        "job_classes": sorted(job_classes, key=["sum", "product"].index),
        "slots": slots,
        "rows": rows,
        "context": context,
        "columns": columns_out,
    }


def manifest_files(manifest: dict) -> list[dict]:
    """Every file a (validated) manifest names, the context first."""
    return [manifest["context"], *(f for c in manifest["columns"] for f in c["files"])]


# -- the child process --------------------------------------------------------------------------------


def _limit_resources(memory_bytes: int, cpu_seconds: int) -> None:
    """Cap this process's address space and CPU time before any untrusted byte is parsed."""
    import resource

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


def check_bundle(directory: Path) -> dict:
    """Check the bundle in ``directory``; return ``{"ok", "errors", "checked"}``. Imports TenSEAL lazily."""
    errors: list[str] = []
    checked: dict[str, Any] = {"ciphertexts": 0}
    manifest_path = directory / MANIFEST_FILE
    try:
        if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
            return {"ok": False, "errors": ["manifest.json is too large."], "checked": checked}
        manifest = validate_manifest(json.loads(manifest_path.read_text("utf-8")))
    except ManifestError as exc:
        return {"ok": False, "errors": [f"manifest.json: {exc}"], "checked": checked}
    except (OSError, ValueError) as exc:
        return {"ok": False, "errors": [f"manifest.json cannot be read: {type(exc).__name__}."], "checked": checked}

    # Sizes (and, for the context, the hash) are checked again here: the files on disk are what is read.
    for entry in manifest_files(manifest):
        path = directory / entry["file"]
        if not path.is_file():
            errors.append(f"{entry['file']} is missing.")
        elif path.stat().st_size != entry["bytes"]:
            errors.append(f"{entry['file']} has {path.stat().st_size} bytes; the manifest declares {entry['bytes']}.")
    if errors:
        return {"ok": False, "errors": errors[:MAX_ERRORS], "checked": checked}

    import tenseal as ts

    context_bytes = (directory / CONTEXT_FILE).read_bytes()
    if hashlib.sha256(context_bytes).hexdigest() != manifest["context"]["sha256"]:
        return {"ok": False, "errors": ["context.bin does not match its sha256 in the manifest."], "checked": checked}
    try:
        context = ts.context_from(context_bytes)
    except Exception as exc:  # noqa: BLE001 - any failure to parse is the owner's bundle, not our bug
        return {
            "ok": False,
            "errors": [f"context.bin is not a TenSEAL context (truncated or corrupt): {type(exc).__name__}."],
            "checked": checked,
        }
    del context_bytes

    if context.is_private() or context.has_secret_key():
        # Stop here: nothing more is read from a bundle that broke the one rule that protects the owner.
        return {
            "ok": False,
            "errors": [
                "context.bin carries a secret key. Upload only the public context (make_context_public()); "
                "the secret key must stay on your machine. Treat this key as exposed and encrypt again with a new one."
            ],
            "checked": checked,
        }
    seal = context.seal_context().data
    parms = seal.key_context_data().parms()
    scheme = parms.scheme()
    # The SEAL parameters report the scheme as TenSEAL's own enum; its name is the stable part.
    if getattr(scheme, "name", None) != "CKKS":
        return {
            "ok": False,
            "errors": [f"context.bin uses the {getattr(scheme, 'name', scheme)} scheme; only CKKS is accepted."],
            "checked": checked,
        }
    degree = parms.poly_modulus_degree()
    if degree != manifest["poly_modulus_degree"]:
        errors.append(
            f"context.bin has poly modulus degree {degree}; the manifest says {manifest['poly_modulus_degree']}."
        )
    bit_sizes = _coeff_bit_sizes(seal)
    if bit_sizes != manifest["coeff_mod_bit_sizes"]:
        errors.append(
            f"context.bin has coeff modulus bit sizes {bit_sizes}; the manifest says {manifest['coeff_mod_bit_sizes']}."
        )
    scale = 2.0 ** manifest["global_scale_bits"]
    try:
        context_scale = context.global_scale
    except Exception:  # noqa: BLE001 - TenSEAL raises when no scale was set
        context_scale = None
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
        return {"ok": False, "errors": errors[:MAX_ERRORS], "checked": checked}

    # Ciphertexts are read one at a time so that memory stays flat whatever the bundle's size.
    levels = len(manifest["coeff_mod_bit_sizes"]) - 1
    for column in manifest["columns"]:
        for entry in column["files"]:
            problem = _check_ciphertext(ts, context, directory / entry["file"], manifest, levels, scale)
            if problem:
                errors.append(f"{entry['file']} (column {column['name']!r}): {problem}")
                if len(errors) >= MAX_ERRORS:
                    return {"ok": False, "errors": errors, "checked": checked}
            else:
                checked["ciphertexts"] += 1
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
    import argparse

    parser = argparse.ArgumentParser(prog="python -m marketplace.he_check", description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--memory-bytes", type=int, default=3 * 1024**3)
    parser.add_argument("--cpu-seconds", type=int, default=120)
    args = parser.parse_args(argv)
    _limit_resources(args.memory_bytes, args.cpu_seconds)
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
