"""Homomorphic-encryption mode on the owner's machine: encrypt a CSV into a bundle, keep the key.

The owner runs this (through ``cloakroom he encrypt``) before anything leaves their machine. A CSV
is checked against the declared schema, numeric columns are clipped to their declared bounds,
categorical columns become one 0/1 indicator column per declared category, and every column is
packed into CKKS vectors (TenSEAL) that fill all the slots of a ciphertext, the last one padded with
zeros. The bundle directory then holds (see the bundle format v1):

* ``manifest.json``: parameters, the true row count, and every file with its size and SHA-256;
* ``context.bin``: the PUBLIC context, with no secret key and no Galois keys (the server only adds
  ciphertexts slot by slot; the key holder sums the slots after decryption), and relinearisation
  keys only when the owner allows products;
* ``c<column>.<chunk>.ct``: one serialized ``CKKSVector`` each.

The full (secret) context goes to the local keystore, ``~/.cloakroom/keys/<bundle_id>.secret``
(folder 0700, file 0600; ``CLOAKROOM_KEYSTORE`` moves the folder), and never into the bundle.

This module knows nothing of the server: it checks the CSV with its own small copy of the
server's rules (missing columns, unparseable numbers, undeclared categories, missing values).

A process that holds a TenSEAL context must never fork (it deadlocks), so nothing here uses
``multiprocessing`` with fork.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tenseal as ts

from cloakroom_client.protocol.bundle import (
    CONTEXT_FILE,
    FORMAT,
    JOB_CLASSES,
    MAX_CHUNKS,
    MAX_COLUMNS,
    PARAMETERS,
    VERSION,
    column_file_name,
)
from cloakroom_client.protocol.bundle import MANIFEST_FILE as MANIFEST

KEYSTORE_ENV = "CLOAKROOM_KEYSTORE"
DEFAULT_KEYSTORE = Path.home() / ".cloakroom" / "keys"
MAX_ROWS_LISTED = 5
TRUE_WORDS = {"true", "t", "yes", "y", "1"}
FALSE_WORDS = {"false", "f", "no", "n", "0"}
_BUNDLE_ID = re.compile(r"^[0-9a-f]{32}$")


class HEError(Exception):
    """Something the owner must fix. ``problems`` are sentences a person can act on."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class SchemaMismatch(HEError):
    """The CSV does not fit the declared schema (or the schema itself is malformed)."""


# -- parameters and contexts ---------------------------------------------------------------------


def normalize_job_classes(job_classes: Iterable[str] | str) -> tuple[str, ...]:
    """The canonical tuple for a set of job classes: "sum" is always allowed, order is fixed."""
    if isinstance(job_classes, str):
        job_classes = [c for c in job_classes.split(",")]
    wanted = {str(c).strip().lower() for c in job_classes if str(c).strip()}
    unknown = sorted(wanted - set(JOB_CLASSES))
    if unknown:
        raise HEError(f"unknown job class {', '.join(map(repr, unknown))}; choose from {', '.join(JOB_CLASSES)}")
    wanted.add("sum")
    return tuple(c for c in JOB_CLASSES if c in wanted)


def choose_parameters(job_classes: Iterable[str] | str = ("sum",)) -> dict[str, Any]:
    """CKKS parameters for the job classes the owner allows (one of the two sets the server accepts).

    Returns ``job_classes`` (canonical list), ``poly_modulus_degree``, ``coeff_mod_bit_sizes``,
    ``global_scale_bits`` and ``slots`` (values per ciphertext, half the degree).
    """
    classes = normalize_job_classes(job_classes)
    params = PARAMETERS[classes]
    return {
        "job_classes": list(classes),
        "poly_modulus_degree": params["poly_modulus_degree"],
        "coeff_mod_bit_sizes": list(params["coeff_mod_bit_sizes"]),
        "global_scale_bits": params["global_scale_bits"],
        "slots": params["poly_modulus_degree"] // 2,
    }


def build_context(job_classes: Iterable[str] | str = ("sum",)) -> ts.Context:
    """A new SECRET CKKS context for the job classes. Galois keys are never generated: the server
    needs no rotations, and at N=8192 they would make the public context ~35 MB instead of ~1.9 MB."""
    params = choose_parameters(job_classes)
    ctx = ts.context(
        ts.SCHEME_TYPE.CKKS,
        poly_modulus_degree=params["poly_modulus_degree"],
        coeff_mod_bit_sizes=params["coeff_mod_bit_sizes"],
    )
    ctx.global_scale = 2 ** params["global_scale_bits"]
    if "product" in params["job_classes"]:
        ctx.generate_relin_keys()
    return ctx


def public_context_bytes(ctx: ts.Context, job_classes: Iterable[str] | str = ("sum",)) -> bytes:
    """The context the server may hold: public key, relinearisation keys only for products, no
    secret key, no Galois keys."""
    classes = normalize_job_classes(job_classes)
    public = ctx.copy()
    public.make_context_public()
    return public.serialize(
        save_public_key=True, save_secret_key=False, save_galois_keys=False, save_relin_keys="product" in classes
    )


def secret_context_bytes(ctx: ts.Context, job_classes: Iterable[str] | str = ("sum",)) -> bytes:
    """The full context, secret key included, for the owner's keystore only."""
    classes = normalize_job_classes(job_classes)
    return ctx.serialize(
        save_public_key=True, save_secret_key=True, save_galois_keys=False, save_relin_keys="product" in classes
    )


# -- keystore ------------------------------------------------------------------------------------


def keystore_dir(keystore: str | os.PathLike | None = None) -> Path:
    """The keystore folder: the argument, else ``$CLOAKROOM_KEYSTORE``, else ``~/.cloakroom/keys``."""
    if keystore:
        return Path(keystore).expanduser()
    env = os.environ.get(KEYSTORE_ENV)
    return Path(env).expanduser() if env else DEFAULT_KEYSTORE


def _check_bundle_id(bundle_id: str) -> str:
    # The id becomes a file name, so anything but 32 hex digits (e.g. "../x") is refused.
    if not isinstance(bundle_id, str) or not _BUNDLE_ID.match(bundle_id):
        raise HEError(f"bundle id {bundle_id!r} is not 32 lowercase hex digits")
    return bundle_id


def secret_key_path(bundle_id: str, keystore: str | os.PathLike | None = None) -> Path:
    return keystore_dir(keystore) / f"{_check_bundle_id(bundle_id)}.secret"


def _write_secret(bundle_id: str, data: bytes, keystore: str | os.PathLike | None) -> Path:
    """Write the secret context readable by the owner alone.

    The folder is created 0700 (and tightened to 0700 if it already exists); the file is created
    with O_EXCL and mode 0600 from the start, so it is never readable by others, not even briefly.
    """
    folder = keystore_dir(keystore)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    path = secret_key_path(bundle_id, keystore)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask cannot loosen it, but a stricter one must not stop us reading it
        with os.fdopen(fd, "wb") as handle:
            fd = -1
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    finally:
        if fd != -1:
            os.close(fd)
    return path


def manifest_copy_path(bundle_id: str, keystore: str | os.PathLike | None = None) -> Path:
    """The owner's own copy of a bundle's manifest, beside its key: what the key agent plans from."""
    return keystore_dir(keystore) / f"{_check_bundle_id(bundle_id)}.manifest.json"


def policy_path(bundle_id: str, keystore: str | os.PathLike | None = None) -> Path:
    """The owner's epsilon cap for a bundle, written when it is published from this machine."""
    return keystore_dir(keystore) / f"{_check_bundle_id(bundle_id)}.policy.json"


def ledger_path(bundle_id: str, keystore: str | os.PathLike | None = None) -> Path:
    """The key holder's append-only record of the epsilon it released for a bundle."""
    return keystore_dir(keystore) / f"{_check_bundle_id(bundle_id)}.ledger.jsonl"


def _write_private(path: Path, text: str) -> None:
    """Write a small keystore file, 0600, atomically (a temporary file renamed over it)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def load_local_manifest(bundle_id: str, keystore: str | os.PathLike | None = None) -> dict:
    """The owner's copy of a bundle's manifest from the keystore. Raises HEError if it is missing."""
    path = manifest_copy_path(bundle_id, keystore)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HEError(
            f"no local manifest for bundle {bundle_id} in {path.parent} (copy the bundle's manifest.json "
            f"there as {path.name})"
        )
    except (OSError, ValueError) as exc:
        raise HEError(f"{path} cannot be read as a manifest ({type(exc).__name__})")
    if not isinstance(manifest, dict) or manifest.get("bundle_id") != bundle_id:
        raise HEError(f"{path} is not the manifest of bundle {bundle_id}")
    return manifest


def write_policy(bundle_id: str, epsilon_cap: Any, keystore: str | os.PathLike | None = None) -> Path:
    """Record the owner's epsilon cap for a bundle in the keystore (what the key agent enforces)."""
    path = policy_path(bundle_id, keystore)
    _write_private(path, json.dumps({"bundle_id": bundle_id, "epsilon_cap": str(epsilon_cap)}) + "\n")
    return path


def load_epsilon_cap(bundle_id: str, keystore: str | os.PathLike | None = None) -> str | None:
    """The owner's epsilon cap for a bundle from the keystore, or None when none was recorded."""
    try:
        policy = json.loads(policy_path(bundle_id, keystore).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    cap = policy.get("epsilon_cap") if isinstance(policy, dict) else None
    return str(cap) if cap is not None else None


def load_secret_context(bundle_id: str, keystore: str | os.PathLike | None = None) -> ts.Context:
    """The secret context of a bundle from the keystore. Raises HEError if it is missing or public."""
    path = secret_key_path(bundle_id, keystore)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise HEError(f"no secret key for bundle {bundle_id} in {path.parent}")
    ctx = ts.context_from(data)
    if not ctx.is_private():
        raise HEError(f"{path} holds no secret key")
    return ctx


# -- decryption (the key holder's side) ------------------------------------------------------------


def data_primes(ctx: ts.Context) -> list[int]:
    """The primes of the ciphertext modulus chain (the special key-switching prime excluded).

    TenSEAL does not expose SEAL's ``Modulus`` objects, but each level reports the low 64 bits of
    its total modulus. The primes are odd, hence invertible modulo 2**64, and each is below 2**64,
    so dividing level k's product by level k-1's modulo 2**64 recovers the k-th prime exactly.
    """
    levels: dict[int, int] = {}
    data = ctx.seal_context().data.first_context_data()
    while data is not None:
        levels[data.chain_index()] = data.total_coeff_modulus()
        try:
            data = data.next_context_data()
        except Exception:  # the last level has no next one; some builds raise instead of returning None
            data = None
    m = 1 << 64
    primes = [levels[0]]
    product = levels[0]
    for index in range(1, len(levels)):
        prime = (levels[index] * pow(product % m, -1, m)) % m
        primes.append(prime)
        product *= prime
        if product % m != levels[index]:  # pragma: no cover - SEAL's chain is always a product of primes
            raise HEError("could not read the modulus chain of this context")
    return primes


def scale_correction(ctx: ts.Context, vector: ts.CKKSVector) -> float:
    """The factor that turns a decrypted multiplied ciphertext into its true value.

    After a multiplication the encoded scale is scale**2 and rescaling divides it by the dropped
    prime q, so the true scale is scale**2 / q; TenSEAL nevertheless records the nominal scale, and
    decoding with it leaves the value multiplied by scale / q (about 1 + 1.3e-7 at N=8192). The
    number of primes a ciphertext has lost tells how many rescales it went through; multiplying by
    prod(dropped q) / scale**k undoes them. A ciphertext that was only added to gets 1.0.
    """
    primes = data_primes(ctx)
    ciphertext = vector.ciphertext()[0]
    dropped = primes[ciphertext.coeff_modulus_size() : len(primes)]
    if not dropped:
        return 1.0
    return math.prod(dropped) / round(ciphertext.scale) ** len(dropped)


def decrypt_vector(secret_context: ts.Context, ciphertext_bytes: bytes, length: int | None = None) -> np.ndarray:
    """Decrypt one serialized CKKSVector (correcting the scale after a multiplication); the first
    ``length`` slots, or all of them."""
    if not secret_context.is_private():
        raise HEError("decryption needs the secret context, not the public one")
    vector = ts.ckks_vector_from(secret_context, ciphertext_bytes)
    values = np.asarray(vector.decrypt(), dtype=float) * scale_correction(secret_context, vector)
    if length is not None:
        if not 0 <= length <= len(values):
            raise HEError(f"length {length} is outside 0..{len(values)} slots")
        values = values[:length]
    return values


def decrypt_aggregate(
    secret_context: ts.Context, ciphertext_bytes: bytes, length: int, *, depth: int, scale_bits: int
) -> float:
    """Decrypt an aggregate the key holder's own plan expects after ``depth`` multiplications, and
    add its first ``length`` slots; an HEError when the ciphertext is not what that plan computes.

    The level (how many primes the ciphertext has lost to rescaling) and the recorded scale are read
    from the ciphertext itself and compared with the plan before decrypting: an aggregate planned as
    a plain sum that went through a multiplication (a slot mask picking one row, say) is refused.
    These are metadata the server chose, so a refusal tells it nothing about the data.
    """
    if not secret_context.is_private():
        raise HEError("could not be decrypted with this key: the context holds no secret key")
    vector = ts.ckks_vector_from(secret_context, ciphertext_bytes)
    ciphertext = vector.ciphertext()[0]
    dropped = len(data_primes(secret_context)) - ciphertext.coeff_modulus_size()
    if dropped != depth:
        raise HEError(f"the ciphertext went through {dropped} multiplication(s); its plan needs {depth}")
    if not (ciphertext.scale > 0 and abs(math.log2(ciphertext.scale) - scale_bits) < 0.5):
        raise HEError(f"the ciphertext's scale is not the bundle's 2^{scale_bits}")
    values = np.asarray(vector.decrypt(), dtype=float) * scale_correction(secret_context, vector)
    if not 0 <= length <= len(values):
        raise HEError(f"length {length} is outside 0..{len(values)} slots")
    return math.fsum(values[:length].tolist())


def decrypt_sum(secret_context: ts.Context, ciphertext_bytes: bytes, length: int) -> float:
    """Decrypt an aggregate ciphertext and add up its first ``length`` slots.

    The server adds ciphertexts slot by slot (it has no Galois keys to rotate), so an aggregate
    over a column arrives as one vector whose slots still need adding; ``length`` is
    ``min(rows, slots)``. Slots past it hold only padding and noise.
    """
    return math.fsum(decrypt_vector(secret_context, ciphertext_bytes, length).tolist())


# -- schema and CSV checks ----------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnDecl:
    name: str
    kind: str  # numeric | categorical | boolean
    lower: float | int | None = None
    upper: float | int | None = None
    categories: tuple[str, ...] = ()


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return value if math.isfinite(value) else None
    try:
        number = float(str(value))
    except ValueError:
        return None
    if not math.isfinite(number):
        return None
    return int(number) if number.is_integer() and "." not in str(value) else number


def parse_schema(schema: Any) -> list[ColumnDecl]:
    """The declared columns, checked as the API checks them. Accepts the list of columns, or a
    dataset metadata object with a ``columns`` list."""
    if isinstance(schema, Mapping) and "columns" in schema:
        schema = schema["columns"]
    if not isinstance(schema, list) or not schema:
        raise SchemaMismatch("the schema must be a non-empty list of columns {name, kind, lower, upper, categories}")
    problems: list[str] = []
    columns: list[ColumnDecl] = []
    seen: set[str] = set()
    for i, item in enumerate(schema):
        if not isinstance(item, Mapping):
            problems.append(f"schema entry {i}: must be an object")
            continue
        name = str(item.get("name") or "").strip()
        kind = item.get("kind")
        label = f"schema column {name!r}" if name else f"schema entry {i}"
        if not name:
            problems.append(f"{label}: a name is required")
            continue
        if name in seen:
            problems.append(f"{label}: declared twice")
            continue
        seen.add(name)
        if kind == "numeric":
            lower, upper = _number(item.get("lower")), _number(item.get("upper"))
            if lower is None or upper is None:
                problems.append(f"{label}: a numeric column needs finite numbers 'lower' and 'upper'")
            elif lower >= upper:
                problems.append(f"{label}: 'upper' must be greater than 'lower'")
            else:
                columns.append(ColumnDecl(name, kind, lower, upper))
        elif kind == "categorical":
            cats = [str(c).strip() for c in (item.get("categories") or [])]
            if not cats:
                problems.append(f"{label}: a categorical column needs its list of categories declared")
            elif len(set(cats)) != len(cats):
                problems.append(f"{label}: categories must be unique")
            elif any(not c for c in cats):
                problems.append(f"{label}: categories may not be blank")
            else:
                columns.append(ColumnDecl(name, kind, categories=tuple(cats)))
        elif kind == "boolean":
            columns.append(ColumnDecl(name, kind))
        else:
            problems.append(f"{label}: kind must be numeric, categorical or boolean, not {kind!r}")
    if problems:
        raise SchemaMismatch(problems)
    return columns


def _describe(name: str, one: str, many: str, mask: np.ndarray, values: pd.Series) -> str:
    # Row numbers are 1-based data rows (the first line after the header is row 1), as the server says.
    rows = [int(i) + 1 for i in np.flatnonzero(mask)[:MAX_ROWS_LISTED]]
    count = int(mask.sum())
    more = ", …" if count > MAX_ROWS_LISTED else ""
    first = str(values[mask].iloc[0])[:40]
    what = one if count == 1 else many
    return (
        f"column {name!r}: {count} value{'s' if count != 1 else ''} {what} "
        f"(row{'s' if count != 1 else ''} {', '.join(map(str, rows))}{more}; first: {first!r})"
    )


def read_checked_csv(csv_path: str | os.PathLike, columns: list[ColumnDecl]) -> tuple[dict[str, pd.Series], int, dict]:
    """Read the CSV (as text, so the schema decides every type) and check it against the schema.

    Returns the typed declared columns (numeric ones clipped to their bounds), the row count, and
    how many values were clipped per column. Raises SchemaMismatch naming each offending column and
    its first offending rows; undeclared columns are ignored and never encrypted.
    """
    try:
        frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig")
    except FileNotFoundError:
        raise HEError(f"{csv_path}: no such file")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise SchemaMismatch(f"{csv_path}: the CSV could not be parsed: {exc}")
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c.name for c in columns if c.name not in frame.columns]
    if missing:
        found = ", ".join(repr(c) for c in list(frame.columns)[:20]) or "none"
        raise SchemaMismatch(
            f"declared column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} not found "
            f"in the file (columns found: {found})"
        )
    if len(frame) == 0:
        raise SchemaMismatch("the file has a header but no data rows")

    problems: list[str] = []
    typed: dict[str, pd.Series] = {}
    clipped: dict[str, int] = {}
    for column in columns:
        raw = frame[column.name]
        if isinstance(raw, pd.DataFrame):
            problems.append(f"column {column.name!r} appears more than once in the file")
            continue
        text = raw.reset_index(drop=True).astype(str).str.strip()
        empty = text.eq("").to_numpy()
        if empty.any():
            problems.append(_describe(column.name, "is missing", "are missing", empty, text))
            continue
        if column.kind == "numeric":
            values = pd.to_numeric(text, errors="coerce").astype(float)
            bad = ~np.isfinite(values.to_numpy())
            if bad.any():
                problems.append(_describe(column.name, "is not a finite number", "are not finite numbers", bad, text))
                continue
            outside = ((values < column.lower) | (values > column.upper)).to_numpy()
            if outside.any():
                clipped[column.name] = int(outside.sum())
            typed[column.name] = values.clip(lower=column.lower, upper=column.upper)
        elif column.kind == "categorical":
            unknown = ~text.isin(set(column.categories)).to_numpy()
            if unknown.any():
                problems.append(
                    _describe(
                        column.name,
                        "is not among the declared categories",
                        "are not among the declared categories",
                        unknown,
                        text,
                    )
                )
                continue
            typed[column.name] = text
        else:
            lowered = text.str.lower()
            is_true = lowered.isin(TRUE_WORDS).to_numpy()
            bad = ~(is_true | lowered.isin(FALSE_WORDS).to_numpy())
            if bad.any():
                problems.append(
                    _describe(
                        column.name,
                        "is not a boolean (use true/false, yes/no or 1/0)",
                        "are not booleans (use true/false, yes/no or 1/0)",
                        bad,
                        text,
                    )
                )
                continue
            typed[column.name] = pd.Series(is_true, dtype=bool)
    if problems:
        raise SchemaMismatch(problems)
    return typed, len(frame), clipped


def _encoded_columns(columns: list[ColumnDecl], typed: dict[str, pd.Series]) -> Iterator[tuple[dict, np.ndarray]]:
    """Each column the bundle holds, with its float values, one at a time so that at most one
    expanded indicator column is in memory."""
    for column in columns:
        series = typed[column.name]
        if column.kind == "numeric":
            entry = {"name": column.name, "source": column.name, "kind": "numeric"}
            entry.update(lower=column.lower, upper=column.upper)
            yield entry, series.to_numpy(dtype=float)
        elif column.kind == "categorical":
            for category in column.categories:
                entry = {
                    "name": f"{column.name}={category}",
                    "source": column.name,
                    "kind": "indicator",
                    "category": category,
                    "lower": 0,
                    "upper": 1,
                }
                yield entry, series.eq(category).to_numpy(dtype=float)
        else:
            entry = {"name": column.name, "source": column.name, "kind": "boolean", "lower": 0, "upper": 1}
            yield entry, series.to_numpy(dtype=float)


def _encoded_count(columns: list[ColumnDecl]) -> int:
    return sum(len(c.categories) if c.kind == "categorical" else 1 for c in columns)


# -- progress ------------------------------------------------------------------------------------


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


# -- encryption ----------------------------------------------------------------------------------


def _write_new(path: Path, data: bytes) -> dict:
    with open(path, "xb") as handle:
        handle.write(data)
    return {"file": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


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
    columns = parse_schema(schema)
    params = choose_parameters(job_classes)
    slots = params["slots"]
    typed, rows, clipped = read_checked_csv(csv_path, columns)
    n_columns = _encoded_count(columns)
    chunks = math.ceil(rows / slots)
    if n_columns > MAX_COLUMNS:
        raise HEError(f"the schema expands to {n_columns} encrypted columns; at most {MAX_COLUMNS} fit a bundle")
    if chunks > MAX_CHUNKS:
        raise HEError(f"{rows} rows need {chunks} ciphertexts per column; at most {MAX_CHUNKS} fit a bundle")

    out = Path(out_dir)
    created_dir = not out.exists()
    if not created_dir and (not out.is_dir() or any(out.iterdir())):
        raise HEError(f"{out} must be a new or empty directory")
    out.mkdir(parents=True, exist_ok=True)

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
        secret_path = _write_secret(bundle_id, secret_context_bytes(ctx, params["job_classes"]), keystore)

        context_entry = _write_new(out / CONTEXT_FILE, public_context_bytes(ctx, params["job_classes"]))
        written.append(out / CONTEXT_FILE)

        bar = Progress(n_columns * chunks, "encrypting", enabled=progress)
        manifest_columns = []
        block = np.zeros(slots, dtype=float)
        for index, (entry, values) in enumerate(_encoded_columns(columns, typed)):
            files = []
            for chunk in range(chunks):
                part = values[chunk * slots : (chunk + 1) * slots]
                block[: len(part)] = part
                block[len(part) :] = 0.0  # the tail of the last chunk is zero padding
                data = ts.ckks_vector(ctx, block.tolist()).serialize()
                path = out / column_file_name(index, chunk)
                files.append(_write_new(path, data))
                written.append(path)
                del data
                bar.update()
            entry["files"] = files
            manifest_columns.append(entry)
        bar.close()

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
        # The manifest is written last and atomically: a bundle with a manifest is a complete one.
        temporary = out / (MANIFEST + ".tmp")
        written.append(temporary)
        temporary.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, out / MANIFEST)
        written[-1] = out / MANIFEST
        # The owner's own copy, beside the key: the key agent plans every job from it and never from
        # the server's word.
        _write_private(manifest_copy_path(bundle_id, keystore), json.dumps(manifest, indent=2) + "\n")
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        if secret_path is not None:
            secret_path.unlink(missing_ok=True)
        if created_dir:
            try:
                out.rmdir()
            except OSError:
                pass
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
