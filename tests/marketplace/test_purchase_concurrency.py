"""Concurrent purchases on PostgreSQL never oversell a dataset and leave every wallet exact."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection, connections
from django.db.models import Sum

from accounts.models import CreditEntry, Wallet
from config.exceptions import Conflict
from marketplace.models import Purchase
from marketplace.services import purchase_create
from tests.factories import DatasetFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def run_together(calls):
    barrier = threading.Barrier(len(calls))
    outcomes = []
    lock = threading.Lock()

    def worker(call):
        try:
            barrier.wait(timeout=30)
            call()
            outcome = "ok"
        except Conflict as exc:
            outcome = exc.code
        except Exception as exc:  # noqa: BLE001 - asserted on below
            outcome = f"error {type(exc).__name__}: {exc}"
        finally:
            connections.close_all()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=worker, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return outcomes


def assert_wallets_exact():
    for wallet in Wallet.objects.all():
        entries = CreditEntry.objects.filter(wallet=wallet).order_by("created_at", "id")
        total = entries.aggregate(s=Sum("amount"))["s"] or Decimal(0)
        assert wallet.balance == total, wallet
        if entries.exists():
            assert entries.last().balance_after == wallet.balance


def test_twenty_concurrent_purchases_of_the_last_allotments_never_oversell():
    assert connection.vendor == "postgresql", "this test needs PostgreSQL (set DATABASE_URL)"
    owner = UserFactory(is_owner=True)
    dataset = DatasetFactory(owner=owner, epsilon_cap=Decimal("5"), price_per_epsilon=Decimal("3.00"))
    buyers = [UserFactory(is_buyer=True, credits=Decimal("100")) for _ in range(20)]
    outcomes = run_together(
        [lambda b=b: purchase_create(buyer=b, dataset_id=dataset.pk, epsilon=Decimal("0.5")) for b in buyers]
    )
    assert sorted(set(outcomes)) == ["insufficient_budget", "ok"], outcomes
    assert outcomes.count("ok") == 10
    dataset.refresh_from_db()
    sold = Purchase.objects.filter(dataset=dataset).aggregate(s=Sum("epsilon"))["s"]
    assert dataset.epsilon_sold == sold == Decimal("5") <= dataset.epsilon_cap
    assert Wallet.objects.get(user=owner).balance == Decimal("15.00")
    losers = [b for b in buyers if not Purchase.objects.filter(buyer=b).exists()]
    assert len(losers) == 10 and all(Wallet.objects.get(user=b).balance == Decimal("100.00") for b in losers)
    assert_wallets_exact()


def test_one_wallet_pays_for_only_what_it_holds_under_concurrency():
    owner = UserFactory(is_owner=True)
    dataset = DatasetFactory(owner=owner, epsilon_cap=Decimal("100"), price_per_epsilon=Decimal("10.00"))
    buyer = UserFactory(is_buyer=True, credits=Decimal("35.00"))
    outcomes = run_together(
        [lambda: purchase_create(buyer=buyer, dataset_id=dataset.pk, epsilon=Decimal("1")) for _ in range(10)]
    )
    assert outcomes.count("ok") == 3 and outcomes.count("insufficient_credits") == 7, outcomes
    assert Wallet.objects.get(user=buyer).balance == Decimal("5.00")
    dataset.refresh_from_db()
    assert dataset.epsilon_sold == Decimal("3")
    assert_wallets_exact()
