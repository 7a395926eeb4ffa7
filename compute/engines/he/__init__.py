"""The homomorphic-encryption engine: aggregates over CKKS ciphertexts the platform cannot read.

* :mod:`.aggregate`: the slot-wise sums, products and weighted sums the workers compute over a
  bundle's ciphertexts (TenSEAL, with the public context only);
* :mod:`.bounds`: how far CKKS can move a decrypted aggregate, from the parameters alone;
* :mod:`.plan`, :mod:`.components` and :mod:`.readback`: the server's plan of an HE job, which holds
  the shared planner's plan (:mod:`cloakroom_client.protocol.he_plan`) and adds each component's
  CKKS error bound, the check of the key holder's noisy values and the buyer's answer read back
  from them.

The aggregation API is used as one module: ``from compute.engines import he as engine;
engine.encrypted_sum(...)``; the plan as ``from compute.engines.he import plan as server_plan``.
"""

from compute.engines.he.aggregate import (
    aggregate_part,
    encrypted_dot,
    encrypted_products,
    encrypted_sum,
    encrypted_sum_of_squares,
    iter_files,
    load_context,
)
from compute.engines.he.bounds import (
    AGGREGATES,
    FRESH_NOISE_PER_DEGREE,
    ckks_error_bound,
    nominal_scale_error,
    seal_primes,
)

__all__ = [
    "AGGREGATES",
    "FRESH_NOISE_PER_DEGREE",
    "aggregate_part",
    "ckks_error_bound",
    "encrypted_dot",
    "encrypted_products",
    "encrypted_sum",
    "encrypted_sum_of_squares",
    "iter_files",
    "load_context",
    "nominal_scale_error",
    "seal_primes",
]
