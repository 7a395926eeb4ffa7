"""The CKKS parameters and contexts of a bundle, chosen by the job classes the owner allows.

TenSEAL is imported inside :func:`build_context`, not at the top: the ``cloakroom`` command and the
SDK must import without the ``he`` extra installed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from cloakroom_client.protocol.bundle import JOB_CLASSES, PARAMETERS
from cloakroom_client.protocol.errors import HEError

if TYPE_CHECKING:
    import tenseal as ts


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
    import tenseal as ts  # lazily: see the module's docstring

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
