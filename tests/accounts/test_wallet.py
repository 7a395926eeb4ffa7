"""The credit wallet and the two append-only ledgers (credits and privacy budget)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db.models import Sum

from accounts.models import AppendOnlyError, CreditEntry, Wallet
from accounts.services import wallet_change
from config.exceptions import Conflict
from marketplace.models import LedgerEntry, Purchase

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """The cast's passwords are hashed with a fast hasher; these tests are not about hashing cost."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_a_credit_adds_to_the_balance_and_appends_a_ledger_row(owner):
    entry = wallet_change(user=owner, amount=Decimal("12.34"), kind=CreditEntry.Kind.ADJUSTMENT)
    assert Wallet.objects.get(user=owner).balance == Decimal("12.34")
    assert entry.amount == Decimal("12.34") and entry.balance_after == Decimal("12.34")


def test_a_debit_takes_from_the_balance_and_records_the_balance_after(buyer):
    entry = wallet_change(user=buyer, amount=Decimal("-250.50"), kind=CreditEntry.Kind.ADJUSTMENT)
    assert Wallet.objects.get(user=buyer).balance == Decimal("749.50")
    assert entry.amount == Decimal("-250.50") and entry.balance_after == Decimal("749.50")


def test_a_debit_larger_than_the_balance_is_a_conflict_saying_what_the_wallet_holds(buyer):
    before = CreditEntry.objects.count()
    with pytest.raises(Conflict) as caught:
        wallet_change(user=buyer, amount=Decimal("-1000.01"), kind=CreditEntry.Kind.ADJUSTMENT)
    assert caught.value.code == "insufficient_credits" and "1000.00" in caught.value.message
    assert Wallet.objects.get(user=buyer).balance == Decimal("1000.00")
    assert CreditEntry.objects.count() == before


def test_a_debit_of_exactly_the_balance_empties_the_wallet(buyer):
    wallet_change(user=buyer, amount=Decimal("-1000"), kind=CreditEntry.Kind.ADJUSTMENT)
    assert Wallet.objects.get(user=buyer).balance == Decimal("0.00")


def test_the_balance_always_equals_the_sum_of_its_ledger_rows(buyer):
    for amount in ["0.10", "0.20", "-0.30", "5", "-1.01"]:
        wallet_change(user=buyer, amount=Decimal(amount), kind=CreditEntry.Kind.ADJUSTMENT)
    wallet = Wallet.objects.get(user=buyer)
    assert wallet.balance == Decimal("1003.99")
    assert CreditEntry.objects.filter(wallet=wallet).aggregate(s=Sum("amount"))["s"] == wallet.balance
    assert CreditEntry.objects.filter(wallet=wallet).latest("id").balance_after == wallet.balance


def test_a_credit_entry_cannot_be_edited(buyer):
    entry = CreditEntry.objects.filter(wallet__user=buyer).get()
    entry.amount = Decimal("1000000")
    with pytest.raises(AppendOnlyError):
        entry.save()
    assert CreditEntry.objects.get(pk=entry.pk).amount == Decimal("1000.00")


def test_a_credit_entry_cannot_be_deleted(buyer):
    entry = CreditEntry.objects.filter(wallet__user=buyer).get()
    with pytest.raises(AppendOnlyError):
        entry.delete()
    assert CreditEntry.objects.filter(pk=entry.pk).exists()


def test_credit_entries_cannot_be_updated_or_deleted_in_bulk(buyer):
    with pytest.raises(AppendOnlyError):
        CreditEntry.objects.filter(wallet__user=buyer).update(amount=Decimal("5"))
    with pytest.raises(AppendOnlyError):
        CreditEntry.objects.filter(wallet__user=buyer).delete()
    assert CreditEntry.objects.filter(wallet__user=buyer).get().amount == Decimal("1000.00")


@pytest.fixture
def ledger_entry(buyer, dataset):
    purchase = Purchase.objects.create(buyer=buyer, dataset=dataset, epsilon=Decimal("1"), price=Decimal("10"))
    return LedgerEntry.objects.create(
        dataset=dataset, purchase=purchase, kind=LedgerEntry.Kind.RESERVE, epsilon=Decimal("0.5")
    )


def test_a_privacy_ledger_entry_cannot_be_edited(ledger_entry):
    ledger_entry.epsilon = Decimal("0")
    with pytest.raises(AppendOnlyError):
        ledger_entry.save()
    assert LedgerEntry.objects.get(pk=ledger_entry.pk).epsilon == Decimal("0.5")


def test_a_privacy_ledger_entry_cannot_be_deleted(ledger_entry):
    with pytest.raises(AppendOnlyError):
        ledger_entry.delete()
    with pytest.raises(AppendOnlyError):
        LedgerEntry.objects.filter(pk=ledger_entry.pk).delete()
    assert LedgerEntry.objects.filter(pk=ledger_entry.pk).exists()


def test_privacy_ledger_entries_cannot_be_updated_in_bulk(ledger_entry):
    with pytest.raises(AppendOnlyError):
        LedgerEntry.objects.filter(pk=ledger_entry.pk).update(epsilon=Decimal("0"))
    assert LedgerEntry.objects.get(pk=ledger_entry.pk).epsilon == Decimal("0.5")
