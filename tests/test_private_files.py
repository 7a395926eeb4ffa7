"""Stored dataset files are never served by any route, to anyone, owners included."""

from __future__ import annotations

import io
import json

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.views.static import serve

from tests.marketplace.test_uploads import GOOD_CSV, METADATA

pytestmark = pytest.mark.django_db


def walk(patterns, prefix=""):
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from walk(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), p.callback


def test_no_url_pattern_serves_files_from_storage():
    for route, callback in walk(get_resolver().url_patterns):
        assert getattr(callback, "__wrapped__", callback) is not serve, route
        assert "media" not in route.lower() and "private" not in route.lower(), route


def test_a_stored_file_is_reachable_by_no_path_even_for_its_owner(owner_client, private_storage, client, owner):
    f = io.BytesIO(GOOD_CSV)
    f.name = "d.csv"
    created = owner_client.post("/api/v1/datasets/", {"file": f, "metadata": json.dumps(METADATA)}, format="multipart")
    assert created.status_code == 201
    from marketplace.models import Dataset

    path = Dataset.objects.get().file_path
    client.force_login(owner)
    for url in (f"/{path}", f"/media/{path}", f"/private/{path}", f"/static/{path}", f"/var/private/{path}"):
        assert client.get(url).status_code == 404, url
        assert owner_client.get(url).status_code == 404, url
    detail = owner_client.get(f"/api/v1/datasets/{created.json()['id']}/").content.decode()
    page = client.get(f"/datasets/{created.json()['id']}/").content.decode()
    assert path not in detail and path not in page
    assert path.split("/")[-1] not in created.content.decode()
