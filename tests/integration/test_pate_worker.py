"""PATE jobs through a real Celery worker on the ``ml`` queue, on Redis and PostgreSQL: a job over
three owners' datasets is released with every member charged exactly the job's rho; a cancelled job
and a failed one refund every member."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from compute.engines import accounting
from compute.engines import pate as engine
from compute.models import Job
from marketplace.models import Dataset, LedgerEntry
from tests.fixtures.pate import submit, unlabelled_csv
from tests.integration.test_jobs_worker import start_worker, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SPEC = {"teachers": 15, "threshold": 8, "sigma1": 20, "sigma2": 10, "max_queries": 30}
# Little noise, so the labels are the teachers' (who agree); it needs a large budget.
QUIET = {"teachers": 15, "threshold": 8, "sigma1": 4, "sigma2": 2, "max_queries": 30}


@pytest.fixture
def ml_queue(settings):
    settings.CLOAKROOM_ML_QUEUE = f"pate-{uuid.uuid4().hex}"
    return settings.CLOAKROOM_ML_QUEUE


def sums(job_id: int, kind: str) -> dict[int, Decimal]:
    return {e.dataset_id: e.rho for e in LedgerEntry.objects.filter(job_id=job_id, kind=kind)}


def test_a_real_worker_labels_with_three_owners_and_charges_each_the_jobs_rho(
    pate_ensemble, api, ml_queue, pool, private_storage
):
    start_worker(pool, "ml-worker", ml_queue, worker_env(private_storage, CLOAKROOM_ML_QUEUE=ml_queue))
    for dataset in Dataset.objects.filter(pk__in=pate_ensemble["dataset_ids"]):
        dataset.epsilon_cap = Decimal("100")
        dataset.save()
    upload = unlabelled_csv(40)
    response = submit(api, pate_ensemble["id"], QUIET, upload=upload)
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    pool.wait_until("the PATE job to be released", lambda: Job.objects.get(pk=job_id).status == "released", timeout=120)
    job = Job.objects.get(pk=job_id)
    body = api.get(f"/api/v1/jobs/{job_id}/").json()
    result = body["result"]
    assert body["kind"] == "pate" and len(result["labels"]) == 40 and result["asked"] == 30
    assert result["answered"] == sum(label is not None for label in result["labels"]) > 0
    right = [label == truth for label, truth in zip(result["labels"], upload.truth, strict=True) if label]
    assert sum(right) >= 0.9 * len(right)
    used = accounting.rho_charge(engine.used_rho(engine.parse_spec(QUIET, 40, delta=1e-5), 30, result["answered"]))
    ids = set(pate_ensemble["dataset_ids"])
    assert sums(job_id, "reserve") == dict.fromkeys(ids, job.rho)
    assert sums(job_id, "commit") == dict.fromkeys(ids, used)
    for dataset in Dataset.objects.filter(pk__in=ids):
        assert dataset.rho_used == used
    assert result["epsilon"] == pytest.approx(accounting.zcdp_epsilon(float(used), 1e-5), abs=1e-6)
    csv_rows = api.get(f"/api/v1/jobs/{job_id}/download/?format=csv").content.decode().splitlines()
    assert csv_rows[0] == "row,label" and len(csv_rows) == 41


def test_a_cancelled_and_a_failed_job_refund_every_member(pate_ensemble, api, ml_queue, pool, private_storage):
    ids = set(pate_ensemble["dataset_ids"])
    # Cancelled while queued (no worker yet): the worker that starts later skips it.
    cancelled = submit(api, pate_ensemble["id"], SPEC).json()["id"]
    assert api.post(f"/api/v1/jobs/{cancelled}/cancel/").json()["status"] == "cancelled"
    # Failed: one member's stored file is gone, so the worker cannot load it.
    victim = Dataset.objects.get(pk=pate_ensemble["dataset_ids"][1])
    (private_storage / victim.file_path).unlink()
    failed = submit(api, pate_ensemble["id"], SPEC).json()["id"]
    start_worker(pool, "ml-worker", ml_queue, worker_env(private_storage, CLOAKROOM_ML_QUEUE=ml_queue))
    pool.wait_until("the PATE job to fail", lambda: Job.objects.get(pk=failed).status == "failed", timeout=120)
    for job_id in (cancelled, failed):
        job = Job.objects.get(pk=job_id)
        assert sums(job_id, "refund") == dict.fromkeys(ids, job.rho)
        assert sums(job_id, "commit") == {}
    assert Job.objects.get(pk=cancelled).status == "cancelled"
    assert all(d.rho_used == 0 for d in Dataset.objects.filter(pk__in=ids))
