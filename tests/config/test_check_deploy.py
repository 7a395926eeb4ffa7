"""Production settings pass Django's deployment checks, and missing secrets stop the process.

Each case runs ``manage.py`` in a fresh process, because settings are read once at start-up from
the environment: that is the only honest way to test what a deployment's environment produces.
"""

from __future__ import annotations

import os
import secrets

import pytest
from cryptography.fernet import Fernet

from tests.integration.live import clean_env, run_manage


@pytest.fixture
def production_env() -> dict[str, str]:
    env = clean_env(
        SECRET_KEY=secrets.token_urlsafe(48),
        ALLOWED_HOSTS="cloakroom.example.org",
        HTTPS="true",
        CLOAKROOM_DATA_KEYS=Fernet.generate_key().decode(),
        DATABASE_URL=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/cloakroom"),
    )
    assert len(env["SECRET_KEY"]) >= 60
    return env


def test_check_deploy_passes_with_production_settings(production_env):
    result = run_manage(["check", "--deploy", "--fail-level", "WARNING"], production_env, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNINGS" not in output
    assert "no issues" in output


def test_check_deploy_fails_without_https(production_env):
    # The check above is only meaningful if the deployment check really runs on these settings.
    production_env.pop("HTTPS")
    result = run_manage(["check", "--deploy", "--fail-level", "WARNING"], production_env, timeout=120)
    assert result.returncode != 0
    assert "security.W008" in result.stdout + result.stderr


def test_a_production_process_without_secret_key_refuses_to_start(production_env):
    production_env.pop("SECRET_KEY")
    result = run_manage(["check"], production_env, timeout=120)
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_a_production_process_without_data_keys_refuses_to_start(production_env):
    production_env.pop("CLOAKROOM_DATA_KEYS")
    result = run_manage(["check"], production_env, timeout=120)
    assert result.returncode != 0
    assert "CLOAKROOM_DATA_KEYS is not set" in result.stderr
