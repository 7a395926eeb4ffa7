"""The key holder's check of a release spec, before anything is decrypted.

A *release spec* is what the server sends the key holder for one HE job: the job and bundle ids,
the query and epsilon, the encrypted aggregates to decrypt (each with the number of slots to add)
and the components to release, each an affine combination ``offset + sum(coef * aggregate)`` with
the noise mechanism, epsilon, sensitivity and scale that protect it. The owner's key agent and the
platform's escrow worker both run these checks:

* :func:`check_release_spec` refuses a spec that is malformed or asks for less noise than its own
  epsilon and sensitivity imply;
* :func:`own_release_spec` plans the job again from its query and epsilon and the key holder's OWN
  copy of the bundle's manifest (:func:`verify_release_spec`) and refuses a served spec that
  differs from that plan in any aggregate, length, term, offset, mechanism, epsilon, sensitivity,
  granularity or scale;
* :func:`release_spec_fingerprint` tells whether a retried release would draw noise for the same
  thing.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

from cloakroom_client.protocol import he_plan
from cloakroom_client.protocol.errors import QueryError, ReleaseError

MECHANISMS = ("laplace", "geometric")
# A spec may ask for more noise than epsilon and sensitivity imply, never less; the tolerance
# absorbs the rounding of a scale computed and sent as a float.
SCALE_TOLERANCE = 1e-9
BUNDLE_ID = re.compile(r"^[0-9a-f]{32}$")
# The fields of a component the key holder compares with its own plan, and of an aggregate.
COMPONENT_FIELDS = (
    "name",
    "terms",
    "offset",
    "budget",
    "mechanism",
    "epsilon",
    "delta",
    "sensitivity",
    "granularity",
    "steps",
    "scale",
)
AGGREGATE_FIELDS = ("name", "length")


def finite(value: Any) -> float | None:
    """A finite float from a JSON number (or a decimal string), else None. Booleans are not numbers."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _positive(label: str, field: str, value: Any) -> float:
    number = finite(value)
    if number is None or number <= 0.0:
        raise ReleaseError(f"{label}: {field} must be a finite number > 0, got {value!r}")
    return number


def _named(entries: list, kind: str, job: int, seen: set[str]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Each entry of a spec's list with its label (``aggregate 'a0'``), once it is checked to be an
    object with a non-empty name not seen before; the names are added to ``seen``."""
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise ReleaseError(f"plan of job {job}: {kind} {i} must be an object")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise ReleaseError(f"plan of job {job}: {kind} {i} needs a non-empty 'name'")
        label = f"{kind} {name!r}"
        if name in seen:
            raise ReleaseError(f"{label}: named twice in the plan")
        seen.add(name)
        yield label, entry


def _check_ids(spec: Any) -> int:
    """The spec's job id, once the spec is an object with a valid job id and bundle id."""
    if not isinstance(spec, Mapping):
        raise ReleaseError("the plan must be a JSON object")
    job = spec.get("job")
    if isinstance(job, bool) or not isinstance(job, int) or job <= 0:
        raise ReleaseError(f"plan: 'job' must be a positive integer, got {job!r}")
    bundle_id = spec.get("bundle_id")
    if not isinstance(bundle_id, str) or not BUNDLE_ID.match(bundle_id):
        raise ReleaseError(f"plan of job {job}: 'bundle_id' must be 32 lowercase hex digits, got {bundle_id!r}")
    return job


def _check_aggregates(spec: Mapping[str, Any], job: int) -> set[str]:
    """The names of the spec's aggregates, each checked to have a positive whole length."""
    aggregates = spec.get("aggregates")
    if not isinstance(aggregates, list):
        raise ReleaseError(f"plan of job {job}: 'aggregates' must be a list")
    names: set[str] = set()
    for label, aggregate in _named(aggregates, "aggregate", job, names):
        length = aggregate.get("length")
        if isinstance(length, bool) or not isinstance(length, int) or length <= 0:
            raise ReleaseError(f"{label}: 'length' must be a positive integer, got {length!r}")
    return names


def _check_terms(label: str, component: Mapping[str, Any], names: set[str]) -> None:
    terms = component.get("terms")
    if not isinstance(terms, list):
        raise ReleaseError(f"{label}: 'terms' must be a list of [aggregate, coefficient] pairs")
    for j, term in enumerate(terms):
        if not isinstance(term, list | tuple) or len(term) != 2:
            raise ReleaseError(f"{label}: term {j} must be an [aggregate, coefficient] pair")
        aggregate, coef = term
        if not isinstance(aggregate, str) or aggregate not in names:
            known = ", ".join(sorted(names)) or "none"
            raise ReleaseError(
                f"{label}: term {j} names aggregate {aggregate!r}, which is not in the plan (aggregates: {known})"
            )
        if finite(coef) is None:
            raise ReleaseError(f"{label}: the coefficient of {aggregate!r} must be a finite number, got {coef!r}")


def _check_noise(label: str, component: Mapping[str, Any]) -> None:
    mechanism = component.get("mechanism")
    if mechanism not in MECHANISMS:
        raise ReleaseError(f"{label}: unknown mechanism {mechanism!r}; expected one of {', '.join(MECHANISMS)}")
    epsilon = _positive(label, "epsilon", component.get("epsilon"))
    sensitivity = _positive(label, "sensitivity", component.get("sensitivity"))
    scale = _positive(label, "scale", component.get("scale"))
    if not math.isfinite(sensitivity / epsilon):
        raise ReleaseError(f"{label}: sensitivity / epsilon is not finite")
    if scale < sensitivity / epsilon * (1.0 - SCALE_TOLERANCE):
        raise ReleaseError(
            f"{label}: scale {scale:g} is below sensitivity / epsilon = {sensitivity:g} / {epsilon:g} "
            f"= {sensitivity / epsilon:g}; the plan asks for less noise than its epsilon allows"
        )


def check_release_spec(spec: Any) -> None:
    """Raise :class:`ReleaseError` naming the offending part if ``spec`` cannot be released safely.

    Checks the job id, the bundle id, every aggregate (unique name, positive whole length) and every
    component: unique name, terms that name aggregates of the spec with finite coefficients, a finite
    offset, a known mechanism, finite positive epsilon, sensitivity and scale, and a scale no smaller
    than ``sensitivity / epsilon`` (a spec asking for less noise than its own epsilon implies).
    """
    job = _check_ids(spec)
    names = _check_aggregates(spec, job)
    components = spec.get("components")
    if not isinstance(components, list) or not components:
        raise ReleaseError(f"plan of job {job}: 'components' must be a non-empty list")
    for label, component in _named(components, "component", job, set()):
        _check_terms(label, component, names)
        if finite(component.get("offset", 0.0)) is None:
            raise ReleaseError(f"{label}: 'offset' must be a finite number, got {component.get('offset')!r}")
        _check_noise(label, component)


def _same(a: Any, b: Any) -> bool:
    """Equality of JSON values, numbers compared as floats (a JSON round trip keeps a float exact)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def verify_release_spec(served: Mapping[str, Any], manifest: Mapping[str, Any], *, epsilon_paid: float) -> he_plan.Plan:
    """The key holder's own plan of a served job, or a QueryError naming the first difference.

    ``served`` is the release spec the server sent (its ``query``, ``aggregates`` and
    ``components``); ``manifest`` is the key holder's own copy of the bundle's manifest;
    ``epsilon_paid`` is the job's epsilon as the key holder reads it. The plan is rebuilt from the
    query alone, and every aggregate (name, length) and component (terms, offset, mechanism,
    epsilon, sensitivity, granularity, steps, scale) must be identical to the key holder's own; the
    components' epsilons must compose to at most the job's.
    """
    own = he_plan.plan(served.get("query"), manifest, epsilon_paid)
    spent = own.epsilon_spent()
    if spent > epsilon_paid * (1.0 + 1e-12):
        raise QueryError("components", f"the components spend epsilon {spent:g}, more than the job's {epsilon_paid:g}")
    for key, mine, theirs in (
        ("aggregates", own.key_aggregates(), served.get("aggregates")),
        ("components", own.key_components(), served.get("components")),
    ):
        if not isinstance(theirs, list) or len(theirs) != len(mine):
            count = len(theirs) if isinstance(theirs, list) else "no list of"
            raise QueryError(key, f"the server sent {count} {key}; this job has {len(mine)}")
        fields = AGGREGATE_FIELDS if key == "aggregates" else COMPONENT_FIELDS
        for i, (m, t) in enumerate(zip(mine, theirs)):
            if not isinstance(t, Mapping):
                raise QueryError(f"{key}.{i}", "is not an object")
            for name in fields:
                if not _same(m.get(name), t.get(name)):
                    raise QueryError(
                        f"{key}.{m['name']}.{name}",
                        f"the server says {t.get(name)!r}, the key holder's own plan says {m.get(name)!r}",
                    )
    return own


def own_release_spec(spec: Mapping[str, Any], manifest: Mapping[str, Any]) -> he_plan.Plan:
    """The key holder's own plan of a served job, from its query and epsilon and the LOCAL manifest;
    a :class:`ReleaseError` saying what differs when the served release spec is not identical to it."""
    check_release_spec(spec)
    job = spec["job"]
    if manifest.get("bundle_id") != spec["bundle_id"]:
        raise ReleaseError(f"plan of job {job}: bundle {spec['bundle_id']} is not the local manifest's")
    epsilon = finite(spec.get("epsilon"))
    if epsilon is None or epsilon <= 0:
        raise ReleaseError(f"plan of job {job}: 'epsilon' must be a finite number > 0, got {spec.get('epsilon')!r}")
    delta = finite(spec.get("delta", 0))
    if delta != 0:
        raise ReleaseError(
            f"plan of job {job}: HE jobs are pure epsilon; the plan asks for delta {spec.get('delta')!r}"
        )
    try:
        return verify_release_spec(spec, manifest, epsilon_paid=epsilon)
    except QueryError as exc:
        raise ReleaseError(
            f"plan of job {job} differs from the key holder's own plan: {exc.field}: {exc.message}"
        ) from None


def release_spec_fingerprint(spec: Mapping[str, Any]) -> str:
    """A digest of what a release spec releases (job, bundle, aggregates and components), to tell
    whether a retried release would draw noise for the same thing."""
    essential = {k: spec.get(k) for k in ("job", "bundle_id", "aggregates", "components")}
    text = json.dumps(essential, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
