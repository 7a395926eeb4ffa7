"""HE jobs without Django: the server plan (compute/engines/he/plan.py) and the workers' aggregation
(compute/engines/he/aggregate.py aggregate_part) over a bundle made by the owner CLI's encrypt_csv, decrypted
with the key holder's code. Components are checked before noise, against the plaintext truth, within
the CKKS error bound the plan states; noise is the key holder's and is tested with it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cloakroom_client import he as client_he
from cloakroom_client.protocol import ckks
from compute.engines import he as engine
from compute.engines.dp import QueryError
from compute.engines.he import plan as he_jobs

ROWS = 5000
SCHEMA = [
    {"name": "age", "kind": "numeric", "lower": 0, "upper": 100},
    {"name": "bmi", "kind": "numeric", "lower": 10, "upper": 50},
    {"name": "ward", "kind": "categorical", "categories": ["A", "B", "C"]},
    {"name": "insured", "kind": "boolean"},
]


def _frame(rows: int = ROWS, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = np.round(rng.uniform(0, 100, rows), 1)
    return pd.DataFrame(
        {
            "age": age,
            "bmi": np.round(np.clip(18 + 0.15 * age + rng.normal(0, 3, rows), 10, 50), 2),
            "ward": rng.choice(["A", "B", "C"], rows, p=[0.5, 0.3, 0.2]),
            "insured": rng.choice(["true", "false"], rows),
        }
    )


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("hejobs")
    frame = _frame()
    frame.to_csv(root / "data.csv", index=False)
    manifest = client_he.encrypt_csv(
        root / "data.csv",
        SCHEMA,
        root / "bundle",
        job_classes=("sum", "product"),
        keystore=root / "keys",
        progress=False,
    )
    secret = client_he.load_secret_context(manifest["bundle_id"], root / "keys")
    return root / "bundle", manifest, secret, frame


def _run(bundle_dir: Path, manifest: dict, plan: he_jobs.Plan, parts: int = 1) -> dict[str, bytes]:
    """The workers' side: split the chunks into parts, aggregate each, combine the partials."""
    context = (bundle_dir / "context.bin").read_bytes()
    columns = he_jobs.manifest_columns(manifest)
    chunks = math.ceil(manifest["rows"] / manifest["slots"])

    def read(column: str, chunk: int) -> bytes:
        return (bundle_dir / f"c{columns[column].index:03d}.{chunk:04d}.ct").read_bytes()

    specs = [a.spec() for a in plan.aggregates]
    bounds = np.linspace(0, chunks, parts + 1).astype(int)
    partials = [
        engine.aggregate_part(context, range(lo, hi), read, specs, slots=manifest["slots"], weights=plan.weights)
        for lo, hi in zip(bounds[:-1], bounds[1:])
        if hi > lo
    ]
    return {name: engine.encrypted_sum(context, [p[name] for p in partials]) for name, _, _ in specs}


def _exact_components(plan: he_jobs.Plan, aggregates: dict[str, bytes], secret, manifest) -> dict[str, float]:
    length = min(manifest["rows"], manifest["slots"])
    values = {name: ckks.decrypt_sum(secret, data, length) for name, data in aggregates.items()}
    return {c.name: c.offset + sum(coef * values[a] for a, coef in c.terms) for c in plan.components}


def _indicator(frame, column, category):
    return (frame[column] == category).astype(float).to_numpy()


def test_sum_mean_and_variance_components_match_the_plaintext_within_the_stated_ckks_bound(bundle):
    folder, manifest, secret, frame = bundle
    age = frame["age"].to_numpy()
    for aggregate in ("sum", "mean", "variance"):
        plan = he_jobs.plan({"aggregate": aggregate, "column": "age"}, manifest, 1.0)
        exact = _exact_components(plan, _run(folder, manifest, plan), secret, manifest)
        if aggregate == "sum":
            truth = {"sum": age.sum()}
        else:
            truth = {"count": len(age), "sum": (age - 50).sum(), "sumsq": ((age - 50) ** 2).sum()}
            if aggregate == "mean":
                del truth["sumsq"]
        for comp in plan.components:
            assert abs(exact[comp.name] - truth[comp.name]) <= comp.ckks_error, (aggregate, comp.name)
            assert comp.ckks_error < 1e-2  # and the bound is tight enough to matter little


def test_filtered_and_two_part_aggregates_agree_with_the_plaintext(bundle):
    folder, manifest, secret, frame = bundle
    bmi = frame["bmi"].to_numpy()
    ward_b = _indicator(frame, "ward", "B")
    plan = he_jobs.plan(
        {"aggregate": "variance", "column": "bmi", "filter": {"column": "ward", "category": "B"}}, manifest, 1.0
    )
    assert plan.query["filter"] == {"column": "ward=B"}
    assert plan.depth == 2
    exact = _exact_components(plan, _run(folder, manifest, plan, parts=2), secret, manifest)
    truth = {
        "count": ward_b.sum(),
        "sum": ((bmi - 30) * ward_b).sum(),
        "sumsq": ((bmi - 30) ** 2 * ward_b).sum(),
    }
    for comp in plan.components:
        assert abs(exact[comp.name] - truth[comp.name]) <= comp.ckks_error, comp.name


def test_counts_per_category_have_one_geometric_component_each(bundle):
    folder, manifest, secret, frame = bundle
    plan = he_jobs.plan({"aggregate": "count", "column": "ward"}, manifest, 0.5)
    assert [c.label for c in plan.components] == ["count(ward=A)", "count(ward=B)", "count(ward=C)"]
    # Replace-one: a row leaves one ward and joins another, so the three counts move by 2 in L1;
    # they share one epsilon (one budget group) and one noise of sensitivity 2.
    assert all(c.noise.kind == "geometric" and c.noise.sensitivity == 2 for c in plan.components)
    assert {c.budget for c in plan.components} == {"counts"}
    assert all(c.noise.epsilon == 0.5 for c in plan.components)
    exact = _exact_components(plan, _run(folder, manifest, plan), secret, manifest)
    for comp, category in zip(plan.components, "ABC"):
        assert abs(exact[comp.name] - _indicator(frame, "ward", category).sum()) <= comp.ckks_error
    result = plan.finish({c.name: round(exact[c.name]) for c in plan.components})
    assert [g["key"] for g in result["groups"]] == [{"ward": "A"}, {"ward": "B"}, {"ward": "C"}]


def test_dot_product_with_dense_and_sparse_weights(bundle):
    folder, manifest, secret, frame = bundle
    age = frame["age"].to_numpy()
    rng = np.random.default_rng(11)
    weights = rng.uniform(-2, 2, ROWS)
    plan = he_jobs.plan({"aggregate": "dot", "column": "age", "weights": weights.tolist()}, manifest, 1.0)
    exact = _exact_components(plan, _run(folder, manifest, plan, parts=2), secret, manifest)
    assert abs(exact["dot"] - float(weights @ age)) <= plan.components[0].ckks_error
    assert plan.components[0].noise.sensitivity == pytest.approx(np.abs(weights).max() * 100)

    # The single-row extraction attempt: the noise is scaled to that row's possible range.
    plan = he_jobs.plan(
        {"aggregate": "dot", "column": "age", "weights": {"indexes": [4321], "values": [1]}}, manifest, 0.5
    )
    comp = plan.components[0]
    # The grid costs at most 1/1024 more noise than sensitivity / epsilon.
    assert comp.noise.sensitivity == 100
    assert 200 <= comp.noise.scale <= 200 * (1 + 1 / 1024)
    exact = _exact_components(plan, _run(folder, manifest, plan, parts=3), secret, manifest)
    assert abs(exact["dot"] - age[4321]) <= comp.ckks_error


def test_weights_past_the_last_row_are_ignored_so_errors_do_not_reveal_the_row_count(bundle):
    _, manifest, _, _ = bundle
    plan = he_jobs.plan(
        {"aggregate": "dot", "column": "age", "weights": {"indexes": [1, ROWS + 10], "values": [1, 3]}}, manifest, 1
    )
    assert plan.weights.shape == (ROWS,) and plan.weights[1] == 1 and plan.weights.sum() == 1
    # The sensitivity follows the weights the buyer sent, whatever the row count.
    assert plan.components[0].noise.sensitivity == 300


def test_regression_statistics_and_coefficients(bundle):
    folder, manifest, secret, frame = bundle
    plan = he_jobs.plan(
        {"aggregate": "regression", "columns": ["age"], "target": "bmi", "filter": {"column": "insured"}},
        manifest,
        2.0,
    )
    labels = [c.label for c in plan.components]
    assert labels == ["n", "sum(age)", "sum(age*age)", "sum(bmi)", "sum(age*bmi)"]
    # Epsilon split evenly over the five statistics, each noised for its own sensitivity.
    sensitivities = [1, 100, 100 * 100, 50, 100 * 50]
    assert [c.noise.epsilon for c in plan.components] == [pytest.approx(2.0 / 5)] * 5
    assert [c.noise.sensitivity for c in plan.components] == sensitivities
    for comp, s_ in zip(plan.components, sensitivities):
        assert s_ * 5 / 2.0 <= comp.noise.scale <= s_ * 5 / 2.0 * (1 + 1 / 1024)
    exact = _exact_components(plan, _run(folder, manifest, plan, parts=2), secret, manifest)
    f = (frame["insured"] == "true").to_numpy().astype(float)
    age, bmi = frame["age"].to_numpy(), frame["bmi"].to_numpy()
    truth = [f.sum(), (age * f).sum(), (age * age * f).sum(), (bmi * f).sum(), (age * bmi * f).sum()]
    for comp, t in zip(plan.components, truth):
        assert abs(exact[comp.name] - t) <= comp.ckks_error, comp.label
    result = plan.finish(exact)
    fit = np.polyfit(age[f == 1], bmi[f == 1], 1)
    assert result["regression"]["coefficients"]["age"] == pytest.approx(fit[0], rel=1e-6)
    assert result["regression"]["coefficients"]["intercept"] == pytest.approx(fit[1], rel=1e-6)
    assert result["ckks"]["multiplicative_depth"] == 2


@pytest.mark.parametrize(
    ("query", "field", "words"),
    [
        ({"aggregate": "median", "column": "age"}, "query.aggregate", "Must be one of"),
        ({"aggregate": "sum", "column": "height"}, "query.column", "Unknown column"),
        ({"aggregate": "sum", "column": "ward"}, "query.column", "Unknown column"),
        ({"aggregate": "sum", "column": "age", "group_by": ["ward"]}, "query.group_by", "Not a field"),
        ({"aggregate": "count", "column": "ward", "category": "Z"}, "query.category", "not a declared category"),
        ({"aggregate": "sum", "column": "age", "filter": {"column": "age"}}, "query.filter.column", "indicator"),
        ({"aggregate": "dot", "column": "age"}, "query.weights", "needs the weights"),
        ({"aggregate": "dot", "column": "age", "weights": [0, 0]}, "query.weights", "non-zero"),
        ({"aggregate": "dot", "column": "age", "weights": [1e9]}, "query.weights", "must lie in"),
        ({"aggregate": "dot", "column": "age", "weights": [float("nan")]}, "query.weights", "finite"),
        (
            {"aggregate": "dot", "column": "age", "weights": {"indexes": [1, 1], "values": [1, 1]}},
            "query.weights.indexes",
            "repeat",
        ),
        ({"aggregate": "regression", "columns": ["age"], "target": "age"}, "query.target", "must not also"),
        ({"aggregate": "regression", "columns": [], "target": "bmi"}, "query.columns", "non-empty"),
    ],
)
def test_bad_queries_name_the_field(bundle, query, field, words):
    _, manifest, _, _ = bundle
    with pytest.raises(QueryError) as caught:
        he_jobs.plan(query, manifest, 1.0)
    assert caught.value.field == field and words in caught.value.message


def test_a_sum_only_dataset_refuses_products_and_says_why(tmp_path):
    frame = _frame(rows=100)
    frame.to_csv(tmp_path / "d.csv", index=False)
    manifest = client_he.encrypt_csv(
        tmp_path / "d.csv", SCHEMA, tmp_path / "b", keystore=tmp_path / "k", progress=False
    )
    he_jobs.plan({"aggregate": "mean", "column": "age"}, manifest, 1.0)  # sums only: fine
    with pytest.raises(QueryError, match="sums only"):
        he_jobs.plan({"aggregate": "variance", "column": "age"}, manifest, 1.0)


def test_values_from_the_key_holder_are_checked(bundle):
    _, manifest, _, _ = bundle
    plan = he_jobs.plan({"aggregate": "mean", "column": "age"}, manifest, 1.0)
    # The unfiltered count is the row count plus noise; the centred sum lies within rows x radius.
    assert plan.check_values({"count": 5000, "sum": 3.5}) == {"count": 5000.0, "sum": 3.5}
    for values, field in (
        ({"count": 5000}, "values.sum"),
        ({"count": 5000, "sum": 1, "x": 2}, "values.x"),
        ({"count": 5000, "sum": float("inf")}, "values.sum"),
        ({"count": "5000", "sum": 1}, "values.count"),
        ([1, 2], "values"),
        # Off the component's grid: a raw float such as a continuous Laplace sample would give.
        ({"count": 5000, "sum": 0.1}, "values.sum"),
        # Not what 5000 rows of age in [0, 100] can give, even with the noise.
        ({"count": 5000, "sum": 1.5e308}, "values.sum"),
        ({"count": 10, "sum": 1}, "values.count"),
    ):
        with pytest.raises(QueryError) as caught:
            plan.check_values(values)
        assert caught.value.field == field
