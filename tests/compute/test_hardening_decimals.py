"""Issue 11, defect 9: numbers are read only in plain ASCII decimal notation.

Python's Decimal (and int and float) accept digit separators and the digits of every script, so
``"1_0"`` was read as 10 and ``"١"`` (Arabic-Indic one) as 1: a buyer who typed a slip was charged
for a number they never wrote. Epsilon and delta of jobs and estimates go through
``compute.budget.budget_numbers``; the other decimals the API reads (purchase epsilon, the caps
and the price of a dataset, bounds, rows, bins) are read by the plain-number fields of config/fields.py.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from compute.models import Job
from marketplace.models import Dataset, LedgerEntry, Purchase
from marketplace.services import purchase_create
from tests.fixtures.dp_jobs import api, dp_dataset  # noqa: F401 - fixtures
from tests.marketplace.test_api_datasets import GOOD_CSV, METADATA, upload

pytestmark = pytest.mark.django_db

QUERY = {"aggregate": "count"}
# Each is read by Decimal() as a valid number (shown beside it) that the sender did not write.
NOT_PLAIN = [("1_0", "10"), ("0.000_5", "0.0005"), ("\u0661", "1"), ("\uff11", "1"), ("\u0661\u0660", "10")]
NOT_PLAIN_IDS = ["underscore", "underscore-in-fraction", "arabic-indic-digit", "fullwidth-digit", "arabic-indic-ten"]


@pytest.fixture
def big_purchase(buyer, dp_dataset):  # noqa: F811 - the fixture imported above
    return purchase_create(buyer=buyer, dataset_id=dp_dataset.pk, epsilon=Decimal("10"))


def _assert_names(response, field: str) -> dict:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert field in error["fields"], error
    assert "plain decimal notation" in error["fields"][field][0]
    return error


@pytest.mark.parametrize("text, decimal_reads", NOT_PLAIN, ids=NOT_PLAIN_IDS)
def test_a_job_epsilon_that_is_not_plain_decimal_is_a_400_naming_epsilon_and_reserves_nothing(
    api,  # noqa: F811
    big_purchase,
    text,
    decimal_reads,
):
    assert Decimal(text.strip()) == Decimal(decimal_reads)  # what the old code read
    body = {"purchase": big_purchase.pk, "query": QUERY, "epsilon": text}
    _assert_names(api.post("/api/v1/jobs/", body, format="json"), "epsilon")
    assert not Job.objects.exists() and not LedgerEntry.objects.exists()
    assert Purchase.objects.get(pk=big_purchase.pk).epsilon_used == 0


@pytest.mark.parametrize("text", ["1_0e-6", "0.000_001"])
def test_a_job_delta_that_is_not_plain_decimal_is_a_400_naming_delta(api, big_purchase, text):  # noqa: F811
    body = {"purchase": big_purchase.pk, "query": QUERY, "epsilon": "1", "delta": text}
    _assert_names(api.post("/api/v1/jobs/", body, format="json"), "delta")
    assert not Job.objects.exists()


@pytest.mark.parametrize("field", ["epsilon", "delta"])
def test_an_estimate_refuses_underscores_too(api, big_purchase, field):  # noqa: F811
    body = {"purchase": big_purchase.pk, "query": QUERY, "epsilon": "1", "delta": "0", field: "1_0"}
    _assert_names(api.post("/api/v1/jobs/estimate/", body, format="json"), field)


@pytest.mark.parametrize("epsilon", ["0.5", " 0.5 ", "5e-1", "0.5E0", 0.5, 1])
def test_plain_decimal_notation_and_json_numbers_are_still_read(api, big_purchase, epsilon):  # noqa: F811
    body = {"purchase": big_purchase.pk, "query": QUERY, "epsilon": epsilon}
    response = api.post("/api/v1/jobs/estimate/", body, format="json")
    assert response.status_code == 200, response.content
    assert Decimal(response.json()["epsilon"]) == Decimal(str(epsilon).strip())


def test_a_json_number_delta_in_exponent_form_is_still_read(api, big_purchase):  # noqa: F811
    # 0.000001 arrives as the float 1e-06, whose text has an exponent.
    body = '{"purchase": %d, "query": {"aggregate": "mean", "column": "age"}, "epsilon": 1, "delta": 0.000001}'
    response = api.generic("POST", "/api/v1/jobs/estimate/", body % big_purchase.pk, content_type="application/json")
    assert response.status_code == 200, response.content
    assert Decimal(response.json()["delta"]) == Decimal("0.000001")


def test_the_web_query_form_refuses_an_underscore_beside_the_epsilon(client, buyer, big_purchase):
    client.force_login(buyer)
    response = client.post(
        f"/datasets/{big_purchase.dataset_id}/query/",
        {"purchase": big_purchase.pk, "aggregate": "count", "epsilon": "1_0", "delta": "0", "filter_count": "0"},
    )
    assert response.status_code == 400
    assert "plain decimal notation" in response.content.decode()
    assert not Job.objects.exists()


def test_a_purchase_epsilon_with_an_underscore_is_a_400_naming_epsilon(buyer_client, dataset):
    response = buyer_client.post("/api/v1/purchases/", {"dataset": dataset.pk, "epsilon": "1_0"}, format="json")
    assert response.status_code == 400 and "epsilon" in response.json()["error"]["fields"]
    assert not Purchase.objects.exists()


@pytest.mark.parametrize("field", ["epsilon_cap", "delta_cap", "price_per_epsilon"])
def test_upload_metadata_decimals_with_an_underscore_are_a_400_naming_the_field(owner_client, field):
    value = {"epsilon_cap": "1_0", "delta_cap": "0.000_01", "price_per_epsilon": "1_000"}[field]
    response = upload(owner_client, GOOD_CSV, metadata=json.dumps({**METADATA, field: value}))
    assert response.status_code == 400 and f"metadata.{field}" in response.json()["error"]["fields"]
    assert not Dataset.objects.exists()


@pytest.mark.parametrize("text", ["1_0", "١٠", "１０", "0.000_01"])
def test_every_number_field_refuses_underscores_and_other_scripts(text):
    from django.core.exceptions import ValidationError as FormError
    from rest_framework.exceptions import ValidationError

    from config import fields

    for field in (fields.DecimalField(max_digits=12, decimal_places=6), fields.FloatField(), fields.IntegerField()):
        with pytest.raises(ValidationError):
            field.run_validation(text)
    for form_field in (fields.FormDecimalField(), fields.FormFloatField(), fields.FormIntegerField()):
        with pytest.raises(FormError):
            form_field.clean(text)
    # Plain numbers and JSON numbers still read as before.
    assert fields.DecimalField(max_digits=12, decimal_places=6).run_validation("10") == Decimal("10")
    assert fields.FloatField().run_validation(1.5) == 1.5
    assert fields.FormIntegerField().clean("12") == 12


def test_an_estimate_with_rows_written_with_an_underscore_is_a_400_naming_rows(buyer_client, big_purchase):
    response = buyer_client.post(
        "/api/v1/jobs/estimate/",
        {"purchase": big_purchase.pk, "query": {"aggregate": "count"}, "epsilon": "1", "rows": "1_000"},
        format="json",
    )
    assert response.status_code == 400 and "rows" in response.json()["error"]["fields"]


@pytest.mark.parametrize("epsilon", [".086E78", "1E+30", "1000000"])
def test_an_epsilon_too_large_to_store_is_a_400_not_a_500(api, big_purchase, epsilon):  # noqa: F811
    # Decimal reads ".086E78" as a valid number that cannot be quantized to 6 places (schemathesis found
    # it as a 500 on both endpoints).
    for path in ("/api/v1/jobs/estimate/", "/api/v1/jobs/"):
        body = {"purchase": big_purchase.pk, "kind": "query", "query": QUERY, "epsilon": epsilon}
        response = api.post(path, body, format="json")
        assert response.status_code == 400, response.content
        assert response.json()["error"]["fields"]["epsilon"] == ["Must be less than 1,000,000."]
    assert not LedgerEntry.objects.filter(purchase=big_purchase).exists()
