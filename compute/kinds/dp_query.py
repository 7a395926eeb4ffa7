"""The ``query`` kind on a DP dataset: an aggregate over the decrypted table, with noise on a grid,
computed in one task on the ``dp`` queue (compute/engines/dp)."""

from __future__ import annotations

import logging
import math
import time
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone

from compute import tasks
from compute.budget import budget_numbers, budget_outlook
from compute.engines import accounting, dp
from compute.kinds.base import ROWS_GIVEN, ROWS_PUBLIC, Alternative, JobEstimate, JobKind, Prepared, query_error
from compute.lifecycle import job_claim, job_fail, job_heartbeat, job_release
from compute.models import Job
from marketplace.datafiles import dataset_columns, dataset_schema
from marketplace.models import EPSILON_QUANTUM, Dataset, Purchase
from marketplace.services import purchase_price

logger = logging.getLogger(__name__)

COMPUTE_FAILED = (
    "The computation failed on the server; your budget was refunded. Try again, or contact the administrator "
    "if it keeps failing."
)


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


def dp_query_prepare(
    *, dataset: Dataset, query: Any, epsilon: Any, delta: Any
) -> tuple[dp.Query, dict, Decimal, Decimal]:
    """Validate a query body against the dataset's declared schema; nothing is reserved here.
    Returns the parsed query, ``{"schema", "plan"}``, epsilon and delta."""
    eps, dlt = budget_numbers(epsilon, delta)
    schema = dataset_schema(dataset)
    try:
        parsed = dp.parse_query(query, schema)
        if dlt > 0 and not dp.needs_delta(parsed):
            raise dp.QueryError("delta", "A quantile uses the exponential mechanism and needs no delta; send 0.")
        if dlt > 0 and dlt > dataset.delta_cap:
            raise dp.QueryError("delta", f"Over the dataset's delta cap of {dataset.delta_cap.normalize():f}.")
        plan = dp.plan(schema, parsed, float(eps), float(dlt))
    except dp.QueryError as exc:
        raise query_error(exc) from None
    return parsed, {"schema": schema, "plan": plan}, eps, dlt


def dp_rows_assumed(
    *, dataset: Dataset, query: dp.Query, schema: dict[str, dp.ColumnMeta], rows: int | None
) -> tuple[int | None, str]:
    """The rows each answer of a query is taken to cover for its estimate, and why.

    The buyer's own figure comes first. Otherwise only a public row count may be used: a whole-table
    answer covers all of it, and a grouped one is taken at an even split over the declared groups
    (which reads no data: the count is public and the groups are declared). A filtered subset's size
    is private, so a filtered query has no default and its mean, variance or quantile no interval.
    """
    if rows is not None:
        return rows, ROWS_GIVEN
    if not dataset.row_count_public or query.filters:
        return None, ""
    groups = math.prod(len(schema[name].keys) for name in query.group_by)
    if groups <= 1:
        return dataset.row_count, ROWS_PUBLIC
    share = max(dataset.row_count // groups, 1)
    return share, (
        f"per group, if the {dataset.row_count:,} public rows split evenly over its {groups} groups; "
        "a smaller group's interval is wider"
    )


def dp_alternative(
    *,
    dataset: Dataset,
    purchase: Purchase,
    schema: dict[str, dp.ColumnMeta],
    query: dp.Query,
    delta: Decimal,
    rho: Decimal,
    rows: int | None,
) -> Alternative | None:
    """The other grid mechanism at the same rho (the same zCDP cost): the discrete Gaussian at the largest
    delta the purchase allows for a pure query, the discrete Laplace for a Gaussian one. None for
    quantiles (the exponential mechanism has no Gaussian twin), where a half-width is unknown, and where
    the purchase could not take it."""
    if not dp.needs_delta(query):
        return None
    other_delta = Decimal(0) if delta > 0 else min(purchase.delta, dataset.delta_cap)
    if delta == 0 and other_delta == 0:
        return None  # no delta to spend: the Gaussian is not on offer
    eps = dp.epsilon_at_rho(schema, query, float(rho), float(other_delta))
    other = Decimal(repr(eps)).quantize(EPSILON_QUANTUM, rounding=ROUND_DOWN)
    if other <= 0:
        return None
    est = dp.estimate(schema, query, float(other), float(other_delta), rows=rows)
    if est.ci95_halfwidth is None:
        return None
    other_rho = accounting.rho_charge(dp.plan(schema, query, float(other), float(other_delta)).rho)
    outlook = budget_outlook(purchase=purchase, epsilon=other, delta=other_delta, rho=other_rho)
    if not outlook.fits:
        return None  # the purchase could not take it (its epsilon is over the allotment and zCDP does not bind)
    name = "discrete Gaussian" if other_delta > 0 else "discrete Laplace (geometric for counts)"
    return Alternative(name, other, other_delta, est.ci95_halfwidth, outlook.share)


def _reason(exc: Exception) -> str:
    if isinstance(exc, dp.QueryError):
        return f"The query no longer fits the dataset: {exc.message}"
    return COMPUTE_FAILED


class DpQuery(JobKind):
    name = Job.Kind.QUERY
    mode = Dataset.Mode.DP

    def queue(self) -> str:
        return settings.CLOAKROOM_DP_QUEUE

    def prepare(self, *, dataset: Dataset, query: Any, epsilon: Any, delta: Any) -> Prepared:
        parsed, ctx, eps, dlt = dp_query_prepare(dataset=dataset, query=query, epsilon=epsilon, delta=delta)
        return Prepared(spec=parsed.canonical(), epsilon=eps, delta=dlt, rho=accounting.rho_charge(ctx["plan"].rho))

    def estimate(
        self, *, purchase: Purchase, query: Any, epsilon: Any, delta: Any, target: float | None, rows: int | None
    ) -> JobEstimate:
        dataset = purchase.dataset
        parsed, ctx, eps, dlt = dp_query_prepare(
            dataset=dataset, query=query, epsilon=epsilon if epsilon not in (None, "") else "1", delta=delta or "0"
        )
        schema = ctx["schema"]
        rows, basis = dp_rows_assumed(dataset=dataset, query=parsed, schema=schema, rows=rows)
        try:
            if target is not None:
                found = dp.epsilon_for_halfwidth(schema, parsed, target, float(dlt), rows=rows)
                eps = Decimal(str(found)).quantize(EPSILON_QUANTUM, rounding=ROUND_UP)
            est = dp.estimate(schema, parsed, float(eps), float(dlt), rows=rows)
        except dp.QueryError as exc:
            raise query_error(exc) from None
        rho = accounting.rho_charge(dp.plan(schema, parsed, float(eps), float(dlt)).rho)
        outlook = budget_outlook(purchase=purchase, epsilon=eps, delta=dlt, rho=rho)
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
            epsilon_remaining=outlook.before.epsilon_left,
            affordable=outlook.fits,
            rows_basis=basis if rows is not None else "",
            in_ranks=parsed.aggregate == "quantile",
            rho=rho,
            share_of_allotment=outlook.share,
            share_used=outlook.before.share,
            share_used_after=outlook.after.share,
            epsilon_left_after=outlook.after.epsilon_left,
            alternative=dp_alternative(
                dataset=dataset, purchase=purchase, schema=schema, query=parsed, delta=dlt, rho=rho, rows=rows
            ),
        )

    def send(self, job_id: int) -> None:
        tasks.dp_job_run_task.apply_async(args=[job_id], queue=self.queue())

    def run(self, *, job_id: int) -> str:
        """Claim, compute under a heartbeat, release. Returns "released", "skipped" or "failed"."""
        token = job_claim(job_id, heartbeat=True)
        if token is None:
            return "skipped"  # done, cancelled, or running under another worker's live claim
        with job_heartbeat(job_id, token):
            return self._compute_and_release(job_id, token)

    def _compute_and_release(self, job_id: int, token: str) -> str:
        job = Job.objects.select_related("dataset").get(pk=job_id)
        if settings.CLOAKROOM_FAULT_JOB_DELAY_SECONDS:
            time.sleep(settings.CLOAKROOM_FAULT_JOB_DELAY_SECONDS)
        dataset = job.dataset
        try:
            schema = dataset_schema(dataset)
            query = dp.parse_query(job.spec, schema)
            data = dataset_columns(dataset, schema)
            release = dp.run(data, schema, query, float(job.epsilon), float(job.delta))
        except Exception as exc:  # noqa: BLE001 (any failure of the engine or the loader fails and refunds the job)
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
        if not job_release(job=job, result=result, claim=token):
            return "skipped"  # cancelled or re-claimed meanwhile: nothing released, nothing charged
        return "released"
