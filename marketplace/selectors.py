"""Reads for the marketplace, already limited to what the caller may see."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from django.db.models import Count, DecimalField, F, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce

from accounts.models import User
from compute.engines import accounting
from config.lookups import get_or_404
from marketplace.models import EPSILON_QUANTUM, Dataset, LedgerEntry, Purchase


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


def dataset_list_with_earnings(*, owner: User) -> QuerySet[Dataset]:
    """The owner's datasets, newest first, each with ``earnings``: the sum of what buyers paid for it
    (0 for a dataset with no sales)."""
    return (
        dataset_list(user=owner, mine=True)
        .annotate(earnings=Coalesce(Sum("purchases__price"), Value(Decimal("0")), output_field=DecimalField()))
        .order_by("-created_at", "-id")
    )  # An aggregate drops Meta.ordering, and pages need a stable order.


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
    rho: dict[str, Decimal]

    def loss(self, kind: str) -> accounting.Loss:
        """The rows of one kind as the accountant's loss."""
        return accounting.Loss(float(self.epsilon[kind]), float(self.delta[kind]), float(self.rho[kind]))

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
    rows = {
        r["kind"]: r for r in entries.order_by().values("kind").annotate(e=Sum("epsilon"), d=Sum("delta"), r=Sum("rho"))
    }
    kinds = LedgerEntry.Kind.values
    return LedgerTotals(
        epsilon={k: (rows.get(k) or {}).get("e") or Decimal(0) for k in kinds},
        delta={k: (rows.get(k) or {}).get("d") or Decimal(0) for k in kinds},
        rho={k: (rows.get(k) or {}).get("r") or Decimal(0) for k in kinds},
    )


@dataclass(frozen=True)
class PurchaseBudget:
    """A purchase's budget under the accountant (compute/engines/accounting.py), from its ledger.

    ``spent`` is the guarantee of the answers released (the better of basic composition and zCDP),
    ``held`` the epsilon of open jobs' reservations, ``remaining`` the largest epsilon one more job
    (at delta 0) could ask for, and ``share_used`` how much of the allotment released and open jobs
    use together."""

    spent: Decimal
    held: Decimal
    remaining: Decimal
    totals: LedgerTotals
    released: accounting.Bound
    share_used: float


def purchase_budget(purchase: Purchase) -> PurchaseBudget:
    """What a purchase has spent, holds for open jobs, and has left, all from its ledger."""
    totals = ledger_totals(purchase.ledger_entries.all())
    committed = totals.loss(LedgerEntry.Kind.COMMIT)
    reserved = totals.loss(LedgerEntry.Kind.RESERVE) - totals.loss(LedgerEntry.Kind.REFUND)
    released = accounting.guarantee(committed, float(purchase.delta))
    now = accounting.position(cap_epsilon=purchase.epsilon, cap_delta=purchase.delta, used=reserved)
    return PurchaseBudget(
        spent=Decimal(repr(released.epsilon)).quantize(EPSILON_QUANTUM, rounding=ROUND_CEILING),
        held=totals.epsilon_held,
        remaining=now.epsilon_left,
        totals=totals,
        released=released,
        share_used=now.share,
    )


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
