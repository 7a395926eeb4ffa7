"""Reads for the marketplace, already limited to what the caller may see."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Q, QuerySet, Sum

from accounts.models import User
from config.exceptions import NotFound
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
    try:
        return dataset_list(user=user).get(pk=dataset_id)
    except (Dataset.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such dataset.") from None


def purchase_list(*, user: User) -> QuerySet[Purchase]:
    return Purchase.objects.filter(buyer=user).select_related("dataset")


def purchase_get(*, user: User, purchase_id) -> Purchase:
    try:
        return purchase_list(user=user).get(pk=purchase_id)
    except (Purchase.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such purchase.") from None


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
