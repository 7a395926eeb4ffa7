"""POST /api/v1/auth/signup/: accounts with roles, a wallet and the configured sign-up credits."""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts.models import CreditEntry, User, Wallet
from accounts.services import USERNAME_UNAVAILABLE

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """The cast's passwords are hashed with a fast hasher; these tests are not about hashing cost."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


URL = "/api/v1/auth/signup/"
GOOD_PASSWORD = "a long and unusual passphrase 93"


def signup(client, **overrides):
    body = {"username": "dora", "email": "dora@example.org", "password": GOOD_PASSWORD, "roles": ["buyer"]}
    body.update(overrides)
    return client.post(URL, body, format="json")


def test_signup_creates_an_account_and_answers_201(anon):
    response = signup(anon)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["username"] == "dora" and body["roles"] == ["buyer"]
    assert "password" not in body
    user = User.objects.get(username="dora")
    assert user.check_password(GOOD_PASSWORD)


@pytest.mark.parametrize(
    "roles, is_owner, is_buyer",
    [(["owner"], True, False), (["buyer"], False, True), (["owner", "buyer"], True, True)],
)
def test_signup_sets_the_roles_asked_for(anon, roles, is_owner, is_buyer):
    response = signup(anon, roles=roles)
    assert response.status_code == 201
    assert sorted(response.json()["roles"]) == sorted(roles)
    user = User.objects.get(username="dora")
    assert (user.is_owner, user.is_buyer) == (is_owner, is_buyer)


def test_signup_creates_a_wallet_with_the_configured_credits_as_a_ledger_row(anon, settings):
    settings.CLOAKROOM_SIGNUP_CREDITS = Decimal("250.00")
    assert signup(anon).status_code == 201
    wallet = Wallet.objects.get(user__username="dora")
    assert wallet.balance == Decimal("250.00")
    entry = CreditEntry.objects.get(wallet=wallet)
    assert entry.kind == CreditEntry.Kind.SIGNUP_GRANT
    assert entry.amount == Decimal("250.00") and entry.balance_after == Decimal("250.00")


def test_signup_with_zero_configured_credits_creates_an_empty_wallet_and_no_ledger_row(anon, settings):
    settings.CLOAKROOM_SIGNUP_CREDITS = Decimal("0")
    assert signup(anon).status_code == 201
    wallet = Wallet.objects.get(user__username="dora")
    assert wallet.balance == Decimal("0")
    assert not CreditEntry.objects.filter(wallet=wallet).exists()


def test_signup_with_a_taken_username_is_a_400_naming_username(anon, buyer):
    response = signup(anon, username=buyer.username.upper())
    assert response.status_code == 400
    error = response.json()["error"]
    # One answer for every name that cannot be had (taken or reserved): see accounts.services.
    assert "username" in error["fields"] and error["message"] == USERNAME_UNAVAILABLE
    assert User.objects.filter(username__iexact=buyer.username).count() == 1


@pytest.mark.parametrize("password", ["short", "password123", "12345678901234", "dora.example"])
def test_signup_with_a_weak_password_is_a_400_naming_password(anon, password):
    response = signup(anon, password=password)
    assert response.status_code == 400
    assert "password" in response.json()["error"]["fields"]
    assert not User.objects.filter(username="dora").exists()


@pytest.mark.parametrize("roles", [["admin"], ["owner", "superuser"], [], "owner", None])
def test_signup_with_an_unknown_or_missing_role_is_a_400_naming_roles(anon, roles):
    response = signup(anon, roles=roles)
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert any(name.startswith("roles") for name in fields), fields
    assert not User.objects.filter(username="dora").exists()


@pytest.mark.parametrize("field", ["username", "email", "password", "roles"])
def test_signup_without_a_required_field_is_a_400_naming_it(anon, field):
    body = {"username": "dora", "email": "dora@example.org", "password": GOOD_PASSWORD, "roles": ["buyer"]}
    del body[field]
    response = anon.post(URL, body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_signup_with_a_malformed_email_is_a_400_naming_email(anon):
    response = signup(anon, email="not-an-address")
    assert response.status_code == 400 and "email" in response.json()["error"]["fields"]


def test_a_rejected_signup_leaves_no_wallet_or_ledger_row(anon, settings):
    settings.CLOAKROOM_SIGNUP_CREDITS = Decimal("100")
    assert signup(anon, password="short").status_code == 400
    assert not Wallet.objects.exists() and not CreditEntry.objects.exists()
