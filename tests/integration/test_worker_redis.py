"""A real Celery worker process on Redis and PostgreSQL, fed by this test process.

The worker is pointed at the database pytest-django created for this run (``test_<name>``), so
``transaction=True`` is needed: the worker's writes must be committed for the test to see them,
and the test's own rows must be committed for the worker to see them.

Each test uses a queue of its own, so parallel runs sharing one Redis database, or messages left
over from an earlier interrupted run, can never be picked up by the wrong worker.
"""

from __future__ import annotations

import os
import re
import uuid

import pytest

from compute.models import WorkerHeartbeat
from compute.tasks import worker_heartbeat_record_task
from tests.integration.live import ProcessPool, celery_worker_args, clean_env, live_database_url, worker_is_ready

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def redis_broker_url() -> str:
    url = os.environ.get("CELERY_BROKER_URL") or os.environ.get("REDIS_URL")
    assert url and url.startswith("redis"), "this test needs Redis (set REDIS_URL)"
    return url


@pytest.fixture
def queue() -> str:
    return f"itest-{uuid.uuid4().hex}"


@pytest.fixture
def worker(tmp_path, redis_broker_url, queue):
    """One Celery worker process (solo pool: tasks run one at a time, in queue order)."""
    pool = ProcessPool(log_dir=tmp_path)
    env = clean_env(DATABASE_URL=live_database_url(), CELERY_BROKER_URL=redis_broker_url, REDIS_URL=redis_broker_url)
    try:
        process = pool.start("celery-worker", celery_worker_args(queues=queue, name=queue, pool="solo"), env)
        pool.wait_until("the Celery worker to be ready", lambda: worker_is_ready(process), timeout=60)
        yield pool, process
    finally:
        pool.stop_all()
        print(pool.logs())


def send(token: str, queue: str) -> None:
    worker_heartbeat_record_task.apply_async(args=[token], queue=queue)


def test_a_worker_on_redis_records_a_heartbeat_in_postgresql(worker, queue):
    pool, _ = worker
    token = uuid.uuid4().hex
    send(token, queue)
    pool.wait_until("the heartbeat row", lambda: WorkerHeartbeat.objects.filter(token=token).exists(), timeout=60)


def test_a_heartbeat_delivered_twice_leaves_one_row(worker, queue):
    pool, process = worker
    token = uuid.uuid4().hex
    sentinel = uuid.uuid4().hex
    send(token, queue)
    send(token, queue)
    # The solo pool runs tasks one at a time in queue order, so once the sentinel is recorded both
    # copies of the token have been processed.
    send(sentinel, queue)
    pool.wait_until(
        "the sentinel heartbeat", lambda: WorkerHeartbeat.objects.filter(token=sentinel).exists(), timeout=60
    )
    assert len(re.findall(r"Task compute\.heartbeat\[[^\]]+\] succeeded", process.log())) == 3, process.log()
    assert WorkerHeartbeat.objects.filter(token=token).count() == 1
