"""Release an HE job as its key holder: decrypt the aggregates, add the plan's noise, post the result.

The server sends a PLAN (see the key-agent contract): the encrypted aggregates to decrypt, each with
the number of slots to add, and the components to release, each an affine combination
``offset + sum(coef * aggregate)`` with the noise mechanism, epsilon, sensitivity and scale that
protect it. This module is the key holder's side, shared by the ``cloakroom key-agent`` command and
any other key holder:

* :func:`check_plan` refuses a plan that is malformed or asks for less noise than its own epsilon
  and sensitivity imply, before anything is decrypted;
* :func:`noisy_values` plans the job again from its query and epsilon and the key holder's OWN copy
  of the bundle's manifest (:func:`cloakroom_client.protocol.he_plan.verify_key_plan`) and refuses a
  served plan that differs in any aggregate, length, term, offset, mechanism, epsilon, sensitivity,
  granularity or scale; then it decrypts, combines and releases each component on its grid with
  exact discrete noise (:mod:`cloakroom_client.protocol.noise`), from its own plan, never the
  server's numbers; only the noisy values leave it;
* :class:`EpsilonLedger` is the key holder's own append-only record of the epsilon it has released
  per bundle, which refuses to go past the owner's cap whatever the server says;
* :func:`release_job` does both with a :class:`~cloakroom_client.client.Client` and posts the values.

The un-noised aggregates live only in local variables of :func:`noisy_values`: they are never
returned, logged, stored or put into an exception message.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

from cloakroom_client.protocol import he_plan, noise
from cloakroom_client.protocol.errors import QueryError

MECHANISMS = ("laplace", "geometric")
# A plan may ask for more noise than epsilon and sensitivity imply, never less; the tolerance
# absorbs the rounding of a scale computed and sent as a float.
SCALE_TOLERANCE = 1e-9
_BUNDLE_ID = re.compile(r"^[0-9a-f]{32}$")


class ReleaseError(Exception):
    """The plan cannot be released as it is (nothing was posted)."""


def _finite(value: Any) -> float | None:
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
    number = _finite(value)
    if number is None or number <= 0.0:
        raise ReleaseError(f"{label}: {field} must be a finite number > 0, got {value!r}")
    return number


def _named(entries: list, kind: str, job: int, seen: set[str]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Each entry of a plan's list with its label (``aggregate 'a0'``), once it is checked to be an
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


def check_plan(plan: Any) -> None:
    """Raise :class:`ReleaseError` naming the offending part if ``plan`` cannot be released safely.

    Checks the job id, the bundle id, every aggregate (unique name, positive whole length) and every
    component: unique name, terms that name aggregates of the plan with finite coefficients, a finite
    offset, a known mechanism, finite positive epsilon, sensitivity and scale, and a scale no smaller
    than ``sensitivity / epsilon`` (a plan asking for less noise than its own epsilon implies).
    """
    if not isinstance(plan, Mapping):
        raise ReleaseError("the plan must be a JSON object")
    job = plan.get("job")
    if isinstance(job, bool) or not isinstance(job, int) or job <= 0:
        raise ReleaseError(f"plan: 'job' must be a positive integer, got {job!r}")
    bundle_id = plan.get("bundle_id")
    if not isinstance(bundle_id, str) or not _BUNDLE_ID.match(bundle_id):
        raise ReleaseError(f"plan of job {job}: 'bundle_id' must be 32 lowercase hex digits, got {bundle_id!r}")

    aggregates = plan.get("aggregates")
    if not isinstance(aggregates, list):
        raise ReleaseError(f"plan of job {job}: 'aggregates' must be a list")
    names: set[str] = set()
    for label, aggregate in _named(aggregates, "aggregate", job, names):
        length = aggregate.get("length")
        if isinstance(length, bool) or not isinstance(length, int) or length <= 0:
            raise ReleaseError(f"{label}: 'length' must be a positive integer, got {length!r}")

    components = plan.get("components")
    if not isinstance(components, list) or not components:
        raise ReleaseError(f"plan of job {job}: 'components' must be a non-empty list")
    for label, component in _named(components, "component", job, set()):
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
            if _finite(coef) is None:
                raise ReleaseError(f"{label}: the coefficient of {aggregate!r} must be a finite number, got {coef!r}")
        if _finite(component.get("offset", 0.0)) is None:
            raise ReleaseError(f"{label}: 'offset' must be a finite number, got {component.get('offset')!r}")

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


def own_plan(plan: Mapping[str, Any], manifest: Mapping[str, Any]) -> he_plan.Plan:
    """The key holder's own plan of a served job, from its query and epsilon and the LOCAL manifest;
    a :class:`ReleaseError` saying what differs when the served plan is not identical to it."""
    check_plan(plan)
    job = plan["job"]
    if manifest.get("bundle_id") != plan["bundle_id"]:
        raise ReleaseError(f"plan of job {job}: bundle {plan['bundle_id']} is not the local manifest's")
    epsilon = _finite(plan.get("epsilon"))
    if epsilon is None or epsilon <= 0:
        raise ReleaseError(f"plan of job {job}: 'epsilon' must be a finite number > 0, got {plan.get('epsilon')!r}")
    delta = _finite(plan.get("delta", 0))
    if delta != 0:
        raise ReleaseError(
            f"plan of job {job}: HE jobs are pure epsilon; the plan asks for delta {plan.get('delta')!r}"
        )
    try:
        return he_plan.verify_key_plan(plan, manifest, epsilon_paid=epsilon)
    except QueryError as exc:
        raise ReleaseError(
            f"plan of job {job} differs from the key holder's own plan: {exc.field}: {exc.message}"
        ) from None


def noisy_values(
    plan: Mapping[str, Any],
    aggregate_bytes: Mapping[str, bytes] | Callable[[str], bytes],
    secret_context: Any,
    rng: random.Random | int | None = None,
    *,
    manifest: Mapping[str, Any],
) -> dict[str, float | int]:
    """The noisy value of every component of ``plan``, by component name.

    ``aggregate_bytes`` gives the serialized ciphertext of an aggregate by name (a mapping, or a
    function such as one that downloads it); only aggregates some component uses are asked for.
    ``secret_context`` is the bundle's TenSEAL context with its secret key; ``manifest`` the key
    holder's own copy of the bundle's manifest, from which the plan is rebuilt and checked
    (:func:`own_plan`). ``rng`` is a ``random.Random`` or a seed (tests); by default the OS CSPRNG.

    Each component is rounded to its grid and gets exact discrete noise in grid steps: the value
    posted is an exact multiple of its granularity (counts: whole numbers). Raises
    :class:`ReleaseError` for a plan that is refused or an aggregate that cannot be decrypted; the
    message never carries a decrypted value.
    """
    from cloakroom_client.he import HEError, decrypt_aggregate  # TenSEAL is imported only when decrypting

    own = own_plan(plan, manifest)
    generator = noise.make_rng(rng)
    fetch = aggregate_bytes.__getitem__ if isinstance(aggregate_bytes, Mapping) else aggregate_bytes
    lengths = {a.name: own.length for a in own.aggregates}
    used = {aggregate for component in own.components for aggregate, _ in component.terms}

    decrypted: dict[str, float] = {}
    try:
        depths = {a.name: own.aggregate_depth(a) for a in own.aggregates}
        scale_bits = int(manifest["global_scale_bits"])
        for name in (a.name for a in own.aggregates if a.name in used):
            try:
                data = fetch(name)
            except KeyError:
                raise ReleaseError(f"aggregate {name!r}: no ciphertext was given for it") from None
            try:
                value = decrypt_aggregate(
                    secret_context, data, lengths[name], depth=depths[name], scale_bits=scale_bits
                )
            except HEError as exc:
                # The ciphertext's level or scale is not what the own plan computes (metadata only).
                raise ReleaseError(f"aggregate {name!r}: {exc}") from None
            except Exception as exc:
                # The error's text comes from TenSEAL/SEAL and holds no plaintext; it is not chained,
                # so a traceback shows nothing of this frame's locals either.
                raise ReleaseError(
                    f"aggregate {name!r}: could not be decrypted with this key ({type(exc).__name__})"
                ) from None
            if not math.isfinite(value):
                raise ReleaseError(f"aggregate {name!r}: decrypted to a non-finite number (wrong key?)")
            decrypted[name] = value
            del data

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


def plan_fingerprint(plan: Mapping[str, Any]) -> str:
    """A digest of what a plan releases (job, bundle, aggregates and components), to tell whether a
    retried release would draw noise for the same thing."""
    essential = {k: plan.get(k) for k in ("job", "bundle_id", "aggregates", "components")}
    text = json.dumps(essential, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class Released(NamedTuple):
    values: dict[str, float | int]  # the noisy component values that were posted
    job: dict  # the server's answer: the job body, status "released"


def release_job(
    client: Any,
    plan: Mapping[str, Any],
    secret_context: Any,
    rng: random.Random | int | None = None,
    *,
    manifest: Mapping[str, Any],
    drawn: dict[int, tuple[str, dict[str, float | int]]] | None = None,
    ledger: EpsilonLedger | None = None,
) -> Released:
    """Download the plan's aggregates with ``client``, compute the noisy values and post them.

    ``drawn`` is an optional memory of values already drawn, by job id: when a post fails (a 500,
    a timeout), retrying with the same memory posts the SAME noisy values again instead of drawing
    new noise, so repeated attempts never hand out independent noisy copies of one answer. If the
    plan of a job changed between attempts, the release is refused. An entry is dropped once the
    server accepts the values.

    ``ledger``: the key holder's own record of epsilon released; the job's epsilon is written to it
    before the values leave (and refused when it would pass the owner's cap), once per job however
    often the post is retried.
    """
    check_plan(plan)
    job_id = plan["job"]
    fingerprint = plan_fingerprint(plan)
    if drawn is not None and job_id in drawn:
        previous, values = drawn[job_id]
        if previous != fingerprint:
            raise ReleaseError(
                f"the plan of job {job_id} changed after noisy values were drawn for it; "
                "refusing to draw new noise for the same job"
            )
    else:
        own = own_plan(plan, manifest)
        if ledger is not None:
            ledger.check(job_id, own.epsilon)
        values = noisy_values(
            plan, lambda name: client.aggregate_bytes(job_id, name), secret_context, rng, manifest=manifest
        )
        if ledger is not None:
            ledger.record(job_id, own.epsilon, fingerprint)
        if drawn is not None:
            drawn[job_id] = (fingerprint, values)
    answer = client.release(job_id, values)
    if drawn is not None:
        drawn.pop(job_id, None)
    return Released(dict(values), answer)


class EpsilonLedger:
    """The key holder's own append-only record of the epsilon it released for one bundle.

    One JSON line per released job (``{"job", "epsilon", "plan"}``), appended and flushed to disk
    BEFORE the noisy values are posted, so that a crash after the post can only over-count. The
    owner's cap comes from the key holder's side too (``<bundle_id>.policy.json`` in the keystore,
    written when the owner publishes, or the agent's ``--epsilon-cap``), never from the server.
    A job already recorded (a retried post of the same values) is not counted twice.
    """

    def __init__(self, path: str | os.PathLike, cap: Decimal | float | str | None):
        self.path = Path(path)
        self.cap = Decimal(str(cap)) if cap is not None else None

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.append(json.loads(line))
        return out

    def spent(self) -> Decimal:
        return sum((Decimal(str(e["epsilon"])) for e in self.entries()), Decimal(0))

    def recorded(self, job: int) -> bool:
        return any(e.get("job") == job for e in self.entries())

    def check(self, job: int, epsilon: float) -> None:
        """A :class:`ReleaseError` when releasing ``job`` would pass the owner's cap."""
        if self.cap is None:
            raise ReleaseError(
                "no local epsilon cap for this bundle: publish it from this machine with `cloakroom he publish` "
                "(which records the cap in the keystore) or start the agent with --epsilon-cap"
            )
        if self.recorded(job):
            return
        spent = self.spent()
        if spent + Decimal(repr(float(epsilon))) > self.cap:
            raise ReleaseError(
                f"releasing job {job} (epsilon {epsilon:g}) would pass the owner's cap of {self.cap} "
                f"(already released here: {spent})"
            )

    def record(self, job: int, epsilon: float, fingerprint: str) -> None:
        if self.recorded(job):
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"job": job, "epsilon": repr(float(epsilon)), "plan": fingerprint}) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
