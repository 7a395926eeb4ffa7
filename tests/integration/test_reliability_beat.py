"""Reliability (docs/RELIABILITY.md, "Broker outage"): Celery beat, once it has sent sweeps, survives a
broker outage (each sweep that falls due meanwhile fails to be sent, within seconds, and is logged) and
sends the next one once the broker is back, for a worker that reconnected too.

Real processes: beat (a 3 s sweep interval, so that the test sees several) and a worker on the default
queue, on this test's database and a redis-server of its own that the test stops and starts again.
"""

from __future__ import annotations

import re

import pytest

from tests.integration.test_reliability_health import OwnRedis, stack_env, start_beat, start_worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


SWEEP_DONE = re.compile(r"Task compute\.sweep_jobs\[[^\]]+\] succeeded")


def test_beat_keeps_its_schedule_through_a_broker_outage(pool, tmp_path):
    broker = OwnRedis(pool)
    broker.start()
    env = stack_env(broker_url=broker.url, root=tmp_path, CLOAKROOM_SWEEP_SECONDS="3")
    beat = start_beat(pool, env, tmp_path)
    worker = start_worker(pool, "sweeper", "default", env)
    pool.wait_until("a sweep before the outage", lambda: SWEEP_DONE.search(worker.log()), timeout=30)

    broker.stop()
    pool.wait_until(
        "beat to fail to send a sweep",
        lambda: "Couldn't apply scheduled task sweep-stuck-jobs" in beat.log(),
        timeout=30,
        interval=0.25,
    )
    failed_sends = beat.log().count("Couldn't apply scheduled task sweep-stuck-jobs")
    pool.wait_until(
        "beat to fail again, one interval later",
        lambda: beat.log().count("Couldn't apply scheduled task sweep-stuck-jobs") > failed_sends,
        timeout=30,
        interval=0.25,
    )
    assert beat.alive() and worker.alive()

    before = len(SWEEP_DONE.findall(worker.log()))
    broker.start()
    pool.wait_until(
        "a sweep after the outage",
        lambda: len(SWEEP_DONE.findall(worker.log())) > before,
        timeout=60,
        interval=0.25,
    )
