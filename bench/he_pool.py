"""The HE benchmark's worker processes: what runs in each spawned worker (load the public context,
aggregate a part, combine the partials) and the parent's side of the pools that run them.

Only numpy, TenSEAL and the engine are imported at module level: the spawned workers import this
module (and bench/server_plan.py as their main module), and their memory is part of what is measured.
"""

from __future__ import annotations

import concurrent.futures
import math
import multiprocessing
import os
import resource
import shutil
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.he_common import Bundle
from compute.engines import he as engine

if TYPE_CHECKING:
    from compute.engines.he import plan as server_plan


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


def run_job(
    pool: concurrent.futures.ProcessPoolExecutor,
    plan: server_plan.Plan,
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
    plan: server_plan.Plan,
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
    # Imported here: the client package loads requests and cryptography, which the workers (that
    # import this module) must not carry in the memory measured.
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
