"""Reads for the compute app, already limited to what the caller may see."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, Decimal

from django.db.models import Count, Q, QuerySet

from accounts.models import User
from compute import activity
from compute.engines import accounting
from compute.models import Job, WorkerHeartbeat
from config.lookups import get_or_404
from marketplace import charts
from marketplace.models import EPSILON_QUANTUM, Dataset, LedgerEntry, Purchase

ZERO = Decimal(0)


def job_list(*, user: User) -> QuerySet[Job]:
    """The caller's own jobs, newest first."""
    return Job.objects.filter(buyer=user).select_related("dataset", "purchase", "ensemble")


def job_get(*, user: User, job_id) -> Job:
    """One of the caller's jobs; anyone else's job is a 404, never a 403 that confirms it exists."""
    return get_or_404(job_list(user=user), message="No such job.", pk=job_id)


def worker_last_seen() -> datetime | None:
    """When a worker last processed a heartbeat task, or None if no worker ever has."""
    return WorkerHeartbeat.objects.order_by("-seen_at").values_list("seen_at", flat=True).first()


def worker_heartbeat_seen(*, token: str) -> bool:
    """Whether a worker has processed the heartbeat task sent with ``token``."""
    return WorkerHeartbeat.objects.filter(token=token).exists()


def he_job_get(*, owner: User, job_id) -> Job:
    """A job on one of the caller's HE datasets, for its key holder; any other job is a 404."""
    return get_or_404(
        Job.objects.select_related("dataset"),
        message="No such HE job on your datasets.",
        pk=job_id,
        dataset__owner=owner,
        dataset__mode=Dataset.Mode.HE,
    )


def he_jobs_awaiting_key(*, owner: User) -> QuerySet[Job]:
    """Jobs on the owner's HE datasets whose aggregates are computed and wait for the key, oldest first."""
    return (
        Job.objects.filter(dataset__owner=owner, dataset__mode=Dataset.Mode.HE, status=Job.Status.AWAITING_KEY)
        .select_related("dataset")
        .order_by("computed_at", "id")
    )


@dataclass(frozen=True)
class BuyerBudget:
    """One buyer's use of a dataset's budget, over all their purchases of it."""

    buyer: str
    epsilon_bought: Decimal
    # The buyer's guarantee: their purchases' guarantees of released answers added up (rounded up).
    epsilon_spent: Decimal
    credits_paid: Decimal
    jobs_released: int
    epsilon_committed: Decimal  # the released jobs' epsilons added up
    delta_spent: float
    # The share of the dataset's budget their released and open jobs alone use under the accountant.
    share_used: float


@dataclass(frozen=True)
class DatasetBudget:
    """What a dataset's owner may see of its budget: sold, spent and left, by buyer. Never a value.

    ``released`` is the guarantee of every answer released on it, across buyers, and ``reserved`` how
    much of the budget released answers and open jobs use together (compute/activity.py)."""

    dataset: Dataset
    epsilon_spent: Decimal
    by_buyer: list[BuyerBudget]
    epsilon_committed: Decimal
    rho_committed: Decimal
    released: accounting.Bound
    reserved: charts.Usage


def epsilon_up(value: float) -> Decimal:
    """An epsilon of the accountant (a float) as the API states it: to six places, rounded up, once the
    float's own noise (0.30000000000000004) is rounded off."""
    return Decimal(repr(value)).quantize(Decimal("1e-12")).quantize(EPSILON_QUANTUM, rounding=ROUND_CEILING)


def _buyer_rows(
    dataset: Dataset, purchases: list[tuple], ledger: dict[int, dict[str, activity.Sums]], jobs_by: dict[str, int]
) -> list[BuyerBudget]:
    """Each buyer's purchases summed: their guarantee is their purchases' guarantees added up; their
    share is what their jobs alone (released and open) use of the dataset's budget under the accountant."""
    rows: dict[str, dict] = {}
    for pk, buyer, epsilon, delta, price in purchases:
        row = rows.setdefault(
            buyer, {"bought": ZERO, "paid": ZERO, "committed": ZERO, "spent": accounting.NONE, "held": accounting.NONE}
        )
        kinds = ledger.get(pk, {})
        committed = kinds.get(LedgerEntry.Kind.COMMIT, activity.NO_SUMS)
        bound = accounting.guarantee(activity.loss_of(committed), float(delta))
        row["spent"] += accounting.Loss(bound.epsilon, bound.delta, 0.0)
        row["held"] += activity.loss_of(activity.held_or_spent(kinds))
        row["bought"] += epsilon
        row["paid"] += price
        row["committed"] += committed[0]
    cap_e, cap_d = float(dataset.epsilon_cap), float(dataset.delta_cap)
    return [
        BuyerBudget(
            buyer=buyer,
            epsilon_bought=row["bought"],
            epsilon_spent=epsilon_up(row["spent"].epsilon),
            credits_paid=Decimal(row["paid"]),
            jobs_released=jobs_by.get(buyer, 0),
            epsilon_committed=row["committed"],
            delta_spent=row["spent"].delta,
            share_used=accounting.share(row["held"], cap_e, cap_d),
        )
        for buyer, row in sorted(rows.items())
    ]


def dataset_budget(*, owner: User, dataset_id) -> DatasetBudget:
    """The budget of one of the owner's datasets under the accountant, in all and by buyer (four
    queries); others' are a 404."""
    dataset = get_or_404(Dataset.objects, message="No such dataset.", pk=dataset_id, owner=owner)
    purchases = list(
        Purchase.objects.filter(dataset=dataset).values_list("pk", "buyer__username", "epsilon", "delta", "price")
    )
    ledger = activity.ledger_sums([dataset.pk]).get(dataset.pk, {})
    jobs_by = {
        row["buyer__username"]: row["n"]
        for row in Job.objects.filter(dataset=dataset)
        .values("buyer__username")
        .annotate(n=Count("id", filter=Q(status=Job.Status.RELEASED)))
    }
    deltas = {row[0]: row[3] for row in purchases}
    committed = {pk: kinds[LedgerEntry.Kind.COMMIT] for pk, kinds in ledger.items() if LedgerEntry.Kind.COMMIT in kinds}
    released = activity.dataset_usage(dataset, committed, deltas).bound
    return DatasetBudget(
        dataset=dataset,
        epsilon_spent=epsilon_up(released.epsilon),
        by_buyer=_buyer_rows(dataset, purchases, ledger, jobs_by),
        epsilon_committed=sum((s[0] for s in committed.values()), ZERO),
        rho_committed=sum((s[2] for s in committed.values()), ZERO),
        released=released,
        reserved=activity.dataset_usage(
            dataset, {pk: activity.held_or_spent(kinds) for pk, kinds in ledger.items()}, deltas
        ),
    )
