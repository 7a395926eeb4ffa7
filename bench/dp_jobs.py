"""End-to-end benchmark of DP query jobs: HTTP submit, a real Celery worker, release, poll.

For each size it lists a dataset through the real services (a Parquet upload, declared bounds,
encrypted at rest), buys an allotment, starts gunicorn (2 workers) and one Celery worker (prefork,
concurrency 1) on a queue of its own, then submits count, mean, a median and a grouped mean over
HTTP with an API key and polls ``GET /api/v1/jobs/{id}/`` until the job is released. The latency is
from just before the POST to the poll that sees ``released``. Beside it, the same aggregate is
computed by bare pandas on the same frame in the same process and run. It also splits each job's
latency into phases using the job's own timestamps, and times the loader and the engine in-process.

Everything it needs is created fresh and removed at the end (also on errors and Ctrl-C): a
PostgreSQL database, a temporary folder for stored files and logs, and its keys in a Redis database.

    python bench/dp_jobs.py [--sizes 10000 100000 1000000] [--repeats 15] [--warmups 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import django
import redis
import requests
from django.db import connections

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

# The queries, the synthetic frame and the declared schema are those of the engine-only benchmark,
# so the two tables in docs/BENCHMARKS.md measure the same work.
from dp_engine import QUERIES, timed  # noqa: E402
from dp_jobs_report import Listing, Row, Sample, report, wall  # noqa: E402
from dp_jobs_stores import create_database, drop_database, remove_redis_keys, settings_env  # noqa: E402

from tests.integration.live import (  # noqa: E402
    ProcessPool,
    celery_worker_args,
    clean_env,
    free_port,
    gunicorn_args,
    worker_is_ready,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/cloakroom_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/7"
TERMINAL = {"released", "failed", "cancelled"}


class Api:
    def __init__(self, base: str, api_key: str, poll_interval: float) -> None:
        self.base = base
        self.poll_interval = poll_interval
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {api_key}"

    def run_job(self, purchase_id: int, query: dict, epsilon: Decimal, timeout: float = 300) -> Sample:
        body = {"purchase": purchase_id, "kind": "query", "query": query, "epsilon": f"{epsilon:f}", "delta": "0"}
        wall_start = time.time()
        start = time.perf_counter()
        response = self.session.post(f"{self.base}/api/v1/jobs/", json=body, timeout=60)
        post = time.perf_counter() - start
        if response.status_code != 202:
            raise RuntimeError(f"POST /api/v1/jobs/ answered {response.status_code}: {response.text[:500]}")
        job = response.json()
        if job.get("reused"):
            raise RuntimeError(f"job {job['id']} was a free repeat of an earlier one; the epsilons must differ")
        url = f"{self.base}/api/v1/jobs/{job['id']}/"
        while job["status"] not in TERMINAL:
            if time.perf_counter() - start > timeout:
                raise RuntimeError(f"job {job['id']} not released after {timeout:g}s: {job['status']}")
            time.sleep(self.poll_interval)
            response = self.session.get(url, timeout=60)
            response.raise_for_status()
            job = response.json()
        latency = time.perf_counter() - start
        wall_seen = time.time()
        if job["status"] != "released":
            raise RuntimeError(f"job {job['id']} ended {job['status']}: {job.get('error')}")
        return Sample(
            latency=latency,
            post=post,
            wall_start=wall_start,
            wall_seen=wall_seen,
            created_at=wall(job["created_at"]),
            started_at=wall(job["started_at"]),
            finished_at=wall(job["finished_at"]),
        )


# ---------------------------------------------------------------------------------------------


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1])
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000], help="row counts")
    parser.add_argument("--repeats", type=int, default=15, help="timed jobs per query and size (default 15)")
    parser.add_argument("--warmups", type=int, default=2, help="untimed jobs first (default 2)")
    parser.add_argument("--poll-interval", type=float, default=0.005, help="seconds between polls (default 0.005)")
    parser.add_argument(
        "--epsilon", type=Decimal, default=Decimal("0.01"), help="epsilon of the first job (default 0.01)"
    )
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="created, then dropped at the end")
    parser.add_argument(
        "--replace-database", action="store_true", help="drop the database first if it exists (a leftover)"
    )
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="a Redis database of its own")
    parser.add_argument(
        "--conn-max-age",
        type=int,
        default=0,
        help="DATABASE_CONN_MAX_AGE for the servers (default 0, the shipped default: a connection per request)",
    )
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers (default 2)")
    args = parser.parse_args()
    if args.repeats < 1 or args.warmups < 0:
        parser.error("--repeats must be at least 1 and --warmups at least 0")
    if not args.epsilon.is_finite() or args.epsilon <= 0:
        parser.error("--epsilon must be a number greater than 0")
    return args


def start_servers(pool: ProcessPool, env: dict[str, str], args: argparse.Namespace, queue: str) -> str:
    """gunicorn and one Celery worker on this run's queue, both ready; the web server's base URL."""
    port = free_port()
    child_env = clean_env(**env)
    pool.start("gunicorn", gunicorn_args(port=port, workers=args.web_workers), child_env)
    worker = pool.start("celery-worker", celery_worker_args(queues=queue, name=queue), child_env)
    base = f"http://127.0.0.1:{port}"

    def web_is_up() -> bool:
        try:
            return requests.get(f"{base}/api/v1/health/", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    pool.wait_until("gunicorn to answer", web_is_up, timeout=60)
    pool.wait_until("the Celery worker to be ready", lambda: worker_is_ready(worker), timeout=60)
    return base


def run_jobs(api: Api, listings: list[Listing], args: argparse.Namespace) -> list[Row]:
    """Every query on every dataset, warm-ups first; the first job of a row is its cold sample."""
    results = []
    serial = 0
    for listing in listings:
        for name, (raw, _) in QUERIES.items():
            row = Row(listing.rows, name)
            for i in range(args.warmups + args.repeats):
                # A slightly different epsilon each time, so no job is a free repeat of another.
                serial += 1
                sample = api.run_job(listing.purchase_id, raw, args.epsilon + serial * Decimal("0.000001"))
                if i == 0:
                    row.cold = sample
                if i >= args.warmups:
                    row.samples.append(sample)
            results.append(row)
    return results


def baselines(
    fixtures: ModuleType, listings: list[Listing], results: list[Row], args: argparse.Namespace
) -> dict[int, tuple[float, float]]:
    """pandas and the engine in this process, and the cold load, while the servers are idle."""
    loads: dict[int, tuple[float, float]] = {}
    for listing in listings:
        load, decrypt, engine = fixtures.in_process_times(listing, args.repeats, float(args.epsilon))
        loads[listing.rows] = (load, decrypt)
        for row in results:
            if row.rows == listing.rows:
                bare = QUERIES[row.query][1]
                row.pandas_median, _ = timed(lambda b=bare, fr=listing.frame: b(fr), args.repeats)
                row.engine_median = engine[row.query]
    return loads


def main() -> int:
    args = parse_args()
    # SIGTERM unwinds like Ctrl-C, so the finally blocks below stop the servers and drop the database.
    signal.signal(signal.SIGTERM, _interrupt)

    queue = f"bench-dp-{uuid.uuid4().hex[:12]}"
    tmp = Path(tempfile.mkdtemp(prefix="cloakroom-bench-"))
    env = settings_env(args, tmp, queue)
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    (tmp / "logs").mkdir()
    pool = ProcessPool(log_dir=tmp / "logs")
    # Leave ample room so that no job is refused for budget.
    jobs_per_dataset = len(QUERIES) * (args.repeats + args.warmups)
    epsilon_each = ((args.epsilon + Decimal("0.01")) * jobs_per_dataset * 2 + 10).quantize(Decimal("1"))

    created_db = False
    failed = True
    # Other work on the machine shows in every number here, so the load average is printed too.
    timings: dict[str, float] = {"load average (1 min) at start": os.getloadavg()[0]}
    try:
        create_database(args.database_url, args.replace_database or args.database_url == DEFAULT_DATABASE_URL)
        created_db = True
        t = time.perf_counter()
        django.setup()
        # The servers' logs go to their log files; this process only prints the tables.
        logging.getLogger().setLevel(logging.WARNING)
        # The models load only after django.setup(), which needs the settings this run has just
        # put in the environment: so this one import waits until here.
        import dp_jobs_django as fixtures

        api_key, listings = fixtures.prepare(args.sizes, epsilon_each)
        timings["setup"] = time.perf_counter() - t

        t = time.perf_counter()
        base = start_servers(pool, env, args, queue)
        timings["start servers"] = time.perf_counter() - t

        t = time.perf_counter()
        results = run_jobs(Api(base, api_key, args.poll_interval), listings, args)
        timings["jobs"] = time.perf_counter() - t
        timings["load average (1 min) after the jobs"] = os.getloadavg()[0]

        t = time.perf_counter()
        loads = baselines(fixtures, listings, results, args)
        timings["baselines"] = time.perf_counter() - t

        report(args, listings, results, loads, timings)
        failed = False
    finally:
        clean_up(pool, args, queue, tmp, failed=failed, created_db=created_db)
    return 0


def clean_up(
    pool: ProcessPool, args: argparse.Namespace, queue: str, tmp: Path, *, failed: bool, created_db: bool
) -> None:
    """Stop the servers and remove the Redis keys, the database and the files of this run."""
    pool.stop_all()
    if failed:
        logs = pool.logs()
        print(logs[-6000:], file=sys.stderr)
    try:
        removed = remove_redis_keys(args.redis_url, queue)
        if failed:
            print(f"removed {removed} Redis keys of queue {queue}", file=sys.stderr)
    except redis.RedisError as exc:
        print(f"could not remove the Redis keys of queue {queue}: {exc}", file=sys.stderr)
    if created_db:
        try:
            connections.close_all()
        except Exception:  # noqa: BLE001 - Django may not be set up if setup itself failed
            pass
        drop_database(args.database_url)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        # main()'s finally block has already stopped the servers and dropped the database.
        print("interrupted; everything this run started has been stopped and removed", file=sys.stderr)
        sys.exit(130)
