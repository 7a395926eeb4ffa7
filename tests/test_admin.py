"""Django admin: every model's pages load, ledgers are read-only, actions go through services, and
no admin page shows a stored file's location or an API key's hash."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from accounts.models import ApiKey, CreditEntry, Wallet
from accounts.services import api_key_create
from marketplace.models import Dataset, LedgerEntry
from marketplace.services import purchase_create
from tests.factories import DatasetFactory

pytestmark = pytest.mark.django_db

CHANGELISTS = [
    "accounts_user",
    "accounts_wallet",
    "accounts_creditentry",
    "accounts_apikey",
    "marketplace_dataset",
    "marketplace_purchase",
    "marketplace_ledgerentry",
    "marketplace_ensemble",
    "compute_job",
]
READ_ONLY = [
    "accounts_wallet",
    "accounts_creditentry",
    "marketplace_purchase",
    "marketplace_ledgerentry",
    "compute_job",
]


@pytest.fixture
def market(owner, buyer):
    """A bit of everything: a dataset uploaded through the site, a purchase, a ledger row, a key."""
    client = Client()
    client.force_login(owner)
    data = {
        "title": "Uploaded data",
        "epsilon_cap": "5",
        "delta_cap": "0",
        "price_per_epsilon": "2.00",
        "columns-TOTAL_FORMS": "1",
        "columns-INITIAL_FORMS": "0",
        "columns-0-name": "age",
        "columns-0-kind": "numeric",
        "columns-0-lower": "0",
        "columns-0-upper": "120",
        "file": SimpleUploadedFile("ages.csv", b"age\n30\n40\n", content_type="text/csv"),
    }
    assert client.post(reverse("dataset-new"), data).status_code == 302
    dataset = Dataset.objects.get(title="Uploaded data")
    assert dataset.file_path
    dataset.status = Dataset.Status.PUBLISHED
    dataset.save()
    purchase = purchase_create(buyer=buyer, dataset_id=dataset.pk, epsilon=Decimal("1"))
    LedgerEntry.objects.create(
        dataset=dataset, purchase=purchase, kind=LedgerEntry.Kind.RESERVE, epsilon=Decimal("0.1")
    )
    key_row, key = api_key_create(user=buyer, name="notebook")
    return {"dataset": dataset, "purchase": purchase, "key_row": key_row, "key": key}


@pytest.mark.parametrize("model", CHANGELISTS)
def test_each_changelist_loads_for_a_superuser(admin_client, market, model):
    response = admin_client.get(reverse(f"admin:{model}_changelist"))

    assert response.status_code == 200
    assert "Cloakroom administration" in response.content.decode()


@pytest.mark.parametrize("model", READ_ONLY)
def test_ledgers_and_balances_cannot_be_added_or_deleted(admin_client, market, model):
    assert admin_client.get(reverse(f"admin:{model}_add")).status_code == 403
    changelist = admin_client.get(reverse(f"admin:{model}_changelist")).content.decode()
    assert "delete_selected" not in changelist


def test_a_purchase_change_page_is_view_only(admin_client, market):
    purchase = market["purchase"]
    url = reverse("admin:marketplace_purchase_change", args=[purchase.pk])

    page = admin_client.get(url)
    post = admin_client.post(url, {"epsilon": "9", "price": "0"})

    assert page.status_code == 200
    assert 'name="epsilon"' not in page.content.decode()
    assert post.status_code == 403
    purchase.refresh_from_db()
    assert purchase.epsilon == Decimal("1")


def test_credit_entries_cannot_be_changed_through_the_admin(admin_client, market):
    entry = CreditEntry.objects.filter(purchase=market["purchase"]).first()
    url = reverse("admin:accounts_creditentry_change", args=[entry.pk])

    response = admin_client.post(url, {"amount": "1000000"})

    assert response.status_code == 403
    assert CreditEntry.objects.get(pk=entry.pk).amount == entry.amount


def test_dataset_admin_pages_show_no_file_path(admin_client, market):
    dataset = market["dataset"]
    stored_name = dataset.file_path.rsplit("/", 1)[-1]

    for url in (
        reverse("admin:marketplace_dataset_changelist"),
        reverse("admin:marketplace_dataset_change", args=[dataset.pk]),
        reverse("admin:marketplace_dataset_changelist") + "?q=Uploaded",
    ):
        body = admin_client.get(url).content.decode()
        assert "Uploaded data" in body
        assert stored_name not in body, url
        assert ".enc" not in body, url
        assert dataset.file_sha256 not in body, url
        assert 'name="file_path"' not in body, url


def test_dataset_change_page_shows_its_columns_inline(admin_client, market):
    body = admin_client.get(reverse("admin:marketplace_dataset_change", args=[market["dataset"].pk])).content.decode()

    assert "age" in body
    assert "numeric" in body


def test_admin_suspend_action_sets_the_status(admin_client, owner):
    listed = DatasetFactory(owner=owner)
    other = DatasetFactory(owner=owner)

    response = admin_client.post(
        reverse("admin:marketplace_dataset_changelist"),
        {"action": "suspend_datasets", "_selected_action": [listed.pk]},
    )

    assert response.status_code == 302
    listed.refresh_from_db()
    other.refresh_from_db()
    assert listed.status == Dataset.Status.SUSPENDED
    assert other.status == Dataset.Status.PUBLISHED


def test_admin_publish_action_publishes_a_draft(admin_client, owner):
    draft = DatasetFactory(owner=owner, status=Dataset.Status.DRAFT)

    admin_client.post(
        reverse("admin:marketplace_dataset_changelist"),
        {"action": "publish_datasets", "_selected_action": [draft.pk]},
    )

    draft.refresh_from_db()
    assert draft.status == Dataset.Status.PUBLISHED
    assert draft.published_at is not None


def test_dataset_changelist_filters_by_status(admin_client, owner):
    DatasetFactory(owner=owner, title="Live listing")
    DatasetFactory(owner=owner, title="Waiting draft", status=Dataset.Status.DRAFT)

    body = admin_client.get(reverse("admin:marketplace_dataset_changelist") + "?status__exact=draft").content.decode()

    assert "Waiting draft" in body
    assert "Live listing" not in body


def test_api_key_admin_never_shows_the_hash_or_the_key(admin_client, market):
    row, key = market["key_row"], market["key"]

    for url in (reverse("admin:accounts_apikey_changelist"), reverse("admin:accounts_apikey_change", args=[row.pk])):
        body = admin_client.get(url).content.decode()
        assert row.prefix in body
        assert row.hashed_key not in body, url
        assert key not in body, url
    assert admin_client.get(reverse("admin:accounts_apikey_add")).status_code == 403


def test_api_key_revoke_action_revokes_the_key(admin_client, market):
    row = market["key_row"]

    admin_client.post(
        reverse("admin:accounts_apikey_changelist"), {"action": "revoke_keys", "_selected_action": [row.pk]}
    )

    assert ApiKey.objects.get(pk=row.pk).revoked_at is not None


def test_user_admin_shows_and_sets_roles(admin_client, buyer):
    url = reverse("admin:accounts_user_change", args=[buyer.pk])
    body = admin_client.get(url).content.decode()

    assert 'name="is_owner"' in body
    assert 'name="is_buyer"' in body


def test_a_user_added_in_the_admin_gets_a_wallet(admin_client):
    response = admin_client.post(
        reverse("admin:accounts_user_add"),
        {
            "username": "erin",
            "password1": "quiet harbour 7781",
            "password2": "quiet harbour 7781",
            "is_buyer": "on",
            "usable_password": "true",
        },
    )

    assert response.status_code == 302
    assert Wallet.objects.filter(user__username="erin").exists()


def test_the_admin_is_closed_to_ordinary_users(buyer):
    client = Client()
    client.force_login(buyer)

    response = client.get(reverse("admin:marketplace_purchase_changelist"))

    assert response.status_code == 302


def test_each_dataset_links_to_its_page_and_its_jobs_and_ledger_in_the_admin(admin_client, market):
    from compute.models import Job

    dataset = market["dataset"]
    Job.objects.create(
        buyer=market["purchase"].buyer,
        dataset=dataset,
        purchase=market["purchase"],
        spec={"aggregate": "count"},
        spec_hash="x" * 64,
        epsilon=Decimal("0.1"),
        dataset_version=1,
        status=Job.Status.RELEASED,
        result={"groups": [{"value": 123456.789}]},
    )
    page = admin_client.get(reverse("admin:marketplace_dataset_changelist")).content.decode()
    jobs_url = f"{reverse('admin:compute_job_changelist')}?dataset__id__exact={dataset.pk}"
    ledger_url = f"{reverse('admin:marketplace_ledgerentry_changelist')}?dataset__id__exact={dataset.pk}"
    assert reverse("dataset-detail", args=[dataset.pk]) in page
    assert jobs_url in page.replace("&amp;", "&") and ledger_url in page.replace("&amp;", "&")
    jobs = admin_client.get(jobs_url)
    assert jobs.status_code == 200 and "1 job" in jobs.content.decode()
    ledger = admin_client.get(ledger_url)
    assert ledger.status_code == 200 and "reserve" in ledger.content.decode()
    # A job's page in the admin is read-only and never shows the released value.
    job_page = admin_client.get(reverse("admin:compute_job_change", args=[Job.objects.get().pk])).content.decode()
    assert "123456.789" not in job_page and "count" in job_page
    assert admin_client.post(reverse("admin:compute_job_delete", args=[Job.objects.get().pk])).status_code == 403
