"""DP jobs through real Celery worker processes on Redis and PostgreSQL.

The worker is pointed at the test database (``transaction=True``, so both sides see committed rows)
and consumes a queue of this test's own. Jobs are submitted through the API in this process; their
tasks are queued on commit onto the real broker.
"""

from __future__ import annotations

import os
import signal
import uuid
from decimal import Decimal

import pytest

from compute import services
from compute.models import Job
from marketplace.models import LedgerEntry, Purchase
from tests.integration.live import celery_worker_args, clean_env, worker_is_ready
from tests.integration.test_worker_redis import live_database_url

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def dp_queue(settings):
    settings.CLOAKROOM_DP_QUEUE = f"jtest-{uuid.uuid4().hex}"
    return settings.CLOAKROOM_DP_QUEUE


def worker_env(private_storage, **extra):
    url = os.environ.get("CELERY_BROKER_URL") or os.environ["REDIS_URL"]
    return clean_env(
        DATABASE_URL=live_database_url(),
        CELERY_BROKER_URL=url,
        REDIS_URL=url,
        CLOAKROOM_PRIVATE_ROOT=str(private_storage),
        **extra,
    )


def start_worker(pool, name, queue, env, pool_kind="prefork"):
    process = pool.start(name, celery_worker_args(queues=queue, name=f"{name}-{queue}", pool=pool_kind), env)
    pool.wait_until(f"{name} to be ready", lambda: worker_is_ready(process), timeout=60)
    return process


def ledger(purchase):
    out = {k: Decimal(0) for k in ("reserve", "commit", "refund")}
    for e in LedgerEntry.objects.filter(purchase=purchase):
        out[e.kind] += e.epsilon
    return out


def test_a_real_worker_releases_jobs_and_the_ledger_sums_exactly(api, purchase, dp_queue, pool, private_storage):
    start_worker(pool, "worker", dp_queue, worker_env(private_storage))
    queries = [
        ({"aggregate": "count"}, "0.1"),
        ({"aggregate": "mean", "column": "income", "group_by": ["region"]}, "0.25"),
        ({"aggregate": "quantile", "column": "age", "quantiles": [0.25, 0.5, 0.75]}, "0.333333"),
        ({"aggregate": "histogram", "column": "age", "bins": [0, 30, 60, 100]}, "0.05"),
    ]
    ids = []
    for query, epsilon in queries:
        response = api.post(
            "/api/v1/jobs/", {"purchase": purchase.pk, "query": query, "epsilon": epsilon}, format="json"
        )
        assert response.status_code == 202, response.content
        ids.append(response.json()["id"])
    pool.wait_until(
        "every job to be released",
        lambda: Job.objects.filter(pk__in=ids, status="released").count() == len(ids),
        timeout=90,
    )
    total = sum((Decimal(e) for _, e in queries), Decimal(0))
    sums = ledger(purchase)
    assert sums == {"reserve": total, "commit": total, "refund": Decimal(0)}
    purchase.refresh_from_db()
    assert purchase.epsilon_used == total == Decimal("0.733333")
    body = api.get(f"/api/v1/purchases/{purchase.pk}/ledger/").json()
    assert body["epsilon_committed"] == "0.733333" and body["epsilon_remaining"] == "1.266667"
    for job_id in ids:
        assert api.get(f"/api/v1/jobs/{job_id}/").json()["receipt"]["epsilon_charged"] != "0"


def test_a_worker_killed_mid_job_is_recovered_by_the_sweeper_and_charged_once(
    api, purchase, dp_queue, pool, private_storage, settings
):
    slow = start_worker(pool, "doomed", dp_queue, worker_env(private_storage, CLOAKROOM_FAULT_JOB_DELAY_SECONDS="60"))
    job_id = api.post(
        "/api/v1/jobs/", {"purchase": purchase.pk, "query": {"aggregate": "count"}, "epsilon": "0.2"}, format="json"
    ).json()["id"]
    pool.wait_until("the job to be claimed", lambda: Job.objects.get(pk=job_id).status == "running", timeout=60)
    os.killpg(slow.popen.pid, signal.SIGKILL)  # the worker and its pool child, mid-job
    slow.popen.wait(timeout=10)
    pool.processes.remove(slow)
    assert Job.objects.get(pk=job_id).status == "running"
    assert ledger(purchase) == {"reserve": Decimal("0.2"), "commit": Decimal(0), "refund": Decimal(0)}

    # A fresh worker, and the sweeper once the dead worker's lease has run out.
    start_worker(pool, "rescuer", dp_queue, worker_env(private_storage, CLOAKROOM_JOB_LEASE_SECONDS="2"))
    settings.CLOAKROOM_JOB_LEASE_SECONDS = 2
    pool.wait_until("the lease to expire", lambda: services.jobs_sweep()["requeued"] >= 1, timeout=30, interval=0.5)
    pool.wait_until("the job to be released", lambda: Job.objects.get(pk=job_id).status == "released", timeout=60)
    services.jobs_sweep()  # a late sweep, or a late redelivery, finds nothing to do
    job = Job.objects.get(pk=job_id)
    assert job.attempts >= 2
    assert ledger(purchase) == {"reserve": Decimal("0.2"), "commit": Decimal("0.2"), "refund": Decimal(0)}
    assert Purchase.objects.get(pk=purchase.pk).epsilon_used == Decimal("0.2")
