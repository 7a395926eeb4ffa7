"""Benchmark of HE mode: client encryption, server aggregation in worker processes, key-holder release.

For each row count it writes a synthetic CSV (two numeric columns in [0, 100], numpy, fixed seed)
and measures, beside plaintext numpy on the same data in the same run:

1. the owner's side: ``cloakroom_client.he.encrypt_csv`` (CSV check, clipping, encryption, files
   written) for the sum-only class (N=4096) and the product class (N=8192); bytes per value
   (ciphertext bytes / (rows * columns), padding of the last chunk included) and per packed slot;
   the size of the public context;
2. the server's side, done the way the ``he`` workers do it (compute/he_services.py): the job is
   planned with ``compute.engines.he_jobs.plan``, cut into parts of ``--part-chunks`` chunks, and
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
import multiprocessing
import os
import platform
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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

# Only numpy, TenSEAL and the engine at module level: the spawned workers import this module, and
# their memory is part of what is measured. The parent imports the client and the planner lazily.
from compute.engines import he as engine  # noqa: E402

if TYPE_CHECKING:
    from compute.engines import he_jobs

SEED = 20261123
LOWER, UPPER = 0.0, 100.0
SCHEMA = [
    {"name": "x", "kind": "numeric", "lower": LOWER, "upper": UPPER},
    {"name": "y", "kind": "numeric", "lower": LOWER, "upper": UPPER},
]
CLASSES = {"sum-only": ("sum",), "product": ("sum", "product")}
# The jobs each bundle serves: sums and means need no multiplication, so they run on the sum-only
# bundle; the variance (a square) and the dot product (public weights) need the product class.
# The sum also runs on the product bundle to show what the larger parameters cost.
JOBS = {
    "sum-only": ("sum", "mean"),
    "product": ("sum", "variance", "dot"),
}
AIM_BYTES = {"sum-only": 41.0, "product": 82.0}
AIM_CONTEXT = 2 * 1024 * 1024
AIM_SUM_SECONDS = 0.3
AIM_PEAK_MIB = 100.0


def load1() -> float:
    return os.getloadavg()[0]


def median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm up
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


# ---------------------------------------------------------------------------------------------
# Data


def make_data(rows: int) -> dict[str, np.ndarray]:
    """x uniform in [0, 100], y = x/2 + Gaussian noise clipped to [0, 100], weights uniform in [0, 1].

    Values are rounded to 4 decimals, so the CSV (written with 4 decimals) holds them exactly and
    the plaintext baseline sees the same numbers as the encrypted bundle."""
    rng = np.random.default_rng(SEED + rows)
    x = np.round(rng.uniform(LOWER, UPPER, rows), 4)
    y = np.round(np.clip(0.5 * x + rng.normal(25.0, 10.0, rows), LOWER, UPPER), 4)
    weights = rng.uniform(0.0, 1.0, rows)
    return {"x": x, "y": y, "weights": weights}


def write_csv(path: Path, data: dict[str, np.ndarray]) -> None:
    np.savetxt(path, np.column_stack([data["x"], data["y"]]), fmt="%.4f", delimiter=",", header="x,y", comments="")


# ---------------------------------------------------------------------------------------------
# Worker processes (spawned; everything below runs in the child)

_WORKER: dict[str, object] = {}


def _status_mib(field_name: str) -> float:
    """VmRSS (resident now) or VmHWM (peak resident) of this process's address space, in MiB."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024.0  # kB
    raise RuntimeError(f"no {field_name} in /proc/self/status")


def _maxrss_mib() -> float:
    """ru_maxrss of this process, in MiB. On Linux it survives execve, so in a spawned process it
    starts at the parent's resident size at the moment of the spawn (fork then exec); VmHWM does not."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kilobytes on Linux


def worker_init(context_path: str, bundle_dir: str, columns: dict[str, int]) -> None:
    """Load the public context once, as a Celery worker process does on its first HE part."""
    import tenseal as ts

    rss_imports = _status_mib("VmRSS")
    started = time.perf_counter()
    ctx = ts.context_from(Path(context_path).read_bytes(), n_threads=1)
    if ctx.is_private():
        raise RuntimeError("the benchmark's workers must hold the public context only")
    _WORKER.update(
        ctx=ctx,
        folder=Path(bundle_dir),
        columns=columns,
        context_seconds=time.perf_counter() - started,
        ready_at=time.time(),
        rss_imports=rss_imports,
        rss_context=_status_mib("VmRSS"),
    )


def worker_info(hold: float) -> dict[str, float]:
    """This worker's id, when it became ready and its memory; ``hold`` keeps it busy so that the
    next call goes to another worker."""
    time.sleep(hold)
    return {
        "pid": os.getpid(),
        "ready_at": _WORKER["ready_at"],
        "context_seconds": _WORKER["context_seconds"],
        "rss_imports": _WORKER["rss_imports"],
        "rss_context": _WORKER["rss_context"],
        "hwm": _status_mib("VmHWM"),
        "maxrss": _maxrss_mib(),
    }


def worker_part(
    lo: int, hi: int, specs: list, slots: int, weights: np.ndarray | None, out_dir: str, index: int
) -> tuple[dict[str, str], float]:
    """One part of a job (chunks lo..hi-1): aggregate_part reading the files, partials written out.
    Returns the partials' paths and the CPU seconds the part took in this process.

    The weights arrive as this part's slice only, so the chunk indexes given to aggregate_part are
    relative to ``lo`` and the reader adds it back."""
    cpu = time.process_time()
    folder: Path = _WORKER["folder"]
    columns: dict[str, int] = _WORKER["columns"]

    def read(column: str, chunk: int) -> bytes:
        return (folder / f"c{columns[column]:03d}.{chunk + lo:04d}.ct").read_bytes()

    partials = engine.aggregate_part(
        _WORKER["ctx"], range(hi - lo), read, [tuple(s) for s in specs], slots=slots, weights=weights
    )
    paths = {}
    for name, data in partials.items():
        path = Path(out_dir) / f"p{index:05d}.{name}.ct"
        path.write_bytes(data)
        paths[name] = str(path)
    return paths, time.process_time() - cpu


def worker_combine(partial_paths: dict[str, list[str]], out_dir: str) -> dict[str, str]:
    """Add each aggregate's partials (as the server's last part does) and write the total."""
    out = {}
    for name, paths in partial_paths.items():
        total = engine.encrypted_sum(_WORKER["ctx"], engine.iter_files(paths))
        path = Path(out_dir) / f"{name}.ct"
        path.write_bytes(total)
        out[name] = str(path)
    return out


# ---------------------------------------------------------------------------------------------
# The parent's side


@dataclass
class Bundle:
    label: str
    rows: int
    path: Path
    manifest: dict
    encrypt_seconds: float
    load_encrypt: float
    stats: dict = field(default_factory=dict)

    @property
    def columns(self) -> dict[str, int]:
        return {c["name"]: i for i, c in enumerate(self.manifest["columns"])}


@dataclass
class JobResult:
    rows: int
    job: str
    bundle: str
    n: int
    chunks: int
    parts: int
    aggregates: int
    seconds: dict[int, float] = field(default_factory=dict)  # by number of worker processes
    loads: float = 0.0  # load average before and after the job's rounds
    loads_after: float = 0.0
    cpu: dict[int, float] = field(default_factory=dict)  # CPU seconds of the parts, summed
    key_holder: float = 0.0
    numpy: float = 0.0
    ckks_ok: bool = False


@dataclass
class PoolResult:
    rows: int
    bundle: str
    workers: int
    startup: float
    context_seconds: float
    rss_imports: float  # VmRSS after importing numpy, TenSEAL and the engine
    rss_context: float  # VmRSS after loading the public context as well
    hwm_after_sum: float  # VmHWM (peak resident) after the sum jobs
    hwm_after_all: float
    maxrss_after_sum: float  # ru_maxrss after the sum jobs (see _maxrss_mib)


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


def run_job(
    pool: concurrent.futures.ProcessPoolExecutor,
    plan: he_jobs.Plan,
    bundle: Bundle,
    part_chunks: int,
    work: Path,
) -> tuple[dict[str, str], float]:
    """Submit every part, wait, combine in a worker; the combined aggregates' paths and the CPU
    seconds of the parts, summed."""
    slots = bundle.manifest["slots"]
    chunks = math.ceil(bundle.rows / slots)
    specs = [list(a.spec()) for a in plan.aggregates]
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)  # partials of the previous run are removed, as the server's combine does
    futures = []
    for index, lo in enumerate(range(0, chunks, part_chunks)):
        hi = min(lo + part_chunks, chunks)
        w = plan.weights[lo * slots : hi * slots] if plan.weights is not None else None
        futures.append(pool.submit(worker_part, lo, hi, specs, slots, w, str(work), index))
    partials: dict[str, list[str]] = {a.name: [] for a in plan.aggregates}
    cpu = 0.0
    for future in futures:  # in part order, so the sum is the same whichever part finishes first
        paths, seconds = future.result()
        cpu += seconds
        for name, path in paths.items():
            partials[name].append(path)
    return pool.submit(worker_combine, partials, str(work)).result(), cpu


def time_job(
    pools: dict[int, concurrent.futures.ProcessPoolExecutor],
    plan: he_jobs.Plan,
    bundle: Bundle,
    part_chunks: int,
    work: Path,
    repeats: int,
) -> tuple[dict[int, float], dict[int, float], dict[str, str]]:
    """Run a job in each pool in turn, one warm-up then ``repeats`` timed rounds, alternating the
    pools so that both see the same background load. By pool size: the median time, the median CPU
    seconds of the parts (summed over the workers); and the paths of the combined aggregates."""
    walls: dict[int, list[float]] = {n: [] for n in pools}
    cpus: dict[int, list[float]] = {n: [] for n in pools}
    out: dict[str, str] = {}
    for round_ in range(repeats + 1):
        for n, pool in pools.items():
            started = time.perf_counter()
            paths, cpu = run_job(pool, plan, bundle, part_chunks, work / str(n))
            wall = time.perf_counter() - started
            out = paths
            if round_:
                walls[n].append(wall)
                cpus[n].append(cpu)
    return (
        {n: statistics.median(v) for n, v in walls.items()},
        {n: statistics.median(v) for n, v in cpus.items()},
        out,
    )


def start_pool(bundle: Bundle, workers: int) -> tuple[concurrent.futures.ProcessPoolExecutor, float, list[dict]]:
    """A spawn pool whose every process has loaded the public context; its start-up time."""
    from cloakroom_client.protocol.bundle import CONTEXT_FILE

    wall = time.time()
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=worker_init,
        initargs=(str(bundle.path / CONTEXT_FILE), str(bundle.path), bundle.columns),
    )
    infos = pool_infos(pool, workers)
    return pool, max(i["ready_at"] for i in infos) - wall, infos


def pool_infos(pool: concurrent.futures.ProcessPoolExecutor, workers: int) -> list[dict]:
    """worker_info from every process of the pool (each call holds its worker for a moment)."""
    for hold in (0.3, 1.0, 3.0):
        infos = [f.result() for f in [pool.submit(worker_info, hold) for _ in range(workers)]]
        if len({i["pid"] for i in infos}) == workers:
            return infos
    raise RuntimeError("could not reach every worker process of the pool")


def check_ckks(plan: he_jobs.Plan, aggregate_paths: dict[str, str], secret, data: dict[str, np.ndarray]) -> bool:
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


def release_spec(plan: he_jobs.Plan, bundle: Bundle) -> dict:
    """The release spec the server hands the key holder for a plan (compute/he_services.key_plan)."""
    return {
        "job": 1,
        "dataset": 1,
        "bundle_id": bundle.manifest["bundle_id"],
        "query": plan.query,
        "epsilon": repr(plan.epsilon),
        "delta": "0",
        "aggregates": [{"name": a.name, "length": min(bundle.rows, bundle.manifest["slots"])} for a in plan.aggregates],
        "components": plan.key_plan(),
    }


def release_timer(plan: he_jobs.Plan, bundle: Bundle, aggregate_paths: dict[str, str], secret) -> Callable[[], object]:
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
    from compute.engines import he_jobs

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
            job: he_jobs.plan(query_for(job, data["weights"]), bundle.manifest, args.epsilon, max_weights=rows)
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


def yes(ok: bool) -> str:
    return "yes" if ok else "no"


def report(
    args, bundles: list[Bundle], jobs: list[JobResult], pools: list[PoolResult], breakdowns: list[dict], loads: dict
) -> None:
    print(
        f"Python {platform.python_version()}, numpy {np.__version__}, TenSEAL {__import__('tenseal').__version__}, "
        f"{platform.machine()}, {os.cpu_count()} cores; parts of {args.part_chunks} chunks; "
        f"median of {args.repeats} runs after one warm-up; epsilon {args.epsilon:g}; "
        f"load average (1 min) {loads['start']:.2f} at the start, {loads['end']:.2f} at the end"
    )
    print()
    print("Client (owner): encryption and sizes")
    print()
    print(
        "| rows | class | N | encrypt (s) | ciphertexts | ciphertext MB | B/value | B/slot | aim B/value | met? "
        "| public context (bytes) | < 2 MB? | load avg |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---:|")
    for b in bundles:
        s = b.stats
        print(
            f"| {b.rows:,} | {b.label} | {b.manifest['poly_modulus_degree']} | {b.encrypt_seconds:.2f} | "
            f"{s['ciphertexts']:,} | {s['ciphertext_bytes'] / 1e6:.1f} | {s['bytes_per_value']:.1f} | "
            f"{s['bytes_per_slot']:.1f} | {AIM_BYTES[b.label]:g} | {yes(s['bytes_per_value'] <= AIM_BYTES[b.label])} | "
            f"{s['context_bytes']:,} | {yes(s['context_bytes'] < AIM_CONTEXT)} | {b.load_encrypt:.2f} |"
        )
    print()
    print("Server (workers) and key holder, beside numpy on the same data")
    print()
    print(
        "| rows | job | N | chunks | parts | aggregates | 1 process (s) | 2 processes (s) | speed-up "
        "| worker CPU (s, 1 / 2 proc) | key holder: decrypt + noise (ms) | numpy (ms) | within CKKS bound "
        "| load avg (before / after) |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---|")
    for j in jobs:
        print(
            f"| {j.rows:,} | {j.job} | {j.n} | {j.chunks} | {j.parts} | {j.aggregates} | {j.seconds[1]:.3f} | "
            f"{j.seconds[2]:.3f} | {j.seconds[1] / j.seconds[2]:.2f}x | {j.cpu[1]:.3f} / {j.cpu[2]:.3f} | "
            f"{j.key_holder * 1e3:.1f} | "
            f"{j.numpy * 1e3:.3f} | {yes(j.ckks_ok)} | {j.loads:.2f} / {j.loads_after:.2f} |"
        )
    print()
    print("Worker processes (spawn): start-up and memory of the largest worker, in MiB. RSS: VmRSS;")
    print("peak: VmHWM, the peak resident size of the worker's own address space; ru_maxrss: getrusage,")
    print("which on Linux keeps the parent's resident size from the spawn (fork + exec) as its floor")
    print()
    print(
        "| rows | class | processes | start-up (s) | context load (s) | RSS after imports | RSS after context "
        "| peak after the sums | peak after all jobs | ru_maxrss after the sums |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for p in pools:
        print(
            f"| {p.rows:,} | {p.bundle} | {p.workers} | {p.startup:.2f} | {p.context_seconds:.3f} | "
            f"{p.rss_imports:.1f} | {p.rss_context:.1f} | {p.hwm_after_sum:.1f} | {p.hwm_after_all:.1f} | "
            f"{p.maxrss_after_sum:.1f} |"
        )
    print()
    print("Where a sum's time goes (column x, one thread of the benchmark's process, no pool; seconds)")
    print()
    print("| rows | class | N | files | MB | read files | deserialize | add in place | total |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for d in breakdowns:
        total = d["read"] + d["deserialize"] + d["add"]
        print(
            f"| {d['rows']:,} | {d['label']} | {d['n']} | {d['files']} | {d['mb']:.1f} | {d['read']:.3f} | "
            f"{d['deserialize']:.3f} | {d['add']:.3f} | {total:.3f} |"
        )
    sums = [j for j in jobs if j.job == "sum" and j.bundle == "sum-only" and j.rows >= 1_000_000]
    peaks = [p for p in pools if p.bundle == "sum-only" and p.rows >= 1_000_000]
    if sums:
        j = sums[0]
        print()
        print(
            f"Aims at {j.rows:,} rows (sum-only bundle): encrypted sum {j.seconds[1]:.3f} s with one process "
            f"(aim {AIM_SUM_SECONDS} s: {yes(j.seconds[1] <= AIM_SUM_SECONDS)}), {j.seconds[2]:.3f} s with two "
            f"({j.seconds[1] / j.seconds[2]:.2f}x; at least 5% faster: {yes(j.seconds[2] * 1.05 <= j.seconds[1])}); "
            "peak worker memory "
            f"{max(p.hwm_after_sum for p in peaks):.1f} MiB (aim < {AIM_PEAK_MIB:g}: "
            f"{yes(max(p.hwm_after_sum for p in peaks) < AIM_PEAK_MIB)})"
        )


# ---------------------------------------------------------------------------------------------
# End to end through the real services (--end-to-end)


def end_to_end(args: argparse.Namespace, rows: int) -> None:
    """The server time of an encrypted sum through the real services, with one and two processes.

    Creates the PostgreSQL database ``--database-url`` names (dropping a leftover), migrates, starts
    gunicorn and a Celery worker on a queue of its own (``-Q <queue> --concurrency 1``, then a new
    worker with ``--concurrency 2``) on ``--redis-url``, publishes a sum-only bundle with
    ``publish_bundle``, buys, and submits ``{"aggregate": "sum", "column": "x"}`` with the SDK.
    For each job it reads ``started_at`` and ``computed_at`` from ``GET /api/v1/jobs/<id>/`` once the
    job waits for the key (no key agent runs, so the jobs stay there until the database is dropped).
    """
    import re
    import secrets
    import uuid
    from datetime import datetime
    from urllib.parse import urlsplit, urlunsplit

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

        def wall(text: str) -> float:
            return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

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
                deadline = time.monotonic() + 300
                while job["status"] not in ("awaiting_key", "failed", "released", "cancelled"):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"job {job['id']} still {job['status']} after 300 s")
                    time.sleep(0.05)
                    job = buyer.job(job["id"])
                if job["status"] != "awaiting_key":
                    raise RuntimeError(f"job {job['id']} ended {job['status']}: {job.get('error')}")
                figures[concurrency].append((wall(job["computed_at"]) - wall(job["started_at"]), load))
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
