"""Reads for the compute app, already limited to what the caller may see."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Count, Q, QuerySet, Sum

from accounts.models import User
from compute.models import Job, WorkerHeartbeat
from config.lookups import get_or_404
from marketplace import selectors as market
from marketplace.models import Dataset, LedgerEntry, Purchase


def job_list(*, user: User) -> QuerySet[Job]:
    """The caller's own jobs, newest first."""
    return Job.objects.filter(buyer=user).select_related("dataset", "purchase")


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
    buyer: str
    epsilon_bought: Decimal
    epsilon_spent: Decimal
    credits_paid: Decimal
    jobs_released: int


@dataclass(frozen=True)
class DatasetBudget:
    """What a dataset's owner may see of its budget: sold, spent and left, by buyer. Never a value."""

    dataset: Dataset
    epsilon_spent: Decimal
    by_buyer: list[BuyerBudget]


def dataset_budget(*, owner: User, dataset_id) -> DatasetBudget:
    """The budget of one of the owner's datasets, in all and by buyer (five queries); others' are a 404."""
    dataset = get_or_404(Dataset.objects, message="No such dataset.", pk=dataset_id, owner=owner)
    spent = market.ledger_totals(LedgerEntry.objects.filter(dataset=dataset)).epsilon_spent
    buyers = (
        Purchase.objects.filter(dataset=dataset)
        .values("buyer__username")
        .annotate(epsilon_bought=Sum("epsilon"), credits_paid=Sum("price"), purchases=Count("id", distinct=True))
        .order_by("buyer__username")
    )
    spent_by = {
        row["purchase__buyer__username"]: row["e"]
        for row in LedgerEntry.objects.filter(dataset=dataset, kind=LedgerEntry.Kind.COMMIT)
        .values("purchase__buyer__username")
        .annotate(e=Sum("epsilon"))
    }
    jobs_by = {
        row["buyer__username"]: row["n"]
        for row in Job.objects.filter(dataset=dataset)
        .values("buyer__username")
        .annotate(n=Count("id", filter=Q(status=Job.Status.RELEASED)))
    }
    return DatasetBudget(
        dataset=dataset,
        epsilon_spent=spent or Decimal(0),
        by_buyer=[
            BuyerBudget(
                buyer=row["buyer__username"],
                epsilon_bought=row["epsilon_bought"],
                epsilon_spent=spent_by.get(row["buyer__username"]) or Decimal(0),
                credits_paid=Decimal(row["credits_paid"]),
                jobs_released=jobs_by.get(row["buyer__username"], 0),
            )
            for row in buyers
        ],
    )
