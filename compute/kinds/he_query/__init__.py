"""The ``query`` kind on an HE dataset: aggregates computed on the owner's ciphertexts in parts on the
``he`` queue (parts.py), then released by the key holder (key_holder.py). The plan and files are in
plan.py. Submission, reservation, cancellation, refunds and sweeping are the one lifecycle's."""

from __future__ import annotations

from decimal import ROUND_UP, Decimal
from typing import Any

from django.conf import settings

from compute import tasks
from compute.budget import budget_numbers, budget_outlook
from compute.engines import accounting, dp
from compute.kinds.base import ROWS_GIVEN, ROWS_PUBLIC, JobEstimate, JobKind, Prepared, query_error
from compute.kinds.he_query.key_holder import key_wait_sweep
from compute.kinds.he_query.parts import he_job_start
from compute.kinds.he_query.plan import he_query_check, remove_job_files
from compute.models import Job
from config.exceptions import ValidationFailed
from marketplace.models import EPSILON_QUANTUM, Dataset, Purchase
from marketplace.services import purchase_price

# Kinds of HE answer whose interval does not depend on the (private) row count.
EXACT_LAYOUTS = ("sum", "counts", "regression")


class HeQuery(JobKind):
    name = Job.Kind.QUERY
    mode = Dataset.Mode.HE

    def queue(self) -> str:
        return settings.CLOAKROOM_HE_QUEUE

    def prepare(self, *, dataset: Dataset, query: Any, epsilon: Any, delta: Any) -> Prepared:
        eps, dlt = budget_numbers(epsilon, delta)
        plan = he_query_check(dataset=dataset, query=query, eps=eps, dlt=dlt)
        # Pure epsilon (the key holder's discrete Laplace and geometric noise): epsilon**2 / 2 bounds the
        # parts' rhos added up, however the plan splits epsilon between them.
        rho = accounting.rho_charge(accounting.pure_rho(float(eps)))
        return Prepared(spec=plan.query, epsilon=eps, delta=dlt, rho=rho)

    def estimate(
        self, *, purchase: Purchase, query: Any, epsilon: Any, delta: Any, target: float | None, rows: int | None
    ) -> JobEstimate:
        dataset = purchase.dataset
        eps, dlt = budget_numbers(epsilon if epsilon not in (None, "") else "1", delta or "0")
        plan = he_query_check(dataset=dataset, query=query, eps=eps, dlt=dlt)
        rows, basis = self._rows_assumed(dataset=dataset, query=query, rows=rows)
        if target is not None:
            eps = self._epsilon_for(dataset=dataset, query=query, dlt=dlt, plan=plan, target=target, rows=rows)
            plan = he_query_check(dataset=dataset, query=query, eps=eps, dlt=dlt)
        rho = accounting.rho_charge(accounting.pure_rho(float(eps)))
        outlook = budget_outlook(purchase=purchase, epsilon=eps, delta=dlt, rho=rho)
        halfwidth = plan.estimate_halfwidth(rows)
        return JobEstimate(
            epsilon=eps,
            delta=dlt,
            price=purchase_price(dataset=dataset, epsilon=eps),
            noise_scale=plan.noise_scale,
            ci95_halfwidth=halfwidth,
            exact=plan.layout["kind"] in EXACT_LAYOUTS,
            mechanism=plan.mechanism,
            note=self._note(query, halfwidth),
            rows_assumed=rows,
            epsilon_remaining=outlook.before.epsilon_left,
            affordable=outlook.fits,
            rows_basis=basis,
            rho=rho,
            share_of_allotment=outlook.share,
            share_used=outlook.before.share,
            share_used_after=outlook.after.share,
            epsilon_left_after=outlook.after.epsilon_left,
        )

    @staticmethod
    def _note(query: Any, halfwidth: float | None) -> str:
        if halfwidth is not None:
            return "95% interval of the key holder's noise plus the CKKS error bound"
        if isinstance(query, dict) and query.get("filter"):
            return "the interval depends on how many rows the filter keeps, which is private"
        return "the interval depends on the row count, which this dataset keeps private"

    @staticmethod
    def _rows_assumed(*, dataset: Dataset, query: Any, rows: int | None) -> tuple[int | None, str]:
        """The rows a mean or variance is taken to cover: none under a filter (the filtered subset's
        size is private), else the buyer's figure, else the public row count when there is one."""
        if isinstance(query, dict) and query.get("filter"):
            return None, ""
        if rows is not None:
            return rows, ROWS_GIVEN
        if dataset.row_count_public:
            return dataset.row_count, ROWS_PUBLIC
        return None, ""

    @staticmethod
    def _epsilon_for(
        *, dataset: Dataset, query: Any, dlt: Decimal, plan: Any, target: float, rows: int | None
    ) -> Decimal:
        if rows is None and plan.layout["kind"] in ("mean", "variance"):
            raise ValidationFailed(
                "ci95_halfwidth: the interval of a mean or variance depends on the row count, which is private "
                "here; give epsilon instead.",
                fields={"ci95_halfwidth": ["Needs a public row count; give epsilon instead."]},
            )

        def width(e: float) -> float:
            return he_query_check(dataset=dataset, query=query, eps=Decimal(str(e)), dlt=dlt).estimate_halfwidth(rows)

        try:
            # Finer than the DP search: the answer is quoted to the ledger's 6 decimal places.
            found = dp.smallest_epsilon(width, target, ratio=1.0 + 1e-9)
        except dp.QueryError as exc:
            raise query_error(exc) from None
        return Decimal(str(found)).quantize(EPSILON_QUANTUM, rounding=ROUND_UP)

    def send(self, job_id: int) -> None:
        tasks.he_job_run_task.apply_async(args=[job_id], queue=self.queue())

    def run(self, *, job_id: int) -> str:
        return he_job_start(job_id=job_id)

    def discard(self, job: Job) -> None:
        remove_job_files(job)

    def sweep(self) -> dict[str, int]:
        return {"key_wait_expired": key_wait_sweep()}
