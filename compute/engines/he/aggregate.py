"""Aggregates over CKKS ciphertexts the platform cannot read.

Pure functions (no Django) over the PUBLIC TenSEAL context and streams of serialized ciphertexts,
one per chunk of a column (bundle format v1). Each returns ONE serialized ciphertext per aggregate
whose slots still need adding: the server holds no Galois keys, so it cannot rotate and sum inside
a ciphertext; the key holder adds the first ``min(rows, slots)`` slots after decryption.

Memory stays flat: chunks are consumed one at a time from any iterable (a generator reading
files, see :func:`iter_files`) and accumulated in place with ``add_``; nothing is copied in a loop
and no per-chunk ``.sum()``/``.dot()`` (which would need rotations) is taken. Partial results of
several workers over disjoint chunk ranges are combined with :func:`encrypted_sum` on the partial
ciphertexts themselves.

A process that holds a TenSEAL context must never fork (it deadlocks): callers load contexts after
a worker has forked and use ``spawn``/``forkserver`` pools only.

Precision: :mod:`compute.engines.he.bounds` states how far CKKS can move each aggregate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import zip_longest
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import tenseal as ts


def tenseal() -> ModuleType:
    """TenSEAL, imported on first use. The web process and a worker's parent import this package to
    plan HE jobs but must never load TenSEAL: only an ``he`` worker's child computes, after the fork."""
    import tenseal as module  # lazy on purpose, see above

    return module


def load_context(context: bytes | ts.Context) -> ts.Context:
    """A context from its bytes (or the context itself, so a caller can reuse one)."""
    return context if isinstance(context, tenseal().Context) else tenseal().context_from(context)


def iter_files(paths: Iterable[str | Path]) -> Iterator[bytes]:
    """The bytes of each file in turn, read only when the consumer asks for it."""
    for path in paths:
        with open(path, "rb") as handle:
            yield handle.read()


def _load(ctx: ts.Context, data: bytes, slots: int | None = None) -> ts.CKKSVector:
    vector = tenseal().ckks_vector_from(ctx, data)
    if slots is not None and vector.size() != slots:
        raise ValueError(f"a ciphertext holds {vector.size()} values, expected {slots}")
    return vector


def _accumulate(ctx: ts.Context, vectors: Iterable[ts.CKKSVector]) -> bytes:
    """Add the vectors slot by slot into the first one, in place."""
    total = None
    for vector in vectors:
        if total is None:
            total = vector
        else:
            total.add_(vector)
    if total is None:
        raise ValueError("no ciphertexts to aggregate")
    return total.serialize()


def encrypted_sum(context: bytes | ts.Context, chunks: Iterable[bytes]) -> bytes:
    """Slot-wise sum of all the chunks of a column (or of partial aggregates)."""
    ctx = load_context(context)
    return _accumulate(ctx, (_load(ctx, data) for data in chunks))


def encrypted_sum_of_squares(context: bytes | ts.Context, chunks: Iterable[bytes]) -> bytes:
    """Slot-wise sum of the squares of the chunks. Needs the "product" class: each chunk is squared
    in place, which TenSEAL relinearises and rescales (one level of the chain), then added."""
    ctx = load_context(context)

    def squares() -> Iterator[ts.CKKSVector]:
        for data in chunks:
            vector = _load(ctx, data)
            vector.square_()
            yield vector

    return _accumulate(ctx, squares())


def encrypted_dot(
    context: bytes | ts.Context, chunks: Iterable[bytes], weights: Sequence[float] | np.ndarray, slots: int
) -> bytes:
    """Slot-wise sum of chunk * plaintext weights (a public weight per row, zero past its end).

    ``weights`` has one entry per row; chunk k is multiplied by ``weights[k*slots:(k+1)*slots]``,
    zero-padded. The number of chunks must be exactly ``ceil(len(weights) / slots)``. Needs the
    "product" class (one rescale).
    """
    ctx = load_context(context)
    w = np.asarray(weights, dtype=float)
    if w.ndim != 1 or len(w) == 0:
        raise ValueError("weights must be a non-empty vector with one entry per row")
    if not np.all(np.isfinite(w)):
        raise ValueError("weights must be finite")
    expected = math.ceil(len(w) / slots)
    block = np.zeros(slots, dtype=float)
    seen = 0

    def products() -> Iterator[ts.CKKSVector]:
        nonlocal seen
        for index, data in enumerate(chunks):
            if index >= expected:
                raise ValueError(f"more ciphertexts than the {expected} the {len(w)} weights cover")
            vector = _load(ctx, data, slots)
            part = w[index * slots : (index + 1) * slots]
            block[: len(part)] = part
            block[len(part) :] = 0.0
            vector.mul_(block.tolist())
            seen = index + 1
            yield vector

    result = _accumulate(ctx, products())
    if seen != expected:
        raise ValueError(f"{seen} ciphertexts for {len(w)} weights; expected {expected}")
    return result


def encrypted_products(context: bytes | ts.Context, chunks_a: Iterable[bytes], chunks_b: Iterable[bytes]) -> bytes:
    """Slot-wise sum of a * b over two columns' chunks (an entry of X^T X or X^T y). Needs the
    "product" class: each ciphertext-ciphertext product is relinearised and rescaled."""
    ctx = load_context(context)

    def products() -> Iterator[ts.CKKSVector]:
        for data_a, data_b in zip_longest(chunks_a, chunks_b):
            if data_a is None or data_b is None:
                raise ValueError("the two columns have different numbers of ciphertexts")
            vector = _load(ctx, data_a)
            vector.mul_(_load(ctx, data_b))
            yield vector

    return _accumulate(ctx, products())


# -- several aggregates over a range of chunks (one part of a job) ---------------------------------

# One aggregate of a job: its name, its factor columns and whether the buyer's weights multiply it.
Spec = tuple[str, tuple[str, ...], bool]


def aggregate_part(
    context: bytes | ts.Context,
    chunk_indexes: Iterable[int],
    read: Callable[[str, int], bytes],
    specs: Sequence[Spec],
    *,
    slots: int,
    weights: np.ndarray | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> dict[str, bytes]:
    """Every aggregate of a job over some of its chunks, reading each chunk's ciphertexts once.

    ``specs`` lists ``(name, factors, weighted)``: the slot-wise sum over the chunks of the product
    of the factor columns (one to three column names, a repeat meaning a square), times the
    buyer's public weights when ``weighted`` (one factor only). ``read(column, chunk)`` returns a
    ciphertext's bytes. The result maps each name to one serialized ciphertext whose slots still
    need adding; results of disjoint chunk ranges combine with :func:`encrypted_sum`.

    Terms are accumulated in place; products make new ciphertexts, never copies of the inputs, and
    no shared input is ever an in-place operand (TenSEAL mod-switches operands in place).
    A weighted chunk whose weights are all zero is skipped (a plaintext product with zero would
    be a transparent ciphertext, which SEAL refuses); a part where every weight is zero yields an
    encryption of zeros at the level of a product, so that it still adds to the other parts.
    """
    ctx = load_context(context)
    totals: dict[str, ts.CKKSVector] = {}
    for chunk in chunk_indexes:
        blocks = weight_blocks(specs, weights, chunk, slots)
        needed = {c for name, factors, weighted in specs if not weighted or name in blocks for c in factors}
        raw = {column: read(column, chunk) for column in sorted(needed)}
        loaded = {column: _load(ctx, data, slots) for column, data in raw.items()}
        for name, factors, weighted in specs:
            if weighted and name not in blocks:
                continue
            if name not in totals and len(factors) == 1 and not weighted:
                totals[name] = _load(ctx, raw[factors[0]], slots)  # a fresh object to accumulate into
                continue
            term = _term(ctx, factors, blocks.get(name), raw, loaded, slots)
            if name in totals:
                totals[name].add_(term)
            else:
                totals[name] = term
        if on_chunk is not None:
            on_chunk(chunk)
    out: dict[str, bytes] = {}
    for name, _factors, weighted in specs:
        total = totals.get(name)
        if total is None:
            if not weighted:
                raise ValueError("no ciphertexts to aggregate")
            total = tenseal().ckks_vector(ctx, [0.0] * slots) * ([1.0] * slots)
        out[name] = total.serialize()
    return out


def weight_blocks(specs: Sequence[Spec], weights: np.ndarray | None, chunk: int, slots: int) -> dict[str, list[float]]:
    """The weights of one chunk's rows (zero-padded) for each weighted aggregate; none if all are zero."""
    if weights is None:
        return {}
    part = weights[chunk * slots : (chunk + 1) * slots]
    if not np.any(part):
        return {}
    block = np.zeros(slots, dtype=float)
    block[: len(part)] = part
    values = block.tolist()
    return {name: values for name, _factors, weighted in specs if weighted}


def _term(
    ctx: ts.Context,
    factors: tuple[str, ...],
    block: list[float] | None,
    raw: Mapping[str, bytes],
    loaded: Mapping[str, ts.CKKSVector],
    slots: int,
) -> ts.CKKSVector:
    """One chunk's term of an aggregate: a column, a column times weights, or a product of columns."""
    if block is not None:
        return loaded[factors[0]] * block
    if len(factors) == 1:
        return loaded[factors[0]]
    a, b = loaded[factors[0]], loaded[factors[1]]
    term = a.square() if factors[0] == factors[1] else a * b
    if len(factors) == 3:
        # TenSEAL brings the operand down to the product's level in place, so the third factor is
        # a fresh object rather than the vector other aggregates still read.
        term.mul_(_load(ctx, raw[factors[2]], slots))
    return term
