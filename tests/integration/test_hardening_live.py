"""Issue 11 through a live gunicorn (two sync workers, the Procfile's --timeout): oversized bodies are
413s (defect 3), and a Parquet decompression bomb (defect 2) and a CSV header of a million columns
(defect 4) are refused before their data is parsed, naming the limit, with nothing stored.

The web server runs on this test's PostgreSQL database, so the rows the tests make are committed
(``transaction=True``) and the server's writes, or their absence, are visible here.
"""

from __future__ import annotations

import io
import time
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from django.conf import settings

from accounts.services import api_key_create
from marketplace.models import Column, Dataset
from tests.config.test_hardening_request_size import ENDPOINTS
from tests.factories import DatasetFactory, UserFactory
from tests.integration.live import ProcessPool, live_database_url, site_env, start_web
from tests.marketplace.test_api_datasets import METADATA

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
TIMEOUT = 60


@pytest.fixture(scope="module")
def site(django_db_setup, django_db_blocker, tmp_path_factory):
    root = tmp_path_factory.mktemp("hardening")
    with django_db_blocker.unblock():
        database_url = live_database_url()
    env = site_env(root, f"hard-{uuid.uuid4().hex[:8]}", DATABASE_URL=database_url, CLOAKROOM_CACHE_URL="locmem://")
    pool = ProcessPool(log_dir=tmp_path_factory.mktemp("hardening-logs"))
    try:
        url = start_web(pool, env)
        yield url, root / "media", pool
    finally:
        pool.stop_all()
        print(pool.logs())


@pytest.fixture
def owner_key(db):
    owner = UserFactory(username=f"owner-{uuid.uuid4().hex[:6]}", is_owner=True, is_buyer=True, credits="100")
    return api_key_create(user=owner, name="live")[1], owner


def stored_files(media) -> list:
    return [p for p in media.rglob("*") if p.is_file()] if media.exists() else []


def assert_nothing_stored(media) -> None:
    assert Dataset.objects.count() == 0 and Column.objects.count() == 0
    assert stored_files(media) == []


def upload(url: str, key: str, data: bytes, name: str) -> tuple[requests.Response, float]:
    import json

    started = time.monotonic()
    response = requests.post(
        f"{url}/api/v1/datasets/",
        headers={"Authorization": f"Bearer {key}"},
        files={"file": (name, data, "application/octet-stream"), "metadata": (None, json.dumps(METADATA))},
        timeout=TIMEOUT,
    )
    return response, time.monotonic() - started


@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_body_over_5_mib_is_a_413_in_the_error_shape_through_gunicorn(site, owner_key, path):
    url, _, _ = site
    key, owner = owner_key
    DatasetFactory(owner=owner)
    body = b'{"name": "' + b"x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE + b'"}'
    response = requests.post(
        f"{url}{path}",
        data=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 413, response.text[:500]
    error = response.json()["error"]
    assert set(response.json()) == {"error"}
    assert error["code"] == "payload_too_large" and error["fields"] == {}
    assert error["limit_bytes"] == settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def parquet_bomb(rows: int = 50_000_000) -> bytes:
    """A few hundred KB of Parquet declaring ``rows`` rows of the declared columns (one value each)."""
    chunk = 5_000_000
    schema = pa.schema([("age", pa.float64()), ("ward", pa.string()), ("insured", pa.bool_())])
    batch = pa.table(
        {
            "age": pa.array(np.full(chunk, 30.0)),
            "ward": pa.DictionaryArray.from_arrays(pa.array(np.zeros(chunk, np.int32)), pa.array(["A"])).cast(
                pa.string()
            ),
            "insured": pa.array(np.ones(chunk, bool)),
        },
        schema=schema,
    )
    sink = io.BytesIO()
    with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
        for _ in range(rows // chunk):
            writer.write_table(batch)
    return sink.getvalue()


def test_a_parquet_decompression_bomb_is_refused_from_its_footer_and_nothing_is_stored(site, owner_key):
    url, media, _ = site
    bomb = parquet_bomb()
    assert len(bomb) < 1024 * 1024 and pq.ParquetFile(io.BytesIO(bomb)).metadata.num_rows == 50_000_000
    response, elapsed = upload(url, owner_key[0], bomb, "bomb.parquet")
    print(f"parquet bomb ({len(bomb)} bytes, 5e7 rows): {response.status_code} in {elapsed:.3f}s")
    assert response.status_code == 400, response.text[:500]
    error = response.json()["error"]
    assert error["code"] == "file_too_large" and "file" in error["fields"]
    assert "50,000,000 rows" in error["message"] and "1,000,000 rows" in error["message"]
    assert error["limit"] == "rows" and error["maximum"] == 1_000_000
    assert_nothing_stored(media)


def test_a_csv_header_of_a_million_columns_is_refused_naming_the_limit_and_nothing_is_stored(site, owner_key):
    url, media, _ = site
    header = ",".join(["age", "ward", "insured"] + [f"c{i}" for i in range(1_000_000)])
    data = (header + "\n34,A,yes\n").encode()
    response, elapsed = upload(url, owner_key[0], data, "wide.csv")
    print(f"wide CSV header ({len(data)} bytes, 1e6 columns): {response.status_code} in {elapsed:.3f}s")
    assert response.status_code == 400, response.text[:500]
    error = response.json()["error"]
    assert error["code"] == "file_too_large" and "file" in error["fields"]
    assert "header row" in error["message"] and "131,072 bytes" in error["message"]
    assert error["limit"] == "header_bytes" and error["maximum"] == 128 * 1024
    assert_nothing_stored(media)


def test_a_csv_header_within_the_bytes_but_over_the_column_limit_is_refused(site, owner_key):
    url, media, _ = site
    header = ",".join(["age", "ward", "insured"] + [f"{i}" for i in range(2_000)])
    response, _ = upload(url, owner_key[0], (header + "\n34,A,yes\n").encode(), "wide.csv")
    assert response.status_code == 400, response.text[:500]
    error = response.json()["error"]
    assert error["limit"] == "columns" and "2,003 columns" in error["message"] and "1,000 columns" in error["message"]
    assert_nothing_stored(media)


def test_the_web_server_still_answers_after_the_rejections(site):
    url, _, pool = site
    assert requests.get(f"{url}/api/v1/health/", timeout=TIMEOUT).status_code in (200, 503)
    assert all(process.alive() for process in pool.processes)
    assert "WORKER TIMEOUT" not in pool.logs()
