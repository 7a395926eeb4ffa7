"""Writes for jobs: the one lifecycle every job kind goes through (docs/ARCHITECTURE.md).

submit (validate through the kind, price, reserve) -> send -> run (the kind's work, ending in a release
and its budget commit, or a failure and its refund) ; cancel ; sweep. The steps shared once a job
exists (claim, heartbeat, release, fail) are in compute/lifecycle.py and the budget's rules in
compute/budget.py; what differs between kinds is in compute/kinds/.

What the broker and the workers may do wrong is handled here too (docs/RELIABILITY.md): a task that
cannot be sent leaves its job queued and accepted, for the sweeper to send; a job whose worker is gone
is re-queued; and a queued job whose deliveries keep being dropped is failed and refunded after
``CLOAKROOM_JOB_MAX_DELIVERIES`` of them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from kombu.exceptions import ChannelError

from accounts.models import User
from compute import kinds
from compute.budget import budget_reserve, ledger_row
from compute.kinds.base import JobEstimate
from compute.lifecycle import abandoned, job_cancel_open, job_fail
from compute.models import Job, WorkerHeartbeat
from compute.selectors import job_get
from config.celery_app import app as celery_app
from config.exceptions import Conflict, ValidationFailed
from config.lookups import get_or_404
from marketplace import selectors as market
from marketplace.models import Dataset, LedgerEntry

logger = logging.getLogger(__name__)

# A job is sent to the broker once its transaction commits; the sweeper leaves a job that was never
# sent alone this long, so that it does not race that first send.
SEND_GRACE = timedelta(seconds=10)


def _spec_hash(spec: dict, eps: Decimal, dlt: Decimal, version: int) -> str:
    payload = json.dumps({"q": spec, "e": f"{eps:f}", "d": f"{dlt:f}", "v": version}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def job_submit(
    *,
    buyer: User,
    purchase_id: Any,
    kind: str,
    query: Any,
    epsilon: Any,
    delta: Any = 0,
    idempotency_key: str | None = None,
) -> tuple[Job, bool]:
    """Validate, reserve budget and queue a job. Returns ``(job, created)``.

    ``created`` is False when an earlier job answers the request: the same ``Idempotency-Key``, or a
    free repeat (the same spec, epsilon and delta on the same dataset version, already released),
    which costs nothing so that averaging repeated answers gains nothing.
    """
    purchase = get_or_404(
        market.purchase_list(user=buyer),
        message="No such purchase.",
        fields={"purchase": ["No such purchase."]},
        pk=purchase_id,
    )
    dataset = purchase.dataset
    job_kind = kinds.kind_for(mode=dataset.mode, name=kind)
    if idempotency_key:
        earlier = Job.objects.filter(buyer=buyer, idempotency_key=idempotency_key).first()
        if earlier is not None:
            return earlier, False
    if dataset.status != Dataset.Status.PUBLISHED:
        raise Conflict("This dataset is not available for new jobs (it is suspended).", code="dataset_unavailable")
    prepared = job_kind.prepare(dataset=dataset, query=query, epsilon=epsilon, delta=delta)
    eps, dlt = prepared.epsilon, prepared.delta
    spec_hash = _spec_hash(prepared.spec, eps, dlt, dataset.version)

    repeat = (
        Job.objects.filter(buyer=buyer, dataset=dataset, spec_hash=spec_hash, status=Job.Status.RELEASED)
        .order_by("created_at")
        .first()
    )
    if repeat is not None:
        return repeat, False

    try:
        with transaction.atomic():
            budget_reserve(purchase=purchase, epsilon=eps, delta=dlt, rho=prepared.rho)
            job = Job.objects.create(
                buyer=buyer,
                dataset=dataset,
                purchase=purchase,
                kind=job_kind.name,
                spec=prepared.spec,
                spec_hash=spec_hash,
                epsilon=eps,
                delta=dlt,
                rho=prepared.rho,
                dataset_version=dataset.version,
                idempotency_key=idempotency_key or None,
            )
            ledger_row(job, LedgerEntry.Kind.RESERVE)
            # After the commit the job is accepted whatever the broker does: a send that fails leaves it
            # queued, and the sweeper sends it once the broker is back.
            transaction.on_commit(lambda: job_send(job))
    except IntegrityError:
        # Two requests raced with the same Idempotency-Key: the other one won; answer with its job.
        earlier = Job.objects.filter(buyer=buyer, idempotency_key=idempotency_key).first()
        if earlier is None:
            raise
        return earlier, False
    logger.info("job %s queued: buyer %s, dataset %s, epsilon %s", job.pk, buyer.pk, dataset.pk, eps)
    return job, True


def job_send(job: Job) -> bool:
    """Send a job's first task to the broker and count the delivery. Never raises: when the broker
    cannot be reached (the publish is bounded by the retry policy and socket timeouts in the settings)
    the job stays queued with nothing sent, and the sweeper sends it later. Returns whether it was sent."""
    try:
        kinds.kind_of(job).send(job.pk)
    except Exception as exc:  # noqa: BLE001 (Kombu raises transport-specific errors; any of them means "not sent")
        logger.warning(
            "job %s: its task could not be sent to the broker (%s: %s); the sweeper will send it",
            job.pk,
            type(exc).__name__,
            exc,
        )
        return False
    try:
        Job.objects.filter(pk=job.pk).update(sends=F("sends") + 1, sent_at=timezone.now())
    except DatabaseError as exc:  # sent all the same; the sweeper may send it once more, which is harmless
        logger.warning("job %s: sent, but the delivery was not counted: %s", job.pk, exc)
    return True


def job_run(*, job_id: int) -> str:
    """Run a job's work, as its kind says. Idempotent: returns what it did ("released", "skipped",
    "failed", or a kind's intermediate state such as "awaiting key")."""
    job = Job.objects.select_related("dataset").filter(pk=job_id).first()
    if job is None:
        return "skipped"
    return kinds.kind_of(job).run(job_id=job_id)


def job_cancel(*, buyer: User, job_id: Any) -> Job:
    """Cancel one of the buyer's open jobs and refund it; a 409 when it has finished."""
    job = job_get(user=buyer, job_id=job_id)
    if not job_cancel_open(job):
        raise Conflict(
            f"The job is already {job.status}; only queued or running jobs can be cancelled.", code="job_finished"
        )
    kind = kinds.kind_of(job)
    transaction.on_commit(lambda: kind.discard(job))
    job.refresh_from_db()
    return job


def worker_heartbeat_record(*, token: str) -> None:
    """Record that a worker picked up ``token``. Idempotent: a repeated delivery updates one row."""
    WorkerHeartbeat.objects.update_or_create(token=token, defaults={"seen_at": timezone.now()})


def _requeue_abandoned(now: datetime, counts: dict[str, int]) -> list[Job]:
    """Running jobs whose worker is gone go back to the queue while they have attempts left."""
    to_send: list[Job] = []
    for job in Job.objects.filter(abandoned(now)).select_related("dataset"):
        if job.attempts >= settings.CLOAKROOM_JOB_MAX_ATTEMPTS:
            if job_fail(
                job_id=job.pk,
                reason="The job did not finish within its time limit after several attempts; your budget was refunded.",
                claim=job.claim,
            ):
                counts["failed"] += 1
        elif Job.objects.filter(abandoned(now), pk=job.pk, claim=job.claim).update(
            status=Job.Status.QUEUED, claim="", heartbeat_at=None, sent_at=None
        ):
            logger.info("job %s: its worker is gone (attempt %s); back in the queue", job.pk, job.attempts)
            to_send.append(job)
    return to_send


def _undelivered(now: datetime, skip: list[Job], counts: dict[str, int]) -> list[Job]:
    """Queued jobs never sent, or sent and lost; fails those sent too often."""
    redeliver = now - timedelta(seconds=settings.CLOAKROOM_JOB_REDELIVER_SECONDS)
    waiting = QueueLengths()
    queued = (
        Job.objects.filter(status=Job.Status.QUEUED)
        .filter(Q(sent_at__isnull=True, created_at__lt=now - SEND_GRACE) | Q(sent_at__lt=redeliver))
        .exclude(pk__in=[job.pk for job in skip])
        .select_related("dataset")
        .order_by("created_at", "id")
    )
    to_send: list[Job] = []
    for job in queued:
        if job.sent_at is not None:
            length = waiting.get(kinds.kind_of(job).queue())
            if length is None or length > 0:
                continue  # the broker cannot say, or the message may still wait its turn
            if job.sends >= settings.CLOAKROOM_JOB_MAX_DELIVERIES:
                if job_fail(
                    job_id=job.pk,
                    reason=f"The job was sent to the workers {job.sends} times and none of them could start it; "
                    "your budget was refunded. Try again later, or contact the administrator if it keeps failing.",
                    statuses=(Job.Status.QUEUED,),
                ):
                    logger.warning("job %s failed and refunded after %s deliveries", job.pk, job.sends)
                    counts["failed"] += 1
                continue
        to_send.append(job)
    return to_send


def jobs_sweep() -> dict[str, int]:
    """Send, re-queue or fail and refund jobs that would otherwise wait forever. Run by Celery beat
    every CLOAKROOM_SWEEP_SECONDS; safe to run twice at once (every change is a conditional UPDATE,
    and a task sent twice is claimed once).

    * A running job whose worker is gone (its heartbeat stopped, or its lease expired) goes back to
      the queue and is sent again while it has attempts left (CLOAKROOM_JOB_MAX_ATTEMPTS), then is
      failed and refunded. Only the worker that claims it next can release it.
    * A queued job that was never sent (the broker was down when it was submitted) is sent.
    * A queued job that was sent but not started within CLOAKROOM_JOB_REDELIVER_SECONDS, while its
      queue is empty (so its message is not waiting behind others: it was lost, or delivered to a
      worker that dropped it), is sent again, and after CLOAKROOM_JOB_MAX_DELIVERIES sends is failed
      and refunded.
    * Then each kind sweeps its own (an HE job that waited too long for its key is failed and refunded).

    Once one send fails the broker is taken to be down and nothing more is sent in this sweep.
    """
    now = timezone.now()
    counts = {"requeued": 0, "failed": 0}
    to_send = _requeue_abandoned(now, counts)
    to_send += _undelivered(now, to_send, counts)
    for job in to_send:
        if not job_send(job):
            break  # the broker is down; the next sweep tries again
        counts["requeued"] += 1
    for kind in kinds.all_kinds():
        counts.update(kind.sweep())
    return counts


class QueueLengths:
    """How many messages wait in each queue, asked of the broker once per queue and sweep; None when
    the broker cannot be asked."""

    def __init__(self) -> None:
        self._lengths: dict[str, int | None] = {}

    def get(self, queue: str) -> int | None:
        if queue not in self._lengths:
            self._lengths[queue] = self.ask(queue)
        return self._lengths[queue]

    @staticmethod
    def ask(queue: str) -> int | None:
        try:
            with celery_app.connection_for_write() as conn:
                try:
                    return conn.default_channel.queue_declare(queue=queue, passive=True).message_count
                except ChannelError:
                    return 0  # no such queue: nothing waits in it (Redis drops an empty list)
        except Exception as exc:  # noqa: BLE001 (Kombu raises transport-specific errors; any means "cannot say")
            logger.warning("sweeper: could not read the length of queue %s: %s", queue, exc)
            return None


def job_estimate(
    *,
    user: User,
    purchase_id: Any,
    query: Any,
    epsilon: Any = None,
    delta: Any = 0,
    ci95_halfwidth: float | None = None,
    rows: int | None = None,
    kind: str = Job.Kind.QUERY,
) -> JobEstimate:
    """The accuracy and price of a job, from the declared bounds and the mechanism alone.

    Writes nothing and reads no data, so it spends no budget: the API's estimate endpoint and the
    dataset page's live estimate both call it. Give ``ci95_halfwidth`` instead of ``epsilon`` to
    find the smallest epsilon that reaches that accuracy. ``rows`` is the buyer's own figure for the
    rows an answer covers; without it the kind assumes what the public row count allows
    (``rows_assumed`` and ``rows_basis`` say what), and nothing where the count is private.
    """
    purchase = market.purchase_get(user=user, purchase_id=purchase_id)
    target = ci95_halfwidth
    if target is None and epsilon in (None, ""):
        raise ValidationFailed(
            "Give epsilon, or ci95_halfwidth to find the epsilon it needs.",
            fields={"epsilon": ["This field is required."]},
        )
    if target is not None and not (math.isfinite(target) and target > 0):
        raise ValidationFailed(
            "ci95_halfwidth: must be a finite number greater than 0.",
            fields={"ci95_halfwidth": ["Must be greater than 0."]},
        )
    job_kind = kinds.kind_for(mode=purchase.dataset.mode, name=kind)
    return job_kind.estimate(purchase=purchase, query=query, epsilon=epsilon, delta=delta, target=target, rows=rows)
