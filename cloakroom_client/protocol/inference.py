"""Encrypted inference on a published linear model: the format both sides agree on (docs/MODELS.md).

The client encodes its rows with the model's declared encoding (``cloakroom_client.models.design_matrix``),
and packs them *column by column*: ciphertext ``(batch b, column j)`` holds column j of rows
``b * slots .. (b + 1) * slots - 1``, one row per slot, the tail of the last batch zero. The server then
computes each score as ``sum_j w_j * x_j + b`` with plaintext coefficients: one plaintext
multiplication per column (one level), slot by slot, so it needs neither rotations (no Galois keys)
nor relinearisation keys, and one ciphertext per score per batch comes back. The link (sigmoid,
argmax) is the client's, after decryption: the server never approximates a sigmoid.

Ciphertexts travel in one *container* (:func:`pack_blobs`): a magic line, then each ciphertext as an
8-byte big-endian length and its bytes. Pure Python and numpy: no Django, no TenSEAL.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any

import numpy as np

# The one CKKS parameter set a prediction may use (128-bit security): one plaintext multiplication.
POLY_MODULUS_DEGREE = 8192
COEFF_MOD_BIT_SIZES = [60, 40, 40, 60]
GLOBAL_SCALE_BITS = 40
SLOTS = POLY_MODULUS_DEGREE // 2
LEVELS = len(COEFF_MOD_BIT_SIZES) - 1  # the data primes; the last prime is the special one

LINEAR_TYPES = ("logistic_regression", "linear_regression")
MAX_BATCHES = 4  # at most 4 * 4096 rows in one request
MAX_COLUMNS = 120  # the training limit on encoded columns (docs/MODELS.md)
MAX_CIPHERTEXTS = 256  # batches x columns in one request (a fresh ciphertext is about 0.4 MB)
MAX_CONTEXT_BYTES = 8 * 1024 * 1024
MAX_CIPHERTEXT_BYTES = 768 * 1024
MAGIC = b"cloakroom-ciphertexts/1\n"
_LENGTH = struct.Struct(">Q")


class InferenceError(ValueError):
    """The request or the container breaks the format; the message says how."""


def batches(rows: int) -> int:
    """How many batches of :data:`SLOTS` rows ``rows`` rows need."""
    return math.ceil(rows / SLOTS)


def check_rows(rows: Any) -> int:
    """``rows`` as a count one request may carry, or an InferenceError."""
    if not isinstance(rows, int) or isinstance(rows, bool) or not 1 <= rows <= MAX_BATCHES * SLOTS:
        raise InferenceError(f"rows must be a whole number from 1 to {MAX_BATCHES * SLOTS}")
    return rows


def ciphertext_count(rows: int, columns: int) -> int:
    """How many ciphertexts a request of ``rows`` rows on a model of ``columns`` encoded columns carries
    (batches x columns); an InferenceError past :data:`MAX_CIPHERTEXTS` (send fewer rows at a time)."""
    count = batches(check_rows(rows)) * columns
    if count > MAX_CIPHERTEXTS:
        most = (MAX_CIPHERTEXTS // columns) * SLOTS
        raise InferenceError(f"rows must be at most {most} for a model of {columns} columns in one request")
    return count


def linear_weights(model: dict) -> tuple[np.ndarray, np.ndarray]:
    """A released linear model's weights as a (scores x columns) matrix and its intercepts (one per score).

    Linear regression has one score; logistic regression one per row of coefficients (one with two
    classes, the second class's, and one per class with more)."""
    if model.get("type") not in LINEAR_TYPES:
        raise InferenceError(f"only {' and '.join(LINEAR_TYPES)} can be served under encryption")
    weights = np.atleast_2d(np.asarray(model["coefficients"], dtype=float))
    intercept = np.atleast_1d(np.asarray(model["intercept"], dtype=float))
    if weights.shape[1] != len(model["columns"]) or intercept.shape != (weights.shape[0],):
        raise InferenceError("the model's coefficients do not match its columns")
    return weights, intercept


def score_names(model: dict) -> list[str]:
    """The names of a model's scores, in the order the server returns them."""
    if model["type"] == "linear_regression":
        return ["score"]
    classes = [str(c) for c in model["classes"]]
    if len(classes) == 2:
        return [f"score_{classes[1]}"]
    return [f"score_{c}" for c in classes]


def packed_columns(matrix: np.ndarray) -> list[list[np.ndarray]]:
    """An encoded (rows x columns) matrix cut into batches of column vectors of :data:`SLOTS` slots,
    zero-padded: ``out[b][j]`` is column j of batch b."""
    x = np.asarray(matrix, dtype=float)
    if x.ndim != 2 or x.shape[0] < 1:
        raise InferenceError("there must be at least one row")
    ciphertext_count(x.shape[0], x.shape[1])
    if not np.isfinite(x).all():
        raise InferenceError("every encoded value must be a finite number")
    out = []
    for b in range(batches(x.shape[0])):
        block = np.zeros((SLOTS, x.shape[1]))
        part = x[b * SLOTS : (b + 1) * SLOTS]
        block[: len(part)] = part
        out.append([block[:, j] for j in range(x.shape[1])])
    return out


def batch_rows(rows: int, batch: int) -> int:
    """How many of batch ``batch``'s slots are rows (the rest are padding, masked to zero by the server)."""
    return min(SLOTS, rows - batch * SLOTS)


def unpacked_scores(decrypted: Sequence[Sequence[np.ndarray]], rows: int) -> np.ndarray:
    """The decrypted score vectors (``decrypted[b][k]``: score k of batch b) as a (rows x scores) matrix."""
    parts = [
        np.stack([np.asarray(v, dtype=float)[: batch_rows(rows, b)] for v in batch], axis=1)
        for b, batch in enumerate(decrypted)
    ]
    return np.concatenate(parts, axis=0)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=float)))


def predictions(model: dict, scores: np.ndarray) -> list[Any]:
    """The link, applied on the client: a regression's score, the class of a binary logistic model's
    score (the second class when it is positive), or the class of the largest one-vs-rest score."""
    s = np.atleast_2d(np.asarray(scores, dtype=float))
    if model["type"] == "linear_regression":
        return s[:, 0].tolist()
    classes = list(model["classes"])
    if len(classes) == 2:
        return [classes[1] if v > 0 else classes[0] for v in s[:, 0]]
    return [classes[i] for i in np.argmax(s, axis=1)]


def container_chunks(blobs: Iterable[bytes]) -> Iterator[bytes]:
    """A container, piece by piece (a writer keeps one ciphertext in memory): :data:`MAGIC`, then each
    ciphertext as its 8-byte big-endian length and its bytes."""
    yield MAGIC
    for blob in blobs:
        yield _LENGTH.pack(len(blob)) + bytes(blob)


def pack_blobs(blobs: Iterable[bytes]) -> bytes:
    """Ciphertexts in one container (:func:`container_chunks`)."""
    return b"".join(container_chunks(blobs))


def iter_blobs(stream: IO[bytes], *, count: int, max_bytes: int = MAX_CIPHERTEXT_BYTES) -> Iterator[bytes]:
    """The ``count`` ciphertexts of a container read from a binary stream one at a time (memory stays
    at one ciphertext), each at most ``max_bytes``; an InferenceError, raised when it is reached, for a
    container that is not exactly that (a wrong magic, a short or long body, an oversized entry)."""
    if stream.read(len(MAGIC)) != MAGIC:
        raise InferenceError("not a ciphertext container (it must start with the cloakroom-ciphertexts/1 line)")
    for index in range(count):
        head = stream.read(_LENGTH.size)
        if len(head) != _LENGTH.size:
            raise InferenceError(f"the container holds {index} ciphertexts; {count} are needed")
        (length,) = _LENGTH.unpack(head)
        if not 0 < length <= max_bytes:
            raise InferenceError(f"ciphertext {index} is empty or over {max_bytes} bytes")
        blob = stream.read(length)
        if len(blob) != length:
            raise InferenceError(f"ciphertext {index} is truncated")
        yield blob
    if stream.read(1):
        raise InferenceError(f"the container holds more than the {count} ciphertexts needed")


def check_container(stream: IO[bytes], *, count: int) -> None:
    """Read a container through once, checking its structure only (the web process: no TenSEAL)."""
    for _ in iter_blobs(stream, count=count):
        pass


def container_limit(count: int) -> int:
    """The largest container of ``count`` ciphertexts a server accepts."""
    return len(MAGIC) + count * (_LENGTH.size + MAX_CIPHERTEXT_BYTES)
