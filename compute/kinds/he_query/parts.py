"""The work of an HE ``query`` job on the server: split into parts, aggregate under encryption, combine.

1. ``he_job_start`` (task ``compute.run_he_job``, queue ``he``) claims the job, cuts its ciphertext
   chunks into parts of ``CLOAKROOM_HE_PART_CHUNKS``, queues one ``compute.run_he_part`` task for every
   part but the first, and computes the first itself.
2. Each part (any worker process on the ``he`` queue) streams its chunks from the bundle, computes every
   aggregate the plan needs over them (compute/engines/he/aggregate.py ``aggregate_part``), writes the partial
   ciphertexts next to the bundle and marks its part done. The worker that finishes the last part adds
   the partials together, stores one ciphertext per aggregate and moves the job to ``awaiting_key``.
   Nothing here can decrypt: workers hold only the public context.

Only the holder of the job's current claim can complete parts or move it on, so a part delivered twice,
or a worker that lost its claim to the sweeper, changes nothing.
"""

from __future__ import annotations

import logging
import math

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from cloakroom_client.protocol.bundle import column_file_name
from cloakroom_client.protocol.errors import QueryError
from compute import tasks
from compute.engines import he as engine
from compute.engines.he import plan as server_plan
from compute.kinds.he_query.key_holder import escrow_release_send
from compute.kinds.he_query.plan import (
    aggregate_path,
    job_folder,
    job_plan,
    public_context,
    remove_job_files,
    write_atomic,
)
from compute.lifecycle import job_claim, job_fail
from compute.models import Job, JobPart
from marketplace.he import bundle_folder
from marketplace.models import Dataset

logger = logging.getLogger(__name__)

PART_FAILED = (
    "The encrypted computation failed on the server; your budget was refunded. Try again, or contact the "
    "administrator if it keeps failing."
)


def he_job_start(*, job_id: int) -> str:
    """Claim an HE job and queue its parts. Idempotent, like every kind's first task."""
    token = job_claim(job_id)
    if token is None:
        return "skipped"
    job = Job.objects.select_related("dataset").get(pk=job_id)
    try:
        plan = job_plan(job)
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
        transaction.on_commit(lambda: _send_parts(job_id, token, len(ranges)))
    logger.info("HE job %s started: %d chunks in %d parts", job_id, chunks, len(ranges))
    # This process computes the first part itself: one task dispatch fewer, and a one-part job (most
    # of them) runs start to finish in one task. The other parts are already queued for any worker.
    return he_part_run(job_id=job_id, claim=token, index=0, plan=plan)


def _send_parts(job_id: int, claim: str, parts: int) -> None:
    """Queue every part but the first, which the job-start task computes itself."""
    for index in range(1, parts):
        tasks.he_part_run_task.apply_async(args=[job_id, claim, index], queue=settings.CLOAKROOM_HE_QUEUE)


def _partial_name(claim: str, index: int, aggregate: str) -> str:
    return f"{claim}.p{index:05d}.{aggregate}.ct"


def he_part_run(*, job_id: int, claim: str, index: int, plan: server_plan.Plan | None = None) -> str:
    """Compute one part of an HE job; the last part to finish combines them all. ``plan`` saves the
    job-start task planning the job a second time for the part it computes itself."""
    try:
        part = JobPart.objects.select_related("job__dataset").get(job_id=job_id, claim=claim, index=index)
    except JobPart.DoesNotExist:
        return "skipped"
    job = part.job
    if part.done_at is not None or job.status != Job.Status.RUNNING or job.claim != claim:
        return "skipped"
    dataset = job.dataset
    try:
        plan = plan if plan is not None else job_plan(job)
        manifest = dataset.bundle_manifest
        columns = server_plan.manifest_columns(manifest)
        folder = bundle_folder(dataset)

        def read(column: str, chunk: int) -> bytes:
            return (folder / column_file_name(columns[column].index, chunk)).read_bytes()

        partials = engine.aggregate_part(
            public_context(dataset),
            range(part.chunk_start, part.chunk_end),
            read,
            [a.spec() for a in plan.aggregates],
            slots=manifest["slots"],
            weights=plan.weights,
        )
        out = job_folder(job)
        for name, data in partials.items():
            write_atomic(out / _partial_name(claim, index, name), data)
    except Exception:  # noqa: BLE001 (any failure of the computation fails and refunds the job)
        logger.exception("HE job %s part %s failed", job_id, index)
        job_fail(job_id=job_id, reason=PART_FAILED, claim=claim)
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


def _combine(job: Job, plan: server_plan.Plan, claim: str) -> str:
    """Add the parts' partial aggregates, store one ciphertext per aggregate, await the key."""
    folder = job_folder(job)
    count = JobPart.objects.filter(job_id=job.pk, claim=claim).count()
    context = public_context(job.dataset)
    for agg in plan.aggregates:
        paths = [folder / _partial_name(claim, i, agg.name) for i in range(count)]
        total = engine.encrypted_sum(context, engine.iter_files(paths))
        write_atomic(aggregate_path(job, agg.name), total)
    with transaction.atomic():
        moved = Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING, claim=claim).update(
            status=Job.Status.AWAITING_KEY, computed_at=timezone.now()
        )
        if moved and job.dataset.key_custody == Dataset.KeyCustody.ESCROW:
            transaction.on_commit(lambda: escrow_release_send(job.pk))
    for path in folder.glob(f"{claim}.p*.ct"):
        path.unlink(missing_ok=True)
    if not moved:
        return "skipped"
    logger.info("HE job %s computed: %d encrypted aggregates await the key holder", job.pk, len(plan.aggregates))
    return "awaiting key"
