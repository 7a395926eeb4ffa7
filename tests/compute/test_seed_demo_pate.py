"""The demo's PATE ensemble (compute/management/commands/seed_demo_pate.py, run by seed_demo): three
owners' parts of the breast-cancer table joined into one ensemble, demo-hospital's held-out tumours labelled
through the real job code path, every member charged once; seeding again creates and charges nothing.

seed_demo runs for real here, as in tests/compute/test_seed_demo_model.py."""

from __future__ import annotations

import io
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import CreditEntry, User
from accounts.selectors import wallet_balance
from cloakroom_client import models as sdk_models
from compute.management.commands import seed_demo_pate
from compute.management.commands.seed_demo_pate import (
    BUYER,
    BUYER_ROWS,
    CLINIC_ROWS,
    ENSEMBLE_TITLE,
    OWNERS,
    PRICE_PER_LABEL,
    UNLABELLED_ROWS,
    deal_order,
    split_frames,
)
from compute.models import Job
from marketplace import storage
from marketplace.management.commands.seed_demo import BREAST_CANCER_COLUMNS, breast_cancer_frame
from marketplace.models import Column, Dataset, Ensemble, LedgerEntry
from tests.integration.live import REPO_ROOT

pytestmark = pytest.mark.django_db


def seed() -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def counts() -> dict:
    return {
        "users": sorted(User.objects.values_list("username", "password")),
        "datasets": sorted(Dataset.objects.values_list("id", "status", "file_path", "epsilon_used", "rho_used")),
        "ensembles": sorted(Ensemble.objects.values_list("id", "title")),
        "jobs": sorted(Job.objects.values_list("id", "status", "rho")),
        "ledger": sorted(LedgerEntry.objects.values_list("id", "job_id", "kind", "rho")),
        "credits": sorted(CreditEntry.objects.values_list("id", "amount")),
    }


def stored_frame(dataset: Dataset) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(storage.read_decrypted(dataset.file_path)))


def members() -> list[Dataset]:
    ensemble = Ensemble.objects.get(title=ENSEMBLE_TITLE)
    return list(Dataset.objects.filter(ensemble_memberships__ensemble=ensemble).order_by("pk"))


def test_seed_demo_joins_three_owners_parts_of_the_table_with_the_declared_bounds_into_an_ensemble():
    output = seed()
    datasets = members()
    assert [d.owner.username for d in datasets] == list(OWNERS)
    assert [d.row_count for d in datasets] == list(CLINIC_ROWS)
    assert all(d.status == "published" and d.row_count_public and d.delta_cap > 0 for d in datasets)
    declared = {c["name"]: (c.get("lower"), c.get("upper")) for c in BREAST_CANCER_COLUMNS}
    for dataset in datasets:
        columns = {c.name: (c.lower, c.upper) for c in Column.objects.filter(dataset=dataset)}
        assert columns == declared  # the declaration's bounds, not the part's own extremes
    ensemble = Ensemble.objects.get(title=ENSEMBLE_TITLE)
    assert ensemble.owner.username == OWNERS[0] and ensemble.label["name"] == "diagnosis"
    assert [f["name"] for f in ensemble.features] == [c["name"] for c in BREAST_CANCER_COLUMNS[:-1]]
    assert f"#{ensemble.pk:<3} {ENSEMBLE_TITLE}" in output
    assert f"cloakroom pate {ensemble.pk} " in output and "tumours-unlabelled.csv" in output
    # Every new account's password is printed once and works.
    for username in (*OWNERS, BUYER):
        line = next(line for line in output.splitlines() if line.strip().startswith(username + " "))
        assert User.objects.get(username=username).check_password(line.rsplit("password: ", 1)[1].strip())


def test_the_buyers_rows_are_held_out_of_every_members_data_and_are_the_readmes_sample():
    seed()
    key = [c["name"] for c in BREAST_CANCER_COLUMNS[:3]]
    owned = pd.concat([stored_frame(d) for d in members()])
    buyer, _ = split_frames()
    assert len(owned) + len(buyer) == len(breast_cancer_frame()) == 569
    assert not set(map(tuple, buyer[key].round(4).to_numpy())) & set(map(tuple, owned[key].round(4).to_numpy()))
    sample = pd.read_csv(REPO_ROOT / UNLABELLED_ROWS)
    assert list(sample.columns) == list(buyer.columns) and "diagnosis" not in sample
    assert np.allclose(sample.to_numpy(), buyer.to_numpy())
    assert len(sample) == BUYER_ROWS and sorted(deal_order(569)) == list(range(569))


def test_the_buyers_job_is_released_charged_once_on_every_member_and_paid_per_answered_label():
    seed()
    buyer = User.objects.get(username=BUYER)
    (job,) = Job.objects.filter(buyer=buyer, kind="pate")
    datasets = members()
    assert job.status == "released" and sorted(job.spec["members"]) == [d.pk for d in datasets]
    result = job.result
    assert result["asked"] == BUYER_ROWS == len(result["labels"])
    answered = [label for label in result["labels"] if label is not None]
    assert result["answered"] == len(answered) > BUYER_ROWS // 3
    # The labels are the teachers' diagnosis, mostly right (the truth is the benchmark's, not the job's).
    frame = breast_cancer_frame()
    truth = frame["diagnosis"].to_numpy()[deal_order(len(frame))[:BUYER_ROWS]]
    right = [label == t for label, t in zip(result["labels"], truth, strict=True) if label is not None]
    assert np.mean(right) >= 0.7  # about 0.85 (seed_demo_pate.SPEC); always benign would be about 0.6
    # Charged once: per member one reserve and one commit (and a refund of the unused part), the same rho.
    for dataset in datasets:
        rows = LedgerEntry.objects.filter(job_id=job.pk, dataset=dataset)
        kinds = sorted(rows.values_list("kind", flat=True))
        assert kinds in (["commit", "refund", "reserve"], ["commit", "reserve"]), kinds
        assert rows.get(kind="reserve").rho == job.rho
    commits = LedgerEntry.objects.filter(job_id=job.pk, kind="commit")
    assert commits.count() == 3 and len({c.rho for c in commits}) == 1
    dataset_used = {d.rho_used for d in datasets}
    assert dataset_used == {commits.first().rho}
    # Paid per answered label, split equally between the three owners.
    paid = PRICE_PER_LABEL * result["answered"]
    assert Decimal(result["payment"]["credits"]) == paid
    earned = [
        sum(CreditEntry.objects.filter(wallet__user__username=u, kind="sale").values_list("amount", flat=True))
        for u in OWNERS
    ]
    assert sum(earned) == paid and max(earned) - min(earned) <= Decimal("0.01")
    assert wallet_balance(user=buyer) == Decimal("1000.00") - paid
    # The student, rebuilt by the SDK, predicts the buyer's rows with its own parameters.
    doc = {"model": result["student"]}
    rows = pd.read_csv(REPO_ROOT / UNLABELLED_ROWS)
    predicted = sdk_models.estimator(doc).predict(sdk_models.design_matrix(doc, rows))
    scores = sdk_models.scores(doc, sdk_models.design_matrix(doc, rows))[:, 0]
    assert list(predicted) == ["benign" if s > 0 else "malignant" for s in scores]
    assert result["student"]["trained_on"] == result["answered"]


def test_running_seed_demo_again_creates_nothing_and_charges_nothing():
    seed()
    before = counts()
    output = seed()
    assert counts() == before
    assert "Uploaded 'Clinic" not in output and "PATE demo accounts created" not in output
    assert f"#{Ensemble.objects.get().pk:<3} {ENSEMBLE_TITLE}" in output


def test_a_pate_job_left_queued_by_an_interrupted_run_is_run_by_the_next_and_not_submitted_again(monkeypatch):
    from compute import services

    real = services.job_run

    def run_but_pate(job_id: int) -> str:
        return "skipped" if Job.objects.get(pk=job_id).kind == "pate" else real(job_id=job_id)

    monkeypatch.setattr(services, "job_run", run_but_pate)
    monkeypatch.setattr(seed_demo_pate, "RELEASE_WAIT_SECONDS", 0)
    with pytest.raises(CommandError, match=r"PATE job #\d+ is queued"):
        seed()
    (job,) = Job.objects.filter(kind="pate")
    reserved = sorted(LedgerEntry.objects.filter(job_id=job.pk).values_list("kind", flat=True))
    assert reserved == ["reserve"] * 3
    monkeypatch.undo()

    seed()
    job.refresh_from_db()
    assert job.status == "released" and Job.objects.filter(kind="pate").count() == 1
    assert LedgerEntry.objects.filter(job_id=job.pk, kind="commit").count() == 3


def test_seed_demo_pate_alone_on_an_empty_database_says_to_run_seed_demo_first():
    with pytest.raises(CommandError, match="run seed_demo first"):
        call_command("seed_demo_pate", stdout=io.StringIO())
