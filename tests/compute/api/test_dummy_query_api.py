"""Trying a query on fake data: free, immediate, marked fake, and blind to the real data."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from drf_spectacular.generators import SchemaGenerator

from compute.engines import dummy as engine
from compute.models import Job
from marketplace import storage
from marketplace.models import Dataset, LedgerEntry, Purchase
from tests.config.test_openapi_schema import validate

pytestmark = pytest.mark.django_db

MEAN_BY_REGION = {"aggregate": "mean", "column": "age", "group_by": ["region"]}


def dummy_query(client, dataset_id, query, **extra):
    return client.post(f"/api/v1/datasets/{dataset_id}/dummy-query/", {"query": query, **extra}, format="json")


def budget_state(dataset: Dataset) -> tuple:
    dataset.refresh_from_db()
    purchases = list(Purchase.objects.filter(dataset=dataset).values_list("epsilon_used", "delta_used"))
    return dataset.epsilon_sold, purchases, LedgerEntry.objects.count(), Job.objects.count()


def test_a_signed_out_visitor_tries_a_query_and_gets_an_answer_marked_fake(anon, dp_dataset):
    response = dummy_query(anon, dp_dataset.pk, MEAN_BY_REGION)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["dummy"] is True and body["note"] == engine.NOTE
    assert "fake data" in body["note"] and "says nothing about the real data" in body["note"]
    assert body["epsilon_charged"] == "0" and body["epsilon"] == "1" and body["mode"] == "dp"
    # The dataset keeps its row count private: the fake table has the default size, not the real 500.
    assert body["rows"] == engine.DEFAULT_ROWS and "private" in body["rows_basis"]
    assert [g["key"] for g in body["result"]["groups"]] == [{"region": r} for r in ("north", "south", "east")]
    assert body["query"]["group_by"] == ["region"] and "Laplace" in body["mechanism"]
    # The real data has no "east" row at all; the fake table has about a third of its rows there.
    east = body["result"]["groups"][2]["raw"]["count"]
    assert 200 < east < 470, east


def test_it_spends_nothing_and_writes_no_ledger_row_or_job(buyer_client, dp_dataset, purchase):
    before = budget_state(dp_dataset)
    for query in (
        MEAN_BY_REGION,
        {"aggregate": "count"},
        {"aggregate": "quantile", "column": "age", "quantiles": [0.5]},
    ):
        assert dummy_query(buyer_client, dp_dataset.pk, query, epsilon="2").status_code == 200
    assert budget_state(dp_dataset) == before
    purchase.refresh_from_db()
    assert purchase.epsilon_used == Decimal("0")


def test_it_never_reads_the_stored_file(anon, dp_dataset):
    storage.delete_stored(dp_dataset.file_path)
    answered = dummy_query(anon, dp_dataset.pk, {"aggregate": "sum", "column": "income"})
    assert answered.status_code == 200, answered.json()
    assert anon.get(f"/api/v1/datasets/{dp_dataset.pk}/dummy.csv").status_code == 200


def test_a_bad_query_is_a_400_naming_the_field_as_the_jobs_api_does(anon, dp_dataset):
    cases = [
        ({"aggregate": "mean", "column": "region"}, "query.column"),
        (
            {"aggregate": "count", "filters": [{"column": "region", "op": "eq", "value": "west"}]},
            "query.filters.0.value",
        ),
        ({"aggregate": "median", "column": "age"}, "query.aggregate"),
        ({"aggregate": "count", "group_by": ["age"]}, "query.group_by.0"),
    ]
    for query, field in cases:
        response = dummy_query(anon, dp_dataset.pk, query)
        assert response.status_code == 400, (query, response.json())
        error = response.json()["error"]
        assert error["code"] == "invalid_query" and field in error["fields"], (query, error)
    for epsilon in ("-1", "11", ".086E78", "1e400"):  # the dataset's cap is 10
        bad_epsilon = dummy_query(anon, dp_dataset.pk, {"aggregate": "count"}, epsilon=epsilon)
        assert bad_epsilon.status_code == 400, (epsilon, bad_epsilon.json())
        assert "epsilon" in bad_epsilon.json()["error"]["fields"], epsilon
    assert dummy_query(anon, dp_dataset.pk, {"aggregate": "count"}, epsilon="10").status_code == 200
    no_query = anon.post(f"/api/v1/datasets/{dp_dataset.pk}/dummy-query/", {}, format="json")
    assert no_query.status_code == 400 and "query" in no_query.json()["error"]["fields"]


def test_someone_elses_draft_does_not_exist_for_the_caller(anon, outsider_client, owner_client, dp_dataset):
    Dataset.objects.filter(pk=dp_dataset.pk).update(status=Dataset.Status.DRAFT)
    for client in (anon, outsider_client):
        assert dummy_query(client, dp_dataset.pk, {"aggregate": "count"}).status_code == 404
        assert client.get(f"/api/v1/datasets/{dp_dataset.pk}/dummy.csv").status_code == 404
    assert dummy_query(owner_client, dp_dataset.pk, {"aggregate": "count"}).status_code == 200


def test_the_fake_table_downloads_as_csv_the_same_each_time_and_inside_the_declaration(anon, dp_dataset):
    first = anon.get(f"/api/v1/datasets/{dp_dataset.pk}/dummy.csv")
    assert first.status_code == 200 and first["Content-Type"].startswith("text/csv")
    assert "fake" in first["Content-Disposition"] and first["X-Cloakroom-Dummy"] == engine.NOTE
    rows = list(csv.DictReader(io.StringIO(first.content.decode())))
    assert len(rows) == engine.DEFAULT_ROWS
    assert {r["region"] for r in rows} == {"north", "south", "east"}
    assert {r["member"] for r in rows} == {"true", "false"}
    assert all(0 <= float(r["age"]) <= 100 and 0 <= float(r["income"]) <= 200000 for r in rows)
    assert anon.get(f"/api/v1/datasets/{dp_dataset.pk}/dummy.csv").content == first.content


def test_a_public_row_count_sizes_the_fake_table(anon, dp_dataset):
    Dataset.objects.filter(pk=dp_dataset.pk).update(row_count_public=True)
    body = dummy_query(anon, dp_dataset.pk, {"aggregate": "count"}).json()
    assert body["rows"] == 500 and body["rows_basis"] == engine.ROWS_PUBLIC


def test_a_new_version_gets_a_new_fake_table(anon, dp_dataset):
    first = anon.get(f"/api/v1/datasets/{dp_dataset.pk}/dummy.csv").content
    Dataset.objects.filter(pk=dp_dataset.pk).update(version=2)
    assert anon.get(f"/api/v1/datasets/{dp_dataset.pk}/dummy.csv").content != first


def test_categories_that_look_like_formulas_are_neutralised_in_the_csv(anon, dp_dataset):
    dp_dataset.columns.filter(name="region").update(categories=["=cmd()", "south", "east"])
    text = anon.get(f"/api/v1/datasets/{dp_dataset.pk}/dummy.csv").content.decode()
    assert "'=cmd()" in text and "\n=cmd()" not in text and ",=cmd()" not in text


def test_dummy_queries_are_rate_limited(anon, dp_dataset, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "dummy_query": "2/min"},
    }
    statuses = [dummy_query(anon, dp_dataset.pk, {"aggregate": "count"}).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_an_answer_too_big_to_compute_at_once_is_a_400_naming_the_field(anon, dp_dataset):
    Dataset.objects.get(pk=dp_dataset.pk).columns.filter(name="region").update(categories=[f"r{i}" for i in range(100)])
    just_fits = {"aggregate": "histogram", "column": "age", "bins": 50, "group_by": ["region"]}
    assert dummy_query(anon, dp_dataset.pk, just_fits).status_code == 200
    too_big = dummy_query(anon, dp_dataset.pk, {**just_fits, "bins": 51})
    assert too_big.status_code == 400 and "query.group_by" in too_big.json()["error"]["fields"]
    assert "5,100" in too_big.json()["error"]["message"]
    ungrouped = dummy_query(anon, dp_dataset.pk, {"aggregate": "histogram", "column": "age", "bins": 1000})
    assert ungrouped.status_code == 200
    variance = {"aggregate": "variance", "column": "age", "group_by": ["region", "member"]}
    assert dummy_query(anon, dp_dataset.pk, variance).status_code == 200  # 200 groups, 3 parts each


def test_the_answer_is_the_one_the_openapi_document_describes(anon, dp_dataset):
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operation = schema["paths"]["/api/v1/datasets/{dataset_id}/dummy-query/"]["post"]
    body = dummy_query(anon, dp_dataset.pk, MEAN_BY_REGION).json()
    validate(schema, operation["responses"]["200"]["content"]["application/json"]["schema"], body)
    assert set(operation["responses"]) >= {"200", "400", "404", "429"}
    assert "/api/v1/datasets/{dataset_id}/dummy.csv" in schema["paths"]


def test_an_he_dataset_answers_on_fake_data_without_its_ciphertexts(anon, buyer_client, he_purchase, private_storage):
    dataset = Purchase.objects.get(pk=he_purchase).dataset
    before = budget_state(dataset)
    for query, keys in [
        ({"aggregate": "count", "column": "ward"}, [{"ward": "A"}, {"ward": "B"}]),
        ({"aggregate": "mean", "column": "bmi", "filter": {"column": "ward", "category": "B"}}, [{}]),
        ({"aggregate": "regression", "columns": ["age"], "target": "bmi"}, None),
        ({"aggregate": "dot", "column": "age", "weights": [1, 2, 3]}, [{}]),
    ]:
        response = dummy_query(anon, dataset.pk, query)
        assert response.status_code == 200, (query, response.json())
        body = response.json()
        assert body["dummy"] is True and body["mode"] == "he" and body["rows"] == 5000
        if keys is not None:
            assert [g["key"] for g in body["result"]["groups"]] == keys
    mean = dummy_query(anon, dataset.pk, {"aggregate": "mean", "column": "bmi"}, epsilon="10").json()
    # Fake bmi is uniform in its declared [10, 50]: the mean is about 30 (the real one is about 25).
    assert 29 < mean["result"]["groups"][0]["value"] < 31, mean
    refused = dummy_query(anon, dataset.pk, {"aggregate": "mean", "column": "ward"})
    assert refused.status_code == 400 and "query.column" in refused.json()["error"]["fields"]
    with_delta = dummy_query(anon, dataset.pk, {"aggregate": "sum", "column": "age"}, delta="0.00001")
    assert with_delta.status_code == 400 and "delta" in with_delta.json()["error"]["fields"]
    assert budget_state(dataset) == before
    rows = list(csv.DictReader(io.StringIO(anon.get(f"/api/v1/datasets/{dataset.pk}/dummy.csv").content.decode())))
    assert set(rows[0]) == {"age", "bmi", "ward"} and {r["ward"] for r in rows} == {"A", "B"}


def test_a_training_request_is_no_dummy_query(anon, dp_dataset):
    # Schemathesis sent kind "train" with a model here and got a 500: only queries run on fake data.
    response = anon.post(
        f"/api/v1/datasets/{dp_dataset.pk}/dummy-query/",
        {"kind": "train", "model": {"type": "linear_regression", "features": ["age"], "label": "income"}},
        format="json",
    )
    assert response.status_code == 400
    assert "kind" in response.json()["error"]["fields"]
