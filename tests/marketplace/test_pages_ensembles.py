"""The ensemble pages: the catalogue (linked in the navigation), an ensemble's page (members, schema,
label and classes, price, how it works), and an owner's actions on their DP dataset's page (create an
ensemble from it, add it to one, take it out), through the same services as the API. Real PostgreSQL,
the Django test client; the ensemble of three owners is built through the API (tests/fixtures/pate.py)."""

from __future__ import annotations

import io
import json

import pytest
from django.urls import reverse

from marketplace.models import Ensemble, EnsembleMember
from tests.compute.views.test_pages import by_id, field_block, find_all, logged_in
from tests.conftest import client_for
from tests.factories import UserFactory
from tests.fixtures.pate import PATE_COLUMNS, pate_rows

pytestmark = pytest.mark.django_db


def owner_dataset(user, title: str, columns=PATE_COLUMNS, delta_cap: str = "0.00001") -> int:
    """A published DP dataset of ``user``'s through the API."""
    client = client_for(user)
    text, _ = pate_rows(50, seed=7)
    upload = io.BytesIO(text.encode())
    upload.name = "rows.csv"
    meta = {"title": title, "epsilon_cap": "10", "delta_cap": delta_cap, "price_per_epsilon": "10", "columns": columns}
    response = client.post("/api/v1/datasets/", {"file": upload, "metadata": json.dumps(meta)}, format="multipart")
    assert response.status_code == 201, response.content
    dataset_id = response.json()["id"]
    assert client.post(f"/api/v1/datasets/{dataset_id}/publish/").status_code == 200
    return dataset_id


def test_the_catalogue_lists_each_ensemble_with_its_members_price_and_label(client, pate_ensemble):
    html = client.get(reverse("ensemble-catalogue")).content.decode()
    table = find_all(html, lambda tag, attrs: tag == "table")[0]
    assert f'href="{reverse("ensemble-detail", args=[pate_ensemble["id"]])}"' in table and ">Clinics</a>" in table
    assert '<td class="num members">3</td>' in table
    assert "0.10 credits" in table and "outcome (low, high)" in table and "age, region, member" in table
    # The navigation links it beside the datasets and the models, marked as the current page here.
    nav = find_all(html, lambda tag, attrs: tag == "nav" and attrs.get("aria-label") == "Main")[0]
    assert nav.index(">Models</a>") < nav.index('aria-current="page">Ensembles</a>')


def test_an_empty_catalogue_says_how_an_ensemble_is_made(client, db):
    html = client.get(reverse("ensemble-catalogue")).content.decode()
    assert "No ensemble is listed yet" in html


def test_the_ensemble_page_shows_members_schema_label_classes_price_and_how_it_works(client, pate_ensemble):
    html = client.get(reverse("ensemble-detail", args=[pate_ensemble["id"]])).content.decode()
    members = find_all(html, lambda tag, attrs: tag == "table" and "ensemble-members" in (attrs.get("class") or ""))[0]
    for i in range(3):
        assert f">Clinic {i}</a>" in members and f"<td>clinic{i}</td>" in members
    schema = find_all(html, lambda tag, attrs: tag == "table" and "ensemble-schema" in (attrs.get("class") or ""))[0]
    assert '<th scope="row">age</th><td>numeric</td><td>0 to 100</td>' in schema
    assert "<td>north, south, east</td>" in schema and '<th scope="row">member</th><td>boolean</td>' in schema
    assert 'outcome <span class="badge">label</span>' in schema and '<td class="classes">low, high</td>' in schema
    assert "0.10 credits per answered label" in html
    how = find_all(html, lambda tag, attrs: "how-it-works" in (attrs.get("class") or ""))[0]
    assert "the teachers vote" in how and "only a noisy majority label leaves" in how
    assert "Every member dataset is charged the same epsilon" in how
    # Anonymous visitors are asked to log in; no job form.
    assert "to label your rows with this ensemble" in html and 'id="pate-form"' not in html


def test_a_member_that_left_is_no_longer_listed_and_an_unknown_ensemble_is_a_404(client, pate_ensemble, pate_owners):
    EnsembleMember.objects.filter(dataset_id=pate_ensemble["dataset_ids"][1]).update(left_at="2026-01-01T00:00:00Z")
    html = client.get(reverse("ensemble-detail", args=[pate_ensemble["id"]])).content.decode()
    assert ">Clinic 0</a>" in html and ">Clinic 1</a>" not in html
    assert client.get(reverse("ensemble-detail", args=[999999])).status_code == 404


def test_the_owner_sees_the_ensemble_section_on_a_member_dataset_and_others_do_not(pate_ensemble, pate_owners, buyer):
    url = reverse("dataset-detail", args=[pate_ensemble["dataset_ids"][0]])
    html = logged_in(pate_owners[0]).get(url).content.decode()
    section = by_id(html, "ensembles")
    assert "A member of" in section and ">Clinics</a>" in section
    leave = reverse("ensemble-leave", args=[pate_ensemble["dataset_ids"][0], pate_ensemble["id"]])
    assert f'action="{leave}"' in section and "create-ensemble-form" in section
    assert 'id="ensembles"' not in logged_in(buyer).get(url).content.decode()
    assert 'id="ensembles"' not in logged_in(pate_owners[1]).get(url).content.decode()


def test_an_owner_creates_an_ensemble_from_their_dataset_through_the_form(db):
    owner = UserFactory(username="dora", is_owner=True)
    dataset_id = owner_dataset(owner, "Dora's clinic")
    html = logged_in(owner).get(reverse("dataset-detail", args=[dataset_id])).content.decode()
    # The label control offers the categorical and boolean columns, the declared label chosen.
    label = field_block(by_id(html, "ensembles"), "label")
    assert '<option value="outcome" selected>' in label and 'value="member"' in label and 'value="age"' not in label
    response = logged_in(owner).post(
        reverse("ensemble-create", args=[dataset_id]),
        {"title": "Dora's ensemble", "description": "", "price_per_label": "0.25", "label": "outcome"},
    )
    ensemble = Ensemble.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("ensemble-detail", args=[ensemble.pk])
    assert ensemble.label["name"] == "outcome" and str(ensemble.price_per_label) == "0.25"
    assert list(ensemble.members.values_list("dataset_id", flat=True)) == [dataset_id]


def test_a_bad_create_form_is_redrawn_with_the_errors_beside_the_controls_and_nothing_written(db):
    owner = UserFactory(username="dora", is_owner=True)
    dataset_id = owner_dataset(owner, "Dora's clinic")
    response = logged_in(owner).post(
        reverse("ensemble-create", args=[dataset_id]), {"title": "", "price_per_label": "-1", "label": "outcome"}
    )
    assert response.status_code == 400
    section = by_id(response.content.decode(), "ensembles")
    assert "field-error" in field_block(section, "title") and "field-error" in field_block(section, "price_per_label")
    # A delta cap of 0: the service refuses, its message shown on the form.
    zero = owner_dataset(owner, "Pure", delta_cap="0")
    html = logged_in(owner).get(reverse("dataset-detail", args=[zero])).content.decode()
    assert "only a dataset listed with a δ cap above 0 can join" in by_id(html, "ensembles")
    refused = logged_in(owner).post(
        reverse("ensemble-create", args=[zero]), {"title": "Pure", "price_per_label": "1", "label": "outcome"}
    )
    assert refused.status_code == 400 and "delta cap is 0" in refused.content.decode()
    assert not Ensemble.objects.exists()


def test_another_owner_adds_a_dataset_of_the_same_schema_through_the_form(pate_ensemble):
    owner = UserFactory(username="erin", is_owner=True)
    dataset_id = owner_dataset(owner, "Erin's clinic")
    html = logged_in(owner).get(reverse("dataset-detail", args=[dataset_id])).content.decode()
    assert f'<option value="{pate_ensemble["id"]}">Clinics (#{pate_ensemble["id"]})</option>' in html
    response = logged_in(owner).post(reverse("ensemble-join", args=[dataset_id]), {"ensemble": pate_ensemble["id"]})
    assert response.status_code == 302
    assert EnsembleMember.objects.filter(ensemble_id=pate_ensemble["id"], dataset_id=dataset_id).exists()


def test_a_schema_mismatch_is_shown_beside_the_ensemble_control_naming_the_column(pate_ensemble):
    owner = UserFactory(username="erin", is_owner=True)
    wider = [dict(c, upper=120) if c["name"] == "age" else c for c in PATE_COLUMNS]
    dataset_id = owner_dataset(owner, "Erin's clinic", columns=wider)
    response = logged_in(owner).post(reverse("ensemble-join", args=[dataset_id]), {"ensemble": pate_ensemble["id"]})
    assert response.status_code == 400
    block = field_block(by_id(response.content.decode(), "ensembles"), "ensemble")
    assert "column &#x27;age&#x27; is declared numeric in [0, 120] here and numeric in [0, 100]" in block
    assert not EnsembleMember.objects.filter(dataset_id=dataset_id).exists()


def test_an_owner_takes_their_dataset_out_and_no_one_else_can(pate_ensemble, pate_owners):
    dataset_id = pate_ensemble["dataset_ids"][2]
    leave = reverse("ensemble-leave", args=[dataset_id, pate_ensemble["id"]])
    # Another owner (even a member's) cannot: the dataset is not theirs.
    assert logged_in(pate_owners[0]).post(leave).status_code == 404
    response = logged_in(pate_owners[2]).post(leave)
    assert response.status_code == 302 and response["Location"] == reverse("dataset-detail", args=[dataset_id])
    assert EnsembleMember.objects.get(dataset_id=dataset_id).left_at is not None
    html = logged_in(pate_owners[2]).get(reverse("ensemble-detail", args=[pate_ensemble["id"]])).content.decode()
    assert ">Clinic 2</a>" not in html
    # Leaving twice: not a member any more.
    assert logged_in(pate_owners[2]).post(leave).status_code == 404
    # Nor can another owner create an ensemble from someone else's dataset.
    other = logged_in(pate_owners[0]).post(
        reverse("ensemble-create", args=[dataset_id]), {"title": "Mine", "price_per_label": "1", "label": "outcome"}
    )
    assert other.status_code == 404
