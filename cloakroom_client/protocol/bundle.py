"""The HE bundle format (version 1), defined once for the owner's client and the server.

A bundle is a folder: ``manifest.json`` (this module's :func:`validate_manifest` says what it may hold),
``context.bin`` (a public TenSEAL CKKS context) and one file of ciphertexts per encoded column and chunk,
named by :func:`column_file_name`. The owner's ``cloakroom he encrypt`` writes it and the server checks
it, both with these names and limits, so the two can never disagree on the format. Pure Python: no
Django, no TenSEAL.
"""

from __future__ import annotations

import math
import re
from typing import Any

# The job classes a bundle may allow, in their canonical order.
JOB_CLASSES = ("sum", "product")


def canonical_job_classes(job_classes: Any) -> tuple[str, ...] | None:
    """``job_classes`` in canonical order, or None when it names a class the format does not know."""
    if not isinstance(job_classes, (list, tuple)) or not set(job_classes) <= set(JOB_CLASSES):
        return None
    return tuple(c for c in JOB_CLASSES if c in job_classes)


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
PARAMETERS: dict[tuple[str, ...], dict[str, Any]] = {
    ("sum",): {"poly_modulus_degree": 4096, "coeff_mod_bit_sizes": [40, 20, 40], "global_scale_bits": 20},
    ("sum", "product"): {
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
        or canonical_job_classes(job_classes) not in PARAMETERS
    ):
        fail("job_classes", 'Must be ["sum"] or ["sum", "product"].')
    else:
        parameters = PARAMETERS[canonical_job_classes(job_classes)]
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
        "job_classes": list(canonical_job_classes(job_classes)),
        "slots": slots,
        "rows": rows,
        "context": context,
        "columns": columns_out,
    }


def manifest_files(manifest: dict) -> list[dict]:
    """Every file a (validated) manifest names, the context first."""
    return [manifest["context"], *(f for c in manifest["columns"] for f in c["files"])]
