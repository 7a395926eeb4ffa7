"""CKKS decryption on the key holder's side: the owner's key agent and the platform's escrow worker.

TenSEAL is imported inside the functions that need it, not at the top: ``pip install
cloakroom-client`` without the ``he`` extra must still import the protocol, and the server's web
process, which imports the protocol, must not load TenSEAL.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from cloakroom_client.protocol.errors import HEError

if TYPE_CHECKING:
    import tenseal as ts


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
        # The last level has no next one; some builds raise instead of returning None, as whichever
        # exception pybind11 makes of SEAL's C++ one (a logic, range or conversion error).
        except (RuntimeError, ValueError, TypeError, IndexError):
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
    import tenseal as ts  # lazily: see the module's docstring

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
    import tenseal as ts  # lazily: see the module's docstring

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
