"""However malformed the input, the API answers in its one error shape and never with a 500."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from tests.marketplace.test_api_datasets import GOOD_CSV, upload

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """The cast's passwords are hashed with a fast hasher; these tests are not about hashing cost."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _api_routes(patterns, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _api_routes(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), getattr(pattern.callback, "view_class", None)


def post_routes() -> list[str]:
    """Every API route whose view accepts POST, found in the URL map so a new one is covered too."""
    routes = [
        route
        for route, view in _api_routes(get_resolver().url_patterns)
        if route.startswith("api/v1/") and view is not None and hasattr(view, "post")
    ]
    return sorted(routes)


POST_ROUTES = post_routes()

BODIES = {
    "invalid-json": "{",
    "truncated": '{"dataset": 1, "epsilon": ',
    "trailing-garbage": '{"name": "x"} trailing',
    "list": "[]",
    "list-of-objects": '[{"dataset": 1, "epsilon": "1"}]',
    "string": '"text"',
    "null": "null",
    "number": "123",
    "true": "true",
    "nan-literal": '{"epsilon": NaN, "dataset": Infinity}',
    "huge-numbers": json.dumps({"dataset": 10**40, "epsilon": 10**40, "purchase": 10**40, "name": 10**40}),
    "huge-float": '{"epsilon": 1e999, "dataset": -1e999}',
    "long-integer": '{"dataset": ' + "9" * 5000 + "}",
    "wrong-types": json.dumps(
        {"dataset": "x", "epsilon": {"a": [1]}, "purchase": [], "query": 5, "roles": "owner", "name": ["k"]}
    ),
    "booleans": json.dumps({"dataset": True, "epsilon": False, "username": True, "roles": [True], "name": False}),
    "nested-garbage": json.dumps(
        {"purchase": 1, "query": {"aggregate": {"$gt": ""}, "filters": [[[{"x": None}]]]}, "epsilon": "1"}
    ),
    "deep-nesting": "[" * 5000 + "]" * 5000,
    "deep-object": '{"a":' * 3000 + "1" + "}" * 3000,
    "unicode-junk": json.dumps(
        {"username": "\u0000\ud7ff", "email": "\u202e@x", "password": None, "roles": [None], "name": "\u0000"}
    ),
    "nul-everywhere": json.dumps({"dataset": "\u0000", "epsilon": "\u0000", "name": "\u0000", "username": "a\u0000"}),
    "lone-surrogate": '{"name": "\\udcff", "username": "\\ud800"}',
    "invalid-utf8": "\udcff",
    "huge-string": json.dumps({"name": "x" * 200_000, "username": "y" * 200_000, "epsilon": "1" * 10_000}),
    "empty": "",
}


def assert_error_shape(response) -> dict:
    assert response.status_code < 500, response.content[:500]
    assert 400 <= response.status_code < 500, response.status_code
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert {"code", "message", "fields"} <= set(error), error
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["fields"], dict)
    return error


@pytest.fixture
def concrete(dataset):
    """Fill the route's ids with ones that exist, so the body (not the id) is what gets checked."""

    def fill(route: str) -> str:
        return "/" + re.sub(r"<int:\w+>", str(dataset.pk), route)

    return fill


def test_the_contract_post_endpoints_are_all_covered():
    expected = {"api/v1/auth/signup/", "api/v1/api-keys/", "api/v1/datasets/", "api/v1/purchases/"}
    assert expected <= set(POST_ROUTES), POST_ROUTES
    assert "api/v1/datasets/<int:dataset_id>/publish/" in POST_ROUTES


@pytest.mark.parametrize("route", POST_ROUTES)
@pytest.mark.parametrize("body", list(BODIES.values()), ids=list(BODIES))
def test_a_malformed_json_body_gets_a_4xx_in_the_error_shape(outsider_client, concrete, route, body):
    # The outsider is both an owner and a buyer, so no role check answers before the body is read.
    data = body.encode("utf-8", "surrogatepass")
    response = outsider_client.generic("POST", concrete(route), data, content_type="application/json")
    assert response.status_code < 500, (route, response.content[:500])
    if response.status_code >= 400:
        assert_error_shape(response)


@pytest.mark.parametrize("route", POST_ROUTES)
@pytest.mark.parametrize(
    "content_type, data",
    [
        ("text/plain", b"dataset=1&epsilon=1"),
        ("application/xml", b"<purchase><epsilon>1</epsilon></purchase>"),
        ("multipart/form-data", b"--no-boundary--"),
        ("multipart/form-data; boundary=zz", b"--zz\r\nContent-Disposition: form-data\r\n\r\nx\r\n"),
        ("application/x-www-form-urlencoded", b"%ff%fe=%00&epsilon=NaN&dataset=%zz"),
    ],
    ids=["text", "xml", "multipart-no-boundary", "multipart-broken", "form-junk"],
)
def test_a_wrong_or_broken_content_type_gets_a_4xx_in_the_error_shape(
    outsider_client, concrete, route, content_type, data
):
    response = outsider_client.generic("POST", concrete(route), data, content_type=content_type)
    assert response.status_code < 500, (route, response.content[:500])
    if response.status_code >= 400:
        assert_error_shape(response)


@pytest.mark.parametrize(
    "metadata",
    [
        "{",
        "[]",
        "null",
        '"x"',
        json.dumps({"columns": "x"}),
        json.dumps({"columns": [None]}),
        json.dumps({"columns": [[1, 2]]}),
        json.dumps({"columns": [{"name": {"x": 1}, "kind": ["numeric"], "lower": "low", "upper": []}]}),
        json.dumps({"title": None, "epsilon_cap": [], "price_per_epsilon": {}, "columns": {}}),
        json.dumps({"title": "t", "epsilon_cap": 10**40, "price_per_epsilon": -(10**40), "columns": [{}]}),
        json.dumps(
            {
                "title": "t",
                "epsilon_cap": "1",
                "price_per_epsilon": "1",
                "columns": [{"name": "a", "kind": "categorical", "categories": [None, [], {}]}],
            }
        ),
        "[" * 5000 + "]" * 5000,
        "\u0000",
    ],
)
def test_malformed_upload_metadata_gets_a_4xx_in_the_error_shape(owner_client, metadata):
    assert_error_shape(upload(owner_client, GOOD_CSV, metadata=metadata))


def test_an_unknown_api_path_is_a_404_in_the_error_shape(buyer_client, anon):
    for client in (buyer_client, anon):
        error = assert_error_shape(client.get("/api/v1/no-such-thing/"))
        assert error["code"] == "not_found"


def test_an_unknown_nested_api_path_is_a_404_in_the_error_shape(anon):
    response = anon.post("/api/v1/datasets/1/nothing-here/", {}, format="json")
    assert response.status_code == 404 and assert_error_shape(response)["code"] == "not_found"


@pytest.mark.parametrize(
    "method, path",
    [
        ("put", "/api/v1/purchases/"),
        ("delete", "/api/v1/datasets/"),
        ("patch", "/api/v1/me/"),
        ("get", "/api/v1/auth/signup/"),
        ("get", "/api/v1/jobs/estimate/"),
        ("put", "/api/v1/api-keys/1/"),
    ],
)
def test_a_wrong_method_is_a_405_in_the_error_shape(outsider_client, method, path):
    response = getattr(outsider_client, method)(path)
    assert response.status_code == 405, response.content
    assert assert_error_shape(response)["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/datasets/?page=zz",
        "/api/v1/datasets/?page=0",
        "/api/v1/datasets/?page=99999999999999999999",
        "/api/v1/datasets/?mode=xx",
        "/api/v1/datasets/?search=" + "a" * 500,
        "/api/v1/datasets/?search=%00",
        "/api/v1/purchases/?page=-1",
        "/api/v1/jobs/?status=xx",
    ],
)
def test_bad_query_parameters_are_a_4xx_in_the_error_shape(outsider_client, path):
    assert_error_shape(outsider_client.get(path))


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/datasets/99999999999999999999999999/",
        "/api/v1/purchases/99999999999999999999999999/",
        "/api/v1/jobs/99999999999999999999999999/",
    ],
)
def test_enormous_ids_are_a_404_in_the_error_shape(outsider_client, path):
    response = outsider_client.get(path)
    assert response.status_code == 404 and assert_error_shape(response)["code"] == "not_found"
