"""Reads for the marketplace, already limited to what the caller may see."""

from __future__ import annotations

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


def purchase_epsilon_spent(purchase: Purchase) -> Decimal:
    """Epsilon committed on this purchase, from the ledger."""
    total = purchase.ledger_entries.filter(kind=LedgerEntry.Kind.COMMIT).aggregate(s=Sum("epsilon"))["s"]
    return total or Decimal("0")


def purchase_epsilon_held(purchase: Purchase) -> Decimal:
    """Epsilon reserved by jobs that have neither committed nor refunded yet."""
    sums = {row["kind"]: row["s"] for row in purchase.ledger_entries.values("kind").annotate(s=Sum("epsilon"))}
    reserve = sums.get(LedgerEntry.Kind.RESERVE) or Decimal("0")
    commit = sums.get(LedgerEntry.Kind.COMMIT) or Decimal("0")
    refund = sums.get(LedgerEntry.Kind.REFUND) or Decimal("0")
    return reserve - commit - refund


def purchase_epsilon_remaining(purchase: Purchase) -> Decimal:
    return purchase.epsilon - purchase_epsilon_spent(purchase) - purchase_epsilon_held(purchase)
