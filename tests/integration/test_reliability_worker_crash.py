"""Reliability (docs/RELIABILITY.md, "Crashed workers"): a worker SIGKILLed mid-job gives its job back
within about a minute, long before the 11-minute lease, and the job is released and charged once.

Every part is real and keeps its default settings (the heartbeat interval, the lease, the sweeper's
interval in Celery beat) but for the one that makes the job slow: the doomed worker sleeps a minute
after claiming it (CLOAKROOM_FAULT_JOB_DELAY_SECONDS). gunicorn takes the submission; beat and a
worker on the default queue run the sweeper; a second worker completes the job.
"""

from __future__ import annotations

import os
import re
import signal
import time
import uuid
from decimal import Decimal

import pytest
import requests

from accounts.services import api_key_create
from compute.models import Job
from marketplace.models import LedgerEntry, Purchase
from tests.integration.live import start_web
from tests.integration.test_reliability_health import OwnRedis, stack_env, start_beat, start_worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

REQUEUE_BOUND = 90


def test_a_sigkilled_workers_job_is_back_in_the_queue_within_90_seconds_and_released_once(
    buyer, purchase, pool, private_storage, tmp_path, settings
):
    assert settings.CLOAKROOM_JOB_LEASE_SECONDS >= 600  # the default: the lease is not what recovers the job
    _, key = api_key_create(user=buyer, name="crash")
    broker = OwnRedis(pool)
    broker.start()
    queue = f"crash-{uuid.uuid4().hex}"
    env = stack_env(
        broker_url=broker.url, root=tmp_path, CLOAKROOM_PRIVATE_ROOT=str(private_storage), CLOAKROOM_DP_QUEUE=queue
    )
    start_beat(pool, env, tmp_path)
    start_worker(pool, "sweeper", "default", env)
    url = start_web(pool, env)
    doomed = start_worker(pool, "doomed", queue, {**env, "CLOAKROOM_FAULT_JOB_DELAY_SECONDS": "600"})

    response = requests.post(
        f"{url}/api/v1/jobs/",
        json={"purchase": purchase.pk, "query": {"aggregate": "count"}, "epsilon": "0.2"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    pool.wait_until("the job to be claimed", lambda: Job.objects.get(pk=job_id).status == "running", timeout=60)
    first_claim = Job.objects.get(pk=job_id).claim

    os.killpg(doomed.popen.pid, signal.SIGKILL)  # the worker and its pool child, mid-job
    doomed.popen.wait(timeout=10)
    killed = time.monotonic()
    pool.processes.remove(doomed)
    start_worker(pool, "rescuer", queue, env)

    def back_in_the_queue() -> bool:
        job = Job.objects.get(pk=job_id)
        return job.status != "running" or job.claim != first_claim

    pool.wait_until("the job to be back in the queue", back_in_the_queue, timeout=REQUEUE_BOUND, interval=0.25)
    requeued = time.monotonic() - killed
    pool.wait_until("the job to be released", lambda: Job.objects.get(pk=job_id).status == "released", timeout=60)
    released = time.monotonic() - killed
    print(f"back in the queue {requeued:.1f}s after the SIGKILL, released {released:.1f}s after it")

    job = Job.objects.get(pk=job_id)
    assert job.attempts == 2 and job.claim != first_claim
    assert sorted(LedgerEntry.objects.filter(job_id=job_id).values_list("kind", flat=True)) == ["commit", "reserve"]
    assert Purchase.objects.get(pk=purchase.pk).epsilon_used == Decimal("0.2")
    rescuer = next(p for p in pool.processes if p.name == "rescuer")
    assert len(re.findall(r"Task compute\.run_dp_job\[[^\]]+\] succeeded in [^:]+: 'released'", rescuer.log())) == 1
