"""Publishing a dataset that is on sale already: a 409 ``already_published`` in the one error shape,
through the service, the API and the owner's page, and nothing about the dataset changes."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from config.exceptions import Conflict
from marketplace.models import Dataset
from marketplace.services import dataset_publish
from tests.factories import DatasetFactory

pytestmark = pytest.mark.django_db


def test_the_api_answers_409_already_published_and_changes_nothing(owner_client, owner):
    dataset = DatasetFactory(owner=owner, status=Dataset.Status.PUBLISHED)
    before = Dataset.objects.values("status", "published_at", "updated_at").get(pk=dataset.pk)

    response = owner_client.post(f"/api/v1/datasets/{dataset.pk}/publish/")

    assert response.status_code == 409
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == "already_published"
    assert body["error"]["message"] == (
        f"Dataset {dataset.pk} is already published: it is in the catalogue, and publishing it again changes nothing."
    )
    assert body["error"]["fields"] == {}
    assert Dataset.objects.values("status", "published_at", "updated_at").get(pk=dataset.pk) == before


def test_another_users_published_dataset_is_still_a_404_not_a_409(outsider_client, owner):
    dataset = DatasetFactory(owner=owner, status=Dataset.Status.PUBLISHED)
    response = outsider_client.post(f"/api/v1/datasets/{dataset.pk}/publish/")
    assert response.status_code == 404


def test_a_draft_and_an_owner_suspension_still_publish_with_200(owner_client, owner):
    draft = DatasetFactory(owner=owner, status=Dataset.Status.DRAFT)
    suspended = DatasetFactory(owner=owner, status=Dataset.Status.SUSPENDED, suspended_by_owner=True)
    for dataset in (draft, suspended):
        response = owner_client.post(f"/api/v1/datasets/{dataset.pk}/publish/")
        assert response.status_code == 200, response.content
        assert response.json()["status"] == "published"


def test_a_publish_that_loses_the_race_to_another_is_told_it_is_published_already(owner, monkeypatch):
    """The status is read, then changed by a conditional UPDATE; when another request published the
    draft in between, the UPDATE matches nothing and the caller gets the 409, not a silent 200."""
    dataset = DatasetFactory(owner=owner, status=Dataset.Status.DRAFT)
    original_filter = Dataset.objects.filter

    def filter_after_the_other_request(*args, **kwargs):
        # The other request wins right after this one read the draft: publish it underneath.
        if kwargs.get("status") == Dataset.Status.DRAFT and kwargs.get("pk") == dataset.pk:
            Dataset.objects.all().filter(pk=dataset.pk).update(status=Dataset.Status.PUBLISHED)
        return original_filter(*args, **kwargs)

    monkeypatch.setattr(Dataset.objects, "filter", filter_after_the_other_request)
    with pytest.raises(Conflict) as raised:
        dataset_publish(owner=owner, dataset_id=dataset.pk)
    assert raised.value.code == "already_published"


def test_the_owners_page_says_so_as_information_not_as_an_error(owner):
    dataset = DatasetFactory(owner=owner, status=Dataset.Status.PUBLISHED)
    client = Client()
    client.force_login(owner)

    response = client.post(reverse("dataset-publish", args=[dataset.pk]), follow=True)

    assert response.status_code == 200
    page = response.content.decode()
    assert "is already published" in page
    assert 'class="message message-info" role="status"' in page
    assert "message-error" not in page
