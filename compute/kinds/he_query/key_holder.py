"""The key holder's steps of an HE ``query`` job: the release spec it is given, the aggregates it
downloads, and the release it posts back; and the escrow worker, which plays the key holder for
datasets whose owner escrowed the key.

The key holder (the owner's key agent, or the escrow worker on queue ``keys``) fetches the release spec
and the aggregate ciphertexts, rebuilds the plan itself from the query and its own copy of the manifest
(cloakroom_client/protocol), decrypts, adds the noise the plan sets, and posts the noisy values to
:func:`he_release`, which turns them into the answer and releases the job through the one lifecycle
(:func:`compute.lifecycle.job_release`). The un-noised aggregate exists only inside the key holder's
process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from cloakroom_client.protocol.errors import QueryError, ReleaseError
from cloakroom_client.protocol.escrow import EscrowError, unseal
from cloakroom_client.protocol.release import noisy_values
from compute import tasks
from compute.kinds.he_query.plan import aggregate_path, job_plan, remove_job_files
from compute.lifecycle import job_fail, job_release
from compute.models import Job
from config.exceptions import Conflict, NotFound, ValidationFailed
from marketplace.he import escrow_path
from marketplace.models import Dataset

logger = logging.getLogger(__name__)


def require_awaiting_key(job: Job) -> None:
    if job.status != Job.Status.AWAITING_KEY:
        raise Conflict(f"The job is {job.status}, not waiting for a key.", code="job_not_awaiting_key")


def release_spec(job: Job, *, aggregate_url: Callable[[Job, str], str]) -> dict[str, Any]:
    """What the key holder needs: the aggregates to decrypt and the noise for each component."""
    require_awaiting_key(job)
    plan = job_plan(job)
    manifest = job.dataset.bundle_manifest
    return {
        "job": job.pk,
        "dataset": job.dataset_id,
        "bundle_id": job.dataset.bundle_id,
        "query": plan.query,
        "epsilon": f"{job.epsilon:f}",
        "delta": "0",
        "aggregates": [
            {"name": a.name, "length": min(manifest["rows"], manifest["slots"]), "url": aggregate_url(job, a.name)}
            for a in plan.aggregates
        ],
        "components": plan.release_spec_components(),
        "created_at": job.created_at.isoformat(),
    }


def aggregate_file(*, job: Job, name: str) -> Path:
    require_awaiting_key(job)
    names = {a.name for a in job_plan(job).aggregates}
    path = aggregate_path(job, name)
    if name not in names or not path.is_file():
        raise NotFound(f"No aggregate {name!r} for this job.")
    return path


def iter_file(path: Path, chunk: int = 1024 * 1024) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while data := handle.read(chunk):
            yield data


def he_release(*, job: Job, values: Any) -> Job:
    """Release an HE job from the key holder's noisy values; commits its budget in the same transaction."""
    require_awaiting_key(job)
    plan = job_plan(job)
    try:
        noisy = plan.check_values(values)
    except QueryError as exc:
        raise ValidationFailed(f"{exc.field}: {exc.message}", fields={exc.field: [exc.message]}) from None
    result = {
        **plan.finish(noisy),
        "dataset": job.dataset_id,
        "dataset_version": job.dataset_version,
        "released_at": timezone.now().isoformat(),
        "mode": "he",
    }
    if not job_release(job=job, result=result, status=Job.Status.AWAITING_KEY):
        raise Conflict("The job is no longer waiting for a key.", code="job_not_awaiting_key")
    remove_job_files(job)
    job.refresh_from_db()
    return job


def escrow_release_send(job_id: int) -> None:
    tasks.escrow_release_task.apply_async(args=[job_id], queue=settings.CLOAKROOM_KEYS_QUEUE)


def escrow_waiting_send(*, dataset: Dataset) -> None:
    """After an owner escrows a key: hand the dataset's jobs already waiting to the escrow worker."""
    for job_id in Job.objects.filter(dataset=dataset, status=Job.Status.AWAITING_KEY).values_list("pk", flat=True):
        escrow_release_send(job_id)


def escrow_release(*, job_id: int) -> str:
    """Release a job with the escrowed key. Runs only in the escrow worker (queue ``keys``).

    The sealed key is opened with the KEK's private half from this process's settings, used to
    decrypt the job's aggregates, noised by the same code as the owner's key agent, and released
    through :func:`he_release`. The opened key and the decrypted values stay in local variables; the
    log says which job was released, never a value or a key.
    """
    import tenseal as ts  # lazy: only the escrow worker loads TenSEAL, to open the escrowed key

    try:
        job = Job.objects.select_related("dataset").get(pk=job_id)
    except Job.DoesNotExist:
        return "skipped"
    if job.status != Job.Status.AWAITING_KEY or job.dataset.key_custody != Dataset.KeyCustody.ESCROW:
        return "skipped"
    if not settings.CLOAKROOM_KEK_PRIVATE_KEY:
        logger.error("job %s: no CLOAKROOM_KEK_PRIVATE_KEY in this worker; is it the escrow worker?", job_id)
        return "no key-encryption key"
    try:
        secret = ts.context_from(unseal(escrow_path(job.dataset).read_bytes(), settings.CLOAKROOM_KEK_PRIVATE_KEY))
        spec = release_spec(job, aggregate_url=lambda _job, name: name)
        # The escrow worker runs the key agent's check: the plan is rebuilt from the query and the
        # bundle's manifest, and released only if identical.
        values = noisy_values(
            spec, lambda name: aggregate_path(job, name).read_bytes(), secret, manifest=job.dataset.bundle_manifest
        )
    except (OSError, EscrowError, ReleaseError, ValueError) as exc:
        logger.error("job %s: the escrowed key could not release it: %s", job_id, type(exc).__name__)
        return "failed"
    try:
        he_release(job=job, values=values)
    except Conflict:
        return "skipped"
    logger.info("job %s released with the escrowed key", job_id)
    return "released"


def key_wait_sweep() -> int:
    """Fail and refund HE jobs that waited for the key holder longer than CLOAKROOM_HE_KEY_WAIT_SECONDS."""
    limit = timezone.now() - timedelta(seconds=settings.CLOAKROOM_HE_KEY_WAIT_SECONDS)
    failed = 0
    for job in Job.objects.filter(status=Job.Status.AWAITING_KEY, computed_at__lt=limit).select_related("dataset"):
        if job_fail(
            job_id=job.pk,
            reason="The dataset's key holder did not release the result in time; your budget was refunded.",
        ):
            remove_job_files(job)
            failed += 1
    return failed
