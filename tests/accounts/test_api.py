"""Sign-up, API keys and the caller's profile over the API."""

from __future__ import annotations

import hashlib
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from accounts.models import ApiKey, CreditEntry, User
from tests.conftest import PASSWORD, basic_auth

pytestmark = pytest.mark.django_db


def signup(client, **overrides):
    body = {
        "username": "dana",
        "email": "dana@example.org",
        "password": "a long passphrase 77",
        "roles": ["owner", "buyer"],
    }
    body.update(overrides)
    return client.post("/api/v1/auth/signup/", body, format="json")


def test_signup_creates_a_user_with_roles_and_the_configured_credits(anon, settings):
    settings.CLOAKROOM_SIGNUP_CREDITS = Decimal("250")
    response = signup(anon)
    assert response.status_code == 201
    assert response.json()["roles"] == ["owner", "buyer"]
    user = User.objects.get(username="dana")
    assert user.is_owner and user.is_buyer and user.wallet.balance == Decimal("250.00")
    entry = CreditEntry.objects.get(wallet__user=user)
    assert entry.kind == "signup_grant" and entry.balance_after == Decimal("250.00")


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"password": "123"}, "password"),
        ({"roles": ["admin"]}, "roles"),
        ({"roles": []}, "roles"),
        ({"email": "not-an-email"}, "email"),
        ({"username": "has space"}, "username"),
    ],
)
def test_signup_rejects_bad_input_naming_the_field(anon, overrides, field):
    response = signup(anon, **overrides)
    assert response.status_code == 400
    assert any(name.split(".")[0] == field for name in response.json()["error"]["fields"])
    assert not User.objects.filter(username=overrides.get("username", "dana")).exists()


def test_a_taken_username_is_a_400(anon, owner):
    response = signup(anon, username="ALICE")
    assert response.status_code == 400 and "username" in response.json()["error"]["fields"]


def test_a_key_is_created_with_basic_auth_shown_once_and_stored_only_as_a_hash(anon, owner):
    response = anon.post("/api/v1/api-keys/", {"name": "laptop"}, format="json", HTTP_AUTHORIZATION=basic_auth("alice"))
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "name", "prefix", "key"} and body["key"].startswith("ck_" + body["prefix"])
    row = ApiKey.objects.get(pk=body["id"])
    assert row.hashed_key == hashlib.sha256(body["key"].encode()).hexdigest()
    assert body["key"] not in {row.prefix, row.hashed_key, row.name}
    listed = anon.get("/api/v1/api-keys/", HTTP_AUTHORIZATION=basic_auth("alice")).json()
    assert listed[0]["prefix"] == body["prefix"] and "key" not in listed[0]


def test_a_key_is_created_with_a_session(owner):
    client = APIClient(enforce_csrf_checks=False)
    assert client.login(username="alice", password=PASSWORD)
    assert client.post("/api/v1/api-keys/", {"name": "browser"}, format="json").status_code == 201


def test_a_bearer_key_authenticates_and_records_its_last_use(anon, owner):
    key = anon.post("/api/v1/api-keys/", {"name": "k"}, format="json", HTTP_AUTHORIZATION=basic_auth("alice")).json()
    me = anon.get("/api/v1/me/", HTTP_AUTHORIZATION=f"Bearer {key['key']}")
    assert me.status_code == 200 and me.json() == {
        "username": "alice",
        "email": "alice@example.org",
        "roles": ["owner"],
        "credits": "0.00",
    }
    assert ApiKey.objects.get(pk=key["id"]).last_used_at is not None


def test_a_revoked_key_gets_401(anon, owner):
    key = anon.post("/api/v1/api-keys/", {"name": "k"}, format="json", HTTP_AUTHORIZATION=basic_auth("alice")).json()
    bearer = f"Bearer {key['key']}"
    assert anon.delete(f"/api/v1/api-keys/{key['id']}/", HTTP_AUTHORIZATION=bearer).status_code == 204
    response = anon.get("/api/v1/me/", HTTP_AUTHORIZATION=bearer)
    assert response.status_code == 401 and response.json()["error"]["code"] == "authentication_failed"


@pytest.mark.parametrize(
    "header",
    ["Bearer ck_deadbeef_wrong", "Bearer nonsense", "Bearer", "Bearer a b", "Basic !!!", "Basic " + "YWxpY2U6d3Jvbmc="],
)
def test_a_wrong_or_malformed_credential_gets_401(anon, owner, header):
    response = anon.get("/api/v1/me/", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"code", "message", "fields"}


def test_no_credential_gets_401(anon):
    assert anon.get("/api/v1/me/").status_code == 401


def test_another_users_key_cannot_be_revoked(owner_client, buyer):
    from accounts.services import api_key_create

    row, _ = api_key_create(user=buyer, name="bob's")
    assert owner_client.delete(f"/api/v1/api-keys/{row.pk}/").status_code == 404
    assert ApiKey.objects.get(pk=row.pk).revoked_at is None
