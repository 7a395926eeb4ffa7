"""Datasets over the API: upload (CSV and Parquet), encryption at rest, publishing, the catalogue."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from marketplace import storage
from marketplace.models import Column, Dataset
from marketplace.services import purchase_create
from tests.factories import DatasetFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """The cast's passwords are hashed with a fast hasher; these tests are not about hashing cost."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


URL = "/api/v1/datasets/"

METADATA = {
    "title": "Clinic visits",
    "description": "Visits to a small clinic",
    "mode": "dp",
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
# "notes" is not declared, so it must never reach storage.
GOOD_CSV = b"age,ward,insured,notes\n34,A,yes,secret-note-1\n71,B,no,secret-note-2\n18,A,true,secret-note-3\n"


def parquet_bytes(columns: dict) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink)
    return sink.getvalue()


GOOD_PARQUET = parquet_bytes(
    {"age": [30.5, 40.0], "ward": ["B", "A"], "insured": [True, False], "secret": ["secret-x", "secret-y"]}
)


def upload(client, data: bytes, *, name: str = "data.csv", metadata=None):
    """POST a dataset; ``metadata`` may be a dict (sent as JSON) or a raw string (sent as is)."""
    handle = io.BytesIO(data)
    handle.name = name
    meta = metadata if isinstance(metadata, str) else json.dumps(METADATA if metadata is None else metadata)
    return client.post(URL, {"file": handle, "metadata": meta}, format="multipart")


def stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def assert_nothing_stored(root: Path) -> None:
    assert Dataset.objects.count() == 0, "a Dataset row was written"
    assert Column.objects.count() == 0, "a Column row was written"
    assert stored_files(root) == [], "a file was written"


def decrypted_table(root: Path) -> pa.Table:
    (only,) = stored_files(root)
    return pq.read_table(io.BytesIO(storage.decrypt_bytes(only.read_bytes())))


def test_a_csv_upload_is_a_201_draft(owner_client):
    response = upload(owner_client, GOOD_CSV)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "draft" and isinstance(body["id"], int)
    assert Dataset.objects.get(pk=body["id"]).status == Dataset.Status.DRAFT
    assert [c["name"] for c in body["columns"]] == ["age", "ward", "insured"]


def test_a_parquet_upload_is_a_201_draft(owner_client):
    response = upload(owner_client, GOOD_PARQUET, name="visits.parquet")
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "draft"
    assert Dataset.objects.get().file_format == "parquet"


def test_a_parquet_upload_is_recognised_by_its_content_whatever_its_name(owner_client):
    response = upload(owner_client, GOOD_PARQUET, name="upload.bin")
    assert response.status_code == 201
    assert Dataset.objects.get().file_format == "parquet"


def test_the_stored_csv_is_encrypted_and_holds_only_declared_columns(owner_client, private_storage):
    assert upload(owner_client, GOOD_CSV).status_code == 201
    (stored,) = stored_files(private_storage)
    raw = stored.read_bytes()
    assert raw != GOOD_CSV and b"secret-note" not in raw and b"age,ward" not in raw
    assert not raw.startswith(b"PAR1")
    table = decrypted_table(private_storage)
    assert table.column_names == ["age", "ward", "insured"]
    assert table.column("age").to_pylist() == [34.0, 71.0, 18.0]
    assert table.column("ward").to_pylist() == ["A", "B", "A"]
    assert table.column("insured").to_pylist() == [True, False, True]


def test_the_stored_parquet_is_encrypted_and_holds_only_declared_columns(owner_client, private_storage):
    assert upload(owner_client, GOOD_PARQUET, name="visits.parquet").status_code == 201
    raw = stored_files(private_storage)[0].read_bytes()
    assert raw != GOOD_PARQUET and b"PAR1" not in raw and b"secret-x" not in raw
    table = decrypted_table(private_storage)
    assert table.column_names == ["age", "ward", "insured"]
    assert table.column("age").to_pylist() == [30.5, 40.0]


def test_the_stored_file_cannot_be_read_without_the_configured_key(owner_client, private_storage, settings):
    from cryptography.fernet import Fernet
    from django.core.exceptions import ImproperlyConfigured

    assert upload(owner_client, GOOD_CSV).status_code == 201
    settings.CLOAKROOM_DATA_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(ImproperlyConfigured):
        decrypted_table(private_storage)


def test_the_upload_answer_reports_ignored_columns_but_not_the_storage_path(owner_client):
    response = upload(owner_client, GOOD_CSV)
    body = response.json()
    assert body["ingest"]["ignored_columns"] == ["notes"]
    assert Dataset.objects.get().file_path not in response.content.decode()


def test_the_owner_publishes_a_draft(owner_client):
    dataset_id = upload(owner_client, GOOD_CSV).json()["id"]
    response = owner_client.post(f"{URL}{dataset_id}/publish/")
    assert response.status_code == 200 and response.json()["status"] == "published"
    dataset = Dataset.objects.get(pk=dataset_id)
    assert dataset.status == Dataset.Status.PUBLISHED and dataset.published_at is not None


def test_publishing_twice_changes_nothing_and_the_second_time_is_a_409(owner_client):
    dataset_id = upload(owner_client, GOOD_CSV).json()["id"]
    first = owner_client.post(f"{URL}{dataset_id}/publish/").json()["published_at"]
    second = owner_client.post(f"{URL}{dataset_id}/publish/")
    assert second.status_code == 409 and second.json()["error"]["code"] == "already_published"
    assert owner_client.get(f"{URL}{dataset_id}/").json()["published_at"] == first


def test_another_user_cannot_publish_a_draft_and_gets_404(owner_client, outsider_client):
    dataset_id = upload(owner_client, GOOD_CSV).json()["id"]
    response = outsider_client.post(f"{URL}{dataset_id}/publish/")
    assert response.status_code == 404
    assert Dataset.objects.get(pk=dataset_id).status == Dataset.Status.DRAFT


def test_a_suspended_dataset_cannot_be_republished_by_its_owner(owner_client, owner):
    dataset = DatasetFactory(owner=owner, status=Dataset.Status.SUSPENDED)
    response = owner_client.post(f"{URL}{dataset.pk}/publish/")
    assert response.status_code == 409
    assert Dataset.objects.get(pk=dataset.pk).status == Dataset.Status.SUSPENDED


def test_the_catalogue_is_paginated(anon, owner, settings):
    for i in range(23):
        DatasetFactory(owner=owner, title=f"Table {i}")
    first = anon.get(URL)
    assert first.status_code == 200
    body = first.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 23 and len(body["results"]) == 20 and body["previous"] is None
    second = anon.get(body["next"]).json()
    assert len(second["results"]) == 3 and second["next"] is None and second["previous"]
    ids = {d["id"] for d in body["results"]} | {d["id"] for d in second["results"]}
    assert len(ids) == 23


@pytest.mark.parametrize("term", ["glucose", "GLUCOSE", "diabetic clinic", "hba1c"])
def test_search_matches_title_description_and_column_names(anon, owner, term):
    match = DatasetFactory(
        owner=owner,
        title="Glucose readings",
        description="From a diabetic clinic",
        columns=[{"name": "hba1c", "kind": "numeric", "lower": 0, "upper": 20}],
    )
    DatasetFactory(owner=owner, title="Unrelated")
    results = anon.get(URL, {"search": term}).json()["results"]
    assert [d["id"] for d in results] == [match.pk]


def test_search_with_no_match_is_an_empty_page(anon, dataset):
    body = anon.get(URL, {"search": "no-such-words"}).json()
    assert body["count"] == 0 and body["results"] == []


def test_mode_filters_the_catalogue(anon, owner):
    dp = DatasetFactory(owner=owner, mode=Dataset.Mode.DP)
    he = DatasetFactory(owner=owner, mode=Dataset.Mode.HE)
    assert [d["id"] for d in anon.get(URL, {"mode": "dp"}).json()["results"]] == [dp.pk]
    assert [d["id"] for d in anon.get(URL, {"mode": "he"}).json()["results"]] == [he.pk]


def test_an_unknown_mode_is_a_400_naming_mode(anon, dataset):
    response = anon.get(URL, {"mode": "plaintext"})
    assert response.status_code == 400 and "mode" in response.json()["error"]["fields"]


def test_the_detail_shows_schema_budget_and_price(buyer_client, buyer, dataset):
    purchase_create(buyer=buyer, dataset_id=dataset.pk, epsilon=Decimal("2.5"))
    body = buyer_client.get(f"{URL}{dataset.pk}/").json()
    assert body["epsilon_cap"] == "10.000000"
    assert body["epsilon_sold"] == "2.500000"
    assert body["epsilon_available"] == "7.500000"
    assert body["price_per_epsilon"] == "10.00"
    assert body["columns"] == [
        {"name": "age", "kind": "numeric", "lower": 0.0, "upper": 120.0, "categories": [], "is_label": False},
        {
            "name": "group",
            "kind": "categorical",
            "lower": None,
            "upper": None,
            "categories": ["a", "b"],
            "is_label": False,
        },
    ]


def test_the_row_count_is_hidden_from_others_unless_public(buyer_client, anon, owner):
    private = DatasetFactory(owner=owner, row_count=1234, row_count_public=False)
    public = DatasetFactory(owner=owner, row_count=99, row_count_public=True)
    for client in (buyer_client, anon):
        assert client.get(f"{URL}{private.pk}/").json()["row_count"] is None
        assert client.get(f"{URL}{public.pk}/").json()["row_count"] == 99
    listed = {d["id"]: d["row_count"] for d in anon.get(URL).json()["results"]}
    assert listed == {private.pk: None, public.pk: 99}


def test_the_owner_always_sees_the_row_count(owner_client, owner):
    private = DatasetFactory(owner=owner, row_count=1234, row_count_public=False)
    assert owner_client.get(f"{URL}{private.pk}/").json()["row_count"] == 1234


def test_another_users_draft_is_a_404_and_not_listed(owner_client, outsider_client, anon):
    dataset_id = upload(owner_client, GOOD_CSV).json()["id"]
    for client in (outsider_client, anon):
        response = client.get(f"{URL}{dataset_id}/")
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
        assert dataset_id not in [d["id"] for d in client.get(URL).json()["results"]]


def test_the_owner_sees_their_own_draft(owner_client):
    dataset_id = upload(owner_client, GOOD_CSV).json()["id"]
    assert owner_client.get(f"{URL}{dataset_id}/").status_code == 200
    assert dataset_id in [d["id"] for d in owner_client.get(URL).json()["results"]]


def test_a_suspended_dataset_is_hidden_from_everyone_but_its_owner(owner_client, buyer_client, owner):
    suspended = DatasetFactory(owner=owner, status=Dataset.Status.SUSPENDED)
    assert buyer_client.get(f"{URL}{suspended.pk}/").status_code == 404
    assert owner_client.get(f"{URL}{suspended.pk}/").status_code == 200


def test_anonymous_visitors_read_published_datasets(anon, dataset):
    assert anon.get(URL).json()["results"][0]["id"] == dataset.pk
    response = anon.get(f"{URL}{dataset.pk}/")
    assert response.status_code == 200 and response.json()["title"] == dataset.title


def test_a_missing_dataset_is_a_404_even_with_an_enormous_id(anon):
    response = anon.get(f"{URL}{10**30}/")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_an_owner_suspends_a_published_dataset_and_publishes_it_again(owner_client, buyer_client, dataset):
    dataset.status = "published"
    dataset.save()
    suspended = owner_client.post(f"/api/v1/datasets/{dataset.pk}/suspend/")
    assert suspended.status_code == 200 and suspended.json()["status"] == "suspended"
    bought = buyer_client.post("/api/v1/purchases/", {"dataset": dataset.pk, "epsilon": "1"}, format="json")
    assert bought.status_code in (404, 409)  # not on sale while suspended
    again = owner_client.post(f"/api/v1/datasets/{dataset.pk}/publish/")
    assert again.status_code == 200 and again.json()["status"] == "published"
    bought = buyer_client.post("/api/v1/purchases/", {"dataset": dataset.pk, "epsilon": "1"}, format="json")
    assert bought.status_code == 201, bought.json()


def test_an_owner_cannot_lift_an_administrators_suspension_or_suspend_someone_elses(
    owner_client, outsider_client, dataset
):
    from marketplace.services import dataset_set_status

    dataset_set_status(dataset=dataset, status="suspended")
    refused = owner_client.post(f"/api/v1/datasets/{dataset.pk}/publish/")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "dataset_suspended"
    assert outsider_client.post(f"/api/v1/datasets/{dataset.pk}/suspend/").status_code == 404


def test_a_draft_cannot_be_suspended(owner_client, dataset):
    dataset.status = "draft"
    dataset.save()
    response = owner_client.post(f"/api/v1/datasets/{dataset.pk}/suspend/")
    assert response.status_code == 409 and response.json()["error"]["code"] == "dataset_draft"
