"""However malformed the input, the API answers in its one error shape and never with a 500."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.django_db

POST_ENDPOINTS = [
    "/api/v1/auth/signup/",
    "/api/v1/api-keys/",
    "/api/v1/purchases/",
    "/api/v1/jobs/",
    "/api/v1/jobs/estimate/",
]
BODIES = [
    "{",
    "[]",
    '"text"',
    "null",
    "123",
    json.dumps({"dataset": 10**40, "epsilon": 10**40, "purchase": 10**40}),
    json.dumps({"dataset": "x", "epsilon": {"a": [1]}, "purchase": [], "query": 5, "roles": "owner"}),
    json.dumps({"username": "\u0000\ud7ff", "email": "\u202e@x", "password": None, "roles": [None]}),
    json.dumps({"purchase": 1, "query": {"aggregate": {"$gt": ""}, "filters": "x"}, "epsilon": "1"}),
    "\udcff".encode("utf-8", "surrogatepass").decode("latin-1"),
]


def assert_error_shape(response):
    assert response.status_code < 500, response.content
    assert 400 <= response.status_code < 500
    body = response.json()
    assert set(body) == {"error"} and {"code", "message", "fields"} <= set(body["error"])


@pytest.mark.parametrize("endpoint", POST_ENDPOINTS)
@pytest.mark.parametrize("body", BODIES)
def test_malformed_bodies_get_a_4xx_in_the_error_shape(buyer_client, endpoint, body):
    assert_error_shape(
        buyer_client.generic("POST", endpoint, body.encode("utf-8", "surrogatepass"), content_type="application/json")
    )


@pytest.mark.parametrize("endpoint", ["/api/v1/datasets/"])
@pytest.mark.parametrize("metadata", ["{", "[]", "null", json.dumps({"columns": "x"}), json.dumps({"columns": [None]})])
def test_malformed_multipart_gets_a_4xx_in_the_error_shape(owner_client, endpoint, metadata):
    assert_error_shape(owner_client.post(endpoint, {"metadata": metadata}, format="multipart"))


def test_an_unknown_api_path_is_a_404_in_the_error_shape(buyer_client):
    response = buyer_client.get("/api/v1/no-such-thing/")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_a_wrong_method_is_a_405_in_the_error_shape(buyer_client):
    response = buyer_client.put("/api/v1/purchases/", {}, format="json")
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/datasets/?page=zz",
        "/api/v1/datasets/?mode=xx",
        "/api/v1/jobs/?status=xx",
        "/api/v1/datasets/?search=" + "a" * 500,
    ],
)
def test_bad_query_parameters_are_4xx(buyer_client, path):
    assert_error_shape(buyer_client.get(path))
