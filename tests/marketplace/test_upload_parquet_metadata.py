"""A Parquet file's pandas metadata is the uploader's own JSON: a broken one is a 400, never a 500."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.marketplace.test_api_datasets import assert_nothing_stored, upload

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """The cast's passwords are hashed with a fast hasher; these tests are not about hashing cost."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def parquet_with_pandas_metadata(metadata: bytes) -> bytes:
    table = pa.table({"age": [30.5, 40.0], "ward": ["B", "A"], "insured": [True, False]})
    sink = io.BytesIO()
    pq.write_table(table.replace_schema_metadata({b"pandas": metadata}), sink)
    return sink.getvalue()


@pytest.mark.parametrize(
    "metadata",
    [b"not json", b"\xff\xfe{}", b"[1, 2]", b'{"index_columns": 5}', b'{"index_columns": [], "columns": 7}'],
    ids=["not-json", "not-utf8", "a-list", "index-columns-a-number", "columns-a-number"],
)
def test_a_parquet_file_with_broken_pandas_metadata_is_refused_as_unreadable(owner_client, private_storage, metadata):
    response = upload(owner_client, parquet_with_pandas_metadata(metadata), name="data.parquet")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "unreadable_file", error
    assert "Parquet" in error["message"]
    assert_nothing_stored(private_storage)
