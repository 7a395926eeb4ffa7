"""How far CKKS can move a decrypted aggregate: error bounds from the encryption parameters alone.

Pure arithmetic, no TenSEAL: the bounds are computed where a job is planned (the web process too),
which need not load the library. After a multiplication TenSEAL records the nominal scale although
the true one is scale**2 / q (q the dropped prime), a relative error of scale / q - 1, about 1.3e-7 at
N=8192. The key holder's decryption (``cloakroom_client.he.decrypt_vector``) corrects it; the bound
states the residue either way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

AGGREGATES = ("sum", "sum_of_squares", "dot", "products", "triple_products")
MULTIPLYING = ("sum_of_squares", "dot", "products", "triple_products")

# Measured with TenSEAL 0.3.18 (tests/compute/engines/he/test_engine.py checks it): a fresh ciphertext's error in
# one slot has a standard deviation of 0.168 * N / scale, whatever the value's size, and the slots'
# errors are close to independent (summing a whole ciphertext's slots gives sqrt(slots) times the
# one-slot deviation). The bound below doubles it for safety.
FRESH_NOISE_PER_DEGREE = 0.168
SAFETY = 2.0
# Standard deviations in the bound. The one-slot error has heavier tails than a Gaussian (up to
# ~8.3 measured deviations in 10^5 slots); 8 deviations of the doubled noise, i.e. 16 measured
# ones, covers them, and sums of many slots are close to Gaussian.
Z = 8.0


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
    factor_bounds = [max(abs(lower), abs(upper))]
    if aggregate in ("products", "triple_products"):
        factor_bounds.append(_factor_bound(lower_b, upper_b, aggregate))
    if aggregate == "triple_products":
        factor_bounds.append(_factor_bound(lower_c, upper_c, aggregate))
    per_term, max_term = term_error(aggregate, factor_bounds, sigma, sigma_plain, weight_bound)

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


def _factor_bound(lower: float | None, upper: float | None, aggregate: str) -> float:
    if lower is None or upper is None:
        if aggregate == "products":
            raise ValueError("products need the second column's bounds lower_b and upper_b")
        raise ValueError("triple products need the bounds of the second and third columns")
    return max(abs(lower), abs(upper))


def term_error(
    aggregate: str, factor_bounds: Sequence[float], sigma: float, sigma_plain: float, weight_bound: float
) -> tuple[float, float]:
    """The error deviation of one summed term and the largest such term, given each factor's bound.

    ``sigma`` is a fresh ciphertext's per-slot deviation (doubled), ``sigma_plain`` the encoding
    rounding of a plaintext weight relative to its value.
    """
    bound_a = factor_bounds[0]
    if aggregate == "sum":
        return sigma, bound_a
    if aggregate == "sum_of_squares":
        return 2 * bound_a * sigma + sigma**2 + sigma, bound_a**2
    if aggregate == "dot":
        return weight_bound * sigma + bound_a * sigma_plain + sigma, weight_bound * bound_a
    bound_b = factor_bounds[1]
    if aggregate == "products":
        return (bound_a + bound_b) * sigma + sigma**2 + sigma, bound_a * bound_b
    bound_c = factor_bounds[2]
    # (a b) c: each fresh error times the other two factors, the first rescale's noise times c,
    # the second rescale's own; second-order terms are covered by one more sigma.
    per_term = (bound_a * bound_b + bound_a * bound_c + bound_b * bound_c) * sigma + (bound_c + 2) * sigma
    return per_term, bound_a * bound_b * bound_c


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
            if is_prime(value):
                found.append(value)
        table[bits] = found  # largest first, so pop() hands out the smallest
    return [table[bits].pop() for bits in coeff_mod_bit_sizes]


def is_prime(n: int) -> bool:
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
