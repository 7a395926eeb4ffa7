"""Ensembles through the API: create from a first dataset, add others' datasets with the same
declaration (a 400 naming the column otherwise), leave, and list members, schema and price."""

from __future__ import annotations

import copy
from decimal import Decimal

import pytest

from marketplace.models import Dataset, EnsembleMember
from tests.conftest import client_for
from tests.factories import DatasetFactory, UserFactory

pytestmark = pytest.mark.django_db

COLUMNS = [
    {"name": "age", "kind": "numeric", "lower": 0, "upper": 100},
    {"name": "region", "kind": "categorical", "categories": ["north", "south", "east"]},
    {"name": "member", "kind": "boolean"},
    {"name": "outcome", "kind": "categorical", "categories": ["low", "high"], "is_label": True},
]


def labelled(owner, columns=None, **kw):
    return DatasetFactory(owner=owner, columns=copy.deepcopy(columns or COLUMNS), **kw)


@pytest.fixture
def dave(db):
    return UserFactory(username="dave", is_owner=True)


@pytest.fixture
def dave_client(dave):
    return client_for(dave)


def create(client, dataset, **extra):
    body = {"title": "Outcomes", "description": "Three clinics", "dataset": dataset.pk, "price_per_label": "0.50"}
    return client.post("/api/v1/ensembles/", {**body, **extra}, format="json")


def test_it_creates_an_ensemble_with_its_first_member_and_the_schema(owner, owner_client):
    dataset = labelled(owner)
    response = create(owner_client, dataset)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["title"] == "Outcomes" and body["price_per_label"] == "0.50" and body["owner"] == "alice"
    assert body["label"] == {"name": "outcome", "kind": "categorical", "categories": ["low", "high"]}
    assert [c["name"] for c in body["features"]] == ["age", "region", "member"]
    assert body["features"][0] == {"name": "age", "kind": "numeric", "lower": 0.0, "upper": 100.0}
    assert [m["dataset"] for m in body["members"]] == [dataset.pk]


def test_another_owner_adds_a_dataset_with_the_same_declaration(owner, owner_client, dave, dave_client, anon):
    ensemble = create(owner_client, labelled(owner)).json()
    theirs = labelled(dave)
    response = dave_client.post(f"/api/v1/ensembles/{ensemble['id']}/members/", {"dataset": theirs.pk}, format="json")
    assert response.status_code == 201, response.content
    assert [m["owner"] for m in response.json()["members"]] == ["alice", "dave"]
    listed = anon.get("/api/v1/ensembles/").json()
    assert listed["count"] == 1 and len(listed["results"][0]["members"]) == 2


@pytest.mark.parametrize(
    ("change", "column"),
    [
        (lambda cols: cols[0].update(upper=120), "age"),
        (lambda cols: cols[1].update(categories=["north", "south"]), "region"),
        (lambda cols: cols[2].update(kind="categorical", categories=["y", "n"]), "member"),
        (lambda cols: cols[3].update(categories=["low", "mid", "high"]), "outcome"),
        (lambda cols: cols.pop(1), "region"),
        (lambda cols: cols.append({"name": "zip", "kind": "numeric", "lower": 0, "upper": 9}), "zip"),
    ],
)
def test_a_dataset_whose_declaration_differs_is_refused_naming_the_column(
    owner, owner_client, dave, dave_client, change, column
):
    ensemble = create(owner_client, labelled(owner)).json()
    columns = copy.deepcopy(COLUMNS)
    change(columns)
    theirs = labelled(dave, columns)
    response = dave_client.post(f"/api/v1/ensembles/{ensemble['id']}/members/", {"dataset": theirs.pk}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "schema_mismatch" and error["column"] == column
    assert f"'{column}'" in error["message"] and "dataset" in error["fields"]
    assert not EnsembleMember.objects.filter(dataset=theirs).exists()


def test_a_label_that_is_numeric_is_refused_naming_label(owner, owner_client):
    dataset = labelled(owner)
    response = create(owner_client, dataset, label="age")
    assert response.status_code == 400
    assert "label" in response.json()["error"]["fields"] and "'age'" in response.json()["error"]["message"]


def test_a_dataset_without_a_label_column_asks_for_one(owner, owner_client):
    columns = [dict(c, is_label=False) for c in COLUMNS]
    response = create(owner_client, labelled(owner, columns))
    assert response.status_code == 400 and response.json()["error"]["code"] == "no_label"
    response = create(owner_client, labelled(owner, columns), label="outcome")
    assert response.status_code == 201 and response.json()["label"]["name"] == "outcome"


def test_a_dataset_without_delta_cannot_join(owner, owner_client):
    response = create(owner_client, labelled(owner, delta_cap=Decimal(0)))
    assert response.status_code == 400 and "delta" in response.json()["error"]["message"]


def test_another_owners_dataset_is_a_404_and_a_draft_a_409(owner, dave_client, owner_client):
    assert create(dave_client, labelled(owner)).status_code == 404
    assert create(owner_client, labelled(owner, status=Dataset.Status.DRAFT)).status_code == 409


def test_a_buyer_cannot_create_an_ensemble(owner, buyer_client):
    assert create(buyer_client, labelled(owner)).status_code == 403


def test_a_dataset_cannot_join_twice(owner, owner_client):
    first = labelled(owner)
    ensemble = create(owner_client, first).json()
    response = owner_client.post(f"/api/v1/ensembles/{ensemble['id']}/members/", {"dataset": first.pk}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "already_member"


def test_a_member_leaves_and_may_join_again(owner, owner_client, dave, dave_client):
    ensemble = create(owner_client, labelled(owner)).json()
    theirs = labelled(dave)
    url = f"/api/v1/ensembles/{ensemble['id']}/members/"
    dave_client.post(url, {"dataset": theirs.pk}, format="json")
    # Only the dataset's owner may take it out: to anyone else it is not there.
    assert owner_client.delete(f"{url}{theirs.pk}/").status_code == 404
    assert dave_client.delete(f"{url}{theirs.pk}/").status_code == 204
    assert dave_client.delete(f"{url}{theirs.pk}/").status_code == 404
    assert [m["dataset"] for m in dave_client.get(f"/api/v1/ensembles/{ensemble['id']}/").json()["members"]] == [
        ensemble["members"][0]["dataset"]
    ]
    row = EnsembleMember.objects.get(dataset=theirs)
    assert row.left_at is not None and row.left_at >= row.joined_at
    assert dave_client.post(url, {"dataset": theirs.pk}, format="json").status_code == 201
    assert EnsembleMember.objects.filter(dataset=theirs).count() == 2


def test_an_unknown_ensemble_is_a_404(anon, owner_client, owner):
    assert anon.get("/api/v1/ensembles/999999/").status_code == 404
    ds = labelled(owner)
    assert owner_client.post("/api/v1/ensembles/999999/members/", {"dataset": ds.pk}, format="json").status_code == 404
