"""The homomorphic-encryption engine: aggregates over CKKS ciphertexts the platform cannot read.

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

Precision: see :func:`ckks_error_bound`. After a multiplication TenSEAL records the nominal scale
although the true one is scale**2 / q (q the dropped prime), a relative error of scale / q - 1,
about 1.3e-7 at N=8192. The key holder's decryption (``cloakroom_client.he.decrypt_vector``)
corrects it; the bound states the residue either way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import zip_longest
from pathlib import Path

import numpy as np
import tenseal as ts

AGGREGATES = ("sum", "sum_of_squares", "dot", "products", "triple_products")
MULTIPLYING = ("sum_of_squares", "dot", "products", "triple_products")

# Measured with TenSEAL 0.3.18 (tests/he/test_engine.py checks it): a fresh ciphertext's error in
# one slot has a standard deviation of 0.168 * N / scale, whatever the value's size, and the slots'
# errors are close to independent (summing a whole ciphertext's slots gives sqrt(slots) times the
# one-slot deviation). The bound below doubles it for safety.
FRESH_NOISE_PER_DEGREE = 0.168
SAFETY = 2.0
# Standard deviations in the bound. The one-slot error has heavier tails than a Gaussian (up to
# ~8.3 measured deviations in 10^5 slots); 8 deviations of the doubled noise, i.e. 16 measured
# ones, covers them, and sums of many slots are close to Gaussian.
Z = 8.0


def load_context(context: bytes | ts.Context) -> ts.Context:
    """A context from its bytes (or the context itself, so a caller can reuse one)."""
    return context if isinstance(context, ts.Context) else ts.context_from(context)


def iter_files(paths: Iterable[str | Path]) -> Iterator[bytes]:
    """The bytes of each file in turn, read only when the consumer asks for it."""
    for path in paths:
        with open(path, "rb") as handle:
            yield handle.read()


def _load(ctx: ts.Context, data: bytes, slots: int | None = None) -> ts.CKKSVector:
    vector = ts.ckks_vector_from(ctx, data)
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
    missing = object()

    def products() -> Iterator[ts.CKKSVector]:
        for data_a, data_b in zip_longest(chunks_a, chunks_b, fillvalue=missing):
            if data_a is missing or data_b is missing:
                raise ValueError("the two columns have different numbers of ciphertexts")
            vector = _load(ctx, data_a)
            vector.mul_(_load(ctx, data_b))
            yield vector

    return _accumulate(ctx, products())


def ckks_error_bound(
    aggregate: str,
    rows: int,
    *,
    lower: float,
    upper: float,
    poly_modulus_degree: int,
    global_scale_bits: int,
    coeff_mod_bit_sizes: Sequence[int],
    weight_bound: float = 0.0,
    lower_b: float | None = None,
    upper_b: float | None = None,
    lower_c: float | None = None,
    upper_c: float | None = None,
    scale_corrected: bool = True,
) -> float:
    """An absolute bound on the error CKKS adds to a decrypted aggregate, summed over its rows.

    ``aggregate`` is one of ``sum``, ``sum_of_squares``, ``dot`` (with ``|weights| <= weight_bound``)
    ``products`` (the second column in ``[lower_b, upper_b]``) or ``triple_products`` (a third in
    ``[lower_c, upper_c]``, two multiplications); values lie in ``[lower, upper]``
    (clipped by the encoder). The answer the key holder gets differs from the plaintext truth by
    at most this bound, except with negligible probability (8 deviations of twice the measured
    noise).

    Model: every slot of every chunk that is summed (``ceil(rows/slots) * min(rows, slots)`` of
    them) carries an independent error whose deviation is ``s = 2 * 0.168 * N / scale`` for a fresh
    ciphertext; a multiplication turns it into ``|other factor| * s`` per factor, plus the
    rescaling and relinearisation noise (at most ``s``) and, for plaintext weights, their encoding
    rounding (``sqrt(N/12) / scale`` times the value). The sum of the errors is bounded by
    ``Z * sqrt(terms) * per-term deviation``. With ``scale_corrected=False`` the nominal-scale
    error (relative ``scale/q - 1``, 1.3e-7 at N=8192) is added as ``|rel| * rows * max|term|``.

    Raises ValueError for an unknown aggregate, a multiplication the parameters have no level
    for, or values large enough to wrap around the ciphertext modulus.
    """
    if aggregate not in AGGREGATES:
        raise ValueError(f"unknown aggregate {aggregate!r}; choose from {', '.join(AGGREGATES)}")
    if rows < 1:
        raise ValueError("rows must be at least 1")
    slots = poly_modulus_degree // 2
    scale = 2.0**global_scale_bits
    data_bits = list(coeff_mod_bit_sizes[:-1])  # the last prime is the key-switching one
    multiplies = aggregate in MULTIPLYING
    depth = 2 if aggregate == "triple_products" else int(multiplies)
    if len(data_bits) < depth + 1:
        raise ValueError(
            f"{aggregate} needs {depth} multiplication{'s' if depth > 1 else ''}, which these parameters have no level for"
        )

    sigma = SAFETY * FRESH_NOISE_PER_DEGREE * poly_modulus_degree / scale
    sigma_plain = SAFETY * math.sqrt(poly_modulus_degree / 12) / scale
    bound_a = max(abs(lower), abs(upper))
    if aggregate == "sum":
        per_term, max_term = sigma, bound_a
    elif aggregate == "sum_of_squares":
        per_term, max_term = 2 * bound_a * sigma + sigma**2 + sigma, bound_a**2
    elif aggregate == "dot":
        per_term = weight_bound * sigma + bound_a * sigma_plain + sigma
        max_term = weight_bound * bound_a
    elif aggregate == "products":
        if lower_b is None or upper_b is None:
            raise ValueError("products need the second column's bounds lower_b and upper_b")
        bound_b = max(abs(lower_b), abs(upper_b))
        per_term = (bound_a + bound_b) * sigma + sigma**2 + sigma
        max_term = bound_a * bound_b
    else:
        if None in (lower_b, upper_b, lower_c, upper_c):
            raise ValueError("triple products need the bounds of the second and third columns")
        bound_b = max(abs(lower_b), abs(upper_b))
        bound_c = max(abs(lower_c), abs(upper_c))
        # (a b) c: each fresh error times the other two factors, the first rescale's noise times c,
        # the second rescale's own; second-order terms are covered by one more sigma.
        per_term = (bound_a * bound_b + bound_a * bound_c + bound_b * bound_c) * sigma + (bound_c + 2) * sigma
        max_term = bound_a * bound_b * bound_c

    chunks = math.ceil(rows / slots)
    # A slot of the aggregate holds up to `chunks` terms; it must stay well inside the modulus of
    # the level it ends at (one prime fewer per rescale), with two bits to spare.
    level_bits = sum(data_bits[: len(data_bits) - depth])
    if chunks * max_term * scale >= 2.0 ** (level_bits - 2):
        raise ValueError(
            f"values up to {max_term:g} over {chunks} ciphertexts would overflow the ciphertext modulus; "
            "narrow the bounds or use fewer rows"
        )
    if multiplies and max_term * scale * scale >= 2.0 ** (sum(data_bits) - 2):
        raise ValueError(f"products up to {max_term:g} would overflow the ciphertext modulus before rescaling")

    terms = chunks * min(rows, slots)
    bound = Z * math.sqrt(terms) * per_term
    if multiplies and not scale_corrected:
        relative = nominal_scale_error(poly_modulus_degree, global_scale_bits, coeff_mod_bit_sizes)
        bound += abs((1 + relative) ** depth - 1) * rows * max_term
    # Adding the decrypted slots in float64 (math.fsum) is exact to half an ulp of the result.
    bound += 2.0**-52 * rows * max_term
    return bound


def nominal_scale_error(poly_modulus_degree: int, global_scale_bits: int, coeff_mod_bit_sizes: Sequence[int]) -> float:
    """The relative error ``scale / q - 1`` left in a value after one multiplication when the
    nominal scale is not corrected; q is the prime the first rescale drops (the last data prime).
    At N=8192, [60, 40, 40, 60], scale 2**40 it is 1.341e-7."""
    dropped = seal_primes(poly_modulus_degree, coeff_mod_bit_sizes)[len(coeff_mod_bit_sizes) - 2]
    return 2.0**global_scale_bits / dropped - 1.0


def seal_primes(poly_modulus_degree: int, coeff_mod_bit_sizes: Sequence[int]) -> list[int]:
    """The coefficient-modulus primes SEAL picks for these sizes (``CoeffModulus::Create``).

    For each bit size SEAL takes the largest primes of that size that are 1 modulo 2N, walking
    down from 2**bits in steps of 2N, and hands them out smallest first in the order the sizes
    are listed. Recomputing them here avoids building a context (which holds threads and must not
    meet a fork) just to learn the scale error.
    """
    step = 2 * poly_modulus_degree
    wanted: dict[int, int] = {}
    for bits in coeff_mod_bit_sizes:
        wanted[bits] = wanted.get(bits, 0) + 1
    table: dict[int, list[int]] = {}
    for bits, count in wanted.items():
        found: list[int] = []
        value = (1 << bits) + 1
        while len(found) < count:
            value -= step
            if value <= 1 << (bits - 1):
                raise ValueError(f"not enough {bits}-bit primes for N={poly_modulus_degree}")
            if _is_prime(value):
                found.append(value)
        table[bits] = found  # largest first, so pop() hands out the smallest
    return [table[bits].pop() for bits in coeff_mod_bit_sizes]


def _is_prime(n: int) -> bool:
    """Miller-Rabin with the first twelve primes as bases: deterministic below 3.3e24 (all 64-bit n)."""
    if n < 2:
        return False
    bases = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)
    for p in bases:
        if n % p == 0:
            return n == p
    d, r = n - 1, 0
    while d % 2 == 0:
        d //= 2
        r += 1
    for a in bases:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


# -- several aggregates over a range of chunks (one part of a job) ---------------------------------


def aggregate_part(
    context: bytes | ts.Context,
    chunk_indexes: Iterable[int],
    read: Callable[[str, int], bytes],
    specs: Sequence[tuple[str, tuple[str, ...], bool]],
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
    totals: dict[str, ts.CKKSVector | None] = {name: None for name, _, _ in specs}
    block = np.zeros(slots, dtype=float)
    for chunk in chunk_indexes:
        blocks: dict[str, list[float]] = {}
        for name, _factors, weighted in specs:
            if weighted:
                part = weights[chunk * slots : (chunk + 1) * slots] if weights is not None else np.zeros(0)
                if np.any(part):
                    block[: len(part)] = part
                    block[len(part) :] = 0.0
                    blocks[name] = block.tolist()
        needed = {c for name, factors, weighted in specs if not weighted or name in blocks for c in factors}
        raw = {column: read(column, chunk) for column in sorted(needed)}
        loaded = {column: _load(ctx, data, slots) for column, data in raw.items()}
        for name, factors, weighted in specs:
            if weighted:
                if name not in blocks:
                    continue
                term = loaded[factors[0]] * blocks[name]
            elif len(factors) == 1:
                if totals[name] is None:
                    totals[name] = _load(ctx, raw[factors[0]], slots)  # a fresh object to accumulate into
                    continue
                term = loaded[factors[0]]
            else:
                a, b = loaded[factors[0]], loaded[factors[1]]
                term = a.square() if factors[0] == factors[1] else a * b
                if len(factors) == 3:
                    # TenSEAL brings the operand down to the product's level in place, so the third
                    # factor is a fresh object rather than the vector other aggregates still read.
                    term.mul_(_load(ctx, raw[factors[2]], slots))
            if totals[name] is None:
                totals[name] = term
            else:
                totals[name].add_(term)
        if on_chunk is not None:
            on_chunk(chunk)
    out: dict[str, bytes] = {}
    for name, _factors, weighted in specs:
        total = totals[name]
        if total is None:
            if not weighted:
                raise ValueError("no ciphertexts to aggregate")
            total = ts.ckks_vector(ctx, [0.0] * slots) * ([1.0] * slots)
        out[name] = total.serialize()
    return out
