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
from dataclasses import dataclass
from typing import Any, TypeGuard

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


Problems = dict[str, list[str]]


def _fail(problems: Problems, path: str, reason: str) -> None:
    problems.setdefault(path, []).append(reason)


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> TypeGuard[int | float]:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def _is_label(value: Any, max_length: int) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value.strip()) and len(value) <= max_length


@dataclass(frozen=True)
class _Chunking:
    """How the declared rows fill ciphertexts: ``chunks`` files of ``slots`` rows for every column."""

    rows: int
    slots: int
    chunks: int


def _file_entry(entry: Any, expected_name: str, path: str, problems: Problems) -> dict | None:
    if not isinstance(entry, dict):
        _fail(problems, path, "Must be an object with file, bytes and sha256.")
        return None
    ok = True
    if entry.get("file") != expected_name:
        _fail(problems, f"{path}.file", f"Must be {expected_name!r} (the format names every file).")
        ok = False
    size = entry.get("bytes")
    if not _is_int(size) or size <= 0:
        _fail(problems, f"{path}.bytes", "Must be a whole number of bytes greater than 0.")
        ok = False
    digest = entry.get("sha256")
    if not isinstance(digest, str) or not _HEX64.match(digest):
        _fail(problems, f"{path}.sha256", "Must be 64 lowercase hexadecimal characters.")
        ok = False
    return {"file": expected_name, "bytes": size, "sha256": digest} if ok else None


def _check_header(manifest: dict, problems: Problems) -> None:
    if manifest.get("format") != FORMAT:
        _fail(problems, "format", f"Must be {FORMAT!r}.")
    if manifest.get("version") != VERSION or not _is_int(manifest.get("version")):
        _fail(problems, "version", f"Only version {VERSION} is supported.")
    bundle_id = manifest.get("bundle_id")
    if not isinstance(bundle_id, str) or not _HEX32.match(bundle_id):
        _fail(problems, "bundle_id", "Must be a UUID4 in 32 lowercase hexadecimal characters.")
    if manifest.get("scheme") != "ckks":
        _fail(problems, "scheme", "Only the CKKS scheme is accepted.")


def _check_parameters(manifest: dict, problems: Problems) -> tuple[str, ...] | None:
    """The canonical job classes, once they and the CKKS parameters match one of :data:`PARAMETERS`."""
    job_classes = manifest.get("job_classes")
    canonical = None
    if (
        isinstance(job_classes, list)
        and all(isinstance(j, str) for j in job_classes)
        and len(set(job_classes)) == len(job_classes)
    ):
        canonical = canonical_job_classes(job_classes)
    if canonical is None or canonical not in PARAMETERS:
        _fail(problems, "job_classes", 'Must be ["sum"] or ["sum", "product"].')
        return None
    for key, wanted in PARAMETERS[canonical].items():
        if manifest.get(key) != wanted or isinstance(manifest.get(key), bool):
            _fail(
                problems,
                key,
                f"Must be {wanted} for job classes {sorted(canonical)}; the allowed parameter sets are "
                "N=4096 [40, 20, 40] scale 2^20 (sum) and N=8192 [60, 40, 40, 60] scale 2^40 (sum, product).",
            )
    return canonical


def _check_chunking(manifest: dict, problems: Problems) -> _Chunking | None:
    """The rows and slots, and so the number of ciphertext files each column must have."""
    slots = manifest.get("slots")
    degree = manifest.get("poly_modulus_degree")
    if not _is_int(slots) or not _is_int(degree) or slots != degree // 2:
        _fail(problems, "slots", "Must be half of poly_modulus_degree.")
        slots = None
    rows = manifest.get("rows")
    if not _is_int(rows) or rows <= 0:
        _fail(problems, "rows", "Must be a whole number greater than 0.")
        return None
    if not slots:
        return None
    chunks = math.ceil(rows / slots)
    if chunks > MAX_CHUNKS:
        _fail(problems, "rows", f"Too many rows: a column may have at most {MAX_CHUNKS} ciphertext files.")
        return None
    return _Chunking(rows, slots, chunks)


def _check_names(column: dict, path: str, seen: set[str], problems: Problems) -> tuple[str | None, str | None]:
    """The column's name and source, each None when it is not a usable label."""
    name, source = column.get("name"), column.get("source")
    if not _is_label(name, MAX_NAME_LENGTH):
        _fail(problems, f"{path}.name", f"Must be a non-blank string of at most {MAX_NAME_LENGTH} characters.")
        name = None
    elif name in seen:
        _fail(problems, f"{path}.name", f"Repeats the column name {name!r}.")
    else:
        seen.add(name)
    if not _is_label(source, MAX_NAME_LENGTH):
        _fail(problems, f"{path}.source", f"Must be a non-blank string of at most {MAX_NAME_LENGTH} characters.")
        source = None
    return name, source


def _check_own_source(kind: str, name: str | None, source: str | None, path: str, problems: Problems) -> None:
    """A numeric or boolean column is its own source (only an indicator is one category of another)."""
    if name is not None and source is not None and name != source:
        _fail(problems, f"{path}.source", f"A {kind} column's source is its own name.")


def _check_numeric(column: dict, name: str | None, source: str | None, path: str, problems: Problems) -> None:
    lower, upper = column.get("lower"), column.get("upper")
    if not _is_number(lower) or not _is_number(upper):
        _fail(problems, f"{path}.lower", "A numeric column needs declared, finite lower and upper bounds.")
    elif lower >= upper:
        _fail(problems, f"{path}.upper", "Must be greater than lower.")
    _check_own_source("numeric", name, source, path, problems)


def _check_unit_bounds(column: dict, kind: str, path: str, problems: Problems) -> None:
    """An indicator or boolean column holds 0 or 1, so its bounds are exactly 0 and 1."""
    lower, upper = column.get("lower"), column.get("upper")
    if lower != 0 or upper != 1 or not _is_number(lower) or not _is_number(upper):
        _fail(problems, f"{path}.lower", f"An {kind} column has lower 0 and upper 1.")


def _check_category(column: dict, name: str | None, source: str | None, path: str, problems: Problems) -> Any:
    """The indicator's category (returned as declared, checked or not)."""
    category = column.get("category")
    if not _is_label(category, MAX_CATEGORY_LENGTH):
        _fail(problems, f"{path}.category", "An indicator column names its category.")
    elif name is not None and source is not None and name != f"{source}={category}":
        _fail(problems, f"{path}.name", f"Must be {source}={category} (source=category).")
    return category


def _check_files(column: dict, index: int, path: str, chunking: _Chunking | None, problems: Problems) -> list[dict]:
    """The column's ciphertext files; their count is only checked once the rows and slots are valid."""
    files = column.get("files")
    if not isinstance(files, list):
        _fail(problems, f"{path}.files", "Must be a list of ciphertext files.")
        return []
    if chunking is not None and len(files) != chunking.chunks:
        _fail(
            problems,
            f"{path}.files",
            f"Has {len(files)} files; {chunking.rows} rows at {chunking.slots} slots per ciphertext "
            f"need {chunking.chunks}.",
        )
        return []
    checked = (
        _file_entry(entry, column_file_name(index, j), f"{path}.files.{j}", problems) for j, entry in enumerate(files)
    )
    return [entry for entry in checked if entry is not None]


def _check_column(
    column: Any, index: int, chunking: _Chunking | None, seen: set[str], problems: Problems
) -> dict | None:
    path = f"columns.{index}"
    if not isinstance(column, dict):
        _fail(problems, path, "Must be an object.")
        return None
    name, source = _check_names(column, path, seen, problems)
    kind = column.get("kind")
    if kind not in COLUMN_KINDS:
        _fail(problems, f"{path}.kind", f"Must be one of {', '.join(COLUMN_KINDS)}.")
    category = None
    if kind == "numeric":
        _check_numeric(column, name, source, path, problems)
    elif kind in ("indicator", "boolean"):
        _check_unit_bounds(column, kind, path, problems)
        if kind == "indicator":
            category = _check_category(column, name, source, path, problems)
        else:
            _check_own_source(kind, name, source, path, problems)
    out = {
        "name": name,
        "source": source,
        "kind": kind,
        "lower": column.get("lower"),
        "upper": column.get("upper"),
        "files": _check_files(column, index, path, chunking, problems),
    }
    if kind == "indicator":
        out["category"] = category
    return out


def _check_columns(manifest: dict, chunking: _Chunking | None, problems: Problems) -> list[dict]:
    columns = manifest.get("columns")
    if not isinstance(columns, list) or not columns:
        _fail(problems, "columns", "Must be a non-empty list.")
        return []
    if len(columns) > MAX_COLUMNS:
        _fail(problems, "columns", f"At most {MAX_COLUMNS} columns.")
        return []
    seen: set[str] = set()
    checked = (_check_column(column, i, chunking, seen, problems) for i, column in enumerate(columns))
    return [column for column in checked if column is not None]


def _check_sizes(
    files: list[dict], max_file_bytes: int | None, max_total_bytes: int | None, problems: Problems
) -> None:
    """The declared sizes against the limits: the first file over the per-file limit, then the total."""
    if max_file_bytes is not None:
        too_big = next((entry for entry in files if entry["bytes"] > max_file_bytes), None)
        if too_big is not None:
            _fail(
                problems,
                "bytes",
                f"{too_big['file']} declares {too_big['bytes']} bytes; the limit is {max_file_bytes}.",
            )
    total = sum(entry["bytes"] for entry in files)
    if max_total_bytes is not None and total > max_total_bytes:
        _fail(problems, "bytes", f"The bundle declares {total} bytes in all; the limit is {max_total_bytes}.")


def validate_manifest(manifest: Any, *, max_file_bytes: int | None = None, max_total_bytes: int | None = None) -> dict:
    """Check a manifest against format v1 and return it normalised (only the keys the format defines).

    Raises :class:`ManifestError` naming every problem found, part by part in the order of the format
    (header, parameters, rows, context, columns). Size limits, when given, are checked on the bytes the
    manifest declares, so an oversized bundle is refused before a byte of it is sent; they are checked
    only once everything else is valid, since only then are the declared sizes known to be numbers.
    """
    if not isinstance(manifest, dict):
        raise ManifestError({"manifest": ["Must be a JSON object."]})
    problems: Problems = {}
    _check_header(manifest, problems)
    job_classes = _check_parameters(manifest, problems)
    chunking = _check_chunking(manifest, problems)
    context = _file_entry(manifest.get("context"), CONTEXT_FILE, "context", problems)
    columns = _check_columns(manifest, chunking, problems)
    if problems:
        raise ManifestError(problems)
    # Each part returns None only after reporting a problem, which the type checker cannot see.
    assert job_classes is not None and chunking is not None and context is not None

    _check_sizes([context, *(f for c in columns for f in c["files"])], max_file_bytes, max_total_bytes, problems)
    if problems:
        raise ManifestError(problems)

    parameters = PARAMETERS[job_classes]
    return {
        "format": FORMAT,
        "version": VERSION,
        "bundle_id": manifest["bundle_id"],
        "scheme": "ckks",
        "poly_modulus_degree": parameters["poly_modulus_degree"],
        "coeff_mod_bit_sizes": list(parameters["coeff_mod_bit_sizes"]),
        "global_scale_bits": parameters["global_scale_bits"],
        "job_classes": list(job_classes),
        "slots": chunking.slots,
        "rows": chunking.rows,
        "context": context,
        "columns": columns,
    }


def manifest_files(manifest: dict) -> list[dict]:
    """Every file a (validated) manifest names, the context first."""
    return [manifest["context"], *(f for c in manifest["columns"] for f in c["files"])]
