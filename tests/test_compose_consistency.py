"""docker-compose.yml cannot run on the test machine, so these tests keep it honest by reading it
beside the settings: every variable it sets is one the settings read, secrets have no defaults,
and what its commands and healthchecks rely on exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.urls import Resolver404, resolve

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
APP_SERVICES = ("web", "worker", "beat")
SECRETS = ("SECRET_KEY", "CLOAKROOM_DATA_KEYS")


def settings_variables() -> set[str]:
    """Names the settings package reads from the environment, found in its source."""
    names: set[str] = set()
    pattern = re.compile(
        r"""(?:env_\w+|os\.environ\.get|os\.getenv)\(\s*["']([A-Z0-9_]+)["']|os\.environ\[\s*["']([A-Z0-9_]+)["']"""
    )
    for path in (REPO_ROOT / "config" / "settings").rglob("*.py"):
        for match in pattern.finditer(path.read_text()):
            names.add(match.group(1) or match.group(2))
    return names


def service_environment(name: str) -> dict[str, str]:
    env = COMPOSE["services"][name].get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def test_the_settings_source_is_found_by_the_scan():
    # Guards the scan itself: if it found nothing, every other check here would pass vacuously.
    assert {"DATABASE_URL", "SECRET_KEY", "CLOAKROOM_DATA_KEYS", "CELERY_BROKER_URL"} <= settings_variables()


@pytest.mark.parametrize("service", APP_SERVICES)
def test_every_variable_a_service_sets_is_read_by_the_settings(service):
    unknown = sorted(set(service_environment(service)) - settings_variables())
    assert unknown == [], f"{service} sets variables the settings never read: {unknown}"


def test_the_app_services_share_one_environment():
    envs = [service_environment(service) for service in APP_SERVICES]
    assert envs[0] == envs[1] == envs[2]


@pytest.mark.parametrize("secret", SECRETS)
def test_secrets_come_from_the_host_without_defaults(secret):
    value = service_environment("web")[secret]
    assert re.fullmatch(r"\$\{" + secret + r":\?[^}]+\}", value), f"{secret} must be ${{{secret}:?...}}, not {value!r}"


def test_the_app_services_use_postgresql_and_redis():
    env = service_environment("web")
    assert env["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in env["DATABASE_URL"]
    assert env["CELERY_BROKER_URL"].startswith("redis://redis:6379/")
    assert env["REDIS_URL"] == env["CELERY_BROKER_URL"]


def test_private_storage_is_a_volume_shared_by_web_and_worker():
    root = service_environment("web")["CLOAKROOM_PRIVATE_ROOT"]
    for service in ("web", "worker"):
        mounts = [v.split(":", 1) for v in COMPOSE["services"][service]["volumes"]]
        assert [name for name, target in mounts if target == root], f"{service} does not mount {root}"
        assert all(name in COMPOSE["volumes"] for name, _ in mounts)


def test_every_service_has_a_healthcheck_or_waits_for_healthy_ones():
    for name, service in COMPOSE["services"].items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert condition == {"condition": "service_healthy"}, f"{name} -> {dependency}"
            assert "healthcheck" in COMPOSE["services"][dependency], (
                f"{name} waits on {dependency}, which has no healthcheck"
            )


def test_the_worker_consumes_the_default_queue():
    command = COMPOSE["services"]["worker"]["command"]
    queues = command[command.index("-Q") + 1].split(",")
    assert settings.CELERY_TASK_DEFAULT_QUEUE in queues


def test_the_web_healthcheck_url_is_routed():
    healthcheck = " ".join(COMPOSE["services"]["web"]["healthcheck"]["test"])
    path = re.search(r"http://127\.0\.0\.1:8000(/[^'\"\s]*)", healthcheck).group(1)
    try:
        resolve(path)
    except Resolver404:
        pytest.fail(f"the web healthcheck requests {path}, which no URL pattern serves")


def test_the_image_runs_as_a_user_other_than_root():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
