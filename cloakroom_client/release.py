"""Release an HE job as its key holder, from the owner's machine: the key agent's side of the API.

The server sends a *release spec* for each job that waits for the owner's key (see the key-agent
contract and :mod:`cloakroom_client.protocol.release_spec`, which checks it). This module adds what
the owner's machine needs around the protocol's :func:`~cloakroom_client.protocol.release.noisy_values`:

* :func:`release_job` downloads the spec's aggregates with a :class:`~cloakroom_client.client.Client`,
  computes the noisy values and posts them, posting the same values again when a post is retried;
* :class:`EpsilonLedger` is the key holder's own append-only record of the epsilon it has released
  per bundle, which refuses to go past the owner's cap whatever the server says.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

from cloakroom_client.protocol.errors import ReleaseError
from cloakroom_client.protocol.release import noisy_values
from cloakroom_client.protocol.release_spec import check_release_spec, own_release_spec, release_spec_fingerprint


class Released(NamedTuple):
    values: dict[str, float | int]  # the noisy component values that were posted
    job: dict  # the server's answer: the job body, status "released"


def release_job(
    client: Any,
    spec: Mapping[str, Any],
    secret_context: Any,
    rng: random.Random | int | None = None,
    *,
    manifest: Mapping[str, Any],
    drawn: dict[int, tuple[str, dict[str, float | int]]] | None = None,
    ledger: EpsilonLedger | None = None,
) -> Released:
    """Download the release spec's aggregates with ``client``, compute the noisy values and post them.

    ``drawn`` is an optional memory of values already drawn, by job id: when a post fails (a 500,
    a timeout), retrying with the same memory posts the SAME noisy values again instead of drawing
    new noise, so repeated attempts never hand out independent noisy copies of one answer. If the
    release spec of a job changed between attempts, the release is refused. An entry is dropped once the
    server accepts the values.

    ``ledger``: the key holder's own record of epsilon released; the job's epsilon is written to it
    before the values leave (and refused when it would pass the owner's cap), once per job however
    often the post is retried.
    """
    check_release_spec(spec)
    job_id = spec["job"]
    fingerprint = release_spec_fingerprint(spec)
    if drawn is not None and job_id in drawn:
        previous, values = drawn[job_id]
        if previous != fingerprint:
            raise ReleaseError(
                f"the plan of job {job_id} changed after noisy values were drawn for it; "
                "refusing to draw new noise for the same job"
            )
    else:
        own = own_release_spec(spec, manifest)
        if ledger is not None:
            ledger.check(job_id, own.epsilon)
        values = noisy_values(
            spec, lambda name: client.aggregate_bytes(job_id, name), secret_context, rng, manifest=manifest
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
