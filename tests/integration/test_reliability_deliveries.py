"""Reliability (docs/RELIABILITY.md, "Deliveries that keep failing"): a queued job whose deliveries are
all dropped is failed and refunded after CLOAKROOM_JOB_MAX_DELIVERIES, not re-sent forever.

A real Celery worker with a broken database setting (a database that does not exist) consumes the
job's queue: it receives each delivery, fails before it can claim the job, and acknowledges it, so
the job stays queued with its budget held. The sweeper runs in this process on the real broker.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from decimal import Decimal

import pytest

from compute import services
from compute.models import Job
from marketplace.models import LedgerEntry, Purchase
from tests.integration.live import clean_env, live_database_url
from tests.integration.test_reliability_health import start_worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

MAX_DELIVERIES = 3


def test_a_queued_job_whose_deliveries_are_all_dropped_is_failed_and_refunded(
    api, purchase, pool, private_storage, settings
):
    settings.CLOAKROOM_DP_QUEUE = queue = f"broken-{uuid.uuid4().hex}"
    settings.CLOAKROOM_JOB_MAX_DELIVERIES = MAX_DELIVERIES
    settings.CLOAKROOM_JOB_REDELIVER_SECONDS = 1
    # A short lease too, so that no sweeper waits 11 minutes before its first re-send.
    settings.CLOAKROOM_JOB_LEASE_SECONDS = 1
    broker = os.environ.get("CELERY_BROKER_URL") or os.environ["REDIS_URL"]
    missing = live_database_url().rsplit("/", 1)[0] + f"/no_such_database_{uuid.uuid4().hex[:8]}"
    broken = start_worker(
        pool,
        "broken-worker",
        queue,
        clean_env(
            DATABASE_URL=missing,
            CELERY_BROKER_URL=broker,
            REDIS_URL=broker,
            CLOAKROOM_PRIVATE_ROOT=str(private_storage),
            CLOAKROOM_DP_QUEUE=queue,
        ),
        pool_kind="solo",
    )

    response = api.post(
        "/api/v1/jobs/", {"purchase": purchase.pk, "query": {"aggregate": "count"}, "epsilon": "0.3"}, format="json"
    )
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]

    def deliveries() -> int:
        return len(re.findall(r"Task compute\.run_dp_job\[[^\]]+\] raised unexpected", broken.log()))

    deadline = time.monotonic() + 90
    while Job.objects.get(pk=job_id).status == "queued" and time.monotonic() < deadline:
        services.jobs_sweep()
        time.sleep(0.5)
    job = Job.objects.get(pk=job_id)
    assert job.status == "failed", f"still {job.status} after {deliveries()} dropped deliveries\n{pool.logs()}"
    assert "refunded" in job.error
    # Every delivery reached the broken worker, and there were exactly the limit of them.
    pool.wait_until("the broken worker to log its last delivery", lambda: deliveries() >= MAX_DELIVERIES, timeout=10)
    assert deliveries() == MAX_DELIVERIES, broken.log()
    kinds = sorted(LedgerEntry.objects.filter(job_id=job_id).values_list("kind", flat=True))
    assert kinds == ["refund", "reserve"]
    assert Purchase.objects.get(pk=purchase.pk).epsilon_used == Decimal(0)

    # A later sweep sends nothing more: the job is done with.
    services.jobs_sweep()
    time.sleep(1.5)
    services.jobs_sweep()
    assert deliveries() == MAX_DELIVERIES
