"""The ``train`` kind on a DP dataset: a model built from noisy sufficient statistics drawn on a grid
(compute/engines/models, docs/MODELS.md), computed in one task on the ``dp`` queue.

The request's ``model`` (``{type, features, label, params}``; no label for kmeans and pca) is checked against the declared schema;
the job is charged ``rho = epsilon**2 / 2`` when pure (delta 0: discrete Laplace) or the parts' rhos
added up (delta > 0: discrete Gaussian). What is released is the model's parameters and how they were
drawn; no evaluation on the private rows.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone

from compute import tasks
from compute.budget import budget_numbers, budget_outlook
from compute.engines import accounting, models
from compute.kinds.base import JobEstimate, JobKind, Prepared, query_error
from compute.kinds.dp_query import COMPUTE_FAILED, dp_neighbouring
from compute.lifecycle import job_claim, job_fail, job_heartbeat, job_release
from compute.models import Job
from marketplace.datafiles import dataset_columns, dataset_schema
from marketplace.models import Dataset, Purchase
from marketplace.services import purchase_price

logger = logging.getLogger(__name__)

ACCURACY_NOTE = (
    "a model's accuracy depends on the private rows and is not promised; the noise on each statistic is "
    "stated instead, in the columns scaled to [-1, 1] (a random forest's in rows)"
)


def train_prepare(
    *, dataset: Dataset, model: Any, epsilon: Any, delta: Any
) -> tuple[models.ModelSpec, models.TrainPlan, Decimal, Decimal, Decimal]:
    """Validate a training request against the declaration; nothing is reserved. Returns the parsed
    request, its plan, epsilon, delta and the rho to charge."""
    eps, dlt = budget_numbers(epsilon, delta)
    try:
        spec = models.parse_model(model, dataset_schema(dataset))
        if dlt > 0 and dlt > dataset.delta_cap:
            raise models.QueryError("delta", f"Over the dataset's delta cap of {dataset.delta_cap.normalize():f}.")
        plan = models.plan(spec, float(eps), float(dlt))
    except models.QueryError as exc:
        raise query_error(exc) from None
    rho = accounting.pure_rho(float(eps)) if dlt == 0 else plan.rho
    return spec, plan, eps, dlt, accounting.rho_charge(rho)


class Train(JobKind):
    name = Job.Kind.TRAIN
    mode = Dataset.Mode.DP

    def queue(self) -> str:
        return settings.CLOAKROOM_DP_QUEUE

    def prepare(self, *, dataset: Dataset, query: Any, epsilon: Any, delta: Any) -> Prepared:
        spec, _, eps, dlt, rho = train_prepare(dataset=dataset, model=query, epsilon=epsilon, delta=delta)
        return Prepared(spec=spec.canonical(), epsilon=eps, delta=dlt, rho=rho)

    def estimate(
        self, *, purchase: Purchase, query: Any, epsilon: Any, delta: Any, target: float | None, rows: int | None
    ) -> JobEstimate:
        """The epsilon a training job spends and its share of the allotment; accuracy is not promised,
        so ``target`` (an interval to reach) has no answer here and is refused."""
        if target is not None:
            raise query_error(models.QueryError("ci95_halfwidth", "A model has no interval to aim for; give epsilon."))
        dataset = purchase.dataset
        _, plan, eps, dlt, rho = train_prepare(
            dataset=dataset, model=query, epsilon=epsilon if epsilon not in (None, "") else "1", delta=delta or "0"
        )
        outlook = budget_outlook(purchase=purchase, epsilon=eps, delta=dlt, rho=rho)
        return JobEstimate(
            epsilon=eps,
            delta=dlt,
            price=purchase_price(dataset=dataset, epsilon=eps),
            noise_scale=plan.noise_scale,
            ci95_halfwidth=None,
            exact=False,
            mechanism=plan.mechanism,
            note=ACCURACY_NOTE,
            rows_assumed=None,
            epsilon_remaining=outlook.before.epsilon_left,
            affordable=outlook.fits,
            rho=rho,
            share_of_allotment=outlook.share,
            share_used=outlook.before.share,
            share_used_after=outlook.after.share,
            epsilon_left_after=outlook.after.epsilon_left,
        )

    def send(self, job_id: int) -> None:
        tasks.dp_job_run_task.apply_async(args=[job_id], queue=self.queue())

    def run(self, *, job_id: int) -> str:
        """Claim, train under a heartbeat, release. Returns "released", "skipped" or "failed"."""
        token = job_claim(job_id, heartbeat=True)
        if token is None:
            return "skipped"
        with job_heartbeat(job_id, token):
            return self._train_and_release(job_id, token)

    def _train_and_release(self, job_id: int, token: str) -> str:
        job = Job.objects.select_related("dataset").get(pk=job_id)
        dataset = job.dataset
        try:
            schema = dataset_schema(dataset)
            spec = models.parse_model(job.spec, schema)
            trained = models.train(dataset_columns(dataset, schema), spec, float(job.epsilon), float(job.delta))
        except Exception as exc:  # noqa: BLE001 (any failure of the engine or the loader fails and refunds the job)
            logger.exception("job %s failed while training", job_id)
            reason = (
                f"The model no longer fits the dataset: {exc.message}" if isinstance(exc, models.QueryError) else ""
            )
            job_fail(job_id=job_id, reason=reason or COMPUTE_FAILED, claim=token)
            return "failed"
        result = {
            **trained,
            **dp_neighbouring(row_count_public=dataset.row_count_public, epsilon=float(job.epsilon)),
            "dataset": dataset.pk,
            "dataset_version": job.dataset_version,
            "released_at": timezone.now().isoformat(),
            "mode": "dp",
        }
        if not job_release(job=job, result=result, claim=token):
            return "skipped"
        return "released"
