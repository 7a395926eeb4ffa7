"""Issue 11, defects 2 and 4: an upload's shape is checked against limits before its data is parsed.

Parquet: the footer's row count, column count and uncompressed size, then the rows and bytes
actually decoded (declared columns only, in batches; dictionaries counted at their expanded size).
CSV: the header row's length in bytes and its number of columns, then the rows. Over a limit the
upload is a 400 naming ``file`` (code ``file_too_large``, with the limit) and nothing is stored.
Through a live gunicorn with the full-size bomb and header: tests/integration/test_hardening_live.py.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.test import Client

from marketplace.ingest import ColumnSpec, IngestLimits, UploadRejected, UploadTooLarge, ingest
from marketplace.ingest import readers as ingest_module
from tests.marketplace.test_api_datasets import GOOD_CSV, assert_nothing_stored, upload

AGE = ColumnSpec(name="age", kind="numeric", lower=0, upper=120)
WARD = ColumnSpec(name="ward", kind="categorical", categories=("A", "B"))
INSURED = ColumnSpec(name="insured", kind="boolean")
SPECS = [AGE, WARD, INSURED]
SMALL = IngestLimits(max_rows=10, max_columns=5, max_uncompressed_bytes=64 * 1024, max_header_bytes=64)


def parquet(columns: dict, **options) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink, **options)
    return sink.getvalue()


def repeated(value: str, rows: int) -> pa.DictionaryArray:
    """``value`` on every row, stored once: a dictionary of one entry."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, np.int32)), pa.array([value]))


def table(rows: int, ward=None) -> dict:
    return {
        "age": pa.array(np.full(rows, 30.0)),
        "ward": ward if ward is not None else repeated("A", rows),
        "insured": pa.array(np.ones(rows, bool)),
    }


def too_large(data: bytes, limits: IngestLimits = SMALL, specs=SPECS) -> UploadTooLarge:
    with pytest.raises(UploadTooLarge) as caught:
        ingest(data, specs, limits=limits)
    error = caught.value
    assert error.status_code == 400 and error.code == "file_too_large"
    assert error.fields == {"file": [error.message]}
    return error


# --- Parquet --------------------------------------------------------------------------------


def test_a_parquet_file_declaring_more_rows_than_the_limit_is_refused_from_its_footer(monkeypatch):
    data = parquet(table(11))

    def never(*args, **kwargs):
        raise AssertionError("the data was read")

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", never)
    error = too_large(data)
    assert error.message == "The file declares 11 rows; the limit is 10 rows."
    assert error.extra == {"limit": "rows", "maximum": 10, "found": 11}


def test_a_small_parquet_file_declaring_fifty_million_rows_is_refused_at_the_default_limit():
    schema = pa.schema([("age", pa.float64()), ("ward", pa.string()), ("insured", pa.bool_())])
    chunk = pa.table(table(5_000_000), schema=pa.schema([schema[0], ("ward", repeated("A", 1).type), schema[2]]))
    chunk = chunk.cast(schema)
    sink = io.BytesIO()
    with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
        for _ in range(10):
            writer.write_table(chunk)
    data = sink.getvalue()
    assert len(data) < 1024 * 1024
    error = too_large(data, IngestLimits())
    assert "50,000,000 rows" in error.message and "1,000,000 rows" in error.message


def test_a_parquet_file_with_more_columns_than_the_limit_is_refused():
    data = parquet({**table(2), **{f"x{i}": [1, 2] for i in range(3)}})
    error = too_large(data)
    assert error.extra["limit"] == "columns" and "6 columns" in error.message and "5 columns" in error.message


def test_a_parquet_file_declaring_too_much_uncompressed_data_is_refused():
    data = parquet({"age": pa.array(np.full(10, 30.0)), "ward": ["A" * 10_000] * 10}, compression="zstd")
    error = too_large(data, IngestLimits(max_rows=10, max_columns=5, max_uncompressed_bytes=50_000))
    assert error.extra["limit"] == "uncompressed_bytes" and "50,000" in error.message


def test_a_dictionary_that_would_expand_past_the_limit_is_refused_before_it_is_expanded():
    # 10 rows of one 1 MiB string: a 1 MiB dictionary page in the footer's sizes, 10 MiB expanded.
    data = parquet(table(10, ward=repeated("A" * (1 << 20), 10)), compression="zstd")
    limits = IngestLimits(max_rows=10, max_columns=5, max_uncompressed_bytes=4 << 20)
    assert pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0).total_byte_size < limits.max_uncompressed_bytes
    error = too_large(data, limits)
    assert error.extra["limit"] == "uncompressed_bytes" and "once uncompressed" in error.message


def test_a_million_rows_of_one_huge_repeated_string_is_refused_at_the_default_limits():
    data = parquet(table(1_000_000, ward=repeated("A" * (1 << 20), 1_000_000)), compression="zstd")
    assert len(data) < 100_000  # a terabyte of text, expanded
    assert too_large(data, IngestLimits()).extra["limit"] == "uncompressed_bytes"


def test_parquet_data_is_decoded_in_bounded_batches_of_declared_columns_only(monkeypatch):
    calls = []
    real = pq.ParquetFile.iter_batches

    def spy(self, *args, **kwargs):
        calls.append(kwargs)
        yield from real(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    # An undeclared column holding a dictionary bomb is never decoded, so it costs nothing.
    bomb = repeated("Z" * (1 << 20), 200_000)
    result = ingest(parquet({**table(200_000), "notes": bomb}, compression="zstd"), SPECS)
    assert result.row_count == 200_000 and result.ignored_columns == ["notes"]
    (call,) = calls
    assert call["batch_size"] == ingest_module.PARQUET_BATCH_ROWS and set(call["columns"]) == {"age", "ward", "insured"}


@pytest.mark.parametrize(
    "data, limit",
    [
        (parquet(table(11)), "rows"),
        (parquet(table(10, ward=pa.array(["A" * 10_000] * 10))), "uncompressed_bytes"),
    ],
    ids=["rows", "bytes"],
)
def test_what_is_decoded_is_counted_too_in_case_the_footer_lies(monkeypatch, data, limit):
    monkeypatch.setattr(ingest_module, "_check_parquet_footer", lambda metadata, limits: None)
    error = too_large(data, IngestLimits(max_rows=10, max_columns=5, max_uncompressed_bytes=64 * 1024))
    assert error.extra["limit"] == limit
    if limit == "rows":
        assert error.message == "The file has more than 10 rows; the limit is 10 rows."


def test_a_nested_declared_column_is_refused_by_name():
    data = parquet({"age": pa.array([[1.0], [2.0]]), "ward": ["A", "B"], "insured": [True, False]})
    with pytest.raises(UploadRejected) as caught:
        ingest(data, SPECS)
    assert caught.value.problems == ["column 'age': holds nested values (list<element: double>), not one value per row"]


def test_a_parquet_file_within_the_limits_is_read_as_before():
    result = ingest(parquet(table(10)), SPECS, limits=SMALL)
    assert result.row_count == 10 and result.frame["ward"].tolist() == ["A"] * 10
    assert result.frame["age"].dtype == np.float64 and result.frame["insured"].all()


# --- CSV ------------------------------------------------------------------------------------


def test_a_csv_header_longer_than_the_limit_is_refused_without_parsing(monkeypatch):
    import pandas as pd

    def never(*args, **kwargs):
        raise AssertionError("the CSV was parsed")

    monkeypatch.setattr(pd, "read_csv", never)
    header = ",".join(["age", "ward", "insured"] + [f"column{i}" for i in range(20)])
    error = too_large(f"{header}\n1,A,yes\n".encode())
    assert error.message == "The CSV header row is longer than 64 bytes, the limit for the header row."
    assert error.extra == {"limit": "header_bytes", "maximum": 64}


def test_a_header_of_a_million_columns_is_refused_at_the_default_limits():
    header = ",".join(["age", "ward", "insured"] + [f"c{i}" for i in range(1_000_000)])
    error = too_large((header + "\n34,A,yes\n").encode(), IngestLimits())
    assert error.extra["limit"] == "header_bytes" and "131,072 bytes" in error.message


def test_a_quoted_header_spanning_lines_is_measured_as_one_record():
    # The first physical line is short; the header record goes on past the limit.
    header = 'age,"ward\n' + "x" * 100 + '",insured'
    assert too_large(f"{header}\n1,A,yes\n".encode()).extra["limit"] == "header_bytes"


def test_a_short_header_with_too_many_columns_is_refused():
    error = too_large(b"age,ward,insured,a,b,c\n1,A,yes,1,2,3\n")
    assert error.extra == {"limit": "columns", "maximum": 5, "found": 6}
    assert "6 columns" in error.message and "5 columns" in error.message


def test_a_header_exactly_at_the_byte_limit_is_accepted():
    header = "age,ward,insured," + "x" * (63 - len("age,ward,insured,"))
    assert len(header) + 1 == 64
    assert ingest(f"{header}\n1,A,yes,z\n".encode(), SPECS, limits=SMALL).row_count == 1


def test_a_csv_with_more_rows_than_the_limit_is_refused():
    error = too_large(b"age,ward,insured\n" + b"1,A,yes\n" * 11)
    assert error.extra["limit"] == "rows" and "10 rows" in error.message
    assert ingest(b"age,ward,insured\n" + b"1,A,yes\n" * 10, SPECS, limits=SMALL).row_count == 10


def test_the_limits_come_from_the_settings(settings):
    settings.CLOAKROOM_MAX_UPLOAD_ROWS = 7
    settings.CLOAKROOM_MAX_UPLOAD_COLUMNS = 8
    settings.CLOAKROOM_MAX_UPLOAD_UNCOMPRESSED_BYTES = 9
    settings.CLOAKROOM_MAX_CSV_HEADER_BYTES = 10
    assert IngestLimits.from_settings() == IngestLimits(7, 8, 9, 10)


def test_the_defaults_are_the_documented_ones():
    from django.conf import settings

    assert IngestLimits() == IngestLimits(1_000_000, 1_000, 256 * 1024 * 1024, 128 * 1024)
    assert IngestLimits.from_settings() == IngestLimits()
    assert settings.CLOAKROOM_MAX_UPLOAD_ROWS == 1_000_000


# --- Through the API and the page: a 400 naming the file, nothing stored ---------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "setting, value, data, name, limit",
    [
        ("CLOAKROOM_MAX_UPLOAD_ROWS", 2, GOOD_CSV, "data.csv", "rows"),
        ("CLOAKROOM_MAX_UPLOAD_COLUMNS", 3, GOOD_CSV, "data.csv", "columns"),
        ("CLOAKROOM_MAX_CSV_HEADER_BYTES", 10, GOOD_CSV, "data.csv", "header_bytes"),
        ("CLOAKROOM_MAX_UPLOAD_ROWS", 9, parquet(table(10)), "data.parquet", "rows"),
        ("CLOAKROOM_MAX_UPLOAD_UNCOMPRESSED_BYTES", 100, parquet(table(10)), "data.parquet", "uncompressed_bytes"),
    ],
)
def test_over_a_limit_the_api_answers_400_naming_file_and_stores_nothing(
    owner_client, private_storage, settings, setting, value, data, name, limit
):
    setattr(settings, setting, value)
    response = upload(owner_client, data, name=name)
    assert response.status_code == 400, response.content
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert error["code"] == "file_too_large" and list(error["fields"]) == ["file"]
    assert error["limit"] == limit and error["maximum"] == value
    assert error["fields"]["file"] == [error["message"]]
    assert "does not match the declared schema" not in error["message"]
    assert_nothing_stored(private_storage)


@pytest.mark.django_db
def test_over_a_limit_the_page_shows_the_reason_beside_the_file_field(owner, private_storage, settings):
    settings.CLOAKROOM_MAX_UPLOAD_ROWS = 2
    client = Client()
    client.force_login(owner)
    handle = io.BytesIO(GOOD_CSV)
    handle.name = "data.csv"
    form = {
        "title": "Clinic visits",
        "epsilon_cap": "5",
        "delta_cap": "0",
        "price_per_epsilon": "1",
        "file": handle,
        "columns-TOTAL_FORMS": "1",
        "columns-INITIAL_FORMS": "0",
        "columns-MIN_NUM_FORMS": "0",
        "columns-MAX_NUM_FORMS": "1000",
        "columns-0-name": "age",
        "columns-0-kind": "numeric",
        "columns-0-lower": "0",
        "columns-0-upper": "120",
    }
    response = client.post("/datasets/new/", form)
    assert response.status_code == 400
    page = response.content.decode()
    assert "the limit is 2 rows" in page.split('id="id_file_error"', 1)[1].split("</small>", 1)[0]
    assert_nothing_stored(private_storage)
