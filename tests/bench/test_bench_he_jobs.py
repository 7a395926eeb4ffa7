"""bench/he_jobs.py --quick runs end to end: encryption, spawned worker pools, key-holder release.

No wall-time assertions (the numbers go to docs/BENCHMARKS.md); the benchmark itself exits 1 if an
encrypted result is not within the CKKS error bound of the plaintext truth.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_he_jobs_benchmark_quick_prints_its_tables():
    run = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "he_jobs.py"), "--quick"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    assert "| rows | class | N | encrypt (s) | ciphertexts |" in out
    assert "| rows | job | N | chunks | parts | aggregates | 1 process (s) | 2 processes (s) |" in out
    assert "| rows | class | processes | start-up (s) |" in out
    assert "load average (1 min)" in out
    # One row per job and parameter set at 10^4 rows, each checked against the plaintext truth.
    for job, n in (("sum", 4096), ("mean", 4096), ("sum", 8192), ("variance", 8192), ("dot", 8192)):
        rows = [line for line in out.splitlines() if line.startswith(f"| 10,000 | {job} | {n} |")]
        assert len(rows) == 1, (job, n, out)
        assert "| yes |" in rows[0], rows[0]
