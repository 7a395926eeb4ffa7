"""The dummy table of an HE dataset, and an HE query answered on it in the clear.

An HE bundle's manifest declares its columns as the owner's client encrypted them: numeric and
boolean columns, and a categorical column as one 0/1 indicator column per category (``sex=1``,
``sex=2``). The fake table is made from the *source* columns (a categorical column with its
categories), so that exactly one indicator of each row is 1, as in a real bundle.

The query is planned by the server's own HE planner (:mod:`compute.engines.he.plan`) on the
manifest with the fake row count; each encrypted aggregate of the plan is computed here in the
clear on the fake columns (a sum over the rows of the product of its factors, times the buyer's
weights), each component is noised exactly as the key holder noises it, and the answer is read
back by :meth:`~compute.engines.he.plan.Plan.finish`. No ciphertext, context or key is involved.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from cloakroom_client.protocol.noise import make_rng
from compute.engines.dp.query import ColumnMeta
from compute.engines.dummy import DummyTable
from compute.engines.he.plan import Plan


def source_schema(manifest: Mapping[str, Any]) -> dict[str, ColumnMeta]:
    """The declared source columns of a bundle: numeric and boolean ones as they are, and each
    categorical column once, with its categories in the order of its indicator columns."""
    schema: dict[str, ColumnMeta] = {}
    categories: dict[str, list[str]] = {}
    for c in manifest["columns"]:
        if c["kind"] == "indicator":
            source = str(c["source"])
            if source not in categories:
                categories[source] = []
                schema[source] = ColumnMeta(source, "categorical")
            categories[source].append(str(c["category"]))
        elif c["kind"] == "boolean":
            schema[c["name"]] = ColumnMeta(c["name"], "boolean")
        else:
            schema[c["name"]] = ColumnMeta(c["name"], "numeric", float(c["lower"]), float(c["upper"]))
    for source, cats in categories.items():
        schema[source] = ColumnMeta(source, "categorical", categories=tuple(cats))
    return schema


def fake_manifest(manifest: Mapping[str, Any], *, rows: int) -> dict[str, Any]:
    """The manifest with the fake table's row count in place of the real one (which is never read)."""
    return {**manifest, "rows": rows}


def manifest_values(
    manifest: Mapping[str, Any], schema: Mapping[str, ColumnMeta], table: DummyTable
) -> dict[str, np.ndarray]:
    """Every manifest column of the fake table, as the numbers the owner's client would encrypt."""
    values: dict[str, np.ndarray] = {}
    for c in manifest["columns"]:
        if c["kind"] == "indicator":
            column = np.asarray(table.columns[str(c["source"])]).astype(str)
            values[c["name"]] = (column == str(c["category"])).astype(float)
        else:
            values[c["name"]] = np.asarray(table.columns[c["name"]], dtype=float)
    return values


def aggregate_values(plan: Plan, values: Mapping[str, np.ndarray], rows: int) -> dict[str, float]:
    """Each aggregate of the plan in the clear: the sum over the rows of the product of its factors
    (times the public weights, zero past their end)."""
    out: dict[str, float] = {}
    for aggregate in plan.aggregates:
        term = np.ones(rows)
        for factor in aggregate.factors:
            term = term * values[factor]
        if aggregate.weighted:
            weights = np.zeros(rows)
            given = np.asarray(plan.weights if plan.weights is not None else [], dtype=float)[:rows]
            weights[: len(given)] = given
            term = term * weights
        out[aggregate.name] = math.fsum(term.tolist())
    return out


def release(plan: Plan, values: Mapping[str, np.ndarray], random_state: Any = None) -> dict[str, Any]:
    """The answer an HE job would release, on the fake columns: each component as the key holder
    releases it (clamped to what the bounds allow, on its grid, with its noise), then read back."""
    rows = plan.rows
    aggregates = aggregate_values(plan, values, rows)
    rng = make_rng(random_state)
    noisy: dict[str, float] = {}
    for component in plan.components:
        value = math.fsum([component.offset, *(coef * aggregates[name] for name, coef in component.terms)])
        lo, hi = plan.planned.value_range(component.planned)
        drawn = component.noise.release(min(max(value, lo), hi), rng)
        noisy[component.name] = int(drawn) if component.noise.integer else drawn
    return plan.finish(noisy)
