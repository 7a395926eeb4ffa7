"""Issue 11, defect 3: a request body over DATA_UPLOAD_MAX_MEMORY_SIZE (5 MiB) is a 413 in the one
error shape, not a 500. Through Django's test client here; through a live gunicorn in
tests/integration/test_hardening_live.py."""

from __future__ import annotations

import io
import json

import pytest
from django.conf import settings
from django.test import Client

from tests.config.test_error_shape import assert_error_shape

pytestmark = pytest.mark.django_db

# The four endpoints the issue names; each reads a JSON body (api-keys accepts Basic and sessions too).
ENDPOINTS = ["/api/v1/purchases/", "/api/v1/jobs/", "/api/v1/jobs/estimate/", "/api/v1/api-keys/"]


def oversized_json() -> bytes:
    """A well-formed JSON object one byte past the limit."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    skeleton = json.dumps({"name": "", "dataset": 1, "purchase": 1, "epsilon": "1"}).encode()
    return skeleton.replace(b'"name": ""', b'"name": "' + b"x" * (limit + 1 - len(skeleton) + 1) + b'"')[: limit + 1]


def assert_payload_too_large(response) -> dict:
    assert response.status_code == 413, response.content[:500]
    error = assert_error_shape(response)
    assert error["code"] == "payload_too_large", error
    assert str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE) in error["message"]
    assert error["limit_bytes"] == settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return error


def test_the_oversized_body_is_just_over_the_limit():
    assert len(oversized_json()) == settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1


@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_json_body_over_the_limit_is_a_413_in_the_error_shape(outsider_client, path):
    response = outsider_client.generic("POST", path, oversized_json(), content_type="application/json")
    assert_payload_too_large(response)


@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_form_body_over_the_limit_is_a_413_in_the_error_shape(outsider_client, path):
    body = b"name=" + b"x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    response = outsider_client.generic("POST", path, body, content_type="application/x-www-form-urlencoded")
    assert_payload_too_large(response)


def test_a_body_at_the_limit_is_read(outsider_client):
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = json.dumps({"name": ""}).encode()
    body = body.replace(b'""', b'"' + b"k" * (limit - len(body)) + b'"')
    assert len(body) == limit
    response = outsider_client.generic("POST", "/api/v1/api-keys/", body, content_type="application/json")
    # Read and validated: the name is too long for the field, which is a 400 naming it.
    assert response.status_code == 400 and "name" in response.json()["error"]["fields"]


def test_a_multipart_field_over_the_limit_on_the_upload_endpoint_is_a_413(owner_client, private_storage):
    from marketplace.models import Dataset

    handle = io.BytesIO(b"age\n1\n")
    handle.name = "data.csv"
    metadata = "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
    response = owner_client.post("/api/v1/datasets/", {"file": handle, "metadata": metadata}, format="multipart")
    assert_payload_too_large(response)
    assert not Dataset.objects.exists() and not [p for p in private_storage.rglob("*") if p.is_file()]


def test_too_many_form_fields_is_a_400_in_the_error_shape(outsider_client, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    body = "&".join(f"f{i}=1" for i in range(20)).encode()
    response = outsider_client.generic(
        "POST", "/api/v1/api-keys/", body, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 400
    assert assert_error_shape(response)["code"] == "too_many_fields"


def test_an_oversized_web_form_is_a_413_page_not_a_500():
    body = b"username=" + b"x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    response = Client().generic("POST", "/accounts/signup/", body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 413
    assert b"<html" in response.content
