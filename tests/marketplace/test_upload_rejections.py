"""Every upload rejection is a 400 that names the problem and stores nothing: no row, no file."""

from __future__ import annotations

import datetime
import json
import os

import pyarrow as pa
import pytest

from marketplace.models import Dataset
from tests.marketplace.test_api_datasets import (
    GOOD_CSV,
    GOOD_PARQUET,
    METADATA,
    URL,
    assert_nothing_stored,
    decrypted_table,
    parquet_bytes,
    upload,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """The cast's passwords are hashed with a fast hasher; these tests are not about hashing cost."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def rejected(response, *, code: str | None = None, field: str = "file") -> dict:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert set(error) >= {"code", "message", "fields"}
    assert field in error["fields"], error
    if code is not None:
        assert error["code"] == code, error
    return error


def test_a_missing_column_is_named(owner_client, private_storage):
    error = rejected(upload(owner_client, b"age,insured\n34,yes\n"), code="missing_column")
    assert "'ward'" in error["message"] and "not found" in error["message"]
    assert_nothing_stored(private_storage)


def test_an_unparseable_number_names_the_column_the_rows_and_the_count(owner_client, private_storage):
    data = b"age,ward,insured\n34,A,yes\nabc,B,no\n12x,A,no\n"
    message = rejected(upload(owner_client, data))["message"]
    for words in ["column 'age'", "2 values", "not finite numbers", "rows 2, 3", "'abc'"]:
        assert words in message, (words, message)
    assert_nothing_stored(private_storage)


def test_an_undeclared_category_names_the_column_and_the_row(owner_client, private_storage):
    message = rejected(upload(owner_client, b"age,ward,insured\n34,A,yes\n50,C,no\n"))["message"]
    for words in ["column 'ward'", "1 value", "not among the declared categories", "row 2", "'C'"]:
        assert words in message, (words, message)
    assert_nothing_stored(private_storage)


def test_an_out_of_bounds_value_names_the_column_the_bounds_and_the_rows(owner_client, private_storage):
    data = b"age,ward,insured\n34,A,yes\n150,A,no\n-2,B,no\n"
    message = rejected(upload(owner_client, data))["message"]
    for words in ["column 'age'", "2 values", "outside the declared bounds [0, 120]", "rows 2, 3", "'150'"]:
        assert words in message, (words, message)
    assert_nothing_stored(private_storage)


def test_the_same_out_of_bounds_file_is_accepted_and_clipped_when_asked(owner_client, private_storage):
    data = b"age,ward,insured\n34,A,yes\n150,A,no\n-2,B,no\n"
    response = upload(owner_client, data, metadata={**METADATA, "clip_to_bounds": True})
    assert response.status_code == 201, response.content
    assert response.json()["ingest"]["clipped"] == {"age": 2}
    assert decrypted_table(private_storage).column("age").to_pylist() == [34.0, 120.0, 0.0]
    assert Dataset.objects.get().clip_to_bounds is True


def test_many_bad_rows_list_the_first_five_and_count_them_all(owner_client, private_storage):
    rows = b"".join(b"x%d,A,yes\n" % i for i in range(12))
    message = rejected(upload(owner_client, b"age,ward,insured\n" + rows))["message"]
    assert "12 values" in message and "rows 1, 2, 3, 4, 5, \u2026" in message
    assert "6" not in message.split("rows ")[1].split(";")[0]
    assert_nothing_stored(private_storage)


def test_every_bad_column_is_reported_at_once(owner_client, private_storage):
    message = rejected(upload(owner_client, b"age,ward,insured\nold,Z,maybe\n"))["message"]
    assert "column 'age'" in message and "column 'ward'" in message and "column 'insured'" in message
    assert_nothing_stored(private_storage)


def test_a_blank_cell_is_reported_as_missing(owner_client, private_storage):
    message = rejected(upload(owner_client, b"age,ward,insured\n34,A,yes\n,B,no\n"))["message"]
    assert "column 'age'" in message and "missing" in message and "row 2" in message
    assert_nothing_stored(private_storage)


@pytest.mark.parametrize("data", [b"", b"   \n\n  \n", b"\xef\xbb\xbf"])
def test_an_empty_file_is_refused(owner_client, private_storage, data):
    error = rejected(upload(owner_client, data), code="empty_file")
    assert "empty" in error["message"]
    assert_nothing_stored(private_storage)


def test_a_header_only_file_is_refused(owner_client, private_storage):
    error = rejected(upload(owner_client, b"age,ward,insured\n"), code="empty_file")
    assert "no data rows" in error["message"]
    assert_nothing_stored(private_storage)


def test_a_header_only_parquet_file_is_refused(owner_client, private_storage):
    empty = parquet_bytes(
        {"age": pa.array([], pa.float64()), "ward": pa.array([], pa.string()), "insured": pa.array([], pa.bool_())}
    )
    rejected(upload(owner_client, empty, name="empty.parquet"), code="empty_file")
    assert_nothing_stored(private_storage)


def test_a_file_over_the_size_limit_is_refused(owner_client, private_storage, settings):
    settings.CLOAKROOM_MAX_UPLOAD_BYTES = 64
    error = rejected(upload(owner_client, GOOD_CSV), code="file_too_large")
    assert "64" in error["message"] and "limit" in error["message"]
    assert_nothing_stored(private_storage)


def test_a_file_exactly_at_the_size_limit_is_accepted(owner_client, settings):
    settings.CLOAKROOM_MAX_UPLOAD_BYTES = len(GOOD_CSV)
    assert upload(owner_client, GOOD_CSV).status_code == 201


@pytest.mark.parametrize(
    "data, name",
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00", "image.png"),
        (os.urandom(4096), "data.csv"),
        (b"\xff\xfe\xfa\xfb not utf-8 \xc3\x28 at all", "data.csv"),
        (GOOD_CSV, "data.parquet"),
        (b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(100), "book.xlsx"),
    ],
    ids=["png", "random-bytes", "latin-junk", "csv-named-parquet", "zip"],
)
def test_a_file_that_is_neither_csv_nor_parquet_is_refused(owner_client, private_storage, data, name):
    error = rejected(upload(owner_client, data, name=name), code="unsupported_file_type")
    assert "Parquet" in error["message"] or "CSV" in error["message"]
    assert_nothing_stored(private_storage)


def test_a_corrupt_parquet_file_is_refused(owner_client, private_storage):
    corrupt = GOOD_PARQUET[:4] + bytes(len(GOOD_PARQUET) - 8) + GOOD_PARQUET[-4:]
    error = rejected(upload(owner_client, corrupt, name="data.parquet"), code="unreadable_file")
    assert "Parquet" in error["message"]
    assert_nothing_stored(private_storage)


def test_rows_with_more_fields_than_the_header_are_refused_not_shifted(owner_client, private_storage):
    # Without care pandas reads the first field of every row as an index and shifts the rest left.
    data = b"age,ward,insured\n1,34,A,yes\n2,71,B,no\n"
    error = rejected(upload(owner_client, data), code="unreadable_file")
    assert "more fields than its header" in error["message"]
    assert_nothing_stored(private_storage)


def test_dates_declared_as_numbers_are_refused(owner_client, private_storage):
    data = parquet_bytes(
        {
            "age": pa.array([datetime.datetime(2020, 1, 1)] * 2, pa.timestamp("us")),
            "ward": ["A", "B"],
            "insured": [True, False],
        }
    )
    error = rejected(upload(owner_client, data, name="data.parquet"))
    assert "column 'age'" in error["message"] and "not numbers" in error["message"]
    assert_nothing_stored(private_storage)


@pytest.mark.parametrize(
    "metadata",
    ["{not json", "{'title': 'single quotes'}", '{"title": "x",}', '{"epsilon_cap": NaN}', "\u00ff\u00fe"],
)
def test_metadata_that_is_not_json_is_refused(owner_client, private_storage, metadata):
    error = rejected(upload(owner_client, GOOD_CSV, metadata=metadata), field="metadata")
    assert "JSON" in error["message"]
    assert_nothing_stored(private_storage)


@pytest.mark.parametrize("metadata", ["[1, 2]", '"a string"', "42", "null", "true"])
def test_metadata_that_is_json_but_not_an_object_is_refused(owner_client, private_storage, metadata):
    error = rejected(upload(owner_client, GOOD_CSV, metadata=metadata), field="metadata")
    assert "JSON object" in error["message"]
    assert_nothing_stored(private_storage)


@pytest.mark.parametrize(
    "column, field",
    [
        ({"name": "age", "kind": "numeric"}, "metadata.columns.0.lower"),
        ({"name": "age", "kind": "numeric", "lower": 0}, "metadata.columns.0.upper"),
        ({"name": "age", "kind": "numeric", "lower": 5, "upper": 1}, "metadata.columns.0.upper"),
        ({"name": "age", "kind": "numeric", "lower": 0, "upper": 10**400}, "metadata.columns.0.upper"),
        ({"name": "ward", "kind": "categorical"}, "metadata.columns.0.categories"),
        ({"name": "ward", "kind": "categorical", "categories": []}, "metadata.columns.0.categories"),
        ({"name": "ward", "kind": "categorical", "categories": ["A", "A"]}, "metadata.columns.0.categories"),
        ({"name": "x", "kind": "text"}, "metadata.columns.0.kind"),
        ({"kind": "boolean"}, "metadata.columns.0.name"),
    ],
)
def test_a_bad_column_declaration_is_refused_naming_the_field(owner_client, private_storage, column, field):
    error = rejected(upload(owner_client, GOOD_CSV, metadata={**METADATA, "columns": [column]}), field=field)
    assert error["code"] == "invalid"
    assert_nothing_stored(private_storage)


def test_a_numeric_column_without_bounds_says_bounds_are_declared(owner_client, private_storage):
    columns = [{"name": "age", "kind": "numeric"}]
    error = rejected(
        upload(owner_client, GOOD_CSV, metadata={**METADATA, "columns": columns}), field="metadata.columns.0.lower"
    )
    assert "bounds" in error["message"]
    assert_nothing_stored(private_storage)


def test_no_declared_columns_is_refused(owner_client, private_storage):
    rejected(upload(owner_client, GOOD_CSV, metadata={**METADATA, "columns": []}), field="metadata.columns")
    assert_nothing_stored(private_storage)


@pytest.mark.parametrize("cap", [0, -1, "0", "-0.5", "NaN", "Infinity", "-Infinity", "abc", 1e300, None])
def test_a_bad_epsilon_cap_is_refused(owner_client, private_storage, cap):
    rejected(upload(owner_client, GOOD_CSV, metadata={**METADATA, "epsilon_cap": cap}), field="metadata.epsilon_cap")
    assert_nothing_stored(private_storage)


@pytest.mark.parametrize("field", ["title", "epsilon_cap", "price_per_epsilon", "columns"])
def test_missing_required_metadata_is_refused_naming_the_field(owner_client, private_storage, field):
    metadata = {k: v for k, v in METADATA.items() if k != field}
    rejected(upload(owner_client, GOOD_CSV, metadata=metadata), field=f"metadata.{field}")
    assert_nothing_stored(private_storage)


def test_missing_metadata_is_refused(owner_client, private_storage):
    handle = __import__("io").BytesIO(GOOD_CSV)
    handle.name = "data.csv"
    error = rejected(owner_client.post(URL, {"file": handle}, format="multipart"), field="metadata")
    assert "metadata" in error["message"]
    assert_nothing_stored(private_storage)


def test_missing_file_is_refused(owner_client, private_storage):
    response = owner_client.post(URL, {"metadata": json.dumps(METADATA)}, format="multipart")
    error = rejected(response, field="file")
    assert "file" in error["message"]
    assert_nothing_stored(private_storage)


def test_an_he_mode_upload_is_refused_here(owner_client, private_storage):
    rejected(upload(owner_client, GOOD_CSV, metadata={**METADATA, "mode": "he"}), field="metadata")
    assert_nothing_stored(private_storage)


def test_a_json_body_instead_of_multipart_is_a_415(owner_client, private_storage):
    response = owner_client.post(URL, METADATA, format="json")
    assert response.status_code == 415 and response.json()["error"]["code"] == "unsupported_media_type"
    assert_nothing_stored(private_storage)


def test_a_buyer_only_account_cannot_upload(buyer_client, private_storage):
    response = upload(buyer_client, GOOD_CSV)
    assert response.status_code == 403 and response.json()["error"]["code"] == "not_an_owner"
    assert_nothing_stored(private_storage)


def test_an_unauthenticated_upload_is_a_401(anon, private_storage):
    response = upload(anon, GOOD_CSV)
    assert response.status_code == 401 and response.json()["error"]["code"] == "not_authenticated"
    assert_nothing_stored(private_storage)


# The problem of one declared column also names that column's field, as a metadata error of it would.


@pytest.mark.parametrize(
    "data, field, words",
    [
        (b"age,ward,insured\n34,A,yes\n150,A,no\n", "metadata.columns.0.upper", "outside the declared bounds [0, 120]"),
        (b"age,ward,insured\n-2,A,yes\n", "metadata.columns.0.lower", "outside the declared bounds"),
        (b"age,ward,insured\nabc,A,yes\n", "metadata.columns.0.kind", "not finite numbers"),
        (b"age,ward,insured\n34,Z,yes\n", "metadata.columns.1.categories", "not among the declared categories"),
        (b"age,ward,insured\n34,A,maybe\n", "metadata.columns.2.kind", "not booleans"),
        (b"age,ward,insured\n,A,yes\n", "metadata.columns.0", "missing"),
        (b"age,insured\n34,yes\n", "metadata.columns.1.name", "not in the file"),
    ],
)
def test_a_columns_problem_names_its_field_beside_the_file(owner_client, private_storage, data, field, words):
    error = rejected(upload(owner_client, data), field=field)
    assert words in error["fields"][field][0], error
    assert "file" in error["fields"]  # the file's own list of problems stays as it was
    assert error["fields"][field][0] in error["fields"]["file"] or field.endswith(".name")
    assert_nothing_stored(private_storage)


def test_values_outside_both_bounds_name_both(owner_client, private_storage):
    error = rejected(upload(owner_client, b"age,ward,insured\n-2,A,yes\n150,B,no\n"), field="metadata.columns.0.lower")
    assert "metadata.columns.0.upper" in error["fields"]
    assert_nothing_stored(private_storage)


def test_only_the_columns_with_problems_are_named(owner_client, private_storage):
    error = rejected(upload(owner_client, b"age,ward,insured\n34,Z,maybe\n"))
    assert set(error["fields"]) == {"file", "metadata.columns.1.categories", "metadata.columns.2.kind"}
