"""The ``pate`` kind: labels for a buyer's unlabelled rows from an ensemble's datasets, by the noisy
vote of teachers trained on them (Confident-GNMax, compute/engines/pate; docs/PATE.md), computed in one
task on the ``ml`` queue.

A PATE job is submitted to an ensemble, not through a purchase (compute/pate_services.py): the buyer
pays per answered label and every member dataset is charged the same rho (compute/pate_budget.py). The
worker decrypts the members' rows and the buyer's table into memory, runs the engine, and releases the
labels (None where not answered), the counts asked and answered, and the epsilon of the rho used at the
members' delta; with ``spec.student``, also a student model trained on the answered labels
(compute/pate_student.py). The votes never leave the engine; the buyer's table is deleted once the job is done.
"""

from __future__ import annotations

import logging
from decimal import ROUND_CEILING, Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone

from compute import tasks
from compute.engines import accounting
from compute.kinds.base import JobEstimate, JobKind, Prepared
from compute.lifecycle import job_claim, job_fail, job_heartbeat, job_release
from compute.models import Job
from compute.pate_data import allocation_sizes, classes_of, member_rows, unlabelled_rows
from compute.pate_student import released_student
from config.exceptions import ValidationFailed
from marketplace import storage
from marketplace.models import EPSILON_QUANTUM, Dataset, Purchase

logger = logging.getLogger(__name__)

COMPUTE_FAILED = (
    "The labels could not be computed; every member's budget and your credits were refunded. Try again, or "
    "write to support."
)
NOT_HERE = "PATE jobs are submitted to an ensemble: POST /api/v1/ensembles/{id}/jobs/ (docs/PATE.md)."
# Progress is written about this many times in a run, not once per teacher and query.
PROGRESS_STEPS = 50


def epsilon_of(rho: Decimal, delta: Decimal) -> Decimal:
    """What rho-zCDP is at ``delta``, as the result states it: rounded up to the ledger's places."""
    if rho <= 0:
        return Decimal(0)
    eps = accounting.zcdp_epsilon(float(rho), float(delta))
    return Decimal(repr(eps)).quantize(Decimal("1e-12")).quantize(EPSILON_QUANTUM, rounding=ROUND_CEILING)


def _plain(value: Any) -> Any:
    """A label as JSON: a category's text, a boolean, or None."""
    if value is None:
        return None
    return bool(value) if isinstance(value, (bool,)) or type(value).__name__ == "bool_" else str(value)


class Pate(JobKind):
    name = Job.Kind.PATE
    mode = Dataset.Mode.DP

    def queue(self) -> str:
        return settings.CLOAKROOM_ML_QUEUE

    def prepare(self, *, dataset: Dataset, query: Any, epsilon: Any, delta: Any) -> Prepared:
        raise ValidationFailed(f"kind: {NOT_HERE}", fields={"kind": [NOT_HERE]})

    def estimate(
        self, *, purchase: Purchase, query: Any, epsilon: Any, delta: Any, target: float | None, rows: int | None
    ) -> JobEstimate:
        raise ValidationFailed(f"kind: {NOT_HERE}", fields={"kind": [NOT_HERE]})

    def send(self, job_id: int) -> None:
        tasks.ml_job_run_task.apply_async(args=[job_id], queue=self.queue())

    def run(self, *, job_id: int) -> str:
        """Claim, label under a heartbeat, release. Returns "released", "skipped" or "failed"."""
        token = job_claim(job_id, heartbeat=True)
        if token is None:
            return "skipped"
        with job_heartbeat(job_id, token):
            outcome = self._label_and_release(job_id, token)
        if outcome != "skipped":
            self.discard(Job.objects.get(pk=job_id))
        return outcome

    def _label_and_release(self, job_id: int, token: str) -> str:
        # The engine imports scikit-learn: loaded by the worker that runs a job, not by every process that
        # registers the kinds (a second start of the demo imports no scikit-learn).
        from compute.engines import pate as engine

        job = Job.objects.select_related("ensemble").get(pk=job_id)
        ensemble = job.ensemble
        try:
            datasets = list(Dataset.objects.filter(pk__in=job.spec["members"]).order_by("pk"))
            spec = engine.parse_spec(job.spec["pate"], int(job.spec["rows"]), delta=float(job.delta))
            members = [member_rows(ensemble, d) for d in datasets]
            unlabelled = unlabelled_rows(ensemble, job.input_path)
            out = engine.run(
                members,
                unlabelled,
                classes_of(ensemble.label),
                spec,
                progress=_progress(job_id, token),
                sizes=allocation_sizes(datasets, spec.teachers),
            )
        except Exception as exc:  # noqa: BLE001 (any failure of the engine or the loaders fails and refunds the job)
            logger.exception("job %s failed while labelling", job_id)
            reason = f"The job no longer fits its ensemble: {exc.message}" if isinstance(exc, engine.QueryError) else ""
            job_fail(job_id=job_id, reason=reason or COMPUTE_FAILED, claim=token)
            return "failed"
        used = min(accounting.rho_charge(out.rho), job.rho)
        result = {
            "labels": [_plain(label) for label in out.labels],
            "answered": int(out.answered),
            "asked": int(out.asked),
            "epsilon": float(epsilon_of(used, job.delta)),
            "delta": float(job.delta),
            "mechanism": "Confident-GNMax (discrete Gaussian noise on the teachers' vote counts)",
            "neighbouring": "add or remove one row of any member dataset (each row is in exactly one teacher)",
            "ensemble": ensemble.pk,
            "members": [d.pk for d in datasets],
            "released_at": timezone.now().isoformat(),
            "mode": "dp",
        }
        if job.spec.get("student"):
            # Post-processing of the labels on the buyer's own rows (compute/pate_student.py): no charge.
            result.update(released_student(ensemble.features, ensemble.label, unlabelled, out.labels))
        if not job_release(job=job, result=result, claim=token, used_rho=used, answered=int(out.answered)):
            return "skipped"
        return "released"

    def discard(self, job: Job) -> None:
        """The buyer's table is kept only while the job may still run: deleted once it is released,
        failed or cancelled (read again here: the caller's copy of the job may be older)."""
        current = Job.objects.filter(pk=job.pk).exclude(status__in=Job.OPEN_STATUSES).exclude(input_path="").first()
        if current is not None:
            storage.delete_stored(current.input_path)
            Job.objects.filter(pk=job.pk).update(input_path="")

    def sweep(self) -> dict[str, int]:
        """Delete the tables of PATE jobs that finished without a worker to clean up (the sweeper failed
        them, or the worker died after the release)."""
        done = Job.objects.filter(kind=Job.Kind.PATE).exclude(status__in=Job.OPEN_STATUSES).exclude(input_path="")
        count = 0
        for job in done[:100]:
            self.discard(job)
            count += 1
        return {"pate_inputs_deleted": count} if count else {}


def _progress(job_id: int, claim: str):
    def report(done: int, total: int) -> None:
        step = max(total // PROGRESS_STEPS, 1)
        if done == total or done % step == 0:
            Job.objects.filter(pk=job_id, claim=claim).update(progress_done=done, progress_total=total)

    return report
