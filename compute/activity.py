"""Reads for an owner's dashboard: what each of their datasets earned, and how its budget and jobs move.

A selector of compute, not of the marketplace, because it counts jobs: compute builds on the
marketplace, so the marketplace never reads compute's models.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Count, Sum

from accounts.models import User
from compute.models import Job
from marketplace.models import Dataset, LedgerEntry, Purchase


@dataclass(frozen=True)
class DatasetActivity:
    """What an owner may see of a dataset's use: money, buyers, budget and job counts. Never a
    released value: those belong to the buyers who paid for them."""

    dataset: Dataset
    earnings: Decimal
    buyers: int
    purchases: int
    epsilon_committed: Decimal
    epsilon_held: Decimal
    jobs_by_status: dict[str, int]
    # (status, label, count) for every job status, in the order a job moves through them.
    job_counts: list[tuple[str, str, int]]
    # (time, cumulative epsilon committed after it) for each commit row of the privacy ledger, oldest first.
    commits: list[tuple[datetime, Decimal]]

    @property
    def jobs_total(self) -> int:
        return sum(self.jobs_by_status.values())

    @property
    def jobs_awaiting_key(self) -> int:
        return self.jobs_by_status.get("awaiting_key", 0)


def dataset_activity(*, owner: User, datasets: list[Dataset]) -> list[DatasetActivity]:
    """Activity of the owner's ``datasets`` (others' are skipped), in their order, in four queries."""
    mine = [d for d in datasets if d.owner_id == owner.pk]
    ids = [d.pk for d in mine]
    sales = {
        row["dataset_id"]: row
        for row in Purchase.objects.filter(dataset_id__in=ids)
        .order_by()
        .values("dataset_id")
        .annotate(earnings=Sum("price"), buyers=Count("buyer_id", distinct=True), purchases=Count("id"))
    }
    ledger: dict[int, dict[str, Decimal]] = {}
    for row in (
        LedgerEntry.objects.filter(dataset_id__in=ids)
        .order_by()
        .values("dataset_id", "kind")
        .annotate(e=Sum("epsilon"))
    ):
        ledger.setdefault(row["dataset_id"], {})[row["kind"]] = row["e"] or Decimal(0)
    jobs: dict[int, dict[str, int]] = {}
    for row in Job.objects.filter(dataset_id__in=ids).order_by().values("dataset_id", "status").annotate(n=Count("id")):
        jobs.setdefault(row["dataset_id"], {})[row["status"]] = row["n"]
    commits: dict[int, list[tuple[datetime, Decimal]]] = {}
    for dataset_id, at, epsilon in (
        LedgerEntry.objects.filter(dataset_id__in=ids, kind=LedgerEntry.Kind.COMMIT)
        .order_by("created_at", "id")
        .values_list("dataset_id", "created_at", "epsilon")
    ):
        series = commits.setdefault(dataset_id, [])
        series.append((at, (series[-1][1] if series else Decimal(0)) + epsilon))

    out = []
    for d in mine:
        sold = sales.get(d.pk, {})
        kinds = ledger.get(d.pk, {})
        committed = kinds.get(LedgerEntry.Kind.COMMIT, Decimal(0))
        held = (
            kinds.get(LedgerEntry.Kind.RESERVE, Decimal(0)) - committed - kinds.get(LedgerEntry.Kind.REFUND, Decimal(0))
        )
        out.append(
            DatasetActivity(
                dataset=d,
                earnings=sold.get("earnings") or Decimal("0.00"),
                buyers=sold.get("buyers", 0),
                purchases=sold.get("purchases", 0),
                epsilon_committed=committed,
                epsilon_held=held,
                jobs_by_status=jobs.get(d.pk, {}),
                job_counts=[(value, label, jobs.get(d.pk, {}).get(value, 0)) for value, label in Job.Status.choices],
                commits=commits.get(d.pk, []),
            )
        )
    return out
