"""The PATE job form on an ensemble's page, its live estimate (the engine's reservation and the credits
held, without the file), its submission through the API's service (errors beside the controls, the 409s
in words, nothing written on error), and the PATE job's page (counts, each member's charge, the labels a
page at a time, the CSV download). Real PostgreSQL, the Django test client, the real engine run by the
worker's service (compute.services.job_run)."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.urls import reverse

from accounts.models import Wallet
from compute import services
from compute.engines import accounting
from compute.engines import pate as engine
from compute.kinds.pate import epsilon_of
from compute.models import Job
from marketplace.models import Dataset, LedgerEntry
from tests.compute.views.test_pages import by_id, field_block, find_all, logged_in
from tests.fixtures.pate import unlabelled_csv

pytestmark = pytest.mark.django_db

SPEC = {"teachers": "15", "threshold": "8", "sigma1": "20", "sigma2": "10", "max_queries": "30"}


def estimate(client, ensemble_id: int, **fields) -> str:
    response = client.post(reverse("pate-estimate", args=[ensemble_id]), fields)
    assert response.status_code == 200
    return response.content.decode()


def post(client, ensemble_id: int, upload=None, **fields):
    body = {"form_token": "t", "teacher_model": "logistic_regression", **fields}
    if upload is not None:
        body["file"] = upload
    return client.post(reverse("pate-submit", args=[ensemble_id]), body)


def value_of(html: str, css_class: str) -> str:
    found = find_all(html, lambda tag, attrs: css_class in (attrs.get("class") or "").split())
    assert found, f"no element of class {css_class!r}"
    return found[0].split('data-value="')[1].split('"')[0]


def reserved(spec: dict, rows: int) -> Decimal:
    """The job's epsilon as the submission computes it: the engine's reservation, rounded, at delta 1e-5."""
    parsed = engine.parse_spec(spec, rows, delta=1e-5)
    return epsilon_of(accounting.rho_charge(engine.reserved_rho(parsed)), Decimal("0.00001"))


def test_a_buyer_sees_the_job_form_with_its_defaults_and_the_estimate_for_them(buyer, pate_ensemble):
    html = logged_in(buyer).get(reverse("ensemble-detail", args=[pate_ensemble["id"]])).content.decode()
    form = by_id(html, "pate-form")
    assert 'enctype="multipart/form-data"' in form and 'hx-encoding="application/x-www-form-urlencoded"' in form
    assert 'placeholder="250"' in field_block(form, "teachers") and 'placeholder="150"' in field_block(form, "sigma1")
    assert 'placeholder="40"' in field_block(form, "sigma2") and 'type="file"' in field_block(form, "file")
    # The defaults' estimate: 1,000 rows asked (the table is unknown), 0.10 x 1,000 credits held.
    panel = by_id(html, "pate-estimate-panel")
    assert Decimal(value_of(panel, "epsilon-reserved")) == reserved({}, 1000)
    assert value_of(panel, "credits-held") == "100.00"
    assert "this assumes 1000 rows" in panel


def test_the_estimate_is_the_reservation_the_job_then_makes_and_spends_nothing(buyer, pate_ensemble):
    client = logged_in(buyer)
    panel = estimate(client, pate_ensemble["id"], **SPEC)
    spec = {"teachers": 15, "threshold": 8, "sigma1": 20, "sigma2": 10, "max_queries": 30}
    epsilon = Decimal(value_of(panel, "epsilon-reserved"))
    assert epsilon == reserved(spec, 30)
    assert abs(float(epsilon) - engine.reserved_epsilon(engine.parse_spec(spec, 30, delta=1e-5), 1e-5)) < 1e-5
    assert value_of(panel, "credits-held") == "3.00" and "enough" in panel
    assert not Job.objects.exists() and not LedgerEntry.objects.exists()
    assert Wallet.objects.get(user=buyer).balance == Decimal("1000.00")
    # Submitted with a table of 40 rows: the job reserves exactly what the estimate said.
    response = post(client, pate_ensemble["id"], unlabelled_csv(), **SPEC)
    assert response.status_code == 302, response.content.decode()[:3000]
    job = Job.objects.get()
    assert job.kind == Job.Kind.PATE and job.epsilon == epsilon and job.spec["pate"]["teachers"] == 15
    assert response["Location"] == reverse("job-detail", args=[job.pk])
    assert LedgerEntry.objects.filter(job_id=job.pk, kind=LedgerEntry.Kind.RESERVE).count() == 3
    assert Wallet.objects.get(user=buyer).balance == Decimal("997.00")


def test_a_target_epsilon_fits_the_sigmas_in_the_estimate(buyer, pate_ensemble):
    panel = estimate(logged_in(buyer), pate_ensemble["id"], teachers="15", max_queries="30", epsilon="2")
    assert Decimal(value_of(panel, "epsilon-reserved")) <= 2 and "fitted to the target" in panel
    fitted = engine.parse_spec({"teachers": 15, "max_queries": 30, "epsilon": 2.0}, 30, delta=1e-5)
    assert f"{fitted.sigma1:.2f}".rstrip("0").rstrip(".") in panel


@pytest.mark.parametrize(
    ("fields", "label", "words"),
    [
        ({"teachers": "0"}, "Teachers", "between 1 and 2000"),
        ({"teachers": "10", "threshold": "11"}, "Threshold (T_c)", "between 0 and 10"),
        ({"sigma1": "0.5"}, "Sigma 1 (threshold noise)", "between 1 and"),
        ({"teacher_model": "svm"}, "Teacher model", "svm"),
        ({"teachers": "many"}, "Teachers", "whole number"),
    ],
)
def test_the_estimate_lists_a_bad_value_beside_its_control_name(buyer, pate_ensemble, fields, label, words):
    panel = estimate(logged_in(buyer), pate_ensemble["id"], **fields)
    errors = find_all(panel, lambda tag, attrs: tag == "ul" and "estimate-errors" in (attrs.get("class") or ""))[0]
    assert f"<strong>{label}:</strong>" in errors and words in errors


def nothing_written(private_storage, before) -> bool:
    files = sorted(p for p in private_storage.rglob("*") if p.is_file())
    return not Job.objects.exists() and not LedgerEntry.objects.exists() and files == before


def csv_upload(text: str):
    upload = io.BytesIO(text.encode())
    upload.name = "rows.csv"
    return upload


@pytest.mark.parametrize(
    ("upload", "fields", "control", "words"),
    [
        (lambda: None, SPEC, "file", "No file was submitted"),
        (lambda: csv_upload("age,region\n30,north\n"), SPEC, "file", "member"),
        (lambda: csv_upload("age,region,member\n130,north,true\n"), SPEC, "file", "age"),
        (unlabelled_csv, {**SPEC, "sigma1": "0.5"}, "sigma1", "between 1 and"),
        (unlabelled_csv, {**SPEC, "max_queries": "41"}, "max_queries", "between 1 and 40"),
    ],
)
def test_a_bad_table_or_spec_is_shown_beside_its_control_and_writes_nothing(
    buyer, pate_ensemble, private_storage, upload, fields, control, words
):
    before = sorted(p for p in private_storage.rglob("*") if p.is_file())
    response = post(logged_in(buyer), pate_ensemble["id"], upload(), **fields)
    assert response.status_code == 400
    block = field_block(by_id(response.content.decode(), "pate-form"), control)
    assert "field-error" in block and words in block, block
    assert nothing_written(private_storage, before)
    assert Wallet.objects.get(user=buyer).balance == Decimal("1000.00")


def test_a_member_without_budget_is_a_409_naming_it_and_nothing_is_written(buyer, pate_ensemble, private_storage):
    before = sorted(p for p in private_storage.rglob("*") if p.is_file())
    response = post(
        logged_in(buyer), pate_ensemble["id"], unlabelled_csv(), teachers="15", sigma1="4", sigma2="2", max_queries="30"
    )
    assert response.status_code == 409
    errors = find_all(response.content.decode(), lambda tag, attrs: "form-errors" in (attrs.get("class") or ""))[0]
    first = Dataset.objects.get(pk=min(pate_ensemble["dataset_ids"]))
    assert f"member dataset {first.pk} ({first.title})" in errors and "max_queries" in errors
    assert nothing_written(private_storage, before)


def test_a_wallet_that_cannot_hold_the_credits_is_a_409_in_words_and_nothing_is_written(
    buyer, pate_ensemble, private_storage
):
    Wallet.objects.filter(user=buyer).update(balance=Decimal("1.00"))
    before = sorted(p for p in private_storage.rglob("*") if p.is_file())
    # The estimate says so before the buyer submits.
    assert "not enough for this hold" in estimate(logged_in(buyer), pate_ensemble["id"], **SPEC)
    response = post(logged_in(buyer), pate_ensemble["id"], unlabelled_csv(), **SPEC)
    assert response.status_code == 409
    html = response.content.decode()
    assert "Your wallet cannot hold the credits this job may cost" in html and "this costs 3.00 credits" in html
    assert nothing_written(private_storage, before)


def test_without_javascript_update_the_estimate_redraws_the_page_and_submits_nothing(buyer, pate_ensemble):
    response = post(logged_in(buyer), pate_ensemble["id"], unlabelled_csv(), refresh="1", **SPEC)
    assert response.status_code == 200 and not Job.objects.exists()
    panel = by_id(response.content.decode(), "pate-estimate-panel")
    assert value_of(panel, "credits-held") == "3.00"
    assert 'value="15"' in field_block(by_id(response.content.decode(), "pate-form"), "teachers")


def test_an_owner_sees_no_job_form_and_cannot_submit(pate_ensemble, pate_owners):
    client = logged_in(pate_owners[0])
    html = client.get(reverse("ensemble-detail", args=[pate_ensemble["id"]])).content.decode()
    assert "does not have the buyer role" in html and 'id="pate-form"' not in html
    response = post(client, pate_ensemble["id"], unlabelled_csv(), **SPEC)
    assert response.status_code == 302 and not Job.objects.exists()


def released_job(buyer, ensemble_id: int, rows: int = 120) -> Job:
    fields = {"teachers": "15", "threshold": "8", "sigma1": "20", "sigma2": "10", "max_queries": "100"}
    response = post(logged_in(buyer), ensemble_id, unlabelled_csv(n=rows), **fields)
    assert response.status_code == 302, response.content.decode()[:2000]
    job = Job.objects.get()
    assert services.job_run(job_id=job.pk) == "released"
    job.refresh_from_db()
    return job


def test_the_job_page_shows_the_counts_each_member_charged_and_the_labels_a_page_at_a_time(buyer, pate_ensemble):
    job = released_job(buyer, pate_ensemble["id"])
    client = logged_in(buyer)
    html = client.get(reverse("job-detail", args=[job.pk])).content.decode()
    assert "The labels asked for" in html and ">Clinics</a>" in html
    counts = find_all(html, lambda tag, attrs: "pate-counts" in (attrs.get("class") or ""))[0]
    assert f'<strong class="answered">{job.result["answered"]}</strong>' in counts
    assert '<strong class="asked">100</strong>' in counts and "your table has 120 rows" in counts
    # The members charged: each the job's epsilon, as the ledger committed it.
    members = find_all(html, lambda tag, attrs: tag == "table" and "pate-member-table" in (attrs.get("class") or ""))[0]
    for dataset_id in pate_ensemble["dataset_ids"]:
        assert f'href="{reverse("dataset-detail", args=[dataset_id])}"' in members
        commit = LedgerEntry.objects.get(job_id=job.pk, dataset_id=dataset_id, kind=LedgerEntry.Kind.COMMIT)
        assert f'<td class="num member-epsilon">{commit.epsilon.normalize():f}</td>' in members
    after = job.result["privacy"]["members"][0]["dataset_after"]
    assert f'<span class="num">{float(after["share_used"]):.1%}</span> of its budget used' in members
    assert "clinic0" in members
    # The labels: the first 50 rows, then the next page.
    table = find_all(html, lambda tag, attrs: tag == "table" and "pate-label-table" in (attrs.get("class") or ""))[0]
    assert "Rows 1 to 50 of 120" in table and '<th scope="row" class="num">50</th>' in table
    assert '<th scope="row" class="num">51</th>' not in table
    first = job.result["labels"][0]
    assert (first or "not answered") in table.split('<th scope="row" class="num">1</th>')[1].split("</tr>")[0]
    page3 = client.get(reverse("job-detail", args=[job.pk]) + "?page=3").content.decode()
    assert "Rows 101 to 120 of 120" in page3 and "– not answered" in page3  # rows past max_queries
    # The download: the job's own endpoint, row,label.
    download = reverse("api-job-download", args=[job.pk]) + "?format=csv"
    assert f'href="{download}"' in html
    body = client.get(download).content.decode().splitlines()
    assert body[0] == "row,label" and len(body) == 121
    # The jobs list names the ensemble.
    listing = client.get(reverse("my-jobs")).content.decode()
    assert (
        f'href="{reverse("ensemble-detail", args=[pate_ensemble["id"]])}"' in listing
        and "15 logistic regression teachers" in listing
    )


def test_an_open_pate_job_page_names_its_members_and_the_refund_of_a_cancel(buyer, pate_ensemble):
    post(logged_in(buyer), pate_ensemble["id"], unlabelled_csv(), **SPEC)
    job = Job.objects.get()
    html = logged_in(buyer).get(reverse("job-detail", args=[job.pk])).content.decode()
    assert "The member datasets" in html and ">Clinic 2</a>" in html
    assert "and the credits held</button>" in html
    response = logged_in(buyer).post(reverse("job-cancel", args=[job.pk]), follow=True)
    assert "refunded to every member dataset and the credits held are back in your wallet" in response.content.decode()
    assert Wallet.objects.get(user=buyer).balance == Decimal("1000.00")
