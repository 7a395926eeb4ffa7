"""Shared fixtures: a cast of three users (an owner, a buyer, and an outsider who should have no
access to the others' things), API clients for each, and a private storage folder per test."""

from __future__ import annotations

import base64
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from accounts.services import api_key_create
from config.celery_app import app as celery_app
from tests.factories import DatasetFactory, UserFactory

# Fixtures that tests in several folders share (HE bundles, the HE dataset and its purchase, the DP
# dataset and its purchase), loaded as plugins so that every test finds them wherever it lives.
pytest_plugins = [
    "tests.fixtures.he_bundles",
    "tests.fixtures.he_jobs",
    "tests.fixtures.dp_jobs",
    "tests.fixtures.pate",
]

PASSWORD = "correct horse battery 42"


@pytest.fixture(autouse=True)
def private_storage(settings, tmp_path):
    """Every test stores files in its own folder, so a test can check exactly what was written."""
    root = tmp_path / "private"
    root.mkdir()
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(root)}},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    settings.MEDIA_ROOT = str(root)
    return root


@pytest.fixture
def pool(tmp_path):
    """Real processes for one test (tests/integration/live.py): all stopped afterwards, their logs
    printed (pytest shows them when the test failed)."""
    from tests.integration.live import ProcessPool

    p = ProcessPool(log_dir=tmp_path)
    yield p
    p.stop_all()
    print(p.logs())


@pytest.fixture(autouse=True)
def empty_cache():
    """Every test starts with an empty cache: no throttling counter carries over from another test."""
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture(autouse=True)
def var_dir(settings, tmp_path):
    """Commands that write under var/ (seed_demo's keystore and agent key, demo_init) write here instead."""
    folder = tmp_path / "var"
    folder.mkdir()
    settings.VAR_DIR = folder
    return folder


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    """PBKDF2 at production strength costs ~300 ms a hash; tests hash many passwords and prove
    nothing about the hash's strength, so they use a fast one. Real processes started by the
    integration tests keep the production hasher."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def owner(db):
    return UserFactory(username="alice", is_owner=True)


@pytest.fixture
def buyer(db):
    return UserFactory(username="bob", is_buyer=True, credits=Decimal("1000.00"))


@pytest.fixture
def outsider(db):
    return UserFactory(username="charlie", is_buyer=True, is_owner=True, credits=Decimal("1000.00"))


def client_for(user) -> APIClient:
    client = APIClient()
    _, key = api_key_create(user=user, name="test")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def basic_auth(username: str, password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@pytest.fixture
def anon():
    return APIClient()


@pytest.fixture
def owner_client(owner):
    return client_for(owner)


@pytest.fixture
def buyer_client(buyer):
    return client_for(buyer)


@pytest.fixture
def outsider_client(outsider):
    return client_for(outsider)


@pytest.fixture
def dataset(owner):
    return DatasetFactory(owner=owner)


@pytest.fixture
def eager_tasks():
    """Run Celery tasks in-process (unit tests only; integration tests use a real worker)."""
    # Reading the setting first makes Celery load its configuration; a value set before that
    # would be overwritten by the lazy load.
    previous = celery_app.conf.task_always_eager
    # The app reads Django settings under the CELERY_ namespace, so the key is namespaced too.
    celery_app.conf.update(CELERY_TASK_ALWAYS_EAGER=True)
    assert celery_app.conf.task_always_eager is True
    yield
    celery_app.conf.update(CELERY_TASK_ALWAYS_EAGER=previous)
