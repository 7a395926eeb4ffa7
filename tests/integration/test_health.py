"""GET /api/v1/health/ against the real database and Redis broker, and ``wait_for_worker`` when no
worker answers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from kombu import Connection

from compute.models import WorkerHeartbeat
from config.celery_app import app as celery_app
from tests.integration.live import clean_env, free_port, live_database_url, run_manage

pytestmark = pytest.mark.django_db

URL = "/api/v1/health/"


def test_health_says_the_database_and_the_broker_are_ok(anon):
    response = anon.get(URL)
    assert response.status_code == 200
    assert response.json()["database"] == "ok"
    assert response.json()["broker"] == "ok"


def test_health_reports_no_worker_before_any_heartbeat(anon):
    assert anon.get(URL).json()["worker"] == {"last_seen": None}


def test_health_reports_the_latest_worker_heartbeat(anon):
    newest = timezone.now()
    WorkerHeartbeat.objects.create(token="older", seen_at=newest - timedelta(minutes=5))
    WorkerHeartbeat.objects.create(token="newer", seen_at=newest)
    assert anon.get(URL).json()["worker"]["last_seen"] == newest.isoformat()


def test_health_reports_an_unreachable_broker(anon, monkeypatch):
    # A real connection attempt to a port nothing listens on: the check must say so, not hang or 500.
    monkeypatch.setattr(celery_app, "connection_for_write", lambda: Connection(f"redis://127.0.0.1:{free_port()}/0"))
    response = anon.get(URL)
    assert response.status_code == 503
    assert response.json()["broker"] == "unreachable"


def test_health_ignores_a_wrong_api_key(anon):
    anon.credentials(HTTP_AUTHORIZATION="Bearer ck_not-a-real-key")
    assert anon.get(URL).status_code == 200


def test_health_reveals_nothing_about_the_deployment(anon, settings):
    text = anon.get(URL).content.decode()
    for secret in (
        "127.0.0.1",
        "redis",
        "postgres",
        "sqlite",
        settings.SECRET_KEY,
        settings.DATABASES["default"]["NAME"],
    ):
        assert secret not in text


def test_wait_for_worker_fails_when_no_worker_answers(tmp_path):
    # The database is this test's; the broker is an empty filesystem queue nobody consumes.
    env = clean_env(CLOAKROOM_VAR_DIR=str(tmp_path), DATABASE_URL=live_database_url())
    result = run_manage(["wait_for_worker", "--timeout", "2"], env, timeout=120)
    assert result.returncode == 1
    assert "No worker processed the heartbeat within 2s" in result.stderr


def test_wait_for_worker_fails_when_the_broker_is_unreachable(tmp_path):
    env = clean_env(CLOAKROOM_VAR_DIR=str(tmp_path), CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")
    result = run_manage(["wait_for_worker", "--timeout", "30"], env, timeout=120)
    assert result.returncode == 1
    assert "Could not send the heartbeat task to the broker" in result.stderr
