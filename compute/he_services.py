"""HE jobs on the server: plan, split into parts, aggregate under encryption, wait for the key, release.

A job on an HE dataset is submitted, reserved and refunded exactly like a DP job (compute/services.py).
What differs is the middle:

1. ``run_he_job`` (queue ``he``) claims the job, cuts its ciphertext chunks into parts of
   ``CLOAKROOM_HE_PART_CHUNKS``, queues one ``he_part`` task for every part but the first, and
   computes the first itself.
2. Each ``he_part`` (any worker process on the ``he`` queue) streams its chunks from the bundle,
   computes every aggregate the plan needs over them (compute/engines/he.py ``aggregate_part``),
   writes the partial ciphertexts next to the bundle and marks its part done. The worker that finishes
   the last part adds the partials together, stores one ciphertext per aggregate and moves the job to
   ``awaiting_key``. Nothing here can decrypt: workers hold only the public context.
3. The key holder (the owner's key agent, or the escrow worker on queue ``keys``) fetches the plan and
   the aggregate ciphertexts, decrypts, adds the noise the plan sets, and posts the noisy values to
   :func:`he_release`, which turns them into the answer and, in one transaction, releases the job and
   commits its budget. The un-noised aggregate exists only inside the key holder's process.

Only the holder of the job's current claim can complete parts or move it on, so a part delivered twice,
or a worker that lost its claim to the sweeper, changes nothing.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import User
from cloakroom_client.protocol.bundle import column_file_name
from compute.engines import he_jobs
from compute.engines.dp import QueryError
from compute.models import Job, JobPart
from config.exceptions import Conflict, NotFound, ValidationFailed
from marketplace.he import bundle_folder
from marketplace.models import Dataset, LedgerEntry

logger = logging.getLogger(__name__)

_CONTEXTS: OrderedDict[tuple[int, str], Any] = OrderedDict()
_CONTEXT_CACHE_SIZE = 4


def he_plan(job: Job) -> he_jobs.Plan:
    """The job's plan, recomputed from its stored query and the dataset's manifest (both immutable)."""
    return he_jobs.plan(
        job.spec,
        job.dataset.bundle_manifest,
        float(job.epsilon),
        max_weights=settings.CLOAKROOM_HE_MAX_WEIGHTS,
        max_weight=settings.CLOAKROOM_HE_MAX_WEIGHT,
        public_rows=job.dataset.row_count_public,
    )


def prepare_he_query(*, dataset: Dataset, query: Any, eps: Decimal, dlt: Decimal) -> he_jobs.Plan:
    """Validate a query on an HE dataset (a 400 naming the field when it does not fit)."""
    if dlt:
        raise ValidationFailed(
            "delta: HE jobs use pure epsilon (Laplace and geometric noise); send 0.",
            fields={"delta": ["HE jobs use pure epsilon; send 0."]},
        )
    if dataset.bundle_status != Dataset.BundleStatus.READY:
        raise Conflict("This dataset's encrypted bundle is not ready.", code="dataset_unavailable")
    try:
        return he_jobs.plan(
            query,
            dataset.bundle_manifest,
            float(eps),
            max_weights=settings.CLOAKROOM_HE_MAX_WEIGHTS,
            max_weight=settings.CLOAKROOM_HE_MAX_WEIGHT,
            public_rows=dataset.row_count_public,
        )
    except QueryError as exc:
        raise ValidationFailed(
            f"{exc.field}: {exc.message}", code="invalid_query", fields={exc.field: [exc.message]}
        ) from None


# -- files ----------------------------------------------------------------------------------------


def job_folder(job: Job) -> Path:
    """Where a job's partial and final aggregates live: beside the bundle, in the private root."""
    return bundle_folder(job.dataset) / "jobs" / str(job.pk)


def aggregate_path(job: Job, name: str) -> Path:
    return job_folder(job) / f"{name}.ct"


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_job_files(job: Job) -> None:
    shutil.rmtree(job_folder(job), ignore_errors=True)


def _context(dataset: Dataset):
    """The dataset's public context, loaded once per worker process (after the fork, never before)."""
    import tenseal as ts

    key = (dataset.pk, dataset.bundle_manifest["context"]["sha256"])
    ctx = _CONTEXTS.get(key)
    if ctx is None:
        data = (bundle_folder(dataset) / dataset.bundle_manifest["context"]["file"]).read_bytes()
        ctx = ts.context_from(data, n_threads=1)
        if ctx.is_private():  # the bundle check refuses these; never compute with a secret key here
            raise RuntimeError("the stored context holds a secret key")
        _CONTEXTS[key] = ctx
        while len(_CONTEXTS) > _CONTEXT_CACHE_SIZE:
            _CONTEXTS.popitem(last=False)
    else:
        _CONTEXTS.move_to_end(key)
    return ctx


# -- running --------------------------------------------------------------------------------------


def enqueue_he_job(job_id: int) -> None:
    from compute.tasks import run_he_job

    run_he_job.apply_async(args=[job_id], queue=settings.CLOAKROOM_HE_QUEUE)


def he_job_start(*, job_id: int) -> str:
    """Claim an HE job and queue its parts. Idempotent like :func:`compute.services.job_run`."""
    from compute.services import _claim, job_fail

    token = _claim(job_id)
    if token is None:
        return "skipped"
    job = Job.objects.select_related("dataset").get(pk=job_id)
    try:
        plan = he_plan(job)
    except QueryError as exc:
        job_fail(job_id=job_id, reason=f"The query no longer fits the dataset: {exc.message}", claim=token)
        return "failed"
    manifest = job.dataset.bundle_manifest
    chunks = math.ceil(manifest["rows"] / manifest["slots"])
    size = max(1, settings.CLOAKROOM_HE_PART_CHUNKS)
    ranges = [(start, min(start + size, chunks)) for start in range(0, chunks, size)]
    with transaction.atomic():
        if not Job.objects.filter(pk=job_id, status=Job.Status.RUNNING, claim=token).update(
            progress_done=0, progress_total=chunks
        ):
            return "skipped"
        JobPart.objects.bulk_create(
            [
                JobPart(job_id=job_id, claim=token, index=i, chunk_start=lo, chunk_end=hi)
                for i, (lo, hi) in enumerate(ranges)
            ]
        )
        transaction.on_commit(lambda: _enqueue_parts(job_id, token, len(ranges)))
    logger.info("HE job %s started: %d chunks in %d parts", job_id, chunks, len(ranges))
    # This process computes the first part itself: one task dispatch fewer, and a one-part job (most
    # of them) runs start to finish in one task. The other parts are already queued for any worker.
    return he_part_run(job_id=job_id, claim=token, index=0, plan=plan)


def _enqueue_parts(job_id: int, claim: str, parts: int) -> None:
    """Queue every part but the first, which the job-start task computes itself."""
    from compute.tasks import run_he_part

    for index in range(1, parts):
        run_he_part.apply_async(args=[job_id, claim, index], queue=settings.CLOAKROOM_HE_QUEUE)


def _partial_name(claim: str, index: int, aggregate: str) -> str:
    return f"{claim}.p{index:05d}.{aggregate}.ct"


def he_part_run(*, job_id: int, claim: str, index: int, plan: he_jobs.Plan | None = None) -> str:
    """Compute one part of an HE job; the last part to finish combines them all. ``plan`` saves the
    job-start task planning the job a second time for the part it computes itself."""
    from compute.engines import he as engine
    from compute.services import job_fail

    try:
        part = JobPart.objects.select_related("job__dataset").get(job_id=job_id, claim=claim, index=index)
    except JobPart.DoesNotExist:
        return "skipped"
    job = part.job
    if part.done_at is not None or job.status != Job.Status.RUNNING or job.claim != claim:
        return "skipped"
    dataset = job.dataset
    try:
        plan = plan if plan is not None else he_plan(job)
        manifest = dataset.bundle_manifest
        columns = he_jobs.manifest_columns(manifest)
        folder = bundle_folder(dataset)

        def read(column: str, chunk: int) -> bytes:
            return (folder / column_file_name(columns[column].index, chunk)).read_bytes()

        partials = engine.aggregate_part(
            _context(dataset),
            range(part.chunk_start, part.chunk_end),
            read,
            [a.spec() for a in plan.aggregates],
            slots=manifest["slots"],
            weights=plan.weights,
        )
        out = job_folder(job)
        for name, data in partials.items():
            _write_atomic(out / _partial_name(claim, index, name), data)
    except Exception:
        logger.exception("HE job %s part %s failed", job_id, index)
        job_fail(
            job_id=job_id,
            reason="The encrypted computation failed on the server; your budget was refunded. Try again, or "
            "contact the administrator if it keeps failing.",
            claim=claim,
        )
        remove_job_files(job)
        return "failed"
    if not JobPart.objects.filter(pk=part.pk, done_at__isnull=True).update(done_at=timezone.now()):
        return "skipped"
    Job.objects.filter(pk=job_id, claim=claim).update(
        progress_done=F("progress_done") + (part.chunk_end - part.chunk_start)
    )
    if JobPart.objects.filter(job_id=job_id, claim=claim, done_at__isnull=True).exists():
        return "part done"
    return _combine(job, plan, claim)


def _combine(job: Job, plan: he_jobs.Plan, claim: str) -> str:
    """Add the parts' partial aggregates, store one ciphertext per aggregate, await the key."""
    from compute.engines import he as engine

    folder = job_folder(job)
    count = JobPart.objects.filter(job_id=job.pk, claim=claim).count()
    context = _context(job.dataset)
    for agg in plan.aggregates:
        paths = [folder / _partial_name(claim, i, agg.name) for i in range(count)]
        total = engine.encrypted_sum(context, engine.iter_files(paths))
        _write_atomic(aggregate_path(job, agg.name), total)
    with transaction.atomic():
        moved = Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING, claim=claim).update(
            status=Job.Status.AWAITING_KEY, computed_at=timezone.now()
        )
        if moved and job.dataset.key_custody == Dataset.KeyCustody.ESCROW:
            transaction.on_commit(lambda: enqueue_escrow_release(job.pk))
    for path in folder.glob(f"{claim}.p*.ct"):
        path.unlink(missing_ok=True)
    if not moved:
        return "skipped"
    logger.info("HE job %s computed: %d encrypted aggregates await the key holder", job.pk, len(plan.aggregates))
    return "awaiting key"


def enqueue_escrow_release(job_id: int) -> None:
    from compute.tasks import release_with_escrow

    release_with_escrow.apply_async(args=[job_id], queue=settings.CLOAKROOM_KEYS_QUEUE)


def enqueue_waiting_for_escrow(dataset: Dataset) -> None:
    """After an owner escrows a key: hand the dataset's jobs already waiting to the escrow worker."""
    for job_id in Job.objects.filter(dataset=dataset, status=Job.Status.AWAITING_KEY).values_list("pk", flat=True):
        enqueue_escrow_release(job_id)


def escrow_release(*, job_id: int) -> str:
    """Release a job with the escrowed key. Runs only in the escrow worker (queue ``keys``).

    The sealed key is opened with the KEK's private half from this process's settings, used to
    decrypt the job's aggregates, noised by the same code as the owner's key agent, and released
    through :func:`he_release`. The opened key and the decrypted values stay in local variables; the
    log says which job was released, never a value or a key.
    """
    from cloakroom_client.protocol.errors import ReleaseError
    from cloakroom_client.protocol.escrow import EscrowError, unseal
    from cloakroom_client.protocol.release import noisy_values
    from marketplace.he import escrow_path

    try:
        job = Job.objects.select_related("dataset").get(pk=job_id)
    except Job.DoesNotExist:
        return "skipped"
    if job.status != Job.Status.AWAITING_KEY or job.dataset.key_custody != Dataset.KeyCustody.ESCROW:
        return "skipped"
    if not settings.CLOAKROOM_KEK_PRIVATE_KEY:
        logger.error("job %s: no CLOAKROOM_KEK_PRIVATE_KEY in this worker; is it the escrow worker?", job_id)
        return "no key-encryption key"
    import tenseal as ts

    try:
        secret = ts.context_from(unseal(escrow_path(job.dataset).read_bytes(), settings.CLOAKROOM_KEK_PRIVATE_KEY))
        plan = key_plan(job, aggregate_url=lambda _job, name: name)
        # The escrow worker runs the key agent's check: the plan is rebuilt from the query and the
        # bundle's manifest, and released only if identical.
        values = noisy_values(
            plan, lambda name: aggregate_path(job, name).read_bytes(), secret, manifest=job.dataset.bundle_manifest
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


# -- the key holder's side of the API -------------------------------------------------------------


def owned_he_job(*, owner: User, job_id: Any) -> Job:
    """A job on one of the caller's HE datasets; any other job is a 404."""
    try:
        return Job.objects.select_related("dataset").get(pk=job_id, dataset__owner=owner, dataset__mode=Dataset.Mode.HE)
    except (Job.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such HE job on your datasets.") from None


def _require_awaiting(job: Job) -> None:
    if job.status != Job.Status.AWAITING_KEY:
        raise Conflict(f"The job is {job.status}, not waiting for a key.", code="job_not_awaiting_key")


def key_plan(job: Job, *, aggregate_url) -> dict[str, Any]:
    """What the key holder needs: the aggregates to decrypt and the noise for each component."""
    _require_awaiting(job)
    plan = he_plan(job)
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
        "components": plan.key_plan(),
        "created_at": job.created_at.isoformat(),
    }


def aggregate_file(*, job: Job, name: str) -> Path:
    _require_awaiting(job)
    names = {a.name for a in he_plan(job).aggregates}
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
    from compute.services import _ledger_row

    _require_awaiting(job)
    plan = he_plan(job)
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
    with transaction.atomic():
        done = Job.objects.filter(pk=job.pk, status=Job.Status.AWAITING_KEY).update(
            status=Job.Status.RELEASED, result=result, finished_at=timezone.now(), error=""
        )
        if not done:
            raise Conflict("The job is no longer waiting for a key.", code="job_not_awaiting_key")
        _ledger_row(job, LedgerEntry.Kind.COMMIT)
    remove_job_files(job)
    logger.info("HE job %s released: epsilon %s charged to purchase %s", job.pk, job.epsilon, job.purchase_id)
    job.refresh_from_db()
    return job


def he_jobs_sweep() -> int:
    """Fail and refund HE jobs that waited for the key holder longer than CLOAKROOM_HE_KEY_WAIT_SECONDS."""
    from compute.services import job_fail

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
