"""Buying epsilon: prices, wallets, the credit ledger, and who may buy what."""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts.models import CreditEntry, Wallet
from marketplace.models import Dataset, Purchase
from tests.factories import DatasetFactory

pytestmark = pytest.mark.django_db


def buy(client, dataset, epsilon):
    return client.post(
        "/api/v1/purchases/",
        {"dataset": dataset.pk if hasattr(dataset, "pk") else dataset, "epsilon": epsilon},
        format="json",
    )


def test_a_purchase_debits_the_buyer_credits_the_owner_and_records_both(buyer_client, buyer, owner, dataset):
    response = buy(buyer_client, dataset, "1.25")
    assert response.status_code == 201
    body = response.json()
    assert {k: body[k] for k in ("dataset", "epsilon", "price", "epsilon_spent", "epsilon_remaining")} == {
        "dataset": dataset.pk,
        "epsilon": "1.250000",
        "price": "12.50",
        "epsilon_spent": "0.000000",
        "epsilon_remaining": "1.250000",
    }
    assert Wallet.objects.get(user=buyer).balance == Decimal("987.50")
    assert Wallet.objects.get(user=owner).balance == Decimal("12.50")
    debit = CreditEntry.objects.get(wallet__user=buyer, kind="purchase")
    credit = CreditEntry.objects.get(wallet__user=owner, kind="sale")
    assert (debit.amount, debit.balance_after) == (Decimal("-12.50"), Decimal("987.50"))
    assert (credit.amount, credit.purchase_id) == (Decimal("12.50"), body["id"])
    dataset.refresh_from_db()
    assert dataset.epsilon_sold == Decimal("1.25")


def test_buying_more_than_remains_is_a_409_that_says_what_remains_and_writes_nothing(buyer_client, buyer, dataset):
    assert buy(buyer_client, dataset, "9").status_code == 201
    response = buy(buyer_client, dataset, "2")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "insufficient_budget" and "1 remains" in error["message"]
    assert Purchase.objects.count() == 1
    assert Wallet.objects.get(user=buyer).balance == Decimal("910.00")


def test_buying_without_enough_credits_is_a_409_that_says_what_the_wallet_holds(buyer_client, buyer, dataset):
    expensive = DatasetFactory(owner=dataset.owner, price_per_epsilon=Decimal("600"))
    response = buy(buyer_client, expensive, "2")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "insufficient_credits"
    assert "1000.00" in response.json()["error"]["message"]
    expensive.refresh_from_db()
    assert expensive.epsilon_sold == 0 and not Purchase.objects.exists()
    assert CreditEntry.objects.filter(kind="purchase").count() == 0


@pytest.mark.parametrize("epsilon", ["0", "-1", "NaN", "Infinity", "abc", "0.0000001", "", None, [], {"x": 1}, "1e400"])
def test_a_bad_epsilon_is_a_400_naming_it(buyer_client, dataset, epsilon):
    response = buyer_client.post("/api/v1/purchases/", {"dataset": dataset.pk, "epsilon": epsilon}, format="json")
    assert response.status_code == 400
    assert "epsilon" in response.json()["error"]["fields"]
    assert not Purchase.objects.exists()


def test_another_owners_draft_is_a_404_and_a_suspended_dataset_a_409(buyer_client, owner):
    draft = DatasetFactory(owner=owner, status=Dataset.Status.DRAFT)
    suspended = DatasetFactory(owner=owner, status=Dataset.Status.SUSPENDED)
    assert buy(buyer_client, draft, "1").status_code == 404
    assert buy(buyer_client, 999999, "1").status_code == 404
    response = buy(buyer_client, suspended, "1")
    assert response.status_code == 409 and response.json()["error"]["code"] == "dataset_suspended"


def test_an_owner_cannot_buy_their_own_dataset_and_an_owner_only_account_cannot_buy(
    outsider_client, outsider, owner_client, dataset
):
    own = DatasetFactory(owner=outsider)
    assert buy(outsider_client, own, "1").json()["error"]["code"] == "own_dataset"
    assert buy(owner_client, dataset, "1").status_code == 403


def test_purchases_list_only_your_own_and_another_users_purchase_is_a_404(buyer_client, outsider_client, dataset):
    mine = buy(buyer_client, dataset, "1").json()
    theirs = buy(outsider_client, dataset, "2").json()
    listed = buyer_client.get("/api/v1/purchases/").json()
    assert listed["count"] == 1 and [p["id"] for p in listed["results"]] == [mine["id"]]
    assert buyer_client.get(f"/api/v1/purchases/{theirs['id']}/").status_code == 404
    assert buyer_client.get(f"/api/v1/purchases/{mine['id']}/").status_code == 200


def test_ledger_rows_cannot_be_changed_or_deleted(buyer_client, dataset):
    from accounts.models import AppendOnlyError

    buy(buyer_client, dataset, "1")
    entry = CreditEntry.objects.first()
    entry.amount = Decimal("1000")
    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        entry.delete()
