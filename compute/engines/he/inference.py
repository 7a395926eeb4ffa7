"""Scores of a linear model on a client's CKKS ciphertexts (docs/MODELS.md, "Encrypted inference").

Pure (no Django). The client's context is public (no secret key), so nothing computed here can be
read by the platform: each score is ``sum_j w_j * x_j + b`` slot by slot, with the coefficients as
plaintexts, one ciphertext per score per batch. Slots past the request's rows are multiplied by zero
with the coefficients, so a client that packs more rows than it paid for gets zeros for them. The
format is :mod:`cloakroom_client.protocol.inference`. TenSEAL is loaded lazily (``tenseal()``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from cloakroom_client.protocol import inference
from cloakroom_client.protocol.ckks import data_primes
from compute.engines.he.aggregate import tenseal

if TYPE_CHECKING:
    import tenseal as ts


class RefusedInput(ValueError):
    """The client's context or a ciphertext is not what the format allows."""


def load_public_context(data: bytes) -> ts.Context:
    """The client's context, refused unless it is public and has the prediction parameters exactly."""
    if len(data) > inference.MAX_CONTEXT_BYTES:
        raise RefusedInput("the context is too large")
    try:
        ctx = tenseal().context_from(data)
    except Exception as exc:  # noqa: BLE001 (whatever TenSEAL makes of bad bytes, it is the client's input)
        raise RefusedInput(f"the context is not a TenSEAL context ({type(exc).__name__})") from None
    if ctx.is_private() or ctx.has_secret_key():
        raise RefusedInput("the context carries a secret key: upload only the public context")
    seal = ctx.seal_context().data
    if getattr(seal.key_context_data().parms().scheme(), "name", None) != "CKKS":
        raise RefusedInput("the context is not CKKS")
    degree = seal.key_context_data().parms().poly_modulus_degree()
    bits = [p.bit_length() for p in data_primes(ctx)]
    if degree != inference.POLY_MODULUS_DEGREE or bits != inference.COEFF_MOD_BIT_SIZES[:-1]:
        raise RefusedInput(
            f"the context must have poly modulus degree {inference.POLY_MODULUS_DEGREE} and coefficient "
            f"moduli {inference.COEFF_MOD_BIT_SIZES}"
        )
    return ctx


def _load(ctx: ts.Context, data: bytes) -> ts.CKKSVector:
    try:
        vector = tenseal().ckks_vector_from(ctx, data)
    except Exception as exc:  # noqa: BLE001 (the client's input)
        raise RefusedInput(f"a ciphertext is not a CKKS vector of this context ({type(exc).__name__})") from None
    ciphertext = vector.ciphertext()[0]
    fresh = ciphertext.coeff_modulus_size() == inference.LEVELS
    scaled = ciphertext.scale > 0 and abs(math.log2(ciphertext.scale) - inference.GLOBAL_SCALE_BITS) < 0.5
    if vector.size() != inference.SLOTS or not fresh or not scaled:
        raise RefusedInput(
            f"each ciphertext must be a fresh encryption of {inference.SLOTS} values at scale 2^"
            f"{inference.GLOBAL_SCALE_BITS}"
        )
    return vector


def _score(
    ctx: ts.Context, columns: list[ts.CKKSVector], weights: np.ndarray, intercept: float, mask: np.ndarray | None
) -> bytes:
    """One score vector: the weighted columns added up, plus the intercept; ``mask`` (1 on the rows,
    0 on the padding) is folded into the plaintexts of a partial batch."""
    total = None
    for column, weight in zip(columns, weights):
        if weight == 0:  # a zero plaintext would make a transparent ciphertext, which SEAL refuses
            continue
        term = column * float(weight) if mask is None else column * (mask * weight).tolist()
        total = term if total is None else total.add_(term)
    offset = np.full(inference.SLOTS, intercept) if mask is None else mask * intercept
    if total is None:  # every coefficient zero: the score is the intercept, encrypted with the public key
        return tenseal().ckks_vector(ctx, offset.tolist()).serialize()
    return (total + offset.tolist()).serialize()


def score_batches(
    ctx: ts.Context, blobs: Iterable[bytes], *, weights: np.ndarray, intercept: np.ndarray, rows: int
) -> Iterator[bytes]:
    """The encrypted scores, batch by batch and score by score, from the client's ciphertexts (batch
    by batch, column by column; each batch's columns are held at once, then dropped)."""
    count = inference.ciphertext_count(rows, weights.shape[1])
    stream = iter(blobs)
    for batch in range(count // weights.shape[1]):
        columns = [_load(ctx, next(stream)) for _ in range(weights.shape[1])]
        filled = inference.batch_rows(rows, batch)
        mask = None if filled == inference.SLOTS else (np.arange(inference.SLOTS) < filled).astype(float)
        for k in range(weights.shape[0]):
            yield _score(ctx, columns, weights[k], float(intercept[k]), mask)
        del columns
