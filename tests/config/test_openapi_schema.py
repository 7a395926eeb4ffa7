"""The OpenAPI document, generated in-process: complete, grouped, and true to the API.

tests/integration/test_openapi_schemathesis.py holds a live server to the document with
schemathesis; this is the fast half: the document validates without a warning, every operation
has a summary, one of the API's tags and the error answers it can give in the one error shape,
lists are documented as the pages they are, and the query language's schema accepts and refuses
what the server does.
"""

from __future__ import annotations

import copy
import io
import json

import jsonschema
import pytest
from django.core.management import call_command
from drf_spectacular.generators import SchemaGenerator

from config.openapi import TAGS

ERROR_REF = "#/components/schemas/Error"
PAGINATED = {
    ("get", "/api/v1/datasets/"): "DatasetOutput",
    ("get", "/api/v1/purchases/"): "PurchaseOutput",
    ("get", "/api/v1/jobs/"): "JobOutput",
    ("get", "/api/v1/he/jobs/awaiting/"): "HeKeyPlan",
}
# Operations open to anyone: no 401 where no credentials are read at all.
NO_CREDENTIALS = {("post", "/api/v1/auth/signup/"), ("get", "/api/v1/health/")}


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


def operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def test_the_document_validates_without_a_warning(tmp_path):
    # --fail-on-warn: an unresolvable type, an enum name collision or an operationId clash fails it.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))


def test_every_operation_has_a_summary_one_api_tag_and_a_unique_operation_id(schema):
    seen = set()
    count = 0
    for method, path, operation in operations(schema):
        count += 1
        label = f"{method.upper()} {path}"
        assert operation.get("summary", "").strip(), label
        assert len(operation.get("tags", [])) == 1 and operation["tags"][0] in TAGS, (label, operation.get("tags"))
        assert operation["operationId"] not in seen, label
        seen.add(operation["operationId"])
    # 33, the fake table's two (issue 13), GET /api/v1/jobs/{id}/model/ and the six of encrypted inference
    # (issue 15: the models, a model, its predictions, a prediction and its scores)
    assert count == 48
    assert [tag["name"] for tag in schema["tags"]] == list(TAGS)
    used = {operation["tags"][0] for _, _, operation in operations(schema)}
    assert used == set(TAGS)


def test_every_operation_documents_the_errors_it_can_answer_in_the_one_error_shape(schema):
    for method, path, operation in operations(schema):
        label = f"{method.upper()} {path}"
        responses = operation["responses"]
        errors = {int(code) for code in responses if int(code) >= 400 and int(code) != 503}
        assert 429 in errors, label
        assert "Retry-After" in responses["429"]["headers"], label
        if (method, path) not in NO_CREDENTIALS:
            assert 401 in errors, label
            assert "WWW-Authenticate" in responses["401"]["headers"], label
        if "{" in path:
            assert 404 in errors, label  # a missing object, or a path segment that is not a number
        body = operation.get("requestBody", {}).get("content", {})
        queries = [p for p in operation.get("parameters", []) if p["in"] == "query" and p["name"] != "page"]
        if body or queries:
            assert 400 in errors, label
        if body:
            assert 415 in errors, label
        if {"application/json", "multipart/form-data"} & set(body):
            assert 413 in errors, label
        for code in errors:
            schema_ref = responses[str(code)]["content"]["application/json"]["schema"]["$ref"]
            assert schema_ref == ERROR_REF, (label, code)


def test_the_error_shape_is_the_one_config_errors_answers(schema):
    from config.errors import error_body

    components = schema["components"]["schemas"]
    assert components["Error"]["required"] == ["error"]
    detail = components["ErrorDetail"]
    assert set(detail["required"]) == {"code", "message", "fields"}
    body = error_body("invalid", "x", {"a.b": ["y"]}, limit_bytes=5)
    validate(schema, {"$ref": ERROR_REF}, body)


def test_lists_are_documented_as_the_pages_they_are(schema):
    components = schema["components"]["schemas"]
    for (method, path), item in PAGINATED.items():
        operation = schema["paths"][path][method]
        page = operation["responses"]["200"]["content"]["application/json"]["schema"]
        component = components[page["$ref"].rsplit("/", 1)[1]]
        assert component["type"] == "object" and set(component["required"]) == {"count", "next", "previous", "results"}
        assert component["properties"]["results"]["items"]["$ref"].endswith(f"/{item}"), path
        assert {"name": "page", "in": "query"}.items() <= next(
            p for p in operation["parameters"] if p["name"] == "page"
        ).items()
    # No other operation answers a bare array, but the (few, unpaginated) API keys.
    for method, path, operation in operations(schema):
        for code, response in operation["responses"].items():
            for content in response.get("content", {}).values():
                if content.get("schema", {}).get("type") == "array":
                    assert (method, path) == ("get", "/api/v1/api-keys/"), (method, path, code)


@pytest.mark.django_db
def test_the_list_operations_answer_pages(buyer_client, owner_client):
    for path in ("/api/v1/datasets/", "/api/v1/purchases/", "/api/v1/jobs/"):
        body = buyer_client.get(path).json()
        assert set(body) == {"count", "next", "previous", "results"}, path
    assert set(owner_client.get("/api/v1/he/jobs/awaiting/").json()) == {"count", "next", "previous", "results"}
    assert isinstance(buyer_client.get("/api/v1/api-keys/").json(), list)


# ---------------------------------------------------------------------------------------------
# Requests the document refuses are refused by the server.


@pytest.mark.django_db
@pytest.mark.parametrize("name", [0, 1.5, True, None, [], {}, ["laptop"], "", "   ", "a\x00b", "x" * 101])
def test_an_api_key_name_is_text(buyer_client, name):
    response = buyer_client.post("/api/v1/api-keys/", {"name": name}, format="json")
    assert response.status_code == 400, response.content
    assert "name" in response.json()["error"]["fields"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        {"username": 5, "email": "a@example.org", "password": "correct horse battery 42", "roles": ["buyer"]},
        {"username": "ann", "email": "a@example.org", "password": 12345678901, "roles": ["buyer"]},
        {
            "username": "ann",
            "email": "a" * 250 + "@example.org",
            "password": "correct horse battery 42",
            "roles": ["buyer"],
        },
        {"username": "ann", "email": "a@example.org", "password": "correct horse battery 42", "roles": "buyer"},
    ],
)
def test_sign_up_reads_only_text_where_text_is_documented(client, body):
    response = client.post("/api/v1/auth/signup/", body, content_type="application/json")
    assert response.status_code == 400, response.content


DATASET = object()  # the published dataset's id


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        {"dataset": "1", "epsilon": "1"},
        {"dataset": 1.5, "epsilon": "1"},
        {"dataset": True, "epsilon": "1"},
        {"dataset": DATASET, "epsilon": "1e-9"},
        {"dataset": DATASET, "epsilon": " 1"},
        {"dataset": DATASET, "epsilon": "+1"},
        {"dataset": DATASET, "epsilon": True},
    ],
)
def test_a_purchase_reads_only_what_its_schema_documents(buyer_client, dataset, body):
    body = {**body, "dataset": dataset.pk if body["dataset"] is DATASET else body["dataset"]}
    response = buyer_client.post("/api/v1/purchases/", body, format="json")
    assert response.status_code == 400, response.content


@pytest.mark.django_db
@pytest.mark.parametrize("epsilon", ["1.5", ".5", "2.", "1e-3", "1E+1", 1, 0.25])
def test_a_purchase_reads_decimal_text_and_json_numbers(buyer_client, dataset, epsilon):
    response = buyer_client.post("/api/v1/purchases/", {"dataset": dataset.pk, "epsilon": epsilon}, format="json")
    assert response.status_code == 201, response.content


@pytest.mark.django_db
def test_a_json_body_is_typed_and_a_form_is_read_as_text(buyer_client, dataset):
    # JSON carries types, and "5" is not the number the document asks for...
    typed = buyer_client.post("/api/v1/purchases/", {"dataset": str(dataset.pk), "epsilon": "1"}, format="json")
    assert typed.status_code == 400 and "dataset" in typed.json()["error"]["fields"]
    # ...while a form, which carries only text, is read as DRF reads it.
    form = buyer_client.post("/api/v1/purchases/", {"dataset": str(dataset.pk), "epsilon": "1"})
    assert form.status_code == 201, form.content


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["?mode=", "?mine=", "?mine=yes", "?page=", "?search=%00"])
def test_bad_dataset_list_parameters_are_refused(client, query):
    assert client.get(f"/api/v1/datasets/{query}").status_code in (400, 404)


@pytest.mark.django_db
def test_an_empty_status_filter_is_refused(buyer_client):
    assert buyer_client.get("/api/v1/jobs/?status=").status_code == 400


# ---------------------------------------------------------------------------------------------
# The query language: the Query component accepts what the engines read and refuses the rest.

VALID_QUERIES = [
    {"aggregate": "count"},
    {"aggregate": "count", "column": None, "filters": None, "group_by": None, "quantiles": [], "bins": None},
    {"aggregate": "count", "filters": [{"column": "age", "op": "range", "low": 30, "high": None}]},
    {"aggregate": "count", "filters": [{"column": "region", "op": "in", "values": ["north", "south"]}]},
    {"aggregate": "count", "group_by": ["region", "smoker"]},
    {"aggregate": "sum", "column": "age", "filters": [{"column": "smoker", "op": "eq", "value": True}]},
    {"aggregate": "mean", "column": "age"},
    {"aggregate": "variance", "column": "age", "group_by": ["region"]},
    {"aggregate": "std", "column": "age"},
    {"aggregate": "quantile", "column": "age", "quantiles": [0.1, 0.5, 0.9]},
    {"aggregate": "histogram", "column": "age", "bins": 10},
    {"aggregate": "histogram", "column": "age", "bins": [0, 10, 20]},
    {"aggregate": "histogram", "column": "region"},
    # HE datasets
    {"aggregate": "count", "column": "sex=F"},
    {"aggregate": "count", "column": "sex", "category": "F", "filter": {"column": "smoker"}},
    {"aggregate": "sum", "column": "age", "filter": {"column": "sex", "category": "F"}},
    {"aggregate": "mean", "column": "age", "filter": None},
    {"aggregate": "dot", "column": "age", "weights": [1, -0.5, 2]},
    {"aggregate": "dot", "column": "age", "weights": {"indexes": [0, 7], "values": [1.0, 2.0]}},
    {"aggregate": "regression", "columns": ["age", "bmi"], "target": "charges"},
]
INVALID_QUERIES = [
    ({"aggregate": "median", "column": "age"}, "query.aggregate"),
    ({"column": "age"}, "query.aggregate"),
    ({"aggregate": "sum"}, "query.column"),
    ({"aggregate": "count", "filters": 0}, "query.filters"),
    ({"aggregate": "count", "filters": ""}, "query.filters"),
    ({"aggregate": "count", "group_by": False}, "query.group_by"),
    ({"aggregate": "count", "group_by": {}}, "query.group_by"),
    ({"aggregate": "count", "column": ["age"]}, "query.column"),
    ({"aggregate": "count", "column": "sex", "category": 1}, "query.category"),
    ({"aggregate": "sum", "column": "age", "filter": {"column": 5}}, "query.filter.column"),
    ({"aggregate": "sum", "column": "age", "filter": "sex=F"}, "query.filter"),
    ({"aggregate": "regression", "columns": "age", "target": "bmi"}, "query.columns"),
    ({"aggregate": "regression", "columns": ["age"], "target": 3}, "query.target"),
    (
        {"aggregate": "count", "filters": [{"column": "age", "op": "range", "low": 1, "value": "x"}]},
        "query.filters.0.value",
    ),
    (
        {"aggregate": "count", "filters": [{"column": "region", "op": "eq", "value": "n", "low": 1}]},
        "query.filters.0.low",
    ),
    ({"aggregate": "count", "filters": [{"column": 3, "op": "eq", "value": "n"}]}, "query.filters.0.column"),
]


def _as_json_schema(node):
    """OpenAPI 3.0's ``nullable`` as JSON Schema's null type (what schemathesis does too)."""
    if isinstance(node, list):
        return [_as_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _as_json_schema(v) for k, v in node.items() if k != "discriminator"}
    if node.pop("nullable", False):
        if "enum" in node and None not in node["enum"]:
            node["enum"] = [*node["enum"], None]
        node = {"anyOf": [node, {"type": "null"}]}
    return node


def validate(schema, node, instance):
    components = _as_json_schema(copy.deepcopy(schema["components"]))
    document = {**_as_json_schema(node), "components": components}
    jsonschema.validate(instance, document, cls=jsonschema.Draft4Validator)


@pytest.mark.parametrize("query", VALID_QUERIES)
def test_the_query_schema_accepts_every_query_shape_the_engines_read(schema, query):
    validate(schema, {"$ref": "#/components/schemas/Query"}, query)


@pytest.mark.parametrize("query,field", INVALID_QUERIES)
def test_the_query_schema_refuses_what_the_server_refuses(schema, query, field):
    with pytest.raises(jsonschema.ValidationError):
        validate(schema, {"$ref": "#/components/schemas/Query"}, query)


@pytest.fixture
def purchase(owner_client, buyer_client):
    """The buyer's purchase of a published DP dataset with the columns the queries above name."""
    metadata = {
        "title": "Survey",
        "epsilon_cap": "10",
        "price_per_epsilon": "1",
        "columns": [
            {"name": "age", "kind": "numeric", "lower": 0, "upper": 100},
            {"name": "region", "kind": "categorical", "categories": ["north", "south"]},
            {"name": "smoker", "kind": "boolean"},
        ],
    }
    upload = io.BytesIO(b"age,region,smoker\n30,north,true\n40,south,false\n")
    upload.name = "survey.csv"
    created = owner_client.post(
        "/api/v1/datasets/", {"file": upload, "metadata": json.dumps(metadata)}, format="multipart"
    )
    assert created.status_code == 201, created.content
    dataset_id = created.json()["id"]
    assert owner_client.post(f"/api/v1/datasets/{dataset_id}/publish/").status_code == 200
    bought = buyer_client.post("/api/v1/purchases/", {"dataset": dataset_id, "epsilon": "5"}, format="json")
    assert bought.status_code == 201, bought.content
    return bought.json()["id"]


@pytest.mark.django_db
@pytest.mark.parametrize("query,field", INVALID_QUERIES)
def test_the_server_refuses_what_the_query_schema_refuses(buyer_client, purchase, query, field):
    for path in ("/api/v1/jobs/", "/api/v1/jobs/estimate/"):
        response = buyer_client.post(path, {"purchase": purchase, "query": query, "epsilon": "1"}, format="json")
        assert response.status_code == 400, response.content
        error = response.json()["error"]
        assert error["code"] == "invalid_query" and field in error["fields"], error


@pytest.mark.django_db
def test_the_canonical_form_of_every_stored_query_fits_the_schema(schema):
    from compute.engines import dp

    columns = {
        "age": dp.ColumnMeta("age", "numeric", 0.0, 100.0),
        "region": dp.ColumnMeta("region", "categorical", categories=("north", "south")),
        "smoker": dp.ColumnMeta("smoker", "boolean"),
    }
    for query in VALID_QUERIES[:13]:
        validate(schema, {"$ref": "#/components/schemas/Query"}, dp.parse_query(query, columns).canonical())
