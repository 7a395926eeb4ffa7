"""Reliability (docs/RELIABILITY.md): ``GET /api/v1/health/`` answers 503 while the broker is down.

The broker here is a ``redis-server`` of the test's own, on a free port and without persistence, so
the test can stop it (connections refused), pause it with SIGSTOP (connections accepted, nothing
answered: the case only socket timeouts bound) and start it again, without touching the shared
Redis. The helpers below are used by the other ``test_reliability_*`` modules too.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
import redis
import requests

from tests.integration.live import (
    ProcessPool,
    celery_worker_args,
    clean_env,
    free_port,
    live_database_url,
    start_web,
    stop_process,
    worker_is_ready,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class OwnRedis:
    """A redis-server of one test's own: stop, pause and start it at will."""

    def __init__(self, pool: ProcessPool, port: int | None = None):
        self.pool = pool
        self.port = port or free_port()
        self.process = None
        self.paused = False
        self._starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def answers(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1).ping())
        except redis.RedisError:
            return False

    def start(self) -> None:
        self._starts += 1
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = self.pool.start(f"redis-{self._starts}", args, clean_env())
        self.pool.wait_until("redis-server to answer", self.answers, timeout=20, interval=0.1)

    def stop(self) -> None:
        """Stop it for good (every message it held is lost, as after a crash without persistence)."""
        self.resume()
        stop_process(self.process, timeout=10)
        self.pool.processes.remove(self.process)
        self.process = None

    def pause(self) -> None:
        os.kill(self.process.popen.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.process is not None and self.paused:
            os.kill(self.process.popen.pid, signal.SIGCONT)
        self.paused = False


@pytest.fixture
def own_redis(pool):
    server = OwnRedis(pool)
    server.start()
    yield server
    server.resume()  # a paused server would ignore the SIGTERM that stops it


def stack_env(*, broker_url: str, root: Path, **extra: str) -> dict[str, str]:
    """The environment of this test's web server, workers and beat: the test database, the broker
    given, folders under ``root``. No REDIS_URL: only the broker goes down in these tests."""
    return clean_env(
        DATABASE_URL=live_database_url(),
        CELERY_BROKER_URL=broker_url,
        CLOAKROOM_VAR_DIR=str(root / "var"),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        **extra,
    )


def start_worker(pool: ProcessPool, name: str, queues: str, env: Mapping[str, str], pool_kind: str = "prefork"):
    process = pool.start(name, celery_worker_args(queues=queues, name=name, pool=pool_kind), env)
    pool.wait_until(f"{name} to be ready", lambda: worker_is_ready(process), timeout=60)
    return process


def start_beat(pool: ProcessPool, env: Mapping[str, str], root: Path):
    schedule = root / "celerybeat-schedule"
    args = [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO", "--schedule", str(schedule)]
    process = pool.start("beat", args, env)
    pool.wait_until("beat to start", lambda: "beat: Starting..." in process.log(), timeout=60)
    return process


def health(url: str) -> tuple[int, dict, float]:
    started = time.monotonic()
    response = requests.get(f"{url}/api/v1/health/", timeout=30)
    return response.status_code, response.json(), time.monotonic() - started


def test_health_is_503_while_the_broker_is_down_and_200_once_it_is_back(pool, own_redis, tmp_path):
    url = start_web(pool, stack_env(broker_url=own_redis.url, root=tmp_path))
    code, body, _ = health(url)
    assert (code, body["database"], body["broker"]) == (200, "ok", "ok")

    # Paused: the kernel still accepts connections, nothing answers them. Only timeouts end the wait.
    own_redis.pause()
    code, body, took = health(url)
    assert (code, body["database"], body["broker"]) == (503, "ok", "unreachable"), body
    assert took < 10, f"the health check took {took:.1f}s against a paused broker"
    print(f"health against a paused broker: {code} in {took:.2f}s")
    own_redis.resume()
    code, body, _ = health(url)
    assert (code, body["broker"]) == (200, "ok")

    # Stopped: connections are refused.
    own_redis.stop()
    code, body, took = health(url)
    assert (code, body["database"], body["broker"]) == (503, "ok", "unreachable"), body
    assert took < 10
    print(f"health against a stopped broker: {code} in {took:.2f}s")
    own_redis.start()
    code, body, _ = health(url)
    assert (code, body["broker"]) == (200, "ok")
