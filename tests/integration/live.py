"""Helpers for tests that run real processes: a web server, Celery workers, management commands.

Every process gets its own process group (so stopping it also stops the children a prefork worker
or gunicorn forks), a log file, and a bounded wait. The :class:`ProcessPool` is used from a fixture
whose finalizer always stops what it started, and prints the logs, which pytest shows when a test
failed.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

REPO_ROOT = Path(__file__).resolve().parents[2]

# Variables that select services or change behaviour. Child processes get them only when a test
# sets them on purpose, so the developer's shell cannot leak into what a test claims to run.
SERVICE_VARIABLES = (
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "CELERY_TASK_ALWAYS_EAGER",
    "CLOAKROOM_VAR_DIR",
    "CLOAKROOM_PRIVATE_ROOT",
    "DEBUG",
    "HTTPS",
    "TRUST_X_FORWARDED_PROTO",
    # The unit tests' one-process cache would hide what a site of several processes shares.
    "CLOAKROOM_CACHE_URL",
    "CLOAKROOM_CACHE_PREFIX",
)


def free_port() -> int:
    """A TCP port that was free a moment ago (the OS picks it when binding to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**overrides: str) -> dict[str, str]:
    """The current environment without the service variables, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES}
    env.update({"DJANGO_SETTINGS_MODULE": "config.settings", "PYTHONUNBUFFERED": "1"})
    env.update(overrides)
    return env


def live_database_url() -> str:
    """A DATABASE_URL for the database this test runs on (pytest-django's test_<name>)."""
    from django.db import connection

    s = connection.settings_dict
    assert s["ENGINE"] == "django.db.backends.postgresql", "this test needs PostgreSQL (set DATABASE_URL)"
    credentials = quote(s["USER"] or "postgres", safe="")
    if s.get("PASSWORD"):
        credentials += ":" + quote(s["PASSWORD"], safe="")
    return f"postgres://{credentials}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{quote(s['NAME'], safe='')}"


def run_manage(args: Iterable[str], env: Mapping[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    """Run ``manage.py <args>`` to completion in its own process, with a time limit."""
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "manage.py"), *args],
        cwd=REPO_ROOT,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class LiveProcess:
    name: str
    popen: subprocess.Popen
    log_path: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


@dataclass
class ProcessPool:
    """Starts processes, waits on conditions, and stops everything it started."""

    log_dir: Path
    processes: list[LiveProcess] = field(default_factory=list)

    def start(self, name: str, args: list[str], env: Mapping[str, str]) -> LiveProcess:
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                args,
                cwd=REPO_ROOT,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # A new session is a new process group, so stop() reaches forked children too.
                start_new_session=True,
            )
        process = LiveProcess(name=name, popen=popen, log_path=log_path)
        self.processes.append(process)
        return process

    def logs(self) -> str:
        parts = []
        for process in self.processes:
            parts.append(f"----- {process.name} (exit code {process.popen.poll()}) -----\n{process.log()}")
        return "\n".join(parts)

    def wait_until(self, what: str, predicate: Callable[[], bool], timeout: float, interval: float = 0.25) -> None:
        """Poll ``predicate`` until it is true; fail with every log if it is not within ``timeout``,
        or as soon as one of the processes has died (waiting on would be pointless)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            dead = [p.name for p in self.processes if not p.alive()]
            if dead:
                raise AssertionError(f"{', '.join(dead)} exited while waiting for {what}.\n{self.logs()}")
            time.sleep(interval)
        raise AssertionError(f"Timed out after {timeout:g}s waiting for {what}.\n{self.logs()}")

    def stop_all(self, timeout: float = 20) -> None:
        for process in reversed(self.processes):
            stop_process(process, timeout=timeout)


def stop_process(process: LiveProcess, timeout: float = 20) -> None:
    """SIGTERM the leader (a warm shutdown: Celery and gunicorn stop their own children), then
    SIGKILL whatever is left of the process group, so nothing outlives the test."""
    if process.popen.poll() is None:
        process.popen.terminate()
        try:
            process.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.popen.kill()
            process.popen.wait(timeout=10)
    # The leader may be gone while forked children linger; make sure the group is empty.
    try:
        os.killpg(process.popen.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def celery_worker_args(*, queues: str, name: str, pool: str = "prefork", concurrency: int = 1) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "--loglevel",
        "INFO",
        "-Q",
        queues,
        "-n",
        f"{name}@%h",
        "--pool",
        pool,
        "--concurrency",
        str(concurrency),
        # Gossip, mingle and heartbeats talk to other workers; a test has none, and mingle would
        # only add seconds of waiting at start-up.
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]


def gunicorn_args(*, port: int, workers: int = 2) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "config.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--timeout",
        "60",
        "--access-logfile",
        "-",
        "--error-logfile",
        "-",
        # Gunicorn's control socket defaults to one path in the home folder, which parallel test
        # runs would fight over; tests never use it.
        "--no-control-socket",
    ]


def worker_is_ready(process: LiveProcess) -> bool:
    """Celery logs "ready." once it consumes from its queues."""
    return " ready." in process.log()


def site_env(root: Path, tag: str, **overrides: str) -> dict[str, str]:
    """The environment of a throwaway site: fresh secrets, its own folders under ``root`` and Celery
    queues named by ``tag`` (so parallel runs on one Redis never take each other's tasks)."""
    from cryptography.fernet import Fernet

    return clean_env(
        CLOAKROOM_VAR_DIR=str(root / "var"),
        CLOAKROOM_PRIVATE_ROOT=str(root / "media"),
        SECRET_KEY=secrets.token_urlsafe(50),
        CLOAKROOM_DATA_KEYS=Fernet.generate_key().decode(),
        CLOAKROOM_SIGNUP_CREDITS="1000",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        CLOAKROOM_DP_QUEUE=f"dp-{tag}",
        CLOAKROOM_HE_QUEUE=f"he-{tag}",
        CLOAKROOM_KEYS_QUEUE=f"keys-{tag}",
        CLOAKROOM_ML_QUEUE=f"ml-{tag}",
        **overrides,
    )


def web_answers(url: str, path: str = "/api/v1/health/") -> bool:
    """Whether a web server answers at ``url`` (refused while binding, or slow while its first
    worker imports Django, count as not yet). The health page answers 503 when a service is down,
    which still means the server is up."""
    import requests

    try:
        return requests.get(f"{url.rstrip('/')}{path}", timeout=2).status_code in (200, 503)
    except requests.RequestException:
        return False


def start_web(pool: ProcessPool, env: Mapping[str, str], *, workers: int = 2, timeout: float = 60) -> str:
    """Start gunicorn on a free port and wait until it answers; returns its base URL (no trailing /)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    pool.start("gunicorn", gunicorn_args(port=port, workers=workers), env)
    pool.wait_until("gunicorn to answer", lambda: web_answers(url), timeout=timeout)
    return url
