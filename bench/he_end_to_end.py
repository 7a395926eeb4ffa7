"""The HE benchmark's ``--end-to-end`` mode: an encrypted sum through the real services."""

from __future__ import annotations

import argparse
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from bench.he_common import SCHEMA, load1, make_data, write_csv

if TYPE_CHECKING:
    from cloakroom_client import Client


def _wall(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _await_key(buyer: Client, job: dict) -> dict:
    """The job once the server has computed it and it waits for the key; RuntimeError otherwise."""
    deadline = time.monotonic() + 300
    while job["status"] not in ("awaiting_key", "failed", "released", "cancelled"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job['id']} still {job['status']} after 300 s")
        time.sleep(0.05)
        job = buyer.job(job["id"])
    if job["status"] != "awaiting_key":
        raise RuntimeError(f"job {job['id']} ended {job['status']}: {job.get('error')}")
    return job


def _print_report(
    args: argparse.Namespace,
    rows: int,
    seconds: tuple[float, float],
    figures: dict[int, list[tuple[float, float]]],
    task_seconds: dict[int, dict[str, list[float]]],
) -> None:
    """The Markdown table of the run; ``seconds`` is the time to encrypt and the time to publish."""
    encrypt_seconds, publish_seconds = seconds
    print(
        f"End to end, {rows:,} rows, sum-only bundle: encrypt {encrypt_seconds:.1f} s, publish (upload and "
        f"server check) {publish_seconds:.1f} s; parts of {args.part_chunks} chunks; "
        f"DATABASE_CONN_MAX_AGE={args.conn_max_age}; the first job of each worker is a warm-up"
    )
    print()
    print(
        "| rows | Celery concurrency | computed_at - started_at, each job (s) | median (s) "
        "| part task, median (s) | part tasks per job | job-start task, median (s) | load avg at submit |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|---|")
    for concurrency, values in figures.items():
        timed = [v for v, _ in values[1:]]
        tasks = task_seconds.get(concurrency, {})
        part_tasks = tasks.get("run_he_part") or [float("nan")]
        start_tasks = tasks.get("run_he_job") or [float("nan")]
        print(
            f"| {rows:,} | {concurrency} | {', '.join(f'{v:.3f}' for v, _ in values)} | "
            f"{statistics.median(timed):.3f} | {statistics.median(part_tasks):.3f} | "
            f"{len(part_tasks) / len(values):g} | {statistics.median(start_tasks):.3f} | "
            f"{', '.join(f'{ld:.2f}' for _, ld in values)} |"
        )


def end_to_end(args: argparse.Namespace, rows: int) -> None:
    """The server time of an encrypted sum through the real services, with one and two processes.

    Creates the PostgreSQL database ``--database-url`` names (dropping a leftover), migrates, starts
    gunicorn and a Celery worker on a queue of its own (``-Q <queue> --concurrency 1``, then a new
    worker with ``--concurrency 2``) on ``--redis-url``, publishes a sum-only bundle with
    ``publish_bundle``, buys, and submits ``{"aggregate": "sum", "column": "x"}`` with the SDK.
    For each job it reads ``started_at`` and ``computed_at`` from ``GET /api/v1/jobs/<id>/`` once the
    job waits for the key (no key agent runs, so the jobs stay there until the database is dropped).
    """
    # Imported here, not at the top, because the spawned workers of the other mode import the
    # benchmark's modules and their memory is measured; these are needed by this mode only.
    import psycopg
    import redis
    from psycopg import sql

    from cloakroom_client import Client, CloakroomError
    from cloakroom_client import he as client_he
    from cloakroom_client.upload import publish_bundle
    from tests.integration.live import (
        ProcessPool,
        celery_worker_args,
        run_manage,
        site_env,
        start_web,
        stop_process,
        worker_is_ready,
    )

    parts = urlsplit(args.database_url)
    db_name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    tag = uuid.uuid4().hex[:10]
    root = Path(tempfile.mkdtemp(prefix="cloakroom-he-e2e-"))
    (root / "logs").mkdir()
    env = site_env(
        root,
        f"bench-{tag}",
        DATABASE_URL=args.database_url,
        REDIS_URL=args.redis_url,
        CELERY_BROKER_URL=args.redis_url,
        CLOAKROOM_HE_PART_CHUNKS=str(args.part_chunks),
        DATABASE_CONN_MAX_AGE=str(args.conn_max_age),
        DEBUG="false",
        LOG_LEVEL="INFO",
    )
    queue = env["CLOAKROOM_HE_QUEUE"]
    pool = ProcessPool(log_dir=root / "logs")
    failed = True
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db_name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db_name)))
    try:
        migrated = run_manage(["migrate", "--noinput"], env)
        if migrated.returncode:
            raise RuntimeError(migrated.stdout + migrated.stderr)
        url = start_web(pool, env)
        password = "bench " + secrets.token_hex(8)
        Client.signup(url, username="bench-owner", email="owner@bench.invalid", password=password, roles=["owner"])
        Client.signup(url, username="bench-buyer", email="buyer@bench.invalid", password=password, roles=["buyer"])
        owner = Client(url, Client.create_api_key(url, username="bench-owner", password=password))
        buyer = Client(url, Client.create_api_key(url, username="bench-buyer", password=password))

        data = make_data(rows)
        write_csv(root / "data.csv", data)
        started = time.perf_counter()
        client_he.encrypt_csv(
            root / "data.csv", SCHEMA, root / "bundle", ("sum",), keystore=root / "keys", progress=False
        )
        encrypt_seconds = time.perf_counter() - started
        started = time.perf_counter()
        metadata = {"title": f"HE benchmark {rows} rows", "epsilon_cap": "100", "price_per_epsilon": "1"}
        dataset = publish_bundle(owner, root / "bundle", metadata, progress=False)
        try:
            owner.publish(dataset["id"])  # publish_bundle publishes already; this is a no-op or a 409 then
        except CloakroomError:
            pass
        publish_seconds = time.perf_counter() - started
        purchase = buyer.buy(dataset["id"], "50")

        figures: dict[int, list[tuple[float, float]]] = {}
        task_seconds: dict[int, dict[str, list[float]]] = {}
        serial = 0
        for concurrency in (1, 2):
            worker = pool.start(
                f"celery-{concurrency}", celery_worker_args(queues=queue, name=queue, concurrency=concurrency), env
            )
            pool.wait_until("the Celery worker to be ready", lambda w=worker: worker_is_ready(w), timeout=60)
            figures[concurrency] = []
            for _ in range(args.e2e_jobs + 1):  # the first job is a warm-up (context load in each process)
                serial += 1
                load = load1()
                job = buyer.submit(
                    purchase["id"], {"aggregate": "sum", "column": "x"}, epsilon=f"{0.1 + serial * 1e-4:.4f}"
                )
                job = _await_key(buyer, job)
                figures[concurrency].append((_wall(job["computed_at"]) - _wall(job["started_at"]), load))
            stop_process(worker)
            # Celery logs each task's own run time: the parts' and the job start's, for where the time goes.
            log = worker.log()
            task_seconds[concurrency] = {
                name: [float(v) for v in re.findall(rf"compute\.{name}\[[^\]]+\] succeeded in ([0-9.]+)s", log)]
                for name in ("run_he_job", "run_he_part")
            }
            pool.processes.remove(worker)  # stopped on purpose; wait_until fails on a dead process
        failed = False
    finally:
        pool.stop_all()
        if failed:
            print(pool.logs()[-6000:], file=sys.stderr)
        client = redis.Redis.from_url(args.redis_url)
        for key in client.scan_iter(match=f"*{tag}*"):
            client.delete(key)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db_name)))
        shutil.rmtree(root, ignore_errors=True)

    _print_report(args, rows, (encrypt_seconds, publish_seconds), figures, task_seconds)
