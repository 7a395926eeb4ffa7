"""Releasing an HE job as its key holder: decrypt the aggregates, combine them, add the noise.

The owner's key agent (``cloakroom key-agent``) and the platform's escrow worker both release with
:func:`noisy_values`, from the key holder's own plan of the job (see
:mod:`cloakroom_client.protocol.release_spec`), never from the server's numbers. Each component is
released on its grid with exact discrete noise (:mod:`cloakroom_client.protocol.noise`); only the
noisy values leave this module.

The un-noised aggregates live only in local variables of :func:`noisy_values`: they are never
returned, logged, stored or put into an exception message.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from typing import Any

from cloakroom_client.protocol import noise
from cloakroom_client.protocol.ckks import decrypt_aggregate
from cloakroom_client.protocol.errors import HEError, ReleaseError
from cloakroom_client.protocol.he_plan import Plan
from cloakroom_client.protocol.release_spec import own_release_spec


def _decrypt_into(
    decrypted: dict[str, float], own: Plan, fetch: Callable[[str], bytes], secret_context: Any, scale_bits: int
) -> None:
    """Put every aggregate some component uses into ``decrypted``, decrypted and summed over its
    slots, by name. The caller owns the dictionary, so that it can clear it whatever happens."""
    used = {aggregate for component in own.components for aggregate, _ in component.terms}
    for aggregate in own.aggregates:
        name = aggregate.name
        if name not in used:
            continue
        try:
            data = fetch(name)
        except KeyError:
            raise ReleaseError(f"aggregate {name!r}: no ciphertext was given for it") from None
        try:
            value = decrypt_aggregate(
                secret_context, data, own.length, depth=own.aggregate_depth(aggregate), scale_bits=scale_bits
            )
        except HEError as exc:
            # The ciphertext's level or scale is not what the own plan computes (metadata only).
            raise ReleaseError(f"aggregate {name!r}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 (any failure to decrypt an untrusted ciphertext is a refusal)
            # The error's text comes from TenSEAL/SEAL and holds no plaintext; it is not chained,
            # so a traceback shows nothing of this frame's locals either.
            raise ReleaseError(
                f"aggregate {name!r}: could not be decrypted with this key ({type(exc).__name__})"
            ) from None
        if not math.isfinite(value):
            raise ReleaseError(f"aggregate {name!r}: decrypted to a non-finite number (wrong key?)")
        decrypted[name] = value
        del data


def noisy_values(
    spec: Mapping[str, Any],
    aggregate_bytes: Mapping[str, bytes] | Callable[[str], bytes],
    secret_context: Any,
    rng: random.Random | int | None = None,
    *,
    manifest: Mapping[str, Any],
) -> dict[str, float | int]:
    """The noisy value of every component of the release spec ``spec``, by component name.

    ``aggregate_bytes`` gives the serialized ciphertext of an aggregate by name (a mapping, or a
    function such as one that downloads it); only aggregates some component uses are asked for.
    ``secret_context`` is the bundle's TenSEAL context with its secret key; ``manifest`` the key
    holder's own copy of the bundle's manifest, from which the plan is rebuilt and the spec checked
    (:func:`~cloakroom_client.protocol.release_spec.own_release_spec`). ``rng`` is a
    ``random.Random`` or a seed (tests); by default the OS CSPRNG.

    Each component is rounded to its grid and gets exact discrete noise in grid steps: the value
    posted is an exact multiple of its granularity (counts: whole numbers). Raises
    :class:`~cloakroom_client.protocol.errors.ReleaseError` for a spec that is refused or an
    aggregate that cannot be decrypted; the message never carries a decrypted value.
    """
    own = own_release_spec(spec, manifest)
    generator = noise.make_rng(rng)
    fetch = aggregate_bytes.__getitem__ if isinstance(aggregate_bytes, Mapping) else aggregate_bytes

    decrypted: dict[str, float] = {}
    try:
        _decrypt_into(decrypted, own, fetch, secret_context, int(manifest["global_scale_bits"]))
        released: dict[str, float | int] = {}
        for component in own.components:
            name = component.name
            parts = [component.offset]
            parts.extend(coef * decrypted[aggregate] for aggregate, coef in component.terms)
            value = math.fsum(parts)
            if not math.isfinite(value):
                raise ReleaseError(f"component {name!r}: its value is not a finite number")
            # Clamped to what the declared bounds allow: an honest value is already inside (up to the
            # CKKS error), and a substituted ciphertext cannot push a release past the bounds. No
            # error is raised, so the server learns nothing from whether the value was inside.
            lo, hi = own.value_range(component)
            value = min(max(value, lo), hi)
            try:
                noisy = component.noise.release(value, generator)
            except noise.NoiseError:
                raise ReleaseError(f"component {name!r}: its value is too large for its grid (wrong key?)") from None
            released[name] = int(noisy) if component.noise.integer else noisy
            del value, parts
        return released
    finally:
        decrypted.clear()
