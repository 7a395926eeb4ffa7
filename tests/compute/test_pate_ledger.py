"""A PATE job's budget and payment: every member dataset is charged the same rho (reserved at
submission, the used part committed at release and the rest refunded), a failed or cancelled job
refunds every member, a job that a member cannot take is a 409 naming it with nothing written, and
the buyer pays per answered label, shared by the owners.

The ledger tests replace the engine's ``run`` with a tiny fake that answers a chosen number of
points, so the amounts are exact; test_pate_job.py runs the real engine."""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts.models import Wallet
from compute.engines import accounting
from compute.engines import pate as engine
from compute.models import Job
from compute.services import job_run
from marketplace.models import Dataset, LedgerEntry
from tests.fixtures.pate import submit, unlabelled_csv, upload_labelled

pytestmark = pytest.mark.django_db

SPEC = {"teachers": 15, "threshold": 8, "sigma1": 20, "sigma2": 10, "max_queries": 30}


def expected_rho(spec=SPEC, rows=40) -> Decimal:
    return accounting.rho_charge(engine.reserved_rho(engine.parse_spec(spec, rows, delta=1e-5)))


@pytest.fixture
def fake_engine(monkeypatch):
    """The engine's run replaced: answers the first ``answered`` asked points "high", the rest None."""
    calls = {}

    def install(answered: int = 10, fail: Exception | None = None):
        def fake_run(members, unlabelled, classes, spec, rng=None, progress=None, *, sizes=None, delta=None):
            calls["members"] = len(members)
            calls["sizes"] = sizes
            if fail is not None:
                raise fail
            asked = min(spec.max_queries, len(unlabelled))
            labels = ["high"] * answered + [None] * (len(unlabelled) - answered)
            return engine.PateResult(labels, answered, asked, engine.used_rho(spec, asked, answered))

        monkeypatch.setattr(engine, "run", fake_run)
        return calls

    return install


def balance(user) -> Decimal:
    return Wallet.objects.get(user=user).balance


def rows_of(job, kind):
    return list(LedgerEntry.objects.filter(job_id=job.pk, kind=kind).order_by("dataset_id"))


def test_every_member_is_charged_the_jobs_rho_and_the_buyer_pays_the_answered_labels(
    pate_ensemble, pate_owners, buyer, api, fake_engine
):
    calls = fake_engine(answered=10)
    response = submit(api, pate_ensemble["id"], SPEC)
    assert response.status_code == 202, response.content
    assert response.json()["kind"] == "pate" and response.json()["status"] == "queued"
    job = Job.objects.get(pk=response.json()["id"])
    assert job.purchase_id is None and job.ensemble_id == pate_ensemble["id"]
    assert job.rho == expected_rho() > 0
    ids = sorted(pate_ensemble["dataset_ids"])
    reserves = rows_of(job, "reserve")
    assert [r.dataset_id for r in reserves] == ids
    assert {r.rho for r in reserves} == {job.rho} and all(r.purchase_id is None for r in reserves)
    assert [d.rho_used for d in Dataset.objects.filter(pk__in=ids).order_by("pk")] == [job.rho] * 3
    assert balance(buyer) == Decimal("1000.00") - Decimal("3.00")  # 30 labels held at 0.10

    assert job_run(job_id=job.pk) == "released"
    assert calls["members"] == 3
    job.refresh_from_db()
    used = accounting.rho_charge(engine.used_rho(engine.parse_spec(SPEC, 40, delta=1e-5), 30, 10))
    assert used < job.rho
    commits, refunds = rows_of(job, "commit"), rows_of(job, "refund")
    assert [(c.dataset_id, c.rho) for c in commits] == [(pk, used) for pk in ids]
    assert [(r.dataset_id, r.rho) for r in refunds] == [(pk, job.rho - used) for pk in ids]
    # Each dataset has spent exactly what was committed: reserve minus refund.
    for dataset in Dataset.objects.filter(pk__in=ids):
        assert dataset.rho_used == used
        assert dataset.epsilon_used == next(c.epsilon for c in commits if c.dataset_id == dataset.pk)
    result = job.result
    assert result["answered"] == 10 and result["asked"] == 30 and len(result["labels"]) == 40
    assert result["labels"][:10] == ["high"] * 10 and result["labels"][10:] == [None] * 30
    assert result["delta"] == 1e-5
    assert result["epsilon"] == pytest.approx(accounting.zcdp_epsilon(float(used), 1e-5), abs=1e-6)
    # Paid: 10 labels at 0.10, shared equally by the three owners (the odd cent to the first member).
    assert balance(buyer) == Decimal("999.00")
    assert sorted(balance(o) for o in pate_owners) == [Decimal("0.33"), Decimal("0.33"), Decimal("0.34")]
    # The stored table is gone once the job is done.
    assert job.input_path == ""


def test_a_failed_job_refunds_every_member_and_the_credits(pate_ensemble, buyer, api, fake_engine):
    fake_engine(fail=RuntimeError("the teachers could not be trained"))
    job = Job.objects.get(pk=submit(api, pate_ensemble["id"], SPEC).json()["id"])
    assert job_run(job_id=job.pk) == "failed"
    job.refresh_from_db()
    assert job.status == "failed" and "refunded" in job.error
    assert [(r.dataset_id, r.rho) for r in rows_of(job, "refund")] == [
        (pk, job.rho) for pk in sorted(pate_ensemble["dataset_ids"])
    ]
    assert not rows_of(job, "commit")
    for dataset in Dataset.objects.filter(pk__in=pate_ensemble["dataset_ids"]):
        assert (dataset.epsilon_used, dataset.delta_used, dataset.rho_used) == (0, 0, 0)
    assert balance(buyer) == Decimal("1000.00")
    assert job.input_path == ""


def test_a_cancelled_job_refunds_every_member_and_is_never_run(pate_ensemble, buyer, api, fake_engine):
    fake_engine()
    job = Job.objects.get(pk=submit(api, pate_ensemble["id"], SPEC).json()["id"])
    response = api.post(f"/api/v1/jobs/{job.pk}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert len(rows_of(job, "refund")) == 3
    assert all(d.rho_used == 0 for d in Dataset.objects.filter(pk__in=pate_ensemble["dataset_ids"]))
    assert balance(buyer) == Decimal("1000.00")
    assert job_run(job_id=job.pk) == "skipped"
    assert not rows_of(job, "commit")


def test_a_job_a_member_cannot_take_is_a_409_naming_it_and_writes_nothing(
    pate_ensemble, pate_owners, buyer, api, private_storage
):
    from tests.conftest import client_for

    # A fourth member whose whole budget is epsilon 1: its rho cap is far below the job's rho.
    small_owner = pate_owners[2]
    small = upload_labelled(client_for(small_owner), "Small clinic", seed=40, epsilon_cap="1")
    client_for(small_owner).post(f"/api/v1/ensembles/{pate_ensemble['id']}/members/", {"dataset": small}, format="json")
    files_before = sorted(p for p in private_storage.rglob("*") if p.is_file())
    response = submit(api, pate_ensemble["id"], SPEC)
    assert response.status_code == 409, response.content
    error = response.json()["error"]
    assert error["code"] == "dataset_budget_exhausted"
    assert error["dataset"] == small and f"dataset {small} (Small clinic)" in error["message"]
    assert not Job.objects.exists() and not LedgerEntry.objects.exists()
    assert all(d.rho_used == 0 for d in Dataset.objects.all())
    assert balance(buyer) == Decimal("1000.00")
    assert sorted(p for p in private_storage.rglob("*") if p.is_file()) == files_before


def test_a_buyer_without_credits_for_max_queries_labels_gets_a_409(pate_ensemble, buyer, api):
    Wallet.objects.filter(user=buyer).update(balance=Decimal("2.99"))
    response = submit(api, pate_ensemble["id"], SPEC)  # 30 labels at 0.10 need 3.00
    assert response.status_code == 409 and response.json()["error"]["code"] == "insufficient_credits"
    assert not Job.objects.exists() and not LedgerEntry.objects.exists()
    assert all(d.rho_used == 0 for d in Dataset.objects.all())


def test_a_member_that_left_is_not_charged_and_one_that_leaves_later_still_is(
    pate_ensemble, pate_owners, api, fake_engine
):
    from tests.conftest import client_for

    fake_engine(answered=5)
    first, second, third = pate_ensemble["dataset_ids"]
    url = f"/api/v1/ensembles/{pate_ensemble['id']}/members/"
    assert client_for(pate_owners[2]).delete(f"{url}{third}/").status_code == 204
    job = Job.objects.get(pk=submit(api, pate_ensemble["id"], SPEC).json()["id"])
    assert [r.dataset_id for r in rows_of(job, "reserve")] == sorted([first, second])
    # Leaving after submission changes nothing for this job: its members were fixed when it was submitted.
    assert client_for(pate_owners[1]).delete(f"{url}{second}/").status_code == 204
    assert job_run(job_id=job.pk) == "released"
    assert [c.dataset_id for c in rows_of(job, "commit")] == sorted([first, second])
    assert Dataset.objects.get(pk=third).rho_used == 0


def test_the_owner_budget_view_counts_a_pate_charge(pate_ensemble, pate_owners, api, fake_engine):
    from tests.conftest import client_for

    fake_engine(answered=10)
    job = Job.objects.get(pk=submit(api, pate_ensemble["id"], SPEC).json()["id"])
    job_run(job_id=job.pk)
    dataset_id = pate_ensemble["dataset_ids"][0]
    response = client_for(pate_owners[0]).get(f"/api/v1/datasets/{dataset_id}/budget/")
    assert response.status_code == 200, response.content
    assert Decimal(response.json()["rho_committed"]) == rows_of(job, "commit")[0].rho


def test_the_labels_download_as_csv(pate_ensemble, api, fake_engine):
    fake_engine(answered=3)
    spec = {**SPEC, "max_queries": 5}
    job = Job.objects.get(pk=submit(api, pate_ensemble["id"], spec, upload=unlabelled_csv(5)).json()["id"])
    job_run(job_id=job.pk)
    job.refresh_from_db()
    body = api.get(f"/api/v1/jobs/{job.pk}/download/?format=csv").content.decode()
    assert body.splitlines() == ["row,label", "1,high", "2,high", "3,high", "4,", "5,"]
    detail = api.get(f"/api/v1/jobs/{job.pk}/").json()
    assert detail["result"] == {
        "labels": ["high", "high", "high", None, None],
        "answered": 3,
        "asked": 5,
        "epsilon": job.result["epsilon"],
        "delta": 1e-5,
    }
    assert detail["purchase"] is None and detail["ensemble"] == pate_ensemble["id"]
    assert [m["dataset"] for m in detail["receipt"]["members"]] == sorted(pate_ensemble["dataset_ids"])
