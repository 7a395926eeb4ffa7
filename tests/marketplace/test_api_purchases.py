"""POST/GET /api/v1/purchases/: buying an allotment of epsilon, paid exactly in credits."""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts.models import CreditEntry, Wallet
from marketplace.models import Dataset, Purchase
from tests.conftest import client_for
from tests.factories import DatasetFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """The cast's passwords are hashed with a fast hasher; these tests are not about hashing cost."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


URL = "/api/v1/purchases/"


def buy(client, dataset_id, epsilon):
    return client.post(URL, {"dataset": dataset_id, "epsilon": epsilon}, format="json")


def balance(user) -> Decimal:
    return Wallet.objects.get(user=user).balance


def assert_nothing_written(buyer, owner, dataset, *, buyer_balance=Decimal("1000.00")):
    assert not Purchase.objects.filter(buyer=buyer).exists()
    assert balance(buyer) == buyer_balance
    assert Wallet.objects.filter(user=owner).first() is None or balance(owner) == Decimal("0.00")
    assert not CreditEntry.objects.filter(kind__in=["purchase", "sale"]).exists()
    assert Dataset.objects.get(pk=dataset.pk).epsilon_sold == dataset.epsilon_sold


def test_a_purchase_is_a_201_with_its_budget(buyer_client, dataset):
    response = buy(buyer_client, dataset.pk, "1.5")
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) >= {"id", "dataset", "epsilon", "price", "epsilon_spent", "epsilon_remaining"}
    assert body["dataset"] == dataset.pk
    assert body["epsilon"] == "1.500000" and body["price"] == "15.00"
    assert body["epsilon_spent"] == "0.000000" and body["epsilon_remaining"] == "1.500000"
    assert Purchase.objects.get(pk=body["id"]).buyer.username == "bob"


def test_credits_move_exactly_from_buyer_to_owner_with_ledger_rows(buyer_client, buyer, owner):
    dataset = DatasetFactory(owner=owner, price_per_epsilon=Decimal("3.33"))
    purchase_id = buy(buyer_client, dataset.pk, "0.3").json()["id"]
    assert balance(buyer) == Decimal("999.00") and balance(owner) == Decimal("1.00")
    debit = CreditEntry.objects.get(wallet__user=buyer, kind=CreditEntry.Kind.PURCHASE)
    credit = CreditEntry.objects.get(wallet__user=owner, kind=CreditEntry.Kind.SALE)
    assert (debit.amount, debit.balance_after, debit.purchase_id) == (Decimal("-1.00"), Decimal("999.00"), purchase_id)
    assert (credit.amount, credit.balance_after, credit.purchase_id) == (Decimal("1.00"), Decimal("1.00"), purchase_id)


def test_a_purchase_raises_the_datasets_epsilon_sold(buyer_client, dataset):
    buy(buyer_client, dataset.pk, "2")
    buy(buyer_client, dataset.pk, "3.25")
    assert Dataset.objects.get(pk=dataset.pk).epsilon_sold == Decimal("5.25")


def test_buying_the_whole_remaining_budget_is_allowed(buyer_client, dataset):
    assert buy(buyer_client, dataset.pk, "10").status_code == 201
    assert Dataset.objects.get(pk=dataset.pk).epsilon_available == Decimal("0")


def test_not_enough_budget_is_a_409_saying_what_remains(buyer_client, outsider_client, buyer, owner, dataset):
    assert buy(outsider_client, dataset.pk, "8").status_code == 201
    response = buy(buyer_client, dataset.pk, "2.5")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "insufficient_budget" and "2 remains" in error["message"]
    assert not Purchase.objects.filter(buyer=buyer).exists() and balance(buyer) == Decimal("1000.00")
    assert Dataset.objects.get(pk=dataset.pk).epsilon_sold == Decimal("8")


def test_not_enough_credits_is_a_409_saying_what_the_wallet_holds_and_writes_nothing(owner, dataset):
    poor = UserFactory(is_buyer=True, credits=Decimal("7.50"))
    response = buy(client_for(poor), dataset.pk, "1")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "insufficient_credits"
    assert "7.50" in error["message"] and "10.00" in error["message"]
    assert not Purchase.objects.exists()
    assert balance(poor) == Decimal("7.50") and CreditEntry.objects.filter(wallet__user=poor).count() == 1
    assert Dataset.objects.get(pk=dataset.pk).epsilon_sold == Decimal("0")
    assert not CreditEntry.objects.filter(wallet__user=owner).exists()


def test_someone_elses_draft_is_a_404(buyer_client, buyer, owner):
    draft = DatasetFactory(owner=owner, status=Dataset.Status.DRAFT)
    response = buy(buyer_client, draft.pk, "1")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert_nothing_written(buyer, owner, draft)


def test_a_missing_dataset_is_a_404(buyer_client, buyer):
    assert buy(buyer_client, 987654, "1").status_code == 404
    assert not Purchase.objects.exists()


def test_a_suspended_dataset_is_a_409(buyer_client, buyer, owner):
    suspended = DatasetFactory(owner=owner, status=Dataset.Status.SUSPENDED)
    response = buy(buyer_client, suspended.pk, "1")
    assert response.status_code == 409 and response.json()["error"]["code"] == "dataset_suspended"
    assert_nothing_written(buyer, owner, suspended)


def test_buying_your_own_dataset_is_a_409(outsider_client, outsider):
    mine = DatasetFactory(owner=outsider)
    response = buy(outsider_client, mine.pk, "1")
    assert response.status_code == 409 and response.json()["error"]["code"] == "own_dataset"
    assert not Purchase.objects.exists() and balance(outsider) == Decimal("1000.00")


def test_an_owner_only_account_cannot_buy(owner_client, outsider):
    other = DatasetFactory(owner=outsider)
    response = owner_client.post(URL, {"dataset": other.pk, "epsilon": "1"}, format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "not_a_buyer"
    assert not Purchase.objects.exists()


def test_an_anonymous_purchase_is_a_401(anon, dataset):
    assert buy(anon, dataset.pk, "1").status_code == 401
    assert not Purchase.objects.exists()


@pytest.mark.parametrize(
    "epsilon",
    [
        0,
        "0",
        -1,
        "-0.5",
        "NaN",
        "nan",
        "Infinity",
        "-Infinity",
        "abc",
        "",
        None,
        "0.0000001",
        "1.1234567",
        [1],
        {"a": 1},
        True,
        "1e400",
        10**20,
    ],
)
def test_a_bad_epsilon_is_a_400_naming_epsilon(buyer_client, buyer, owner, dataset, epsilon):
    response = buy(buyer_client, dataset.pk, epsilon)
    assert response.status_code == 400, response.content
    assert "epsilon" in response.json()["error"]["fields"]
    assert_nothing_written(buyer, owner, dataset)


@pytest.mark.parametrize("dataset_id", ["abc", None, -1, 0, 1.5, [1], 10**40])
def test_a_bad_dataset_id_is_a_4xx_naming_dataset(buyer_client, buyer, dataset_id):
    response = buy(buyer_client, dataset_id, "1")
    assert response.status_code in (400, 404), response.content
    assert "dataset" in response.json()["error"]["fields"]
    assert not Purchase.objects.exists()


def test_the_list_shows_only_the_callers_purchases(buyer_client, outsider_client, dataset):
    mine = buy(buyer_client, dataset.pk, "1").json()["id"]
    buy(outsider_client, dataset.pk, "2")
    body = buyer_client.get(URL).json()
    assert body["count"] == 1 and [p["id"] for p in body["results"]] == [mine]


def test_a_purchase_detail_is_shown_to_its_buyer(buyer_client, dataset):
    mine = buy(buyer_client, dataset.pk, "1").json()
    response = buyer_client.get(f"{URL}{mine['id']}/")
    assert response.status_code == 200 and response.json()["epsilon"] == "1.000000"


def test_another_users_purchase_is_a_404(buyer_client, outsider_client, dataset):
    theirs = buy(outsider_client, dataset.pk, "1").json()["id"]
    response = buyer_client.get(f"{URL}{theirs}/")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_the_dataset_owner_cannot_read_a_buyers_purchase(owner_client, buyer_client, dataset):
    theirs = buy(buyer_client, dataset.pk, "1").json()["id"]
    assert owner_client.get(f"{URL}{theirs}/").status_code == 404
