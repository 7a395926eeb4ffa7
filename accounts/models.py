from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models import Q

CREDIT_PLACES = 2
CREDIT_QUANTUM = Decimal("0.01")


class AppendOnlyError(Exception):
    """Raised when code tries to edit or delete a ledger row."""


class AppendOnlyQuerySet(models.QuerySet):
    """Bulk writes bypass ``save()`` and ``delete()``, so they are refused here as well."""

    def update(self, **kwargs):
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only")

    def delete(self):
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only")

    def bulk_update(self, objs, fields, batch_size=None):
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only")


class AppendOnlyModel(models.Model):
    """Rows are written once and never changed or deleted; corrections are new rows."""

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError(f"{type(self).__name__} rows are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError(f"{type(self).__name__} rows are append-only")


class User(AbstractUser):
    """A person. One account may be a data owner, a buyer, or both."""

    is_owner = models.BooleanField("data owner", default=False)
    is_buyer = models.BooleanField("buyer", default=False)

    @property
    def roles(self) -> list[str]:
        roles = []
        if self.is_owner:
            roles.append("owner")
        if self.is_buyer:
            roles.append("buyer")
        return roles


class Wallet(models.Model):
    """A user's credits. The balance only changes together with a CreditEntry (see services)."""

    user = models.OneToOneField(User, on_delete=models.PROTECT, related_name="wallet")
    balance = models.DecimalField(max_digits=18, decimal_places=CREDIT_PLACES, default=Decimal("0"))
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(balance__gte=0), name="wallet_balance_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.user} ({self.balance} credits)"


class CreditEntry(AppendOnlyModel):
    """One change to a wallet: the append-only credit ledger."""

    class Kind(models.TextChoices):
        SIGNUP_GRANT = "signup_grant", "sign-up grant"
        PURCHASE = "purchase", "purchase"
        SALE = "sale", "sale"
        ADJUSTMENT = "adjustment", "adjustment"

    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="entries")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    amount = models.DecimalField(max_digits=18, decimal_places=CREDIT_PLACES)
    balance_after = models.DecimalField(max_digits=18, decimal_places=CREDIT_PLACES)
    purchase = models.ForeignKey(
        "marketplace.Purchase", null=True, blank=True, on_delete=models.PROTECT, related_name="credit_entries"
    )
    memo = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "credit entries"
        constraints = [
            models.CheckConstraint(condition=Q(balance_after__gte=0), name="credit_balance_after_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount:+} -> {self.balance_after}"


class ApiKey(models.Model):
    """An API key. Only a short public prefix and a SHA-256 hash are stored; the key is shown once."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    hashed_key = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
