"""Benchmark of DP model training and encrypted inference (issue 15), against the issue's anchors.

1. **UCI Adult, accuracy versus epsilon** (bench/models_adult.py): the table (32,561 training rows of
   ``adult.data``, 14 features) is listed with a declaration taken from the dataset's documentation
   (bounds and categories never read off the rows), bought, and a logistic regression on every feature
   is trained through the job API, ``POST /api/v1/jobs/`` with kind ``train``, at epsilon 0.1, 0.5, 1
   and 5 (delta 0), ``--seeds`` jobs per epsilon (each job draws fresh noise). The released model is
   scored on ``adult.test`` (16,281 rows) by the client's own estimator. Whatever engine the ``train``
   kind runs is what is measured. In the same run, on the same split, features and encoding: diffprivlib
   0.6.6's ``LogisticRegression`` (``data_norm`` from the declaration, ``PrivacyLeakWarning`` an error)
   with ``random_state`` 0 .. seeds - 1, and non-private scikit-learn.
2. **Encrypted inference on breast cancer** (bench/models_he.py): encrypt, server and decrypt times
   of the project's own code for requests of ``--he-rows`` rows, and whether the encrypted predictions
   equal the plaintext ones.

In-process Django against a throwaway PostgreSQL database (``--database-url``, created and dropped),
Celery tasks run in this process (``CELERY_TASK_ALWAYS_EAGER``). The 1-minute load average is printed
at the start and the end. ``--update-docs`` writes the measured block into docs/BENCHMARKS.md
("Models (issue 15)").

    python bench/models.py [--seeds 5] [--he-rows 1 169 4096] [--repeats 5] [--update-docs]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
import uuid
import warnings
from decimal import Decimal
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import django  # noqa: E402

from bench.docs_block import run_stamp  # noqa: E402
from bench.dp_jobs_stores import create_database, drop_database, remove_redis_keys, settings_env  # noqa: E402
from bench.models_adult import Table, adult, diffprivlib_accuracy, encode, sklearn_accuracy  # noqa: E402
from bench.models_he import encrypted_inference  # noqa: E402
from bench.models_report import AccuracyRow, adult_notes, adult_table, block, he_summary, he_table, update_docs  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/cloakroom_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/7"
EPSILONS = (0.1, 0.5, 1.0, 5.0)
DOCS = REPO_ROOT / "docs" / "BENCHMARKS.md"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def accuracy_rows(table: Table, epsilons: tuple[float, ...], seeds: int, listed) -> list[AccuracyRow]:
    """Each epsilon: ``seeds`` jobs through the API and ``seeds`` diffprivlib fits, alternating, so both
    see the same background load."""
    from sklearn.exceptions import ConvergenceWarning

    from bench import models_django

    rows = []
    for epsilon in epsilons:
        row = AccuracyRow(epsilon)
        for seed in range(seeds):
            t = time.perf_counter()
            model = models_django.train(listed, table, epsilon)
            row.job_seconds.append(time.perf_counter() - t)
            row.cloakroom.append(models_django.accuracy(model, table))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)  # diffprivlib's lbfgs at its default 100 steps
                row.diffprivlib.append(diffprivlib_accuracy(table, epsilon, seed))
        rows.append(row)
    return rows


def machine(load: float, seconds: dict[str, float], seeds: int) -> str:
    import diffprivlib
    import numpy
    import sklearn
    import tenseal

    return (
        f"{run_stamp(REPO_ROOT)}: {os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}, numpy {numpy.__version__}, scikit-learn {sklearn.__version__}, "
        f"diffprivlib {diffprivlib.__version__}, TenSEAL {tenseal.__version__}; load average (1 min) {load:.2f} "
        f"at the start. {seeds} jobs and {seeds} diffprivlib fits per epsilon; Adult "
        f"{seconds['adult']:.0f} s, encrypted inference {seconds['he']:.0f} s."
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1])
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--seeds", type=int, default=5, help="jobs and diffprivlib fits per epsilon (default 5)")
    parser.add_argument("--he-rows", type=int, nargs="+", default=[1, 169, 4096], help="rows per request")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per encrypted-inference size (default 5)")
    parser.add_argument("--skip-adult", action="store_true", help="only the encrypted inference")
    parser.add_argument("--update-docs", action="store_true", help="write the measured block into docs/BENCHMARKS.md")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="created, then dropped at the end")
    parser.add_argument("--replace-database", action="store_true", help="drop the database first if it exists")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="a Redis database of its own")
    args = parser.parse_args()
    args.conn_max_age = 0
    if args.seeds < 1 or args.repeats < 1 or min(args.he_rows) < 1:
        parser.error("--seeds, --repeats and --he-rows must be at least 1")
    return args


def run_adult(args: argparse.Namespace) -> tuple[list[AccuracyRow], float, tuple[int, int, int]]:
    from django.core.management import call_command

    from bench import models_django

    table = adult()
    call_command("migrate", verbosity=0, interactive=False)
    budget = Decimal(repr(sum(EPSILONS))) * args.seeds * 2 + 10
    listed = models_django.prepare(table, budget.quantize(Decimal("1")))
    shape = (len(table.train), len(table.test), encode(table, table.test).shape[1])
    return accuracy_rows(table, EPSILONS, args.seeds, listed), sklearn_accuracy(table), shape


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, _interrupt)
    queue = f"bench-models-{uuid.uuid4().hex[:12]}"
    tmp = Path(tempfile.mkdtemp(prefix="cloakroom-bench-models-"))
    os.environ.update(settings_env(args, tmp, queue))
    (tmp / "var" / "staticfiles").mkdir(parents=True)  # WhiteNoise warns of a missing folder
    os.environ.update(DJANGO_SETTINGS_MODULE="config.settings", CELERY_TASK_ALWAYS_EAGER="true", LOG_LEVEL="WARNING")
    load_start = os.getloadavg()[0]
    seconds: dict[str, float] = {"adult": 0.0}
    created_db = False
    try:
        rows: list[AccuracyRow] = []
        non_private = 0.0
        shape = (0, 0, 0)
        if not args.skip_adult:
            create_database(args.database_url, args.replace_database or args.database_url == DEFAULT_DATABASE_URL)
            created_db = True
            django.setup()
            logging.getLogger().setLevel(logging.WARNING)
            t = time.perf_counter()
            rows, non_private, shape = run_adult(args)
            seconds["adult"] = time.perf_counter() - t
        else:
            django.setup()
        t = time.perf_counter()
        he = encrypted_inference(args.he_rows, args.repeats)
        seconds["he"] = time.perf_counter() - t
        tail = f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}"
        adult_lines = adult_table(rows, non_private) if rows else ["(skipped)"]
        notes = adult_notes(rows, *shape) if rows else []
        measured = block(
            machine(load_start, seconds, args.seeds), adult_lines, notes, he_table(he), he_summary(he), tail
        )
        print(measured)
        if args.update_docs:
            update_docs(DOCS, measured)
            print(f"\nwrote the measured block into {DOCS.relative_to(REPO_ROOT)}")
        return 0 if he.same_predictions == he.test_rows else 1
    finally:
        if created_db:
            from django.db import connections

            connections.close_all()
            drop_database(args.database_url)
        remove_redis_keys(args.redis_url, queue)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; the database and the files of this run have been removed", file=sys.stderr)
        sys.exit(130)
