"""No route serves a stored dataset file, to anyone, owners included."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.urls import URLPattern, URLResolver, get_resolver
from django.views.static import serve

from marketplace.models import Dataset
from tests.marketplace.test_api_datasets import GOOD_CSV, upload

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """The cast's passwords are hashed with a fast hasher; these tests are not about hashing cost."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def walk(patterns, prefix: str = ""):
    """Yield (route, callback) for every pattern, descending into includes."""
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern.callback


def unwrap(callback):
    while hasattr(callback, "__wrapped__"):
        callback = callback.__wrapped__
    return getattr(callback, "view_class", callback)


def test_the_walk_reaches_nested_api_routes():
    routes = [route for route, _ in walk(get_resolver().url_patterns)]
    assert "api/v1/datasets/<int:dataset_id>/" in routes and any(r.startswith("admin/") for r in routes)


def test_no_url_pattern_uses_the_static_file_server():
    for route, callback in walk(get_resolver().url_patterns):
        assert unwrap(callback) is not serve, route
        assert getattr(callback, "__module__", "") != "django.views.static", route


def test_no_url_pattern_mentions_media_or_private_storage():
    media_url = (settings.MEDIA_URL or "").strip("/")
    for route, _ in walk(get_resolver().url_patterns):
        lowered = route.lower()
        assert "media" not in lowered and "private" not in lowered, route
        if media_url:
            assert not lowered.startswith(media_url.lower()), route


def test_the_private_storage_root_is_not_inside_any_static_folder(private_storage):
    root = Path(settings.MEDIA_ROOT).resolve()
    static_roots = [Path(settings.STATIC_ROOT)] + [Path(p) for p in settings.STATICFILES_DIRS]
    for static in static_roots:
        static = static.resolve()
        assert static != root and static not in root.parents and root not in static.parents


@pytest.fixture
def stored_path(owner_client) -> tuple[str, dict]:
    response = upload(owner_client, GOOD_CSV)
    assert response.status_code == 201
    dataset = Dataset.objects.get()
    return dataset.file_path, response.json()


def test_a_stored_file_is_not_reachable_by_any_path(stored_path, owner, owner_client, client, anon, private_storage):
    path, _ = stored_path
    assert (private_storage / path).is_file()
    client.force_login(owner)
    absolute = str(private_storage / path).lstrip("/")
    for url in (f"/media/{path}", f"/{path}", f"/static/{path}", f"/private/{path}", f"/{absolute}"):
        for who in (anon, owner_client, client):
            response = who.get(url)
            assert response.status_code == 404, (url, response.status_code)
            assert b"gAAAA" not in response.content


def test_the_stored_path_appears_in_no_api_response(stored_path, owner_client, buyer_client, anon):
    path, created = stored_path
    file_name = Path(path).name
    dataset_id = created["id"]
    responses = [
        owner_client.post(f"/api/v1/datasets/{dataset_id}/publish/"),
        owner_client.get("/api/v1/datasets/"),
        owner_client.get(f"/api/v1/datasets/{dataset_id}/"),
        owner_client.get("/api/v1/datasets/?mine=true"),
        anon.get(f"/api/v1/datasets/{dataset_id}/"),
        buyer_client.post("/api/v1/purchases/", {"dataset": dataset_id, "epsilon": "1"}, format="json"),
        buyer_client.get("/api/v1/purchases/"),
        owner_client.get("/api/v1/me/"),
        owner_client.get("/api/v1/schema/"),
    ]
    texts = [str(created)] + [r.content.decode() for r in responses]
    assert all(r.status_code < 400 for r in responses), [r.status_code for r in responses]
    for text in texts:
        assert path not in text and file_name not in text and file_name.split(".")[0] not in text
