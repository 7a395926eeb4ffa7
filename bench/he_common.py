"""What the HE benchmark's modules share: the data, the jobs, the aims, the timing helpers and the
records of what was measured (see bench/he_jobs.py)."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

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


def yes(ok: bool) -> str:
    return "yes" if ok else "no"
