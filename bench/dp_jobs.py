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
import platform
import signal
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import redis
import requests
from cryptography.fernet import Fernet
from psycopg import sql

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

# The queries, the synthetic frame and the declared schema are those of the engine-only benchmark,
# so the two tables in docs/BENCHMARKS.md measure the same work.
from dp_engine import QUERIES, SCHEMA, frame, timed  # noqa: E402

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

# The declared schema of the uploaded datasets: literals from dp_engine.SCHEMA, never read off data.
COLUMNS = [
    {"name": "income", "kind": "numeric", "lower": SCHEMA["income"].lower, "upper": SCHEMA["income"].upper},
    {"name": "region", "kind": "categorical", "categories": list(SCHEMA["region"].categories)},
]


@dataclass
class Sample:
    """One job: client-side times (perf_counter and wall clock) and the job's own timestamps."""

    latency: float
    post: float
    wall_start: float
    wall_seen: float
    created_at: float
    started_at: float
    finished_at: float

    @property
    def to_row(self) -> float:
        return self.created_at - self.wall_start

    @property
    def to_claim(self) -> float:
        return self.started_at - self.created_at

    @property
    def run(self) -> float:
        return self.finished_at - self.started_at

    @property
    def to_seen(self) -> float:
        return self.wall_seen - self.finished_at


@dataclass
class Row:
    rows: int
    query: str
    samples: list[Sample] = field(default_factory=list)
    cold: Sample | None = None
    pandas_median: float = 0.0
    engine_median: float = 0.0


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def wall(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


# ---------------------------------------------------------------------------------------------
# The database, Redis keys and settings of this run


def _admin_url(database_url: str) -> tuple[str, str]:
    """The maintenance database's URL on the same server, and the name of the bench database."""
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    if not name:
        raise SystemExit(f"--database-url names no database: {database_url}")
    return urlunsplit(parts._replace(path="/postgres")), name


def create_database(database_url: str, replace: bool) -> None:
    admin, name = _admin_url(database_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists and not replace:
            raise SystemExit(
                f"Database {name!r} already exists. This benchmark drops its database at the end; "
                "pass --replace-database to drop and recreate it."
            )
        if exists:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(database_url: str) -> None:
    admin, name = _admin_url(database_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def remove_redis_keys(redis_url: str, queue: str) -> int:
    """Delete the queue and Kombu's bookkeeping for it; other keys in that Redis db are left alone."""
    client = redis.Redis.from_url(redis_url)
    removed = 0
    for key in client.scan_iter(match=f"*{queue}*"):
        removed += client.delete(key)
    return removed


def settings_env(args: argparse.Namespace, tmp: Path, queue: str) -> dict[str, str]:
    """Every setting the web and worker processes (and this one) run with."""
    return {
        "DATABASE_URL": args.database_url,
        "DATABASE_CONN_MAX_AGE": str(args.conn_max_age),
        "REDIS_URL": args.redis_url,
        "CELERY_BROKER_URL": args.redis_url,
        "SECRET_KEY": uuid.uuid4().hex + uuid.uuid4().hex,
        "CLOAKROOM_DATA_KEYS": Fernet.generate_key().decode(),
        "CLOAKROOM_VAR_DIR": str(tmp / "var"),
        "CLOAKROOM_PRIVATE_ROOT": str(tmp / "private"),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "CLOAKROOM_DP_QUEUE": queue,
        "DEBUG": "false",
        "LOG_LEVEL": "INFO",
    }


# ---------------------------------------------------------------------------------------------
# Fixtures through the real services


@dataclass
class Listing:
    rows: int
    frame: pd.DataFrame
    dataset_id: int
    purchase_id: int
    seconds_to_list: float


def prepare(sizes: list[int], epsilon_each: Decimal) -> tuple[str, list[Listing]]:
    """Migrate, then create an owner, a buyer with an API key, and one bought dataset per size."""
    import django

    django.setup()
    # The servers' logs go to their log files; this process only prints the tables.
    logging.getLogger().setLevel(logging.WARNING)
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.core.management import call_command
    from django.db import connections

    from accounts.models import CreditEntry
    from accounts.services import api_key_create, user_signup, wallet_change
    from marketplace.services import DatasetInput, dataset_create, dataset_publish, purchase_create

    call_command("migrate", verbosity=0, interactive=False)
    password = "bench " + uuid.uuid4().hex
    owner = user_signup(username="bench-owner", email="owner@bench.invalid", password=password, roles=["owner"])
    buyer = user_signup(username="bench-buyer", email="buyer@bench.invalid", password=password, roles=["buyer"])
    price = Decimal("1.00")
    wallet_change(
        user=buyer, amount=price * epsilon_each * len(sizes), kind=CreditEntry.Kind.ADJUSTMENT, memo="benchmark"
    )
    _, api_key = api_key_create(user=buyer, name="benchmark")

    listings = []
    for n in sizes:
        f = frame(n)
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pandas(f, preserve_index=False), sink)
        upload = SimpleUploadedFile(f"bench-{n}.parquet", sink.getvalue().to_pybytes())
        started = time.perf_counter()
        dataset = dataset_create(
            owner=owner,
            data=DatasetInput(
                title=f"Benchmark {n} rows",
                description="Synthetic incomes by region for bench/dp_jobs.py.",
                mode="dp",
                epsilon_cap=epsilon_each,
                delta_cap=Decimal("0.00001"),
                price_per_epsilon=price,
                row_count_public=False,
                clip_to_bounds=False,
                columns=COLUMNS,
            ),
            upload=upload,
        )
        dataset_publish(owner=owner, dataset_id=dataset.pk)
        seconds = time.perf_counter() - started
        purchase = purchase_create(buyer=buyer, dataset_id=dataset.pk, epsilon=epsilon_each)
        listings.append(Listing(n, f, dataset.pk, purchase.pk, seconds))
    # This process holds no connection while the servers run, so the database can be dropped.
    connections.close_all()
    return api_key, listings


# ---------------------------------------------------------------------------------------------
# Jobs over HTTP


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


def in_process_times(listing: Listing, repeats: int, epsilon: float) -> tuple[float, float, dict[str, float]]:
    """Cold load (decrypt + Parquet decode + Categoricals) and the decrypt alone, then the engine's
    median per query on the loaded columns: the worker's work without the queue and the database."""
    from compute.engines import dp
    from marketplace import datafiles, storage
    from marketplace.models import Dataset

    dataset = Dataset.objects.get(pk=listing.dataset_id)
    schema = datafiles.dataset_schema(dataset)
    loads, decrypts = [], []
    for _ in range(3):
        datafiles.clear_cache()
        t = time.perf_counter()
        storage.read_decrypted(dataset.file_path)
        decrypts.append(time.perf_counter() - t)
        t = time.perf_counter()
        columns = datafiles.dataset_columns(dataset, schema)
        loads.append(time.perf_counter() - t)
    engine = {}
    for name, (raw, _) in QUERIES.items():
        query = dp.parse_query(raw, schema)
        engine[name], _ = timed(lambda q=query: dp.run(columns, schema, q, epsilon), repeats)
    datafiles.clear_cache()
    from django.db import connections

    connections.close_all()
    return statistics.median(loads), statistics.median(decrypts), engine


# ---------------------------------------------------------------------------------------------


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
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
    results: list[Row] = []
    # Other work on the machine shows in every number here, so the load average is printed too.
    timings: dict[str, float] = {"load average (1 min) at start": os.getloadavg()[0]}
    try:
        create_database(args.database_url, args.replace_database or args.database_url == DEFAULT_DATABASE_URL)
        created_db = True
        t = time.perf_counter()
        api_key, listings = prepare(args.sizes, epsilon_each)
        timings["setup"] = time.perf_counter() - t

        t = time.perf_counter()
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
        timings["start servers"] = time.perf_counter() - t
        api = Api(base, api_key, args.poll_interval)

        t = time.perf_counter()
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
        timings["jobs"] = time.perf_counter() - t
        timings["load average (1 min) after the jobs"] = os.getloadavg()[0]

        # The baselines and the in-process breakdown run while the servers are idle.
        t = time.perf_counter()
        loads: dict[int, tuple[float, float]] = {}
        for listing in listings:
            load, decrypt, engine = in_process_times(listing, args.repeats, float(args.epsilon))
            loads[listing.rows] = (load, decrypt)
            for row in results:
                if row.rows == listing.rows:
                    bare = QUERIES[row.query][1]
                    row.pandas_median, _ = timed(lambda b=bare, fr=listing.frame: b(fr), args.repeats)
                    row.engine_median = engine[row.query]
        timings["baselines"] = time.perf_counter() - t

        report(args, listings, results, loads, timings)
        failed = False
    finally:
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
                from django.db import connections

                connections.close_all()
            except Exception:  # noqa: BLE001 - Django may not be set up if setup itself failed
                pass
            drop_database(args.database_url)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def report(
    args: argparse.Namespace,
    listings: list[Listing],
    results: list[Row],
    loads: dict[int, tuple[float, float]],
    timings: dict[str, float],
) -> None:
    print(
        f"Python {platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}, "
        f"{platform.machine()}, {os.cpu_count()} cores; gunicorn {args.web_workers} workers, "
        f"Celery prefork concurrency 1; DATABASE_CONN_MAX_AGE={args.conn_max_age}; "
        f"epsilon {args.epsilon} (+1e-6 per job); {args.repeats} timed jobs per row after {args.warmups} warm-ups; "
        f"poll every {args.poll_interval * 1e3:g} ms"
    )
    print()
    print("Submit-to-release latency:")
    print()
    print("| rows | query | median ms | p95 ms | pandas median ms | aim (2x pandas + 150 ms) | met? |")
    print("|---:|---|---:|---:|---:|---:|---|")
    for row in results:
        lat = [s.latency for s in row.samples]
        med = statistics.median(lat)
        aim = 2 * row.pandas_median + 0.150
        print(
            f"| {row.rows:,} | {row.query} | {ms(med)} | {ms(p95(lat))} | {ms(row.pandas_median)} | {ms(aim)} | "
            f"{'yes' if med <= aim else 'no'} |"
        )
    print()
    print("Where the time goes (medians in ms). Phases from the client's clock and the job's timestamps:")
    print("POST start to job row created; row created to claimed by the worker (commit, enqueue, Redis,")
    print("prefork hand-off); claimed to released (load, engine, release transaction); released to seen")
    print("by a poll. Engine: dp.run in this process on the same columns. Cold: the first job of the row,")
    print("its latency (worker run in brackets).")
    print()
    print(
        "| rows | query | POST round trip | to row | to claim | worker run | engine alone | to seen | cold job (run) |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in results:
        s = row.samples

        def m(attr: str, s: list[Sample] = s) -> str:
            return ms(statistics.median(getattr(x, attr) for x in s))

        cold = f"{ms(row.cold.latency)} ({ms(row.cold.run)})" if row.cold else "-"
        print(
            f"| {row.rows:,} | {row.query} | {m('post')} | {m('to_row')} | {m('to_claim')} | {m('run')} | "
            f"{ms(row.engine_median)} | {m('to_seen')} | {cold} |"
        )
    print()
    print("| rows | list the dataset (s) | load in a worker, cold (ms) | of which decrypt (ms) |")
    print("|---:|---:|---:|---:|")
    for listing in listings:
        load, decrypt = loads[listing.rows]
        print(f"| {listing.rows:,} | {listing.seconds_to_list:.2f} | {ms(load)} | {ms(decrypt)} |")
    print()
    print("; ".join(f"{k}: {v:.1f}" + ("" if k.startswith("load") else " s") for k, v in timings.items()))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        # main()'s finally block has already stopped the servers and dropped the database.
        print("interrupted; everything this run started has been stopped and removed", file=sys.stderr)
        sys.exit(130)
