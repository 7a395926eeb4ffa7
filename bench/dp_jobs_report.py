"""The tables bench/dp_jobs.py prints: one sample per job, one row per query and size, and the report.

Separate from the runner so that the numbers and their layout can be read without the machinery
that starts servers and lists datasets.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd


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


@dataclass
class Listing:
    rows: int
    frame: pd.DataFrame
    dataset_id: int
    purchase_id: int
    seconds_to_list: float


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
