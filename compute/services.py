"""Writes for jobs: submit (validate and reserve), run (compute and release), fail, cancel, sweep.

The budget guarantee rests on three rules, each enforced in the database:

* Reserve: ``Purchase.epsilon_used`` (and ``delta_used``) only moves by a conditional UPDATE that
  matches while ``used + asked <= allotment``, in the transaction that creates the job and its
  ``reserve`` ledger row. Concurrent submissions serialise on the purchase row; the losers match no
  row and get a 409 with nothing written.
* Release: the result, the job's status and the ``commit`` ledger row are written in one
  transaction, and only by the worker holding the job's current ``claim`` token while the job is
  still running. A second delivery of the task, or a worker that lost its claim to the sweeper,
  matches no row and writes nothing: one job, one charge, one result.
* Refund: failure and cancellation move the job out of an open status with a conditional UPDATE and,
  only if that matched, write the ``refund`` row and give the budget back, so a refund happens once.

What the broker and the workers may do wrong is handled here too (docs/RELIABILITY.md): a task that
cannot be sent leaves its job queued and accepted, for the sweeper to send; a running DP job beats a
heartbeat, so a dead worker's job is re-queued within a minute instead of after its lease; and a
queued job whose deliveries keep being dropped is failed and refunded after
``CLOAKROOM_JOB_MAX_DELIVERIES`` of them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_UP, Decimal
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connections, transaction
from django.db.models import F, Q
from django.db.models.functions import Now
from django.utils import timezone

from accounts.models import User
from compute.engines import dp
from compute.he_services import enqueue_he_job, he_jobs_sweep, prepare_he_query, remove_job_files
from compute.models import Job
from config.exceptions import Conflict, NotFound, ValidationFailed
from marketplace import selectors as market
from marketplace.datafiles import dataset_columns, dataset_schema
from marketplace.models import EPSILON_QUANTUM, Dataset, LedgerEntry, Purchase
from marketplace.services import purchase_price

logger = logging.getLogger(__name__)

DELTA_Q = Decimal("0.000000000001")

# A running DP job whose heartbeat is older than this many beats belongs to a dead worker.
HEARTBEAT_MISSES = 3
# A job is sent to the broker once its transaction commits; the sweeper leaves a job that was never
# sent alone this long, so that it does not race that first send.
SEND_GRACE = timedelta(seconds=10)


def dp_neighbouring(*, row_count_public: bool, epsilon: float) -> dict[str, Any]:
    """What a DP receipt says of its neighbouring relation (docs/PRIVACY.md).

    The epsilon charged is for datasets that differ by one row added or removed. When the owner
    made the row count public only replace-one neighbours are meaningful, and an add/remove
    epsilon-DP release is 2 epsilon-DP for them: the receipt states that figure too.
    """
    out: dict[str, Any] = {"neighbouring": dp.NEIGHBOURING}
    if row_count_public:
        out["epsilon_replace_one"] = 2 * epsilon
    return out


def _query_error(exc: dp.QueryError) -> ValidationFailed:
    return ValidationFailed(f"{exc.field}: {exc.message}", code="invalid_query", fields={exc.field: [exc.message]})


def _budget_numbers(epsilon: Any, delta: Any) -> tuple[Decimal, Decimal]:
    """Exact epsilon and delta from the request, refusing anything not finite or out of range.

    Only ASCII decimal notation is read (``0.5``, ``1e-5``). Python's Decimal also accepts digit
    separators and any script's digits, so ``"1_0"`` would be 10 and ``"١"`` would be 1: a buyer who
    meant something else must get a 400 naming the field, never a charge for a number they did not
    write.
    """

    def decimal_text(value: Any) -> str:
        text = str(value).strip()
        if "_" in text or not text.isascii():
            raise ValueError("not plain decimal notation")
        return text

    errors: dict[str, list[str]] = {}
    not_a_number = "Must be a number in plain decimal notation, such as 0.5 or 1e-5 (no underscores)."
    try:
        eps = Decimal(decimal_text(epsilon))
        if not eps.is_finite() or eps <= 0:
            errors["epsilon"] = ["Must be a finite number greater than 0."]
        elif eps != eps.quantize(EPSILON_QUANTUM):
            errors["epsilon"] = ["At most 6 decimal places."]
    except (ArithmeticError, ValueError, TypeError):
        errors["epsilon"] = [not_a_number]
        eps = Decimal(0)
    try:
        dlt = Decimal(decimal_text(delta if delta is not None else 0))
        if not dlt.is_finite() or dlt < 0 or dlt >= 1:
            errors["delta"] = ["Must be a finite number in [0, 1)."]
        elif dlt != dlt.quantize(DELTA_Q):
            errors["delta"] = ["At most 12 decimal places."]
    except (ArithmeticError, ValueError, TypeError):
        errors["delta"] = [not_a_number]
        dlt = Decimal(0)
    if errors:
        name, reasons = next(iter(errors.items()))
        raise ValidationFailed(f"{name}: {reasons[0]}", fields=errors)
    return eps, dlt


def prepare_query(*, dataset: Dataset, query: Any, epsilon: Any, delta: Any) -> tuple[dp.Query, dict, Decimal, Decimal]:
    """Validate a query body against the dataset's declared schema; nothing is reserved here."""
    eps, dlt = _budget_numbers(epsilon, delta)
    schema = dataset_schema(dataset)
    try:
        parsed = dp.parse_query(query, schema)
        if dlt > 0 and not dp.needs_delta(parsed):
            raise dp.QueryError("delta", "A quantile uses the exponential mechanism and needs no delta; send 0.")
        if dlt > 0 and dlt > dataset.delta_cap:
            raise dp.QueryError("delta", f"Over the dataset's delta cap of {dataset.delta_cap.normalize():f}.")
        plan = dp.plan(schema, parsed, float(eps), float(dlt))
    except dp.QueryError as exc:
        raise _query_error(exc) from None
    return parsed, {"schema": schema, "plan": plan}, eps, dlt


def _spec_hash(canonical: dict, eps: Decimal, dlt: Decimal, version: int) -> str:
    payload = json.dumps({"q": canonical, "e": f"{eps:f}", "d": f"{dlt:f}", "v": version}, sort_keys=True)
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
    free repeat (the same query, epsilon and delta on the same dataset version, already released),
    which costs nothing so that averaging repeated answers gains nothing.
    """
    try:
        purchase = Purchase.objects.select_related("dataset").get(pk=purchase_id, buyer=buyer)
    except (Purchase.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such purchase.", fields={"purchase": ["No such purchase."]}) from None
    if kind != Job.Kind.QUERY:
        raise ValidationFailed("kind: only 'query' jobs run on DP datasets.", fields={"kind": ["Must be 'query'."]})
    dataset = purchase.dataset
    if idempotency_key:
        earlier = Job.objects.filter(buyer=buyer, idempotency_key=idempotency_key).first()
        if earlier is not None:
            return earlier, False
    if dataset.status != Dataset.Status.PUBLISHED:
        raise Conflict("This dataset is not available for new jobs (it is suspended).", code="dataset_unavailable")
    if dataset.mode == Dataset.Mode.HE:
        eps, dlt = _budget_numbers(epsilon, delta)
        canonical = prepare_he_query(dataset=dataset, query=query, eps=eps, dlt=dlt).query
    else:
        parsed, _, eps, dlt = prepare_query(dataset=dataset, query=query, epsilon=epsilon, delta=delta)
        canonical = parsed.canonical()
    spec_hash = _spec_hash(canonical, eps, dlt, dataset.version)

    repeat = (
        Job.objects.filter(buyer=buyer, dataset=dataset, spec_hash=spec_hash, status=Job.Status.RELEASED)
        .order_by("created_at")
        .first()
    )
    if repeat is not None:
        return repeat, False

    try:
        with transaction.atomic():
            reserved = Purchase.objects.filter(
                pk=purchase.pk,
                epsilon_used__lte=F("epsilon") - eps,
                delta_used__lte=F("delta") - dlt,
            ).update(epsilon_used=F("epsilon_used") + eps, delta_used=F("delta_used") + dlt)
            if not reserved:
                current = Purchase.objects.get(pk=purchase.pk)
                eps_left = current.epsilon - current.epsilon_used
                delta_left = current.delta - current.delta_used
                raise Conflict(
                    f"Not enough budget left on this purchase: the job asks for epsilon {eps.normalize():f}"
                    + (f" and delta {dlt.normalize():f}" if dlt else "")
                    + f"; epsilon {eps_left.normalize():f} and delta {delta_left.normalize():f} remain.",
                    code="insufficient_budget",
                    extra={"epsilon_remaining": f"{eps_left:f}", "delta_remaining": f"{delta_left:f}"},
                )
            job = Job.objects.create(
                buyer=buyer,
                dataset=dataset,
                purchase=purchase,
                kind=kind,
                spec=canonical,
                spec_hash=spec_hash,
                epsilon=eps,
                delta=dlt,
                dataset_version=dataset.version,
                idempotency_key=idempotency_key or None,
            )
            LedgerEntry.objects.create(
                dataset=dataset, purchase=purchase, job_id=job.pk, kind=LedgerEntry.Kind.RESERVE, epsilon=eps, delta=dlt
            )
            # After the commit the job is accepted whatever the broker does: a send that fails leaves it
            # queued, and the sweeper sends it once the broker is back.
            transaction.on_commit(lambda: _send(job.pk, dataset.mode))
    except IntegrityError:
        # Two requests raced with the same Idempotency-Key: the other one won; answer with its job.
        earlier = Job.objects.filter(buyer=buyer, idempotency_key=idempotency_key).first()
        if earlier is None:
            raise
        return earlier, False
    logger.info("job %s queued: buyer %s, dataset %s, epsilon %s", job.pk, buyer.pk, dataset.pk, eps)
    return job, True


def _enqueue(job_id: int, mode: str = Dataset.Mode.DP) -> None:
    if mode == Dataset.Mode.HE:
        enqueue_he_job(job_id)
        return
    from compute.tasks import run_dp_job

    run_dp_job.apply_async(args=[job_id], queue=settings.CLOAKROOM_DP_QUEUE)


def _send(job_id: int, mode: str = Dataset.Mode.DP) -> bool:
    """Send a job's task to the broker and count the delivery. Never raises: when the broker cannot
    be reached (the publish is bounded by the retry policy and socket timeouts in the settings) the
    job stays queued with nothing sent, and the sweeper sends it later. Returns whether it was sent."""
    try:
        _enqueue(job_id, mode)
    except Exception as exc:  # Kombu raises transport-specific errors; any of them means "not sent".
        logger.warning(
            "job %s: its task could not be sent to the broker (%s: %s); the sweeper will send it",
            job_id,
            type(exc).__name__,
            exc,
        )
        return False
    try:
        Job.objects.filter(pk=job_id).update(sends=F("sends") + 1, sent_at=timezone.now())
    except DatabaseError as exc:  # sent all the same; the sweeper may send it once more, which is harmless
        logger.warning("job %s: sent, but the delivery was not counted: %s", job_id, exc)
    return True


def _queue_of(mode: str) -> str:
    return settings.CLOAKROOM_HE_QUEUE if mode == Dataset.Mode.HE else settings.CLOAKROOM_DP_QUEUE


def _abandoned(now) -> Q:
    """Running jobs whose worker is gone: the lease has expired, or (DP jobs) the heartbeat stopped.

    Heartbeats are written and compared in the database's clock (``Now()``), so a worker's clock and
    the sweeper's need not agree to within the few beats that decide."""
    lease = now - timedelta(seconds=settings.CLOAKROOM_JOB_LEASE_SECONDS)
    silent = Now() - timedelta(seconds=HEARTBEAT_MISSES * settings.CLOAKROOM_JOB_HEARTBEAT_SECONDS)
    return Q(status=Job.Status.RUNNING) & (Q(started_at__lt=lease) | Q(heartbeat_at__lt=silent))


def _claim(job_id: int, *, heartbeat: bool = False) -> str | None:
    """Take the job for this worker: queued, or running under a worker that is gone.

    ``heartbeat``: the caller beats the job's heartbeat while it runs (:func:`_heartbeat`), so the
    sweeper may take the job back once the beats stop. HE jobs, whose parts run in other tasks and
    may wait in the queue, claim without one and keep the lease alone.
    """
    token = secrets.token_hex(16)
    now = timezone.now()
    taken = Job.objects.filter(Q(status=Job.Status.QUEUED) | _abandoned(now), pk=job_id).update(
        status=Job.Status.RUNNING,
        claim=token,
        started_at=now,
        heartbeat_at=Now() if heartbeat else None,
        attempts=F("attempts") + 1,
    )
    return token if taken else None


@contextmanager
def _heartbeat(job_id: int, claim: str) -> Iterator[None]:
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


def job_run(*, job_id: int) -> str:
    """Run one job to its release. Idempotent: returns what it did ("released", "skipped", "failed")."""
    token = _claim(job_id, heartbeat=True)
    if token is None:
        return "skipped"  # done, cancelled, or running under another worker's live claim
    with _heartbeat(job_id, token):
        return _run_claimed(job_id, token)


def _run_claimed(job_id: int, token: str) -> str:
    job = Job.objects.select_related("dataset").get(pk=job_id)
    if settings.CLOAKROOM_FAULT_JOB_DELAY_SECONDS:
        time.sleep(settings.CLOAKROOM_FAULT_JOB_DELAY_SECONDS)
    try:
        dataset = job.dataset
        schema = dataset_schema(dataset)
        query = dp.parse_query(job.spec, schema)
        data = dataset_columns(dataset, schema)
        release = dp.run(data, schema, query, float(job.epsilon), float(job.delta))
    except Exception as exc:  # the engine's and the loader's errors become an actionable reason
        logger.exception("job %s failed while computing", job_id)
        job_fail(job_id=job_id, reason=_reason(exc), claim=token)
        return "failed"
    result = {
        **release.as_dict(),
        **dp_neighbouring(row_count_public=dataset.row_count_public, epsilon=float(job.epsilon)),
        "dataset": dataset.pk,
        "dataset_version": job.dataset_version,
        "released_at": timezone.now().isoformat(),
        "mode": "dp",
    }
    with transaction.atomic():
        done = Job.objects.filter(pk=job_id, status=Job.Status.RUNNING, claim=token).update(
            status=Job.Status.RELEASED, result=result, finished_at=timezone.now(), error=""
        )
        if not done:
            return "skipped"  # cancelled or re-claimed meanwhile: nothing released, nothing charged
        _ledger_row(job, LedgerEntry.Kind.COMMIT)
    logger.info("job %s released: epsilon %s charged to purchase %s", job_id, job.epsilon, job.purchase_id)
    return "released"


def _reason(exc: Exception) -> str:
    if isinstance(exc, dp.QueryError):
        return f"The query no longer fits the dataset: {exc.message}"
    return "The computation failed on the server; your budget was refunded. Try again, or contact the administrator if it keeps failing."


def _ledger_row(job: Job, kind: str) -> LedgerEntry:
    """Append one privacy-ledger row for the whole of a job's epsilon and delta."""
    return LedgerEntry.objects.create(
        dataset_id=job.dataset_id,
        purchase_id=job.purchase_id,
        job_id=job.pk,
        kind=kind,
        epsilon=job.epsilon,
        delta=job.delta,
    )


def _refund(job: Job) -> None:
    Purchase.objects.filter(pk=job.purchase_id).update(
        epsilon_used=F("epsilon_used") - job.epsilon, delta_used=F("delta_used") - job.delta
    )
    _ledger_row(job, LedgerEntry.Kind.REFUND)


@transaction.atomic
def job_fail(*, job_id: int, reason: str, claim: str | None = None, statuses=Job.OPEN_STATUSES) -> bool:
    """Mark an open job failed and refund its reservation, once. Returns whether it did.

    ``claim`` and ``statuses`` narrow it to a job still held by that claim, or still in one of those
    statuses, so that a job a worker took meanwhile is left alone."""
    query = Job.objects.filter(pk=job_id, status__in=statuses)
    if claim is not None:
        query = query.filter(claim=claim)
    if not query.update(status=Job.Status.FAILED, error=reason[:2000], finished_at=timezone.now()):
        return False
    _refund(Job.objects.get(pk=job_id))
    logger.info("job %s failed and refunded: %s", job_id, reason[:200])
    return True


@transaction.atomic
def job_cancel(*, buyer: User, job_id: Any) -> Job:
    try:
        job = Job.objects.get(pk=job_id, buyer=buyer)
    except (Job.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such job.") from None
    if Job.objects.filter(pk=job.pk, status__in=Job.OPEN_STATUSES).update(
        status=Job.Status.CANCELLED, finished_at=timezone.now(), error="Cancelled by the buyer."
    ):
        _refund(job)
        if job.dataset.mode == Dataset.Mode.HE:
            transaction.on_commit(lambda: remove_job_files(job))
    else:
        raise Conflict(
            f"The job is already {job.status}; only queued or running jobs can be cancelled.", code="job_finished"
        )
    job.refresh_from_db()
    return job


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

    Once one send fails the broker is taken to be down and nothing more is sent in this sweep.
    """
    now = timezone.now()
    counts = {"requeued": 0, "failed": 0}
    to_send: list[Job] = []
    for job in Job.objects.filter(_abandoned(now)).select_related("dataset"):
        if job.attempts >= settings.CLOAKROOM_JOB_MAX_ATTEMPTS:
            if job_fail(
                job_id=job.pk,
                reason="The job did not finish within its time limit after several attempts; your budget was refunded.",
                claim=job.claim,
            ):
                counts["failed"] += 1
        elif Job.objects.filter(_abandoned(now), pk=job.pk, claim=job.claim).update(
            status=Job.Status.QUEUED, claim="", heartbeat_at=None, sent_at=None
        ):
            logger.info("job %s: its worker is gone (attempt %s); back in the queue", job.pk, job.attempts)
            to_send.append(job)

    redeliver = now - timedelta(seconds=settings.CLOAKROOM_JOB_REDELIVER_SECONDS)
    waiting = _QueueLengths()
    queued = (
        Job.objects.filter(status=Job.Status.QUEUED)
        .filter(Q(sent_at__isnull=True, created_at__lt=now - SEND_GRACE) | Q(sent_at__lt=redeliver))
        .exclude(pk__in=[job.pk for job in to_send])
        .select_related("dataset")
        .order_by("created_at", "id")
    )
    for job in queued:
        if job.sent_at is not None:
            length = waiting.get(_queue_of(job.dataset.mode))
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

    for job in to_send:
        if not _send(job.pk, job.dataset.mode):
            break  # the broker is down; the next sweep tries again
        counts["requeued"] += 1
    counts["key_wait_expired"] = he_jobs_sweep()
    return counts


class _QueueLengths:
    """How many messages wait in each queue, asked of the broker once per queue and sweep; None when
    the broker cannot be asked."""

    def __init__(self) -> None:
        self._lengths: dict[str, int | None] = {}

    def get(self, queue: str) -> int | None:
        if queue not in self._lengths:
            self._lengths[queue] = self._ask(queue)
        return self._lengths[queue]

    @staticmethod
    def _ask(queue: str) -> int | None:
        from kombu.exceptions import ChannelError

        from config.celery_app import app

        try:
            with app.connection_for_write() as conn:
                try:
                    return conn.default_channel.queue_declare(queue=queue, passive=True).message_count
                except ChannelError:
                    return 0  # no such queue: nothing waits in it (Redis drops an empty list)
        except Exception as exc:  # Kombu raises transport-specific errors; any of them means "cannot say".
            logger.warning("sweeper: could not read the length of queue %s: %s", queue, exc)
            return None


@dataclass(frozen=True)
class JobEstimate:
    """What a job would cost and how accurate it would be; see :func:`job_estimate`."""

    epsilon: Decimal
    delta: Decimal
    price: Decimal
    noise_scale: float
    ci95_halfwidth: float | None
    exact: bool
    mechanism: str
    note: str
    rows_assumed: int | None
    epsilon_remaining: Decimal
    affordable: bool


def job_estimate(
    *,
    user: User,
    purchase_id: Any,
    query: Any,
    epsilon: Any = None,
    delta: Any = 0,
    ci95_halfwidth: float | None = None,
    rows: int | None = None,
) -> JobEstimate:
    """The accuracy and price of a job, from the declared bounds and the mechanism alone.

    Writes nothing and reads no data, so it spends no budget: the API's estimate endpoint and the
    dataset page's live estimate both call it. Give ``ci95_halfwidth`` instead of ``epsilon`` to
    find the smallest epsilon that reaches that accuracy. ``rows`` defaults to the public row count
    when the query covers the whole table.
    """
    purchase = market.purchase_get(user=user, purchase_id=purchase_id)
    dataset = purchase.dataset
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
    if (
        rows is None
        and dataset.row_count_public
        and isinstance(query, dict)
        and not query.get("filters")
        and not query.get("group_by")
    ):
        rows = dataset.row_count
    if dataset.mode == Dataset.Mode.HE:
        return _he_estimate(purchase=purchase, query=query, epsilon=epsilon, delta=delta, target=target, rows=rows)
    parsed, ctx, eps, dlt = prepare_query(
        dataset=dataset, query=query, epsilon=epsilon if epsilon not in (None, "") else "1", delta=delta or "0"
    )
    schema = ctx["schema"]
    try:
        if target is not None:
            eps = Decimal(str(dp.epsilon_for_halfwidth(schema, parsed, target, float(dlt), rows=rows))).quantize(
                EPSILON_QUANTUM, rounding=ROUND_UP
            )
        est = dp.estimate(schema, parsed, float(eps), float(dlt), rows=rows)
    except dp.QueryError as exc:
        raise _query_error(exc) from None
    remaining = purchase.epsilon - purchase.epsilon_used
    return JobEstimate(
        epsilon=eps,
        delta=dlt,
        price=purchase_price(dataset=dataset, epsilon=eps),
        noise_scale=est.noise_scale,
        ci95_halfwidth=est.ci95_halfwidth,
        exact=est.exact,
        mechanism=est.mechanism,
        note=est.note,
        rows_assumed=rows,
        epsilon_remaining=remaining,
        affordable=eps <= remaining,
    )


def _he_estimate(
    *, purchase: Purchase, query: Any, epsilon: Any, delta: Any, target: float | None, rows
) -> JobEstimate:
    from compute.he_services import prepare_he_query

    dataset = purchase.dataset
    eps, dlt = _budget_numbers(epsilon if epsilon not in (None, "") else "1", delta or "0")
    plan = prepare_he_query(dataset=dataset, query=query, eps=eps, dlt=dlt)
    if isinstance(query, dict) and query.get("filter"):
        rows = None  # the filtered subset's size is private
    if target is not None:
        if rows is None and plan.layout["kind"] in ("mean", "variance"):
            raise ValidationFailed(
                "ci95_halfwidth: the interval of a mean or variance depends on the row count, which is private "
                "here; give epsilon instead.",
                fields={"ci95_halfwidth": ["Needs a public row count; give epsilon instead."]},
            )

        def width(e: float) -> float:
            return prepare_he_query(dataset=dataset, query=query, eps=Decimal(str(e)), dlt=dlt).estimate_halfwidth(rows)

        try:
            # Finer than the DP search: the answer is quoted to the ledger's 6 decimal places.
            found = dp.smallest_epsilon(width, target, ratio=1.0 + 1e-9)
        except dp.QueryError as exc:
            raise _query_error(exc) from None
        eps = Decimal(str(found)).quantize(EPSILON_QUANTUM, rounding=ROUND_UP)
        plan = prepare_he_query(dataset=dataset, query=query, eps=eps, dlt=dlt)
    remaining = purchase.epsilon - purchase.epsilon_used
    halfwidth = plan.estimate_halfwidth(rows)
    return JobEstimate(
        epsilon=eps,
        delta=dlt,
        price=purchase_price(dataset=dataset, epsilon=eps),
        noise_scale=plan.noise_scale,
        ci95_halfwidth=halfwidth,
        exact=plan.layout["kind"] in ("sum", "counts", "regression"),
        mechanism=plan.mechanism,
        note="95% interval of the key holder's noise plus the CKKS error bound"
        if halfwidth is not None
        else "the interval depends on the row count, which this dataset keeps private",
        rows_assumed=rows,
        epsilon_remaining=remaining,
        affordable=eps <= remaining,
    )
