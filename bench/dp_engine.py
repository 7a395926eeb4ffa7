"""Engine-level benchmark of the DP query engine against bare pandas on the same frame.

Measures the time of compute.engines.dp.run (validation excluded) for count, mean, a median and a
grouped mean at 10^4, 10^5 and 10^6 rows, beside the same query answered exactly by pandas, in the
same process and run. Prints a Markdown table (median and 95th percentile of repeated runs).

    python bench/dp_engine.py [--repeats 15] [--sizes 10000 100000 1000000]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from compute.engines import dp  # noqa: E402

SCHEMA = {
    "income": dp.ColumnMeta("income", "numeric", 0.0, 250_000.0),
    "region": dp.ColumnMeta("region", "categorical", categories=("north", "south", "east", "west")),
}
QUERIES = {
    "count": ({"aggregate": "count"}, lambda f: len(f)),
    "mean": ({"aggregate": "mean", "column": "income"}, lambda f: f["income"].mean()),
    "median": ({"aggregate": "quantile", "column": "income", "quantiles": [0.5]}, lambda f: f["income"].median()),
    "mean by region": (
        {"aggregate": "mean", "column": "income", "group_by": ["region"]},
        lambda f: f.groupby("region", observed=False)["income"].mean(),
    ),
}


def frame(n: int, seed: int = 0) -> pd.DataFrame:
    rs = np.random.RandomState(seed)
    return pd.DataFrame(
        {
            "income": np.clip(rs.lognormal(10.5, 0.6, n), 0, 250_000),
            "region": rs.choice(list(SCHEMA["region"].categories), n),
        }
    )


def timed(fn, repeats: int) -> tuple[float, float]:
    fn()  # warm up
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(round(0.95 * (len(samples) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    args = parser.parse_args()
    print(f"Python {platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}, {platform.machine()}")
    print()
    print("| rows | query | DP engine median (ms) | DP engine p95 (ms) | pandas median (ms) | ratio |")
    print("|---:|---|---:|---:|---:|---:|")
    for n in args.sizes:
        f = frame(n)
        # The engine takes column arrays. Categorical columns are handed over as pandas Categoricals
        # with the declared categories, the form a dataset is decoded into once when loaded.
        data = {
            "income": f["income"].to_numpy(),
            "region": pd.Categorical(f["region"], categories=list(SCHEMA["region"].categories)),
        }
        for name, (raw, bare) in QUERIES.items():
            query = dp.parse_query(raw, SCHEMA)
            med, p95 = timed(lambda q=query, d=data: dp.run(d, SCHEMA, q, 1.0), args.repeats)
            base, _ = timed(lambda b=bare, fr=f: b(fr), args.repeats)
            print(f"| {n:,} | {name} | {med * 1e3:.1f} | {p95 * 1e3:.1f} | {base * 1e3:.1f} | {med / base:.1f}x |")


if __name__ == "__main__":
    main()
