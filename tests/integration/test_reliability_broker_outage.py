"""Reliability (docs/RELIABILITY.md, "Broker outage"): job submissions while the broker is down.

Every part is real: gunicorn, a Celery worker and Celery beat (the sweeper at its default interval),
on this test's PostgreSQL database and on a redis-server of the test's own, which the test pauses
(SIGSTOP: connections hang), stops (connections refused; no persistence, so its messages are lost)
and starts again. Every submission made meanwhile must be answered 202 with its job, within seconds;
every job stored must be one a client was told about; once the broker is back, every job must be
released, and charged, once, within two minutes.
"""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

import pytest
import requests

from accounts.services import api_key_create
from compute.models import Job
from marketplace.models import LedgerEntry, Purchase
from tests.integration.live import start_web
from tests.integration.test_reliability_health import OwnRedis, health, stack_env, start_beat, start_worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# How long one submission may take while the broker is down; a publish that hangs would take the
# gunicorn worker's whole timeout (60 s) and end in an error.
SUBMIT_BOUND = 10
RECOVERY_BOUND = 120


def submit(url: str, key: str, purchase: Purchase, epsilon: str, **headers: str) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = requests.post(
        f"{url}/api/v1/jobs/",
        json={"purchase": purchase.pk, "query": {"aggregate": "count"}, "epsilon": epsilon},
        headers={"Authorization": f"Bearer {key}", **headers},
        timeout=90,
    )
    return response, time.monotonic() - started


def test_submissions_during_a_broker_outage_are_accepted_and_released_once_it_is_back(
    buyer, purchase, pool, private_storage, tmp_path
):
    _, key = api_key_create(user=buyer, name="outage")
    broker = OwnRedis(pool)
    broker.start()
    queue = f"outage-{uuid.uuid4().hex}"
    env = stack_env(
        broker_url=broker.url, root=tmp_path, CLOAKROOM_PRIVATE_ROOT=str(private_storage), CLOAKROOM_DP_QUEUE=queue
    )
    # Beat first: its first sweep is due one interval (60 s) after it starts, during the outage.
    beat = start_beat(pool, env, tmp_path)
    url = start_web(pool, env)
    start_worker(pool, "worker", f"{queue},default", env)

    before, _ = submit(url, key, purchase, "0.01")
    assert before.status_code == 202, before.text
    pool.wait_until(
        "the job before the outage", lambda: Job.objects.get(pk=before.json()["id"]).status == "released", timeout=60
    )

    answers: list[tuple[int, str, float]] = []
    ids: list[int] = []

    def submit_during_outage(epsilon: str, **headers: str) -> dict:
        response, took = submit(url, key, purchase, epsilon, **headers)
        answers.append((response.status_code, epsilon, took))
        assert response.status_code == 202, f"{response.status_code} after {took:.1f}s: {response.text}"
        assert took < SUBMIT_BOUND, f"a submission took {took:.1f}s while the broker was down"
        body = response.json()
        assert body["status"] == "queued"
        ids.append(body["id"])
        return body

    # 1. The broker hangs: it accepts connections and answers nothing.
    outage_started = time.monotonic()
    broker.pause()
    for i in range(3):
        submit_during_outage(f"0.02{i + 1}")
    assert health(url)[0] == 503
    # 2. The broker is gone (and with it every message it held): connections are refused.
    broker.stop()
    for i in range(6):
        submit_during_outage(f"0.03{i + 1}")
    code, body, _ = health(url)
    assert (code, body["broker"]) == (503, "unreachable")
    # A client that retries with its Idempotency-Key gets the same job, and pays once.
    first = submit_during_outage("0.04", **{"Idempotency-Key": "outage-retry"})
    ids.pop()
    again, _ = submit(url, key, purchase, "0.04", **{"Idempotency-Key": "outage-retry"})
    assert again.status_code == 202 and again.json()["id"] == first["id"] and again.json()["reused"] is True
    ids.append(first["id"])

    # Every job stored during the outage is one a client was told about, with its budget reserved once.
    stored = set(Job.objects.exclude(pk=before.json()["id"]).values_list("pk", flat=True))
    assert stored == set(ids)
    assert LedgerEntry.objects.filter(job_id__in=ids, kind="reserve").count() == len(ids)

    # The outage lasts until a sweep has fallen due and beat could not send it: beat must wait for
    # the broker (not exit, not skip), and send that sweep once the broker is back.
    pool.wait_until(
        "beat to find the broker gone when a sweep is due",
        lambda: "beat: Connection error" in beat.log(),
        timeout=90,
        interval=0.5,
    )
    outage = time.monotonic() - outage_started
    broker.start()
    back = time.monotonic()
    pool.wait_until(
        "every job accepted during the outage to be released",
        lambda: Job.objects.filter(pk__in=ids, status="released").count() == len(ids),
        timeout=RECOVERY_BOUND,
        interval=0.5,
    )
    recovered = time.monotonic() - back
    assert health(url)[0] == 200
    print(f"answers during the outage (status, epsilon, seconds): {answers}")
    print(f"the outage lasted {outage:.1f}s; every job was released {recovered:.1f}s after the broker came back")

    everything = [before.json()["id"], *ids]
    for job_id in everything:
        kinds = sorted(LedgerEntry.objects.filter(job_id=job_id).values_list("kind", flat=True))
        assert kinds == ["commit", "reserve"], (job_id, kinds)
    total = sum(Job.objects.filter(pk__in=everything).values_list("epsilon", flat=True), Decimal(0))
    assert Purchase.objects.get(pk=purchase.pk).epsilon_used == total
