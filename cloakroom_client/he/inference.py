"""The client's side of encrypted inference (docs/MODELS.md): a fresh CKKS key per client, its rows
encrypted column by column, the scores decrypted. The format is :mod:`cloakroom_client.protocol.inference`.

TenSEAL is imported inside the functions, so that the SDK imports without the ``he`` extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cloakroom_client.protocol import inference
from cloakroom_client.protocol.ckks import decrypt_vector

if TYPE_CHECKING:
    import tenseal as ts


def new_context() -> ts.Context:
    """A new SECRET context for predictions. No Galois and no relinearisation keys: the server only
    multiplies by plaintext coefficients and adds."""
    import tenseal as ts  # lazily: see the module's docstring

    ctx = ts.context(
        ts.SCHEME_TYPE.CKKS,
        poly_modulus_degree=inference.POLY_MODULUS_DEGREE,
        coeff_mod_bit_sizes=list(inference.COEFF_MOD_BIT_SIZES),
    )
    ctx.global_scale = 2**inference.GLOBAL_SCALE_BITS
    return ctx


def public_context_bytes(ctx: ts.Context) -> bytes:
    """What the server gets: the public key only (no secret key, no Galois or relinearisation keys)."""
    public = ctx.copy()
    public.make_context_public()
    return public.serialize(save_public_key=True, save_secret_key=False, save_galois_keys=False, save_relin_keys=False)


def encrypt_matrix(ctx: ts.Context, matrix: np.ndarray) -> list[bytes]:
    """An encoded (rows x columns) matrix as ciphertexts, batch by batch and column by column."""
    import tenseal as ts  # lazily: see the module's docstring

    return [
        ts.ckks_vector(ctx, column.tolist()).serialize()
        for batch in inference.packed_columns(matrix)
        for column in batch
    ]


def decrypt_scores(ctx: ts.Context, blobs: list[bytes], *, rows: int, scores: int) -> np.ndarray:
    """The server's encrypted scores (batch by batch, score by score) as a (rows x scores) matrix."""
    expected = inference.batches(rows) * scores
    if len(blobs) != expected:
        raise inference.InferenceError(f"the server returned {len(blobs)} ciphertexts; {expected} were expected")
    decrypted = [
        [decrypt_vector(ctx, blobs[b * scores + k]) for k in range(scores)] for b in range(inference.batches(rows))
    ]
    return inference.unpacked_scores(decrypted, rows)
