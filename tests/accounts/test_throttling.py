"""Lockouts and rates in one process (the live floods are in tests/integration/test_floods.py)."""

from __future__ import annotations

import base64

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def test_the_login_form_locks_a_client_out_after_the_limit_even_with_the_right_password(client, settings, buyer):
    settings.CLOAKROOM_LOGIN_FAILURE_LIMIT = 3
    for _ in range(3):
        assert client.post(reverse("login"), {"username": buyer.username, "password": "wrong"}).status_code == 200
    response = client.post(reverse("login"), {"username": buyer.username, "password": PASSWORD})
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= settings.CLOAKROOM_LOGIN_FAILURE_WINDOW
    assert "Too many attempts" in response.content.decode()


def test_a_successful_login_under_the_limit_is_not_counted(client, settings, buyer):
    settings.CLOAKROOM_LOGIN_FAILURE_LIMIT = 2
    for _ in range(5):
        assert client.post(reverse("login"), {"username": buyer.username, "password": PASSWORD}).status_code == 302
        client.logout()


def test_basic_auth_failures_lock_out_the_account_name_from_any_address(settings, buyer):
    settings.CLOAKROOM_LOGIN_FAILURE_LIMIT = 2
    token = base64.b64encode(f"{buyer.username}:wrong".encode()).decode()
    for address in ("10.0.0.1", "10.0.0.2"):
        api = APIClient(REMOTE_ADDR=address)
        assert api.get("/api/v1/me/", HTTP_AUTHORIZATION=f"Basic {token}").status_code == 401
    right = base64.b64encode(f"{buyer.username}:{PASSWORD}".encode()).decode()
    response = APIClient(REMOTE_ADDR="10.0.0.3").get("/api/v1/me/", HTTP_AUTHORIZATION=f"Basic {right}")
    assert response.status_code == 429 and response.json()["error"]["code"] == "throttled"
    assert "Retry-After" in response


def test_bearer_guesses_lock_out_the_address(settings):
    settings.CLOAKROOM_API_KEY_FAILURE_LIMIT = 3
    api = APIClient()
    codes = [api.get("/api/v1/me/", HTTP_AUTHORIZATION=f"Bearer ck_{i:08x}_{'y' * 40}").status_code for i in range(5)]
    assert codes == [401, 401, 401, 429, 429]


def test_job_submissions_are_limited_per_buyer(settings, buyer_client):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "job_submit": "3/min"},
    }
    codes = [buyer_client.post("/api/v1/jobs/", {}, format="json").status_code for _ in range(5)]
    assert codes == [400, 400, 400, 429, 429]
    assert buyer_client.get("/api/v1/jobs/").status_code == 200


def test_an_unreachable_cache_lets_requests_through_instead_of_failing_them(settings, client, buyer, buyer_client):
    # Redis down: throttling steps aside (and logs) so that the API still answers and accepts jobs.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    }
    assert buyer_client.post("/api/v1/jobs/", {}, format="json").status_code == 400
    assert buyer_client.get("/api/v1/jobs/").status_code == 200
    assert client.post(reverse("login"), {"username": buyer.username, "password": "wrong"}).status_code == 200
    assert client.post(reverse("login"), {"username": buyer.username, "password": PASSWORD}).status_code == 302
