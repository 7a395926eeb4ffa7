"""API keys: created with HTTP Basic or a session, hashed at rest, listed without the key, revocable."""

from __future__ import annotations

import base64
import hashlib

import pytest
from rest_framework.test import APIClient

from accounts.models import ApiKey
from tests.conftest import PASSWORD, basic_auth

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """The cast's passwords are hashed with a fast hasher; these tests are not about hashing cost."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


URL = "/api/v1/api-keys/"


def create_key(client, name="laptop", **extra):
    return client.post(URL, {"name": name}, format="json", **extra)


def test_a_key_is_created_with_http_basic(anon, buyer):
    response = create_key(anon, HTTP_AUTHORIZATION=basic_auth(buyer.username))
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"id", "name", "prefix", "key"}
    assert body["name"] == "laptop" and body["key"].startswith(f"ck_{body['prefix']}_")
    assert ApiKey.objects.get(pk=body["id"]).user == buyer


def test_a_key_is_created_with_a_session(buyer):
    client = APIClient()
    assert client.login(username=buyer.username, password=PASSWORD)
    response = create_key(client)
    assert response.status_code == 201
    assert ApiKey.objects.get(pk=response.json()["id"]).user == buyer


def test_a_session_post_without_a_csrf_token_is_refused(buyer):
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username=buyer.username, password=PASSWORD)
    response = create_key(client)
    assert response.status_code == 403 and "CSRF" in response.json()["error"]["message"]
    assert not ApiKey.objects.filter(user=buyer).exists()


def test_only_the_prefix_and_a_sha256_hash_are_stored(anon, buyer):
    key = create_key(anon, HTTP_AUTHORIZATION=basic_auth(buyer.username)).json()["key"]
    row = ApiKey.objects.get(user=buyer)
    assert row.hashed_key == hashlib.sha256(key.encode()).hexdigest()
    stored = [str(getattr(row, f.attname)) for f in ApiKey._meta.concrete_fields]
    assert all(key not in value for value in stored)
    assert row.prefix in key and len(row.prefix) < len(key) // 4


def test_the_new_key_authenticates(anon, buyer):
    key = create_key(anon, HTTP_AUTHORIZATION=basic_auth(buyer.username)).json()["key"]
    response = APIClient().get("/api/v1/me/", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 200 and response.json()["username"] == buyer.username


def test_listing_keys_never_shows_a_key(buyer_client, buyer):
    created = create_key(buyer_client).json()
    response = buyer_client.get(URL)
    assert response.status_code == 200
    rows = response.json()
    assert {r["prefix"] for r in rows} == set(ApiKey.objects.filter(user=buyer).values_list("prefix", flat=True))
    assert all("key" not in r and "hashed_key" not in r for r in rows)
    assert created["key"] not in response.content.decode()


def test_listing_keys_shows_only_the_callers_own(buyer_client, outsider_client, outsider):
    create_key(outsider_client, name="charlie's")
    names = [r["name"] for r in buyer_client.get(URL).json()]
    assert "charlie's" not in names


def test_deleting_a_key_revokes_it(buyer_client, buyer):
    created = create_key(buyer_client).json()
    response = buyer_client.delete(f"{URL}{created['id']}/")
    assert response.status_code == 204
    assert ApiKey.objects.get(pk=created["id"]).revoked_at is not None


def test_a_revoked_key_gets_401(buyer_client):
    created = create_key(buyer_client).json()
    buyer_client.delete(f"{URL}{created['id']}/")
    response = APIClient().get("/api/v1/me/", HTTP_AUTHORIZATION=f"Bearer {created['key']}")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


def test_another_users_key_cannot_be_revoked_and_is_a_404(buyer_client, outsider_client):
    created = create_key(outsider_client).json()
    response = buyer_client.delete(f"{URL}{created['id']}/")
    assert response.status_code == 404
    assert ApiKey.objects.get(pk=created["id"]).revoked_at is None


def test_a_wrong_key_with_a_real_prefix_gets_401(buyer_client):
    created = create_key(buyer_client).json()
    forged = f"ck_{created['prefix']}_" + "A" * 43
    response = APIClient().get("/api/v1/me/", HTTP_AUTHORIZATION=f"Bearer {forged}")
    assert response.status_code == 401 and response.json()["error"]["code"] == "authentication_failed"


def test_a_wrong_password_over_http_basic_gets_401(anon, buyer):
    response = create_key(anon, HTTP_AUTHORIZATION=basic_auth(buyer.username, "not the password"))
    assert response.status_code == 401
    assert not ApiKey.objects.filter(user=buyer).exists()


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer one two",
        "Bearer ck_",
        "Bearer not-a-key",
        "Bearer ck_0000_\x00",
        "Bearer ck_\x00abcdef_" + "a" * 43,
        "Bearer " + "ck_" + "a" * 5000,
        "Basic !!!not-base64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b"bo\x00b:pw").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
    ],
)
def test_a_malformed_authorization_header_gets_401_in_the_error_shape(anon, buyer, header):
    response = anon.get("/api/v1/me/", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401, response.content
    assert set(response.json()["error"]) >= {"code", "message", "fields"}


def test_an_unknown_scheme_is_treated_as_no_credentials(anon):
    response = anon.get("/api/v1/me/", HTTP_AUTHORIZATION="Token abc")
    assert response.status_code == 401 and response.json()["error"]["code"] == "not_authenticated"


def test_using_a_key_records_its_last_use(buyer_client, buyer):
    created = create_key(buyer_client).json()
    assert ApiKey.objects.get(pk=created["id"]).last_used_at is None
    APIClient().get("/api/v1/me/", HTTP_AUTHORIZATION=f"Bearer {created['key']}")
    assert ApiKey.objects.get(pk=created["id"]).last_used_at is not None


def test_a_key_needs_a_name(buyer_client):
    response = create_key(buyer_client, name="   ")
    assert response.status_code == 400 and "name" in response.json()["error"]["fields"]


def test_creating_a_key_without_credentials_is_a_401(anon):
    assert create_key(anon).status_code == 401
    assert not ApiKey.objects.exists()


def test_the_openapi_schema_documents_both_ways_to_create_a_key(anon):
    response = anon.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert {"basicAuth", "bearerAuth"} <= set(schema["components"]["securitySchemes"])
    security = schema["paths"]["/api/v1/api-keys/"]["post"]["security"]
    assert {"basicAuth": []} in security and {"bearerAuth": []} in security
