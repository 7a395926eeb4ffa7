"""GET /api/v1/me/: the caller's name, roles and credits."""

from __future__ import annotations

import pytest

from tests.conftest import basic_auth

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """The cast's passwords are hashed with a fast hasher; these tests are not about hashing cost."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


URL = "/api/v1/me/"


def test_me_returns_username_roles_and_credits(buyer_client):
    response = buyer_client.get(URL)
    assert response.status_code == 200
    body = response.json()
    assert body["username"] == "bob" and body["roles"] == ["buyer"] and body["credits"] == "1000.00"


def test_me_lists_both_roles_for_an_owner_who_also_buys(outsider_client):
    assert outsider_client.get(URL).json()["roles"] == ["owner", "buyer"]


def test_me_shows_zero_credits_for_a_fresh_owner(owner_client):
    assert owner_client.get(URL).json()["credits"] == "0.00"


def test_me_works_with_http_basic(anon, buyer):
    response = anon.get(URL, HTTP_AUTHORIZATION=basic_auth(buyer.username))
    assert response.status_code == 200 and response.json()["username"] == buyer.username


def test_me_never_shows_keys_or_password_hashes(buyer_client, buyer):
    text = buyer_client.get(URL).content.decode()
    assert buyer.password not in text and "key" not in text.lower()


def test_me_without_credentials_is_a_401(anon):
    response = anon.get(URL)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
