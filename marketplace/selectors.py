"""Reads for the marketplace, already limited to what the caller may see."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Count, F, Q, QuerySet, Sum

from accounts.models import User
from config.lookups import get_or_404
from marketplace.models import Dataset, LedgerEntry, Purchase


def dataset_list(*, user: User | None, search: str = "", mode: str = "", mine: bool = False) -> QuerySet[Dataset]:
    """Published datasets for everyone, plus the caller's own drafts and suspended datasets."""
    visible = Q(status=Dataset.Status.PUBLISHED)
    if user is not None and user.is_authenticated:
        visible |= Q(owner=user)
    qs = Dataset.objects.filter(visible).select_related("owner").prefetch_related("columns")
    if mine and user is not None and user.is_authenticated:
        qs = qs.filter(owner=user)
    if search:
        qs = qs.filter(
            Q(title__icontains=search) | Q(description__icontains=search) | Q(columns__name__icontains=search)
        ).distinct()
    if mode:
        qs = qs.filter(mode=mode)
    return qs


def dataset_get(*, user: User | None, dataset_id) -> Dataset:
    return get_or_404(dataset_list(user=user), message="No such dataset.", pk=dataset_id)


def purchase_list(*, user: User) -> QuerySet[Purchase]:
    return Purchase.objects.filter(buyer=user).select_related("dataset")


def purchase_get(*, user: User, purchase_id) -> Purchase:
    return get_or_404(purchase_list(user=user), message="No such purchase.", pk=purchase_id)


@dataclass(frozen=True)
class LedgerTotals:
    """Sums of privacy-ledger rows by kind. What is spent, held and left follows from them:
    spent = committed; held = reserved - committed - refunded (jobs still open)."""

    epsilon: dict[str, Decimal]
    delta: dict[str, Decimal]

    @property
    def epsilon_spent(self) -> Decimal:
        return self.epsilon[LedgerEntry.Kind.COMMIT]

    @property
    def epsilon_held(self) -> Decimal:
        e = self.epsilon
        return e[LedgerEntry.Kind.RESERVE] - e[LedgerEntry.Kind.COMMIT] - e[LedgerEntry.Kind.REFUND]


def ledger_totals(entries: QuerySet[LedgerEntry]) -> LedgerTotals:
    """Epsilon and delta summed by kind over ``entries``, in one query."""
    # order_by() clears any ordering: ordered fields would join the GROUP BY and split the sums.
    rows = {r["kind"]: r for r in entries.order_by().values("kind").annotate(e=Sum("epsilon"), d=Sum("delta"))}
    kinds = LedgerEntry.Kind.values
    return LedgerTotals(
        epsilon={k: (rows.get(k) or {}).get("e") or Decimal(0) for k in kinds},
        delta={k: (rows.get(k) or {}).get("d") or Decimal(0) for k in kinds},
    )


@dataclass(frozen=True)
class PurchaseBudget:
    spent: Decimal
    held: Decimal
    remaining: Decimal
    totals: LedgerTotals


def purchase_budget(purchase: Purchase) -> PurchaseBudget:
    """What a purchase has spent, holds for open jobs, and has left, all from its ledger."""
    totals = ledger_totals(purchase.ledger_entries.all())
    spent, held = totals.epsilon_spent, totals.epsilon_held
    return PurchaseBudget(spent=spent, held=held, remaining=purchase.epsilon - spent - held, totals=totals)


def dataset_catalogue(
    *,
    user: User | None,
    search: str = "",
    mode: str = "",
    min_price: Decimal | None = None,
    max_price: Decimal | None = None,
    min_available: Decimal | None = None,
    order: str = "",
) -> QuerySet[Dataset]:
    """The catalogue: :func:`dataset_list` narrowed by price per epsilon and by epsilon still for
    sale, in the order asked for ("price", "-available", or newest first)."""
    qs = dataset_list(user=user, search=search, mode=mode).annotate(available=F("epsilon_cap") - F("epsilon_sold"))
    if min_price is not None:
        qs = qs.filter(price_per_epsilon__gte=min_price)
    if max_price is not None:
        qs = qs.filter(price_per_epsilon__lte=max_price)
    if min_available is not None:
        qs = qs.filter(available__gte=min_available)
    orderings = {
        "price": ["price_per_epsilon", "-created_at", "-id"],
        "-available": ["-available", "-created_at", "-id"],
    }
    return qs.order_by(*orderings.get(order, ["-created_at", "-id"]))


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
    from compute.models import Job  # the compute app builds on this one; imported here, not at load

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


@dataclass(frozen=True)
class OwnerTotals:
    datasets: int
    earnings: Decimal
    buyers: int


def owner_totals(*, owner: User) -> OwnerTotals:
    """Across all the owner's datasets: how many, what they earned, and how many buyers bought."""
    sales = Purchase.objects.filter(dataset__owner=owner).aggregate(
        earnings=Sum("price"), buyers=Count("buyer_id", distinct=True)
    )
    return OwnerTotals(
        datasets=Dataset.objects.filter(owner=owner).count(),
        earnings=sales["earnings"] or Decimal("0.00"),
        buyers=sales["buyers"] or 0,
    )
