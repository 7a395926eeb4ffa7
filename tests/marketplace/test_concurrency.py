"""Concurrent purchases through the API on PostgreSQL: never oversold, every wallet exact.

Each test starts real threads that wait on one barrier and then POST together, so the requests
overlap inside the database; every thread closes its own connection when it is done.
"""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection, connections
from django.db.models import Sum

from accounts.models import CreditEntry, Wallet
from marketplace.models import Dataset, Purchase
from tests.conftest import client_for
from tests.factories import DatasetFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """The cast's passwords are hashed with a fast hasher; these tests are not about hashing cost."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def post_together(requests: list[tuple]) -> list[tuple[int, dict]]:
    """POST every (client, body) at the same moment; return (status, json) in the same order."""
    barrier = threading.Barrier(len(requests))
    results: list[tuple[int, dict] | None] = [None] * len(requests)

    def run(index: int, client, body: dict) -> None:
        try:
            barrier.wait(timeout=30)
            response = client.post("/api/v1/purchases/", body, format="json")
            results[index] = (response.status_code, response.json())
        except Exception as exc:  # recorded and asserted on by the caller
            results[index] = (-1, {"exception": repr(exc)})
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, c, b)) for i, (c, b) in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(r is not None for r in results), "a thread did not finish"
    return results  # type: ignore[return-value]


def assert_every_wallet_exact() -> None:
    for wallet in Wallet.objects.all():
        entries = CreditEntry.objects.filter(wallet=wallet)
        total = entries.aggregate(s=Sum("amount"))["s"] or Decimal("0")
        assert wallet.balance == total, f"{wallet}: balance {wallet.balance} but ledger sums to {total}"
        last = entries.order_by("-created_at", "-id").first()
        if last is not None:
            assert last.balance_after == wallet.balance, f"{wallet}: last balance_after {last.balance_after}"


def assert_dataset_exact(dataset: Dataset) -> Decimal:
    dataset.refresh_from_db()
    sold = Purchase.objects.filter(dataset=dataset).aggregate(s=Sum("epsilon"))["s"] or Decimal("0")
    assert sold <= dataset.epsilon_cap
    assert dataset.epsilon_sold == sold
    return sold


@pytest.fixture
def on_postgresql():
    assert connection.vendor == "postgresql", "concurrency tests need PostgreSQL: set DATABASE_URL"


def test_twenty_buyers_racing_for_the_last_allotments_never_oversell(on_postgresql):
    owner = UserFactory(is_owner=True)
    dataset = DatasetFactory(owner=owner, epsilon_cap=Decimal("5"), price_per_epsilon=Decimal("2.00"))
    buyers = [UserFactory(is_buyer=True, credits=Decimal("50")) for _ in range(20)]
    clients = [client_for(b) for b in buyers]

    results = post_together([(c, {"dataset": dataset.pk, "epsilon": "0.5"}) for c in clients])

    statuses = [status for status, _ in results]
    assert sorted(set(statuses)) == [201, 409], results
    assert statuses.count(201) == 10
    assert all(body["error"]["code"] == "insufficient_budget" for status, body in results if status == 409)
    assert assert_dataset_exact(dataset) == Decimal("5")
    assert Wallet.objects.get(user=owner).balance == Decimal("10.00")
    for buyer, (status, _) in zip(buyers, results):
        bought = Purchase.objects.filter(buyer=buyer).count()
        assert bought == (1 if status == 201 else 0)
        assert Wallet.objects.get(user=buyer).balance == (Decimal("49.00") if status == 201 else Decimal("50.00"))
        if status == 409:
            assert CreditEntry.objects.filter(wallet__user=buyer).count() == 1  # only the starting credits
    assert_every_wallet_exact()


def test_twenty_requests_from_one_buyer_never_oversell(on_postgresql):
    owner = UserFactory(is_owner=True)
    dataset = DatasetFactory(owner=owner, epsilon_cap=Decimal("5"), price_per_epsilon=Decimal("1.00"))
    buyer = UserFactory(is_buyer=True, credits=Decimal("1000"))
    clients = [client_for(buyer) for _ in range(20)]

    results = post_together([(c, {"dataset": dataset.pk, "epsilon": "0.5"}) for c in clients])

    assert [s for s, _ in results].count(201) == 10, results
    assert [s for s, _ in results].count(409) == 10
    assert assert_dataset_exact(dataset) == Decimal("5")
    assert Wallet.objects.get(user=buyer).balance == Decimal("995.00")
    assert_every_wallet_exact()


def test_uneven_requests_fill_the_cap_without_passing_it(on_postgresql):
    owner = UserFactory(is_owner=True)
    dataset = DatasetFactory(owner=owner, epsilon_cap=Decimal("3"), price_per_epsilon=Decimal("1.00"))
    buyers = [UserFactory(is_buyer=True, credits=Decimal("20")) for _ in range(20)]
    asks = ["0.7", "0.3", "1.1", "0.25", "0.05"] * 4
    results = post_together([(client_for(b), {"dataset": dataset.pk, "epsilon": e}) for b, e in zip(buyers, asks)])

    assert {s for s, _ in results} <= {201, 409}, results
    granted = sum(Decimal(e) for (s, _), e in zip(results, asks) if s == 201)
    assert assert_dataset_exact(dataset) == granted
    assert_every_wallet_exact()


def test_a_wallet_pays_for_only_the_concurrent_purchases_it_can_afford(on_postgresql):
    owner = UserFactory(is_owner=True)
    dataset = DatasetFactory(owner=owner, epsilon_cap=Decimal("100"), price_per_epsilon=Decimal("10.00"))
    buyer = UserFactory(is_buyer=True, credits=Decimal("35.00"))
    clients = [client_for(buyer) for _ in range(10)]

    results = post_together([(c, {"dataset": dataset.pk, "epsilon": "1"}) for c in clients])

    statuses = [s for s, _ in results]
    assert statuses.count(201) == 3 and statuses.count(409) == 7, results
    assert all(body["error"]["code"] == "insufficient_credits" for s, body in results if s == 409)
    assert Wallet.objects.get(user=buyer).balance == Decimal("5.00")
    assert Wallet.objects.get(user=owner).balance == Decimal("30.00")
    # The losers' epsilon was rolled back together with their failed debit.
    assert assert_dataset_exact(dataset) == Decimal("3")
    assert Purchase.objects.count() == 3
    assert_every_wallet_exact()


def test_two_people_buying_from_each_other_at_once_do_not_deadlock(on_postgresql):
    alice = UserFactory(is_owner=True, is_buyer=True, credits=Decimal("100"))
    carol = UserFactory(is_owner=True, is_buyer=True, credits=Decimal("100"))
    alices = DatasetFactory(owner=alice, price_per_epsilon=Decimal("1.00"))
    carols = DatasetFactory(owner=carol, price_per_epsilon=Decimal("1.00"))
    requests = []
    for _ in range(5):
        requests.append((client_for(alice), {"dataset": carols.pk, "epsilon": "1"}))
        requests.append((client_for(carol), {"dataset": alices.pk, "epsilon": "1"}))

    results = post_together(requests)

    assert [s for s, _ in results] == [201] * 10, results
    assert Wallet.objects.get(user=alice).balance == Decimal("100.00")
    assert Wallet.objects.get(user=carol).balance == Decimal("100.00")
    assert_every_wallet_exact()


def upload_together(clients: list, title: str) -> list[int]:
    """Upload the same small file with the same title from every client at the same moment."""
    import io
    import json

    from tests.marketplace.test_api_datasets import GOOD_CSV, METADATA

    barrier = threading.Barrier(len(clients))
    statuses: list[int] = [0] * len(clients)

    def run(index: int, client) -> None:
        try:
            handle = io.BytesIO(GOOD_CSV)
            handle.name = "data.csv"
            body = {"file": handle, "metadata": json.dumps({**METADATA, "title": title})}
            barrier.wait(timeout=30)
            statuses[index] = client.post("/api/v1/datasets/", body, format="multipart").status_code
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return statuses


def test_owners_uploading_the_same_title_at_once_all_get_their_own_dataset(on_postgresql, private_storage):
    owners = [UserFactory(is_owner=True) for _ in range(10)]
    statuses = upload_together([client_for(o) for o in owners], "Same title")
    assert statuses == [201] * 10, statuses
    slugs = list(Dataset.objects.values_list("slug", flat=True))
    assert len(set(slugs)) == 10
    assert len([p for p in private_storage.rglob("*") if p.is_file()]) == 10


def test_simultaneous_signups_for_one_username_create_one_account(on_postgresql):
    from rest_framework.test import APIClient

    from accounts.models import User

    barrier = threading.Barrier(10)
    statuses: list[int] = [0] * 10
    body = {"username": "dora", "email": "d@example.org", "password": "a long unusual phrase 93", "roles": ["buyer"]}

    def run(index: int) -> None:
        try:
            client = APIClient()
            barrier.wait(timeout=30)
            statuses[index] = client.post("/api/v1/auth/signup/", body, format="json").status_code
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(statuses) == [201] + [400] * 9, statuses
    assert User.objects.filter(username="dora").count() == 1
    assert Wallet.objects.filter(user__username="dora").count() == 1
