"""Trying a query on fake data, for free: the dummy table of a dataset and answers computed on it.

A buyer (signed in or not, holding a purchase or not) sends the same query as a job, and gets the
answer the same engine would give, computed at once on a fake table made from the declared schema
alone (:mod:`compute.engines.dummy`). It spends no budget, writes no ledger row and no job, and never
reads the owner's file, bundle or private row count; every answer says ``"dummy": true``.

* DP datasets: the query is checked by the DP kind's own check (so the 400s are the jobs API's) and
  answered by :func:`compute.engines.dp.run` on the fake columns, with real noise at the epsilon asked.
* HE datasets: the query is planned by the server's HE planner on the bundle's manifest (its
  declared columns and parameters; the row count replaced by the fake one), each aggregate computed
  in the clear on the fake columns, each component noised as the key holder would, and read back as
  a released HE job is (:mod:`compute.engines.dummy_he`). No ciphertext, context or key is touched.
"""

from __future__ import annotations

import csv
import io
import math
from decimal import Decimal
from typing import Any

from django.conf import settings

from accounts.models import User
from compute.budget import budget_numbers
from compute.engines import dp, dummy_he
from compute.engines import dummy as engine
from compute.engines.he import plan as server_plan
from compute.kinds.base import query_error
from compute.kinds.dp_query import dp_query_prepare
from compute.receipts import safe_cell
from config.exceptions import ValidationFailed
from marketplace import selectors as market
from marketplace.datafiles import dataset_schema
from marketplace.models import Dataset

DEFAULT_EPSILON = "1"
# Answers are computed in the request, and the noise draws are what take time (tens of microseconds
# each): a cap on the noisy values of one answer keeps each well under a second.
MAX_NOISY_VALUES = 5_000
PARTS = {"count": 1, "sum": 1, "mean": 2, "variance": 3, "std": 3}


def dummy_schema(dataset: Dataset) -> dict[str, dp.ColumnMeta]:
    """The declared columns the fake table has: the schema (DP), or the manifest's source columns (HE)."""
    if dataset.mode == Dataset.Mode.HE:
        return dummy_he.source_schema(dataset.bundle_manifest)
    return dataset_schema(dataset)


def dummy_table_of(dataset: Dataset) -> tuple[dict[str, dp.ColumnMeta], engine.DummyTable]:
    """The dataset's fake table: seeded by its id and version, sized from the public row count only."""
    schema = dummy_schema(dataset)
    rows, basis = engine.dummy_rows(row_count_public=dataset.row_count_public, row_count=dataset.row_count)
    table = engine.dummy_table(schema, dataset_id=dataset.pk, version=dataset.version, rows=rows, basis=basis)
    return schema, table


def dummy_csv(*, user: User | None, dataset_id: Any) -> tuple[Dataset, str]:
    """The fake table as CSV (formula-safe cells), for any dataset the caller may see."""
    dataset = market.dataset_get(user=user, dataset_id=dataset_id)
    schema, table = dummy_table_of(dataset)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for line in engine.table_lines(schema, table):
        writer.writerow([safe_cell(cell) for cell in line])
    return dataset, out.getvalue()


def dummy_query(*, user: User | None, dataset_id: Any, query: Any, epsilon: Any = None, delta: Any = None) -> dict:
    """Answer ``query`` on the dataset's fake table. Spends nothing; a 400 naming the field when the
    query does not fit the dataset, exactly as a job submission would."""
    dataset = market.dataset_get(user=user, dataset_id=dataset_id)
    epsilon, delta = dummy_budget(
        dataset=dataset,
        epsilon=DEFAULT_EPSILON if epsilon in (None, "") else epsilon,
        delta="0" if delta in (None, "") else delta,
    )
    if dataset.mode == Dataset.Mode.HE:
        eps, dlt, canonical, release = _he_answer(dataset, query, epsilon, delta)
    else:
        eps, dlt, canonical, release = _dp_answer(dataset, query, epsilon, delta)
    table_rows, basis = engine.dummy_rows(row_count_public=dataset.row_count_public, row_count=dataset.row_count)
    result = {"aggregate": release["aggregate"], "groups": release["groups"]}
    for extra in ("regression", "measurements"):
        if extra in release:
            result[extra] = release[extra]
    return {
        "dummy": True,
        "note": engine.NOTE,
        "dataset": dataset.pk,
        "dataset_version": dataset.version,
        "mode": dataset.mode,
        "rows": table_rows,
        "rows_basis": basis,
        "query": canonical,
        "epsilon": f"{eps.normalize():f}",
        "delta": f"{dlt.normalize():f}" if dlt else "0",
        "epsilon_charged": "0",
        "result": result,
        "mechanism": release["mechanism"],
        "noise_scale": release["noise_scale"],
        "interval_note": release["interval_note"],
    }


def dummy_budget(*, dataset: Dataset, epsilon: Any, delta: Any) -> tuple[Decimal, Decimal]:
    """The epsilon and delta whose noise a fake answer carries, read as a job's are, and at most the
    dataset's epsilon cap (no job could spend more; a larger figure is a 400, never an overflow)."""
    too_large = f"At most the dataset's epsilon cap, {dataset.epsilon_cap.normalize():f}."
    try:
        eps, dlt = budget_numbers(epsilon, delta)
    except ArithmeticError:  # a figure too large to hold at six decimal places
        raise ValidationFailed(f"epsilon: {too_large}", fields={"epsilon": [too_large]}) from None
    if eps > dataset.epsilon_cap:
        raise ValidationFailed(f"epsilon: {too_large}", fields={"epsilon": [too_large]})
    return eps, dlt


def _dp_answer(dataset: Dataset, query: Any, epsilon: Any, delta: Any) -> tuple[Decimal, Decimal, dict, dict]:
    parsed, ctx, eps, dlt = dp_query_prepare(dataset=dataset, query=query, epsilon=epsilon, delta=delta)
    schema = ctx["schema"]
    _check_size(parsed, schema)
    _, table = dummy_table_of(dataset)
    release = dp.run(table.columns, schema, parsed, float(eps), float(dlt))
    return eps, dlt, parsed.canonical(), release.as_dict()


def noisy_values(query: dp.Query, schema: dict[str, dp.ColumnMeta]) -> int:
    """How many noisy values a DP answer draws: per group, one per part, bin or quantile."""
    groups = math.prod(len(schema[name].keys) for name in query.group_by)
    if query.aggregate == "quantile":
        return groups * len(query.quantiles)
    if query.aggregate == "histogram":
        meta = schema[str(query.column)]
        return groups * (len(query.bins) - 1 if meta.kind == "numeric" else len(meta.keys))
    return groups * PARTS[query.aggregate]


def _check_size(query: dp.Query, schema: dict[str, dp.ColumnMeta]) -> None:
    """A 400 naming the field that makes an answer too big to compute in the request."""
    needed = noisy_values(query, schema)
    if needed <= MAX_NOISY_VALUES:
        return
    field_name = "query.group_by" if query.group_by else "query.bins"
    message = (
        f"On fake data an answer has at most {MAX_NOISY_VALUES:,} noisy values (groups times bins, parts or "
        f"quantiles); this one has {needed:,}. Group by fewer columns or use fewer bins; a real job takes it."
    )
    raise ValidationFailed(f"{field_name}: {message}", code="invalid_query", fields={field_name: [message]})


def _he_answer(dataset: Dataset, query: Any, epsilon: Any, delta: Any) -> tuple[Decimal, Decimal, dict, dict]:
    eps, dlt = budget_numbers(epsilon, delta)
    if dlt:
        raise ValidationFailed(
            "delta: HE jobs use pure epsilon (Laplace and geometric noise); send 0.",
            fields={"delta": ["HE jobs use pure epsilon; send 0."]},
        )
    schema, table = dummy_table_of(dataset)
    try:
        # The manifest's declared columns and parameters, with the fake table's row count: the real
        # one is never read, and the CKKS bounds are those of the fake rows.
        plan = server_plan.plan(
            query,
            dummy_he.fake_manifest(dataset.bundle_manifest, rows=table.rows),
            float(eps),
            max_weights=settings.CLOAKROOM_HE_MAX_WEIGHTS,
            max_weight=settings.CLOAKROOM_HE_MAX_WEIGHT,
            public_rows=True,
        )
    except dp.QueryError as exc:
        raise query_error(exc) from None
    values = dummy_he.manifest_values(dataset.bundle_manifest, schema, table)
    return eps, dlt, plan.query, dummy_he.release(plan, values)
