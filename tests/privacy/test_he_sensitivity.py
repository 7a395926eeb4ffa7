"""HE plans under their neighbouring relation: one row replaced in place.

* Every component's un-noised value, computed in plaintext from the plan's own aggregates and terms,
  moves by at most its stated sensitivity when any one row is replaced by any other valid row
  (random rows and the corners of the declared bounds), and the bound is reached: it is neither
  too small (a privacy defect) nor loose for sums and dot products.
* With the row count private, nothing a buyer sees depends on it: the plans of 441 and 442 rows give
  identical estimates, noise and CKKS bounds.

Pure: the planner and numpy, no TenSEAL, no database.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cloakroom_client.protocol import he_plan
from compute.engines.he import plan as he_jobs

COLUMNS = [
    {"name": "age", "source": "age", "kind": "numeric", "lower": 18, "upper": 90},
    {"name": "bmi", "source": "bmi", "kind": "numeric", "lower": -5, "upper": 50},
    {"name": "sex=F", "source": "sex", "kind": "indicator", "category": "F", "lower": 0, "upper": 1},
    {"name": "sex=M", "source": "sex", "kind": "indicator", "category": "M", "lower": 0, "upper": 1},
    {"name": "smoker", "source": "smoker", "kind": "boolean", "lower": 0, "upper": 1},
]
QUERIES = [
    {"aggregate": "sum", "column": "age"},
    {"aggregate": "sum", "column": "bmi", "filter": {"column": "sex", "category": "F"}},
    {"aggregate": "count", "column": "sex"},
    {"aggregate": "count", "column": "smoker", "filter": {"column": "sex=M"}},
    {"aggregate": "mean", "column": "bmi"},
    {"aggregate": "mean", "column": "age", "filter": {"column": "smoker"}},
    {"aggregate": "variance", "column": "bmi", "filter": {"column": "sex=F"}},
    {"aggregate": "regression", "columns": ["age"], "target": "bmi", "filter": {"column": "smoker"}},
    {"aggregate": "dot", "column": "bmi", "weights": {"indexes": [0, 3, 7], "values": [2.0, -3.0, 0.5]}},
]
ROWS = 40


def manifest(rows: int) -> dict:
    return {
        "bundle_id": "0" * 32,
        "rows": rows,
        "slots": 4096,
        "poly_modulus_degree": 8192,
        "coeff_mod_bit_sizes": [60, 40, 40, 60],
        "global_scale_bits": 40,
        "job_classes": ["sum", "product"],
        "columns": COLUMNS,
    }


def random_row(rng: np.random.Generator) -> dict[str, float]:
    female = rng.random() < 0.5
    return {
        "age": float(rng.uniform(18, 90)),
        "bmi": float(rng.uniform(-5, 50)),
        "sex=F": float(female),
        "sex=M": float(not female),
        "smoker": float(rng.random() < 0.3),
    }


def corner_rows() -> list[dict[str, float]]:
    """Every row at the corners of the declared bounds (the extreme neighbours)."""
    rows = []
    for age, bmi, female, smoker in itertools.product((18.0, 90.0), (-5.0, 0.0, 50.0), (0.0, 1.0), (0.0, 1.0)):
        rows.append({"age": age, "bmi": bmi, "sex=F": female, "sex=M": 1 - female, "smoker": smoker})
    return rows


def component_values(plan: he_plan.Plan, table: list[dict[str, float]]) -> dict[str, float]:
    """Each component's exact value over ``table``, from the plan's own aggregates and terms."""
    weights = plan.weights if plan.weights is not None else np.ones(len(table))
    aggregates = {}
    for a in plan.aggregates:
        total = 0.0
        for i, row in enumerate(table):
            term = float(np.prod([row[f] for f in a.factors]))
            total += term * (weights[i] if a.weighted else 1.0)
        aggregates[a.name] = total
    return {c.name: c.offset + sum(coef * aggregates[name] for name, coef in c.terms) for c in plan.components}


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: q["aggregate"] + ("+filter" if "filter" in q else ""))
def test_replacing_one_row_moves_each_measurement_by_at_most_its_sensitivity(query):
    rng = np.random.default_rng(2026)
    plan = he_plan.plan(query, manifest(ROWS), 1.0)
    table = [random_row(rng) for _ in range(ROWS)]
    groups: dict[str, list] = {}
    for c in plan.components:
        groups.setdefault(c.budget, []).append(c)
    worst = {budget: 0.0 for budget in groups}
    corners = corner_rows()
    candidates = corners + [random_row(rng) for _ in range(8)]
    # Rows 0, 3 and 7 carry the dot product's weights; row 11 does not. Each is set to every corner
    # and then replaced by every candidate: the extreme pairs of neighbours are all tried.
    for index in (0, 3, 7, 11):
        for original in corners:
            table[index] = original
            base = component_values(plan, table)
            for replacement in candidates:
                neighbour = list(table)
                neighbour[index] = replacement
                moved = component_values(plan, neighbour)
                for budget, comps in groups.items():
                    # A budget group is one vector measurement: its L1 change is what its noise covers.
                    change = sum(abs(moved[c.name] - base[c.name]) for c in comps)
                    worst[budget] = max(worst[budget], change)
                    assert change <= comps[0].noise.sensitivity * (1 + 1e-9), (query, budget, change)
    if query["aggregate"] in ("sum", "dot", "count"):
        # The stated sensitivity is reached by some neighbour: it is the real one, not a loose bound.
        for budget, comps in groups.items():
            assert worst[budget] == pytest.approx(comps[0].noise.sensitivity), (query, budget)


def test_the_dot_product_noise_covers_a_replaced_row_under_the_largest_weight():
    plan = he_plan.plan(
        {"aggregate": "dot", "column": "age", "weights": {"indexes": [5], "values": [4.0]}}, manifest(ROWS), 1.0
    )
    # 4 x (90 - 18): the weight times the column's whole range, not times max(|lower|, |upper|).
    assert plan.components[0].noise.sensitivity == 4.0 * 72.0


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: q["aggregate"] + ("+filter" if "filter" in q else ""))
def test_with_a_private_row_count_441_and_442_rows_give_identical_figures(query):
    small = he_jobs.plan(query, manifest(441), 0.7, public_rows=False)
    large = he_jobs.plan(query, manifest(442), 0.7, public_rows=False)
    assert small.estimate_halfwidth(None) == large.estimate_halfwidth(None)
    assert [c.ckks_error for c in small.components] == [c.ckks_error for c in large.components]
    assert [c.halfwidth for c in small.components] == [c.halfwidth for c in large.components]
    assert [c.noise for c in small.components] == [c.noise for c in large.components]
    assert small.mechanism == large.mechanism and small.noise_scale == large.noise_scale
    assert small.ckks_summary() == large.ckks_summary()
    # What a released answer says besides its values: the same for both.
    values = {c.name: 0.0 for c in small.components}
    a, b = small.finish(values), large.finish(values)
    assert a["ckks"] == b["ckks"] and a["groups"] == b["groups"] and a["granularity"] == b["granularity"]


def test_with_a_public_row_count_the_ckks_bound_may_use_it():
    # The check above is not vacuous: with the count public the bound follows the true rows.
    query = {"aggregate": "sum", "column": "age"}
    small = he_jobs.plan(query, manifest(441), 0.7, public_rows=True)
    large = he_jobs.plan(query, manifest(442), 0.7, public_rows=True)
    assert small.components[0].ckks_error < large.components[0].ckks_error
