"""Reads for accounts, limited to what the caller may see."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import QuerySet

from accounts.models import ApiKey, CreditEntry, User, Wallet


def wallet_balance(*, user: User) -> Decimal:
    return Wallet.objects.filter(user=user).values_list("balance", flat=True).first() or Decimal("0.00")


def api_key_list(*, user: User) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(user=user)


def credit_entry_list(*, user: User) -> QuerySet[CreditEntry]:
    return CreditEntry.objects.filter(wallet__user=user).select_related("purchase__dataset")
