"""Dataset uploads: accepted files, and every kind of rejection, each a 400 that stores nothing."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from marketplace import storage
from marketplace.models import Column, Dataset

pytestmark = pytest.mark.django_db

METADATA = {
    "title": "Patients",
    "description": "Hospital visits",
    "epsilon_cap": "5",
    "delta_cap": "0.00001",
    "price_per_epsilon": "12.50",
    "row_count_public": False,
    "columns": [
        {"name": "age", "kind": "numeric", "lower": 0, "upper": 120},
        {"name": "ward", "kind": "categorical", "categories": ["A", "B"]},
        {"name": "insured", "kind": "boolean"},
    ],
}
GOOD_CSV = b"age,ward,insured,notes\n34,A,yes,private text\n71,B,no,more\n18,A,true,x\n"


def upload(client, data: bytes, *, name="data.csv", metadata=None):
    f = io.BytesIO(data)
    f.name = name
    meta = metadata if isinstance(metadata, str) else json.dumps(metadata or METADATA)
    return client.post("/api/v1/datasets/", {"file": f, "metadata": meta}, format="multipart")


def stored_files(root):
    return [p for p in root.rglob("*") if p.is_file()]


def assert_nothing_stored(private_storage):
    assert Dataset.objects.count() == 0 and Column.objects.count() == 0
    assert stored_files(private_storage) == []


def test_a_csv_upload_creates_a_draft_and_stores_only_declared_columns_encrypted(owner_client, private_storage):
    response = upload(owner_client, GOOD_CSV)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "draft" and body["id"] and body["row_count"] == 3
    assert [c["name"] for c in body["columns"]] == ["age", "ward", "insured"]
    assert body["ingest"]["ignored_columns"] == ["notes"]
    files = stored_files(private_storage)
    assert len(files) == 1
    raw = files[0].read_bytes()
    assert b"private text" not in raw and b"PAR1" not in raw  # encrypted at rest
    table = pq.read_table(io.BytesIO(storage.decrypt_bytes(raw)))
    assert table.column_names == ["age", "ward", "insured"]
    assert table.column("insured").to_pylist() == [True, False, True]


def test_a_parquet_upload_is_accepted(owner_client):
    table = pa.table({"age": [30.0, 40.0], "ward": ["B", "A"], "insured": [True, False]})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    response = upload(owner_client, sink.getvalue(), name="data.parquet")
    assert response.status_code == 201, response.content
    assert Dataset.objects.get().file_format == "parquet"


@pytest.mark.parametrize(
    "data, code, words",
    [
        (b"age,insured\n34,yes\n", "missing_column", ["ward", "not found"]),
        (
            b"age,ward,insured\n34,A,yes\nabc,B,no\n12x,A,no\n",
            "invalid_file",
            ["age", "2 values", "not finite numbers", "rows 2, 3", "abc"],
        ),
        (
            b"age,ward,insured\n34,C,yes\n",
            "invalid_file",
            ["ward", "not among the declared categories", "row 1", "'C'"],
        ),
        (
            b"age,ward,insured\n34,A,yes\n150,A,no\n-2,B,no\n",
            "invalid_file",
            ["age", "outside the declared bounds [0, 120]", "rows 2, 3"],
        ),
        (b"age,ward,insured\n34,A,maybe\n", "invalid_file", ["insured", "not booleans"]),
        (b"age,ward,insured\n,A,yes\n", "invalid_file", ["age", "missing"]),
        (b"", "empty_file", ["empty"]),
        (b"age,ward,insured\n", "empty_file", ["no data rows"]),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "unsupported_file_type", ["neither"]),
        (bytes(range(256)) * 4, "unsupported_file_type", ["neither"]),
        (b"\xff\xfe\xfa\xfb not utf-8 at all \xc3\x28", "unsupported_file_type", ["UTF-8"]),
    ],
)
def test_a_bad_file_is_a_400_naming_the_problem_and_stores_nothing(owner_client, private_storage, data, code, words):
    response = upload(owner_client, data)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert "file" in error["fields"]
    for word in words:
        assert word in error["message"], (word, error["message"])
    assert_nothing_stored(private_storage)


def test_csv_inside_a_parquet_name_is_refused(owner_client, private_storage):
    response = upload(owner_client, GOOD_CSV, name="data.parquet")
    assert response.status_code == 400 and response.json()["error"]["code"] == "unsupported_file_type"
    assert_nothing_stored(private_storage)


def test_a_file_over_the_size_limit_is_refused_before_it_is_parsed(owner_client, private_storage, settings):
    settings.CLOAKROOM_MAX_UPLOAD_BYTES = 40
    response = upload(owner_client, GOOD_CSV)
    assert response.status_code == 400
    assert (
        response.json()["error"]["code"] == "file_too_large"
        and "limit is 40 bytes" in response.json()["error"]["message"]
    )
    assert_nothing_stored(private_storage)


def test_out_of_bounds_values_are_clipped_when_the_owner_asks(owner_client, private_storage):
    response = upload(
        owner_client, b"age,ward,insured\n150,A,yes\n-2,B,no\n50,A,no\n", metadata={**METADATA, "clip_to_bounds": True}
    )
    assert response.status_code == 201
    assert response.json()["ingest"]["clipped"] == {"age": 2}
    raw = stored_files(private_storage)[0].read_bytes()
    ages = pq.read_table(io.BytesIO(storage.decrypt_bytes(raw))).column("age").to_pylist()
    assert ages == [120.0, 0.0, 50.0]


@pytest.mark.parametrize(
    "metadata, field",
    [
        ("{not json", "metadata"),
        ("[1, 2]", "metadata"),
        ('"a string"', "metadata"),
        ("", "metadata"),
        ({**METADATA, "columns": [{"name": "age", "kind": "numeric"}]}, "metadata.columns.0.lower"),
        (
            {**METADATA, "columns": [{"name": "age", "kind": "numeric", "lower": 5, "upper": 1}]},
            "metadata.columns.0.upper",
        ),
        ({**METADATA, "columns": [{"name": "ward", "kind": "categorical"}]}, "metadata.columns.0.categories"),
        ({**METADATA, "columns": [{"name": "x", "kind": "text"}]}, "metadata.columns.0.kind"),
        ({**METADATA, "columns": []}, "metadata.columns"),
        ({**METADATA, "epsilon_cap": 0}, "metadata.epsilon_cap"),
        ({**METADATA, "epsilon_cap": -1}, "metadata.epsilon_cap"),
        ({**METADATA, "epsilon_cap": "NaN"}, "metadata.epsilon_cap"),
        ({**METADATA, "epsilon_cap": "Infinity"}, "metadata.epsilon_cap"),
        ('{"title": "x", "epsilon_cap": NaN}', "metadata"),
        ({**METADATA, "mode": "he"}, "metadata"),
    ],
)
def test_bad_metadata_is_a_400_naming_the_field_and_stores_nothing(owner_client, private_storage, metadata, field):
    response = upload(owner_client, GOOD_CSV, metadata=metadata)
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"], response.json()
    assert_nothing_stored(private_storage)


def test_missing_file_is_a_400(owner_client, private_storage):
    response = owner_client.post("/api/v1/datasets/", {"metadata": json.dumps(METADATA)}, format="multipart")
    assert response.status_code == 400 and "file" in response.json()["error"]["fields"]
    assert_nothing_stored(private_storage)


def test_a_buyer_only_account_cannot_list_a_dataset(buyer_client, private_storage):
    response = upload(buyer_client, GOOD_CSV)
    assert response.status_code == 403
    assert_nothing_stored(private_storage)


def test_an_anonymous_upload_is_401(anon, private_storage):
    assert upload(anon, GOOD_CSV).status_code == 401
    assert_nothing_stored(private_storage)


def test_a_database_failure_after_the_file_is_written_leaves_no_file(owner_client, private_storage, monkeypatch):
    # The file is written before the rows; if the transaction fails, the file must go too.
    def fail(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(Column.objects, "bulk_create", fail)
    response = upload(owner_client, GOOD_CSV)
    assert response.status_code == 500 and response.json()["error"]["code"] == "server_error"
    assert "database went away" not in response.content.decode()  # no internals leak
    assert_nothing_stored(private_storage)
