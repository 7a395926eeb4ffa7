"""Benchmark of HE mode: client encryption, server aggregation in worker processes, key-holder release.

For each row count it writes a synthetic CSV (two numeric columns in [0, 100], numpy, fixed seed)
and measures, beside plaintext numpy on the same data in the same run:

1. the owner's side: ``cloakroom_client.he.encrypt_csv`` (CSV check, clipping, encryption, files
   written) for the sum-only class (N=4096) and the product class (N=8192); bytes per value
   (ciphertext bytes / (rows * columns), padding of the last chunk included) and per packed slot;
   the size of the public context;
2. the server's side, done the way the ``he`` workers do it (compute/kinds/he_query/): the job is
   planned with ``compute.engines.he.plan.plan``, cut into parts of ``--part-chunks`` chunks, and
   each part runs ``compute.engines.he.aggregate_part`` in a worker process that reads the
   ciphertext files from disk (deserialisation included) and writes its partial ciphertexts to disk;
   a worker then adds the partials with ``encrypted_sum``. Workers are a ``ProcessPoolExecutor`` on
   the ``spawn`` start method (a process holding a TenSEAL context must never fork) with one and
   with two processes; each loads the public context once (``n_threads=1``, as the server does)
   when it starts. The time runs from submitting the parts to having the combined aggregates on
   disk; the pool's start-up is reported separately, as is each worker's peak memory
   (``ru_maxrss``) after the sums, beside its footprint right after loading the context;
3. the key holder's side: ``cloakroom_client.protocol.release.noisy_values`` (decrypt every aggregate, add
   its slots, add the plan's Laplace noise) on the combined aggregates, the secret context already
   loaded.

Both pools are kept open and each job's timed rounds alternate between them, so that the one- and
two-process figures see the same background load. The numpy baseline runs in one thread
(``OPENBLAS_NUM_THREADS=1``), as the workers run TenSEAL in one thread. A breakdown of a sum
(reading files, deserialising, adding) is timed in one thread of the benchmark's own process.

Every timing is the median of ``--repeats`` runs after one warm-up. The 1-minute load average
(``os.getloadavg``) is printed beside each measurement: other work on the machine slows every
number here. Each job's un-noised result is also checked against the plaintext truth within the
plan's own CKKS error bound (the benchmark fails otherwise).

    python bench/he_jobs.py [--rows 10000,100000,1000000] [--repeats 5] [--quick]

With ``--end-to-end`` it instead times an encrypted sum over the largest ``--rows`` through the real
services: gunicorn, a Celery worker on a queue of its own (concurrency 1, then 2), PostgreSQL (the
database ``--database-url`` names is created and dropped) and Redis (``--redis-url``); it reports
``computed_at - started_at`` of each job:

    python bench/he_jobs.py --end-to-end --rows 1000000 [--e2e-jobs 5] [--part-chunks 256]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

# The plaintext baseline runs numpy in one thread, as each worker runs TenSEAL in one thread
# (n_threads=1). With OpenBLAS's threads, a 10^6-element dot product on this shared 2-core machine
# often waited a scheduler tick or two for the second thread (8 ms instead of 0.3 ms).
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import numpy as np  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

# Only numpy, TenSEAL, the engine and the benchmark's own modules at module level: the spawned
# workers import this module as their main module, and their memory is part of what is measured.
# The parent imports the client and the planner lazily.
from bench.he_common import (  # noqa: E402
    CLASSES,
    JOBS,
    SCHEMA,
    SEED,
    Bundle,
    JobResult,
    PoolResult,
    load1,
    make_data,
    median_time,
    write_csv,
)
from bench.he_end_to_end import end_to_end  # noqa: E402
from bench.he_pool import pool_infos, start_pool, time_job  # noqa: E402
from bench.he_report import report  # noqa: E402

if TYPE_CHECKING:
    from compute.engines.he import plan as server_plan


def query_for(job: str, weights: np.ndarray) -> dict:
    if job == "dot":
        return {"aggregate": "dot", "column": "x", "weights": weights.tolist()}
    return {"aggregate": job, "column": "x"}


def numpy_baseline(job: str, data: dict[str, np.ndarray]) -> Callable[[], float]:
    x, w = data["x"], data["weights"]
    return {
        "sum": lambda: float(x.sum()),
        "mean": lambda: float(x.mean()),
        "variance": lambda: float(x.var()),
        "dot": lambda: float(x @ w),
    }[job]


def check_ckks(plan: server_plan.Plan, aggregate_paths: dict[str, str], secret, data: dict[str, np.ndarray]) -> bool:
    """Each component's un-noised value (decrypted here, never printed) against the plaintext truth
    computed from the same rows, within the plan's CKKS error bound for that component."""
    from cloakroom_client.protocol.ckks import decrypt_sum

    length = min(plan.rows, plan.params["slots"])
    decrypted, truth = {}, {}
    for agg in plan.aggregates:
        decrypted[agg.name] = decrypt_sum(secret, Path(aggregate_paths[agg.name]).read_bytes(), length)
        values = np.prod([data[f] for f in agg.factors], axis=0)
        if agg.weighted:
            values = values * plan.weights
        truth[agg.name] = math.fsum(values.tolist())
    for comp in plan.components:
        got = comp.offset + sum(c * decrypted[a] for a, c in comp.terms)
        want = comp.offset + sum(c * truth[a] for a, c in comp.terms)
        if not abs(got - want) <= comp.ckks_error:
            return False
    return True


def release_spec(plan: server_plan.Plan, bundle: Bundle) -> dict:
    """The release spec the server hands the key holder for a plan (compute/kinds/he_query/key_holder.release_spec)."""
    return {
        "job": 1,
        "dataset": 1,
        "bundle_id": bundle.manifest["bundle_id"],
        "query": plan.query,
        "epsilon": repr(plan.epsilon),
        "delta": "0",
        "aggregates": [{"name": a.name, "length": min(bundle.rows, bundle.manifest["slots"])} for a in plan.aggregates],
        "components": plan.release_spec_components(),
    }


def release_timer(
    plan: server_plan.Plan, bundle: Bundle, aggregate_paths: dict[str, str], secret
) -> Callable[[], object]:
    """The key holder's work for one job (protocol.release.noisy_values): plan it again from the local
    manifest and check the served release spec, decrypt, round to the grid and add exact discrete noise."""
    from cloakroom_client.protocol.release import noisy_values

    blobs = {name: Path(path).read_bytes() for name, path in aggregate_paths.items()}
    spec = release_spec(plan, bundle)
    rng = random.Random(SEED)
    return lambda: noisy_values(spec, blobs, secret, rng, manifest=bundle.manifest)


def encrypt(label: str, rows: int, csv_path: Path, root: Path, keystore: Path) -> Bundle:
    from cloakroom_client import he as client_he

    out = root / f"bundle-{label}-{rows}"
    load = load1()
    started = time.perf_counter()
    manifest = client_he.encrypt_csv(csv_path, SCHEMA, out, CLASSES[label], keystore=keystore, progress=False)
    seconds = time.perf_counter() - started
    bundle = Bundle(label, rows, out, manifest, seconds, load)
    bundle.stats = client_he.bundle_stats(manifest)
    return bundle


def run_size(rows: int, args: argparse.Namespace, root: Path, keystore: Path):
    from cloakroom_client import he as client_he
    from compute.engines.he import plan as server_plan

    data = make_data(rows)
    csv_path = root / f"data-{rows}.csv"
    write_csv(csv_path, data)
    bundles = {label: encrypt(label, rows, csv_path, root, keystore) for label in CLASSES}
    csv_path.unlink()

    jobs: list[JobResult] = []
    pools: list[PoolResult] = []
    breakdowns: list[dict] = []
    for label, bundle in bundles.items():
        secret = client_he.load_secret_context(bundle.manifest["bundle_id"], keystore)
        plans = {
            job: server_plan.plan(query_for(job, data["weights"]), bundle.manifest, args.epsilon, max_weights=rows)
            for job in JOBS[label]
        }
        slots = bundle.manifest["slots"]
        chunks = math.ceil(rows / slots)
        results = {
            job: JobResult(
                rows,
                job,
                label,
                bundle.manifest["poly_modulus_degree"],
                chunks,
                math.ceil(chunks / args.part_chunks),
                len(plans[job].aggregates),
            )
            for job in JOBS[label]
        }
        combined: dict[str, dict[str, str]] = {}
        started: dict[int, tuple[concurrent.futures.ProcessPoolExecutor, float, list[dict]]] = {}
        try:
            for workers in (1, 2):
                started[workers] = start_pool(bundle, workers)
            executors = {n: pool for n, (pool, _, _) in started.items()}
            after_sum: dict[int, list[dict]] = {}
            for job in JOBS[label]:
                result = results[job]
                result.loads = load1()
                result.seconds, result.cpu, combined[job] = time_job(
                    executors, plans[job], bundle, args.part_chunks, root / f"work-{label}-{rows}-{job}", args.repeats
                )
                result.loads_after = load1()
                if job == "sum":
                    after_sum = {n: pool_infos(pool, n) for n, pool in executors.items()}
            after_all = {n: pool_infos(pool, n) for n, pool in executors.items()}
        finally:
            for pool, _, _ in started.values():
                pool.shutdown()
        for workers, (_, startup, infos) in started.items():
            pools.append(
                PoolResult(
                    rows,
                    label,
                    workers,
                    startup,
                    max(i["context_seconds"] for i in infos),
                    max(i["rss_imports"] for i in infos),
                    max(i["rss_context"] for i in infos),
                    max(i["hwm"] for i in after_sum[workers]),
                    max(i["hwm"] for i in after_all[workers]),
                    max(i["maxrss"] for i in after_sum[workers]),
                )
            )
        for job, result in results.items():
            result.ckks_ok = check_ckks(plans[job], combined[job], secret, data)
            result.key_holder = median_time(release_timer(plans[job], bundle, combined[job], secret), args.repeats)
            result.numpy = median_time(numpy_baseline(job, data), max(args.repeats, 5))
            jobs.append(result)
        breakdowns.append(sum_breakdown(bundle, args.repeats))
        del secret
        shutil.rmtree(bundle.path, ignore_errors=True)
        for path in root.glob(f"work-{label}-{rows}-*"):
            shutil.rmtree(path, ignore_errors=True)
    return list(bundles.values()), jobs, pools, breakdowns


def sum_breakdown(bundle: Bundle, repeats: int) -> dict:
    """Where a sum's time goes, in one thread of this process: reading column x's files, turning
    the bytes into ciphertexts (ckks_vector_from: decompression and SEAL's checks) and adding them
    in place. Medians over ``repeats`` passes after a warm-up."""
    import tenseal as ts

    ctx = ts.context_from((bundle.path / "context.bin").read_bytes(), n_threads=1)
    files = [bundle.path / f["file"] for f in bundle.manifest["columns"][0]["files"]]
    samples: dict[str, list[float]] = {"read": [], "deserialize": [], "add": []}
    for rep in range(repeats + 1):
        read = deserialize = add = 0.0
        total = None
        for path in files:
            t0 = time.perf_counter()
            data = path.read_bytes()
            t1 = time.perf_counter()
            vector = ts.ckks_vector_from(ctx, data)
            t2 = time.perf_counter()
            if total is None:
                total = vector
            else:
                total.add_(vector)
            t3 = time.perf_counter()
            read, deserialize, add = read + t1 - t0, deserialize + t2 - t1, add + t3 - t2
        if rep:
            samples["read"].append(read)
            samples["deserialize"].append(deserialize)
            samples["add"].append(add)
    out = {k: statistics.median(v) for k, v in samples.items()}
    out.update(rows=bundle.rows, label=bundle.label, n=bundle.manifest["poly_modulus_degree"], files=len(files))
    out["mb"] = sum(f["bytes"] for f in bundle.manifest["columns"][0]["files"]) / 1e6
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1])
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--rows", default="10000,100000,1000000", help="comma-separated row counts")
    parser.add_argument("--quick", action="store_true", help="10^4 rows and 2 repeats only (seconds)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (default 5)")
    parser.add_argument("--part-chunks", type=int, default=256, help="chunks per part (CLOAKROOM_HE_PART_CHUNKS)")
    parser.add_argument("--epsilon", type=float, default=1.0, help="epsilon of every job (default 1)")
    parser.add_argument(
        "--end-to-end",
        action="store_true",
        help="instead: time an encrypted sum through gunicorn + Celery + PostgreSQL + Redis (largest --rows)",
    )
    parser.add_argument("--e2e-jobs", type=int, default=5, help="timed jobs per worker (default 5)")
    parser.add_argument(
        "--database-url",
        default="postgres://postgres@127.0.0.1:5432/cloakroom_bench",
        help="--end-to-end: a database of its own, created and dropped",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/7", help="--end-to-end: broker")
    parser.add_argument(
        "--conn-max-age", type=int, default=0, help="--end-to-end: DATABASE_CONN_MAX_AGE of the servers (default 0)"
    )
    args = parser.parse_args()
    if args.quick:
        args.rows, args.repeats = "10000", 2
    try:
        sizes = [int(r) for r in args.rows.split(",") if r.strip()]
    except ValueError:
        parser.error("--rows must be comma-separated whole numbers, e.g. 10000,100000")
    if not sizes or min(sizes) < 1 or args.repeats < 1 or args.part_chunks < 1:
        parser.error("--rows, --repeats and --part-chunks must be at least 1")

    if args.end_to_end:
        start = load1()
        end_to_end(args, max(sizes))
        print(f"\nload average (1 min) {start:.2f} at the start, {load1():.2f} at the end")
        return 0
    loads = {"start": load1()}
    bundles: list[Bundle] = []
    jobs: list[JobResult] = []
    pools: list[PoolResult] = []
    breakdowns: list[dict] = []
    root = Path(tempfile.mkdtemp(prefix="cloakroom-he-bench-"))
    keystore = root / "keys"
    try:
        for rows in sizes:
            b, j, p, d = run_size(rows, args, root, keystore)
            bundles += b
            jobs += j
            pools += p
            breakdowns += d
    finally:
        shutil.rmtree(root, ignore_errors=True)
    loads["end"] = load1()
    report(args, bundles, jobs, pools, breakdowns, loads)
    return 0 if all(j.ckks_ok for j in jobs) else 1


if __name__ == "__main__":
    sys.exit(main())
