"""Writes of encrypted inference: publish a model, take a client's encrypted rows, score them on the
``he`` queue, hand back the encrypted scores, sweep what was left behind.

Money: the client's wallet is debited the price (price per prediction times rows) in the transaction
that creates the prediction, with the conditional UPDATE of ``accounts.services.wallet_change``, so a
wallet can never pay for more than it holds. The publisher is credited in the transaction that marks the
scores ready; a prediction that fails is refunded to the client in the transaction that marks it failed.
Each of those moves happens once: every transition is a conditional UPDATE on the status it leaves.

Privacy: predictions spend no privacy budget. A listing serves only a model released by a DP training
job, so what a client learns from its scores, even the whole model, is post-processing of that release
(docs/PRIVACY.md). The platform never holds the rows or the scores in the clear: it stores the client's
public context and ciphertexts (compute/inference/storage.py) and computes on them without a secret key.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from decimal import Decimal
from typing import IO

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import CreditEntry, User
from accounts.services import wallet_change
from cloakroom_client.protocol import inference
from compute import tasks
from compute.inference import scorer, storage
from compute.inference.selectors import listing_get
from compute.models import Job, ModelListing, Prediction
from config.exceptions import Conflict, ValidationFailed
from config.lookups import get_or_404
from marketplace.he import sandbox

logger = logging.getLogger(__name__)

# A prediction still open this long after submission is failed and refunded by the sweeper (its worker
# died, or the broker lost it): as long as a job's lease, which is longer than any job should take.
# Encrypted scores not downloaded within SCORES_KEPT_SECONDS are deleted.
SCORES_KEPT_SECONDS = 3600
COMPUTE_FAILED = "The scores could not be computed; the credits were refunded. Try again, or write to support."


def listing_publish(*, user: User, job_id: int, title: str, price_per_prediction: Decimal) -> ModelListing:
    """Publish the caller's released train job's model. Another account's job is a 404; a job that is
    not released, is listed already, is no train job or holds a model that cannot be served under
    encryption, a 409 that says which (the request itself was well formed)."""
    job = get_or_404(
        Job.objects.filter(buyer=user), message="No such job.", fields={"job": ["No such job."]}, pk=job_id
    )
    if job.kind != Job.Kind.TRAIN:
        raise Conflict(
            "job: this job trained no model; only a train job's model can be published.",
            code="not_a_model",
            fields={"job": ["Not a train job."]},
        )
    if job.status != Job.Status.RELEASED:
        raise Conflict(f"The job is {job.status}; only a released model can be published.", code="not_released")
    model = (job.result or {}).get("model") or {}
    try:
        inference.linear_weights(model)
    except inference.InferenceError as exc:
        raise Conflict(f"job: {exc}.", code="not_servable", fields={"job": [f"{str(exc).capitalize()}."]}) from None
    with transaction.atomic():
        if ModelListing.objects.select_for_update().filter(job=job).exists():
            raise Conflict("This model is published already.", code="already_published")
        listing = ModelListing.objects.create(
            job=job, owner=user, title=title.strip(), price_per_prediction=price_per_prediction, model=model
        )
    logger.info("model listing %s: job %s published by user %s", listing.pk, job.pk, user.pk)
    return listing


def _count(listing: ModelListing, rows: int) -> int:
    try:
        return inference.ciphertext_count(rows, len(listing.model["columns"]))
    except inference.InferenceError as exc:
        raise ValidationFailed(f"rows: {exc}.", fields={"rows": [f"{str(exc).capitalize()}."]}) from None


def _check_upload(field: str, upload: IO[bytes] | None, limit: int) -> IO[bytes]:
    size = getattr(upload, "size", None)
    if upload is None or size is None:
        raise ValidationFailed(f"{field}: a file is required.", fields={field: ["A file is required."]})
    if not 0 < size <= limit:
        raise ValidationFailed(f"{field}: empty, or over {limit} bytes.", fields={field: [f"At most {limit} bytes."]})
    return upload


def prediction_submit(
    *, client: User, listing_id: int, rows: int, context: IO[bytes] | None, ciphertexts: IO[bytes] | None
) -> Prediction:
    """Check the upload's shape (the web process never loads TenSEAL: the ciphertexts themselves are
    checked by the worker), debit the price, store the files and queue the work on commit. A failure
    leaves no row, no charge and no file."""
    listing = listing_get(listing_id=listing_id)
    count = _count(listing, rows)
    context = _check_upload("context", context, inference.MAX_CONTEXT_BYTES)
    ciphertexts = _check_upload("ciphertexts", ciphertexts, inference.container_limit(count))
    try:
        ciphertexts.seek(0)
        inference.check_container(ciphertexts, count=count)
    except inference.InferenceError as exc:
        raise ValidationFailed(f"ciphertexts: {exc}.", fields={"ciphertexts": [f"{str(exc).capitalize()}."]}) from None
    price = listing.price_per_prediction * rows
    prediction = None
    try:
        with transaction.atomic():
            prediction = Prediction.objects.create(listing=listing, client=client, rows=rows, price=price)
            if price > 0:
                wallet_change(
                    user=client, amount=-price, kind=CreditEntry.Kind.PURCHASE, memo=_memo(prediction, "predictions")
                )
            storage.store_inputs(prediction.pk, context=context, ciphertexts=ciphertexts)
            transaction.on_commit(lambda: prediction_send(prediction.pk))
    except Exception:
        if prediction is not None and prediction.pk is not None:
            storage.remove(prediction.pk)
        raise
    logger.info("prediction %s: %s rows on model listing %s", prediction.pk, rows, listing.pk)
    return prediction


def _memo(prediction: Prediction, what: str) -> str:
    return f"{what}: {prediction.rows} rows of {prediction.listing.title}"[:200]


def prediction_send(prediction_id: int) -> None:
    """Queue the scoring on ``he``. A broker that refuses leaves the prediction queued; the sweeper
    fails and refunds it once it is older than CLOAKROOM_JOB_LEASE_SECONDS."""
    try:
        tasks.prediction_run_task.apply_async(args=[prediction_id], queue=settings.CLOAKROOM_HE_QUEUE)
    except Exception:  # noqa: BLE001 (any broker failure: the sweeper's timeout is the fallback)
        logger.warning("prediction %s: the broker refused it; it waits for the sweeper", prediction_id)


def prediction_run(*, prediction_id: int) -> str:
    """Score the ciphertexts (a worker on ``he``). Returns "ready", "skipped" (not queued: a second
    delivery, or swept) or "failed"."""
    claimed = Prediction.objects.filter(pk=prediction_id, status=Prediction.Status.QUEUED).update(
        status=Prediction.Status.RUNNING, started_at=timezone.now()
    )
    if not claimed:
        return "skipped"
    prediction = Prediction.objects.select_related("listing").get(pk=prediction_id)
    try:
        _score(prediction)
    except (_Refused, inference.InferenceError) as exc:
        return _fail(prediction, f"The upload was refused: {exc}; the credits were refunded.")
    except Exception:  # noqa: BLE001 (any failure of the engine fails and refunds the prediction)
        logger.exception("prediction %s failed while scoring", prediction_id)
        return _fail(prediction, COMPUTE_FAILED)
    finally:
        storage.drop_inputs(prediction_id)
        (storage.folder(prediction_id) / scorer.JOB_FILE).unlink(missing_ok=True)
    with transaction.atomic():
        done = Prediction.objects.filter(pk=prediction_id, status=Prediction.Status.RUNNING).update(
            status=Prediction.Status.READY, finished_at=timezone.now()
        )
        if done and prediction.price > 0:
            wallet_change(
                user=prediction.listing.owner,
                amount=prediction.price,
                kind=CreditEntry.Kind.SALE,
                memo=_memo(prediction, "predictions sold"),
            )
    if not done:  # swept meanwhile: the client was refunded, nothing is delivered
        storage.remove(prediction_id)
        return "skipped"
    return "ready"


class _Refused(Exception):
    """The scorer refused the upload (the format does not allow it): the client is told why."""


def _score(prediction: Prediction) -> None:
    """Score in the sandboxed child (compute/inference/scorer.py): the client's TenSEAL bytes are never
    read in this worker, so no upload can crash or hang it."""
    folder = storage.folder(prediction.pk)
    weights, intercept = inference.linear_weights(prediction.listing.model)
    job = {"weights": weights.tolist(), "intercept": intercept.tolist(), "rows": prediction.rows}
    (folder / scorer.JOB_FILE).write_text(json.dumps(job), "utf-8")
    outcome = sandbox.run_sandboxed(
        scorer.__name__,
        [str(folder)],
        timeout=settings.CLOAKROOM_SCORING_TIMEOUT,
        memory_bytes=settings.CLOAKROOM_SCORING_MEMORY_BYTES,
    )
    if outcome.completed is None:
        raise RuntimeError(f"the scorer {outcome.stopped}")
    answer = sandbox.last_json_line(outcome.completed) or {}
    if answer.get("refused"):
        raise _Refused(str(answer["refused"]))
    if answer.get("ok") is not True or not (folder / storage.SCORES_FILE).exists():
        raise RuntimeError(f"the scorer answered {answer.get('error') or 'nothing'}")


def _fail(prediction: Prediction, reason: str, *, status: str = Prediction.Status.FAILED) -> str:
    """Fail (or expire) an open prediction and refund the client, once; its files go."""
    with transaction.atomic():
        failed = Prediction.objects.filter(
            pk=prediction.pk, status__in=[Prediction.Status.QUEUED, Prediction.Status.RUNNING]
        ).update(status=status, error=reason, finished_at=timezone.now())
        if failed and prediction.price > 0:
            wallet_change(
                user=prediction.client,
                amount=prediction.price,
                kind=CreditEntry.Kind.ADJUSTMENT,
                memo=_memo(prediction, "refund of predictions"),
            )
    storage.remove(prediction.pk)
    return "failed" if failed else "skipped"


def prediction_deliver(*, prediction: Prediction) -> bytes:
    """The encrypted scores, once: the prediction becomes delivered and its folder is removed."""
    if prediction.status != Prediction.Status.READY:
        raise Conflict(f"The prediction is {prediction.status}; there are no scores to download.", code="not_ready")
    data = (storage.folder(prediction.pk) / storage.SCORES_FILE).read_bytes()
    delivered = Prediction.objects.filter(pk=prediction.pk, status=Prediction.Status.READY).update(
        status=Prediction.Status.DELIVERED, delivered_at=timezone.now()
    )
    storage.remove(prediction.pk)
    if not delivered:
        raise Conflict("The scores were downloaded already.", code="not_ready")
    return data


def predictions_sweep() -> dict:
    """Beat, with the jobs' sweep: fail and refund predictions open past CLOAKROOM_JOB_LEASE_SECONDS (their
    worker died, or the broker lost them), and expire scores not downloaded within SCORES_KEPT_SECONDS
    (deleted; the publisher keeps the sale, the work was done)."""
    now = timezone.now()
    stuck = Prediction.objects.filter(
        status__in=[Prediction.Status.QUEUED, Prediction.Status.RUNNING],
        created_at__lt=now - timedelta(seconds=settings.CLOAKROOM_JOB_LEASE_SECONDS),
    ).select_related("listing", "client")
    reason = "The scores were not computed in time; the credits were refunded."
    failed = sum(1 for p in stuck if _fail(p, reason) == "failed")
    stale = list(
        Prediction.objects.filter(
            status=Prediction.Status.READY,
            finished_at__lt=now - timedelta(seconds=SCORES_KEPT_SECONDS),
        ).values_list("pk", flat=True)
    )
    for pk in stale:
        if Prediction.objects.filter(pk=pk, status=Prediction.Status.READY).update(status=Prediction.Status.EXPIRED):
            storage.remove(pk)
    return {"failed": failed, "expired": len(stale)}
