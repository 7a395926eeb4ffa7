"""The HE benchmark's tables, printed as Markdown for docs/BENCHMARKS.md."""

from __future__ import annotations

import argparse
import os
import platform

import numpy as np

from bench.he_common import AIM_BYTES, AIM_CONTEXT, AIM_PEAK_MIB, AIM_SUM_SECONDS, Bundle, JobResult, PoolResult, yes


def report(
    args: argparse.Namespace,
    bundles: list[Bundle],
    jobs: list[JobResult],
    pools: list[PoolResult],
    breakdowns: list[dict],
    loads: dict,
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
