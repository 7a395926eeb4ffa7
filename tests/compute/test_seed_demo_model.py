"""The demo's model (compute/management/commands/seed_demo_model.py, run by seed_demo): a DP logistic
regression on the breast-cancer table, trained through the train kind on demo-modeller's purchase,
charged once, and published for encrypted inference; seeding again creates nothing and charges nothing.

seed_demo runs for real here, as in tests/marketplace/test_seed_demo.py."""

from __future__ import annotations

import io
from decimal import Decimal

import pandas as pd
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import CreditEntry, User
from cloakroom_client import models as sdk_models
from compute.management.commands.seed_demo_model import (
    MODEL,
    MODEL_EPSILON,
    MODEL_TITLE,
    PRICE_PER_PREDICTION,
    SAMPLE_ROWS,
)
from compute.models import Job, ModelListing
from marketplace.management.commands.seed_demo import BREAST_CANCER_COLUMNS
from marketplace.models import Dataset, LedgerEntry, Purchase
from tests.conftest import client_for
from tests.integration.live import REPO_ROOT

pytestmark = pytest.mark.django_db

SAMPLE = REPO_ROOT / SAMPLE_ROWS


def seed() -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def counts() -> dict:
    return {
        "jobs": sorted(Job.objects.values_list("id", "status", "epsilon")),
        "listings": sorted(ModelListing.objects.values_list("id", "job_id", "title", "price_per_prediction")),
        "purchases": sorted(Purchase.objects.values_list("id", "buyer__username", "epsilon", "price")),
        "ledger": sorted(LedgerEntry.objects.values_list("id", "job_id", "kind", "epsilon")),
        "credits": sorted(CreditEntry.objects.values_list("id", "amount")),
    }


def test_seed_demo_trains_the_model_on_the_breast_cancer_table_charged_once_and_publishes_it():
    output = seed()
    modeller = User.objects.get(username="demo-modeller")
    cancer = Dataset.objects.get(title__startswith="Breast cancer")
    (purchase,) = Purchase.objects.filter(buyer=modeller)
    assert (purchase.dataset, purchase.epsilon) == (cancer, MODEL_EPSILON)
    assert purchase.price == MODEL_EPSILON * cancer.price_per_epsilon

    (job,) = Job.objects.filter(buyer=modeller)
    assert (job.kind, job.status, job.purchase, job.epsilon, job.delta) == (
        "train",
        "released",
        purchase,
        MODEL_EPSILON,
        Decimal("0"),
    )
    model = job.result["model"]
    assert (model["type"], model["features"], model["label"]) == (MODEL["type"], MODEL["features"], "diagnosis")
    assert model["classes"] == ["malignant", "benign"]
    # The bounds the model used are the declared ones, not the data's.
    declared = {c["name"]: (c["lower"], c["upper"]) for c in BREAST_CANCER_COLUMNS if c["kind"] == "numeric"}
    assert {e["name"]: (e["lower"], e["upper"]) for e in model["encoding"]} == {
        name: declared[name] for name in MODEL["features"]
    }
    # Charged once: one reservation and its one commit, at the job's epsilon and rho.
    rows = list(LedgerEntry.objects.filter(job_id=job.pk).values_list("kind", "epsilon", "rho"))
    assert sorted(rows) == sorted([("commit", MODEL_EPSILON, job.rho), ("reserve", MODEL_EPSILON, job.rho)])
    assert LedgerEntry.objects.filter(purchase=purchase).count() == 2

    listing = ModelListing.objects.get(job=job)
    assert (listing.owner, listing.title, listing.price_per_prediction) == (modeller, MODEL_TITLE, PRICE_PER_PREDICTION)
    assert f"#{listing.pk:<3} {MODEL_TITLE}" in output
    assert f"cloakroom predict {listing.pk} " in output and "tumours.csv --out scores.csv" in output


def test_the_demo_buyer_sees_the_seeded_model_in_the_catalogue_with_what_it_needs_to_encrypt():
    seed()
    api = client_for(User.objects.get(username="demo-buyer"))
    (listed,) = api.get("/api/v1/models/").json()["results"]
    assert (listed["title"], listed["owner"], listed["type"], listed["dp"]) == (
        MODEL_TITLE,
        "demo-modeller",
        "logistic_regression",
        True,
    )
    assert (listed["classes"], listed["scores"], listed["price_per_prediction"]) == (
        ["malignant", "benign"],
        ["score_benign"],
        "0.01",
    )
    # The README's sample rows hold every feature the model encrypts.
    rows = pd.read_csv(SAMPLE)
    matrix = sdk_models.design_matrix({"model": listed}, rows)
    assert list(matrix.columns) == MODEL["features"] and len(matrix) == 10


def test_running_seed_demo_again_trains_nothing_buys_nothing_and_charges_nothing():
    seed()
    before = counts()
    output = seed()
    assert counts() == before
    assert "Trained and published" not in output
    assert f"#{ModelListing.objects.get().pk:<3} {MODEL_TITLE}" in output


def test_a_model_trained_but_not_published_by_an_interrupted_run_is_published_without_training_again():
    seed()
    job = Job.objects.get(buyer__username="demo-modeller")
    ModelListing.objects.all().delete()
    before = counts()
    seed()
    listing = ModelListing.objects.get()
    assert listing.job == job
    after = counts()
    assert after.pop("listings") != before.pop("listings")
    assert after == before  # the same job, purchase, ledger rows and credits


def test_a_training_job_left_queued_by_an_interrupted_run_is_run_by_the_next_and_not_bought_again(monkeypatch):
    from compute.management.commands import seed_demo_model

    # The first run stops after submitting (no worker took the job, and it was not run): queued, reserved.
    monkeypatch.setattr(seed_demo_model.services, "job_run", lambda job_id: "skipped")
    monkeypatch.setattr(seed_demo_model, "RELEASE_WAIT_SECONDS", 0)
    with pytest.raises(CommandError, match=r"training job #\d+ is queued"):
        seed()
    (job,) = Job.objects.filter(buyer__username="demo-modeller")
    assert job.status == "queued" and not ModelListing.objects.exists()
    monkeypatch.undo()

    seed()
    job.refresh_from_db()
    assert job.status == "released" and ModelListing.objects.get().job == job
    assert Purchase.objects.filter(buyer__username="demo-modeller").count() == 1
    assert sorted(LedgerEntry.objects.filter(job_id=job.pk).values_list("kind", flat=True)) == ["commit", "reserve"]


def test_seed_demo_model_alone_on_an_empty_database_says_to_run_seed_demo_first():
    with pytest.raises(CommandError, match="run seed_demo first"):
        call_command("seed_demo_model", stdout=io.StringIO())
