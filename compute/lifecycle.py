"""The steps every job kind shares once its job exists: claim, heartbeat, release-and-commit,
fail-and-refund. Written once; a kind's work calls them (compute/kinds/), and so do the services that
cancel and sweep (compute/services.py).

* Claim: a worker takes a job with a conditional UPDATE that only matches a queued job, or a running
  one whose worker is gone, and writes a fresh ``claim`` token. Only the holder of the current claim
  can move the job on, so a task delivered twice, or a worker that lost its claim to the sweeper,
  changes nothing.
* Release: the result, the status and the ``commit`` ledger row are written in one transaction, by a
  conditional UPDATE that matches only while the job is still where the caller left it: one job, one
  charge, one result.
* Fail: moving an open job to failed and refunding it happen in one transaction, once.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connections, transaction
from django.db.models import F, Q
from django.db.models.functions import Now
from django.utils import timezone

from compute.budget import budget_after_release, budget_refund, ledger_row
from compute.models import Job
from compute.pate_budget import members_commit, members_refund
from compute.pate_payment import payment_refund, payment_settle
from marketplace.models import LedgerEntry

logger = logging.getLogger(__name__)

# A running job whose heartbeat is older than this many beats belongs to a dead worker.
HEARTBEAT_MISSES = 3


def abandoned(now: datetime) -> Q:
    """Running jobs whose worker is gone: the lease has expired, or (kinds that beat) the heartbeat stopped.

    Heartbeats are written and compared in the database's clock (``Now()``), so a worker's clock and
    the sweeper's need not agree to within the few beats that decide."""
    lease = now - timedelta(seconds=settings.CLOAKROOM_JOB_LEASE_SECONDS)
    silent = Now() - timedelta(seconds=HEARTBEAT_MISSES * settings.CLOAKROOM_JOB_HEARTBEAT_SECONDS)
    return Q(status=Job.Status.RUNNING) & (Q(started_at__lt=lease) | Q(heartbeat_at__lt=silent))


def job_claim(job_id: int, *, heartbeat: bool = False) -> str | None:
    """Take the job for this worker: queued, or running under a worker that is gone. Returns the new
    claim token, or None when the job is done, cancelled or held by a live worker.

    ``heartbeat``: the caller beats the job's heartbeat while it runs (:func:`job_heartbeat`), so the
    sweeper may take the job back once the beats stop. Kinds whose parts run in other tasks and may
    wait in the queue (HE) claim without one and keep the lease alone.
    """
    token = secrets.token_hex(16)
    now = timezone.now()
    taken = Job.objects.filter(Q(status=Job.Status.QUEUED) | abandoned(now), pk=job_id).update(
        status=Job.Status.RUNNING,
        claim=token,
        started_at=now,
        heartbeat_at=Now() if heartbeat else None,
        attempts=F("attempts") + 1,
    )
    return token if taken else None


@contextmanager
def job_heartbeat(job_id: int, claim: str) -> Iterator[None]:
    """Beat the running job's heartbeat from a thread every CLOAKROOM_JOB_HEARTBEAT_SECONDS.

    A worker that dies (SIGKILL, the hard time limit, a lost machine) stops beating, and the sweeper
    re-queues the job after HEARTBEAT_MISSES beats. The thread stops when the block ends, or as soon
    as the job is no longer running under this claim (released, failed, cancelled or taken back).
    """
    interval = settings.CLOAKROOM_JOB_HEARTBEAT_SECONDS
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(interval):
                try:
                    if not Job.objects.filter(pk=job_id, status=Job.Status.RUNNING, claim=claim).update(
                        heartbeat_at=Now()
                    ):
                        return
                except DatabaseError as exc:
                    logger.warning("job %s: heartbeat not recorded: %s", job_id, exc)
        finally:
            connections.close_all()  # this thread's own connections

    thread = threading.Thread(target=beat, name=f"job-{job_id}-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def job_release(
    *,
    job: Job,
    result: dict[str, Any],
    claim: str | None = None,
    status: str = Job.Status.RUNNING,
    used_rho: Decimal | None = None,
    answered: int = 0,
) -> bool:
    """Store the result, mark the job released and commit its budget, in one transaction. Returns
    whether it did.

    Matches only while the job is still in ``status`` (and, when given, under ``claim``): a job that
    was cancelled, failed or re-claimed meanwhile is left alone, and nothing is released or charged.

    A PATE job (an ensemble's, no purchase) commits ``used_rho`` (at most its reservation; the rest is
    refunded) on every member dataset, and its buyer pays for the ``answered`` labels, in the same
    transaction (compute/pate_budget.py, compute/pate_payment.py).
    """
    with transaction.atomic():
        query = Job.objects.filter(pk=job.pk, status=status)
        if claim is not None:
            query = query.filter(claim=claim)
        # Locks: the job's row, then its purchase's and its dataset's (budget_after_release), or its member
        # datasets' in primary-key order (members_commit), the order every budget move takes them in.
        current = query.select_for_update().first()
        if current is None:
            return False
        if current.ensemble_id is None:
            result = {**result, "privacy": budget_after_release(current)}
        else:
            privacy = members_commit(current, current.rho if used_rho is None else used_rho)
            result = {**result, "privacy": privacy, "payment": payment_settle(current, answered=answered)}
        if not query.update(status=Job.Status.RELEASED, result=result, finished_at=timezone.now(), error=""):
            transaction.set_rollback(True)  # pragma: no cover - the row is locked since the select above
            return False  # pragma: no cover
        if current.ensemble_id is None:
            ledger_row(current, LedgerEntry.Kind.COMMIT)
    logger.info("job %s released: epsilon %s charged (purchase %s)", job.pk, job.epsilon, job.purchase_id)
    return True


def job_refund(job: Job) -> None:
    """Give back what an open job holds: its purchase's and dataset's budget, or (PATE) every member
    dataset's budget and the buyer's credits on hold. Only the caller that just moved the job out of an
    open status (a conditional UPDATE that matched) may call it, in that transaction."""
    if job.ensemble_id is None:
        budget_refund(job)
    else:
        members_refund(job)
        payment_refund(job)


@transaction.atomic
def job_fail(
    *, job_id: int, reason: str, claim: str | None = None, statuses: Sequence[str] = Job.OPEN_STATUSES
) -> bool:
    """Mark an open job failed and refund its reservation, once. Returns whether it did.

    ``claim`` and ``statuses`` narrow it to a job still held by that claim, or still in one of those
    statuses, so that a job a worker took meanwhile is left alone."""
    query = Job.objects.filter(pk=job_id, status__in=statuses)
    if claim is not None:
        query = query.filter(claim=claim)
    if not query.update(status=Job.Status.FAILED, error=reason[:2000], finished_at=timezone.now()):
        return False
    job_refund(Job.objects.get(pk=job_id))
    logger.info("job %s failed and refunded: %s", job_id, reason[:200])
    return True


@transaction.atomic
def job_cancel_open(job: Job) -> bool:
    """Cancel an open job and refund it, once. Returns whether it did (False: it had finished)."""
    if not Job.objects.filter(pk=job.pk, status__in=Job.OPEN_STATUSES).update(
        status=Job.Status.CANCELLED, finished_at=timezone.now(), error="Cancelled by the buyer."
    ):
        return False
    job_refund(job)
    return True
