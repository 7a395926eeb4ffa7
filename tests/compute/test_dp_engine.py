"""Unit and statistical tests of the pure DP engine (no database).

Statistical tests use a fixed seed and tolerances derived from the mechanism and the sample size:
a sample variance of N draws has standard error sigma^2 * sqrt((kurtosis - 1) / N), and a coverage
rate has binomial standard error sqrt(p (1 - p) / N). Each check allows Z standard errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from compute.engines import dp

Z = 4.5  # standard errors allowed; with ~30 checks the chance of a false failure is < 1e-4
DRAWS = 3000
EPSILONS = (0.1, 1.0, 5.0)
LAPLACE_KURTOSIS = 6.0

SCHEMA = {
    "score": dp.ColumnMeta("score", "numeric", 0.0, 100.0),
    "region": dp.ColumnMeta("region", "categorical", categories=("north", "south", "east")),
    "member": dp.ColumnMeta("member", "boolean"),
}


@pytest.fixture(scope="module")
def data():
    rs = np.random.RandomState(7)
    n = 10_000
    return {
        # Skewed towards the top of the bounds, so the mean sits away from the middle.
        "score": 100 * rs.beta(5, 1.5, n),
        "region": rs.choice(["north", "south"], n).astype(object),
        "member": rs.rand(n) < 0.25,
    }


def q(raw):
    return dp.parse_query(raw, SCHEMA)


def releases(data, raw, epsilon, draws=DRAWS, seed=11):
    rs = np.random.RandomState(seed)
    query = q(raw)
    return [dp.run(data, SCHEMA, query, epsilon, random_state=rs) for _ in range(draws)]


def assert_variance_matches(samples, truth, expected_var, kurtosis=LAPLACE_KURTOSIS):
    errors = np.asarray(samples, dtype=float) - truth
    n = len(errors)
    observed = errors.var(ddof=1)
    se = expected_var * math.sqrt((kurtosis - 1) / n)
    assert abs(observed - expected_var) <= Z * se, (
        f"variance {observed:.4g}, mechanism's {expected_var:.4g} (se {se:.3g})"
    )
    assert abs(errors.mean()) <= Z * math.sqrt(expected_var / n), "noise is biased"


def assert_coverage(hits, rate):
    n = len(hits)
    observed = float(np.mean(hits))
    se = math.sqrt(rate * (1 - rate) / n)
    assert abs(observed - rate) <= Z * se, f"coverage {observed:.4f}, expected {rate:.4f} +- {Z * se:.4f}"


@pytest.mark.parametrize("epsilon", EPSILONS)
def test_count_noise_has_the_geometric_mechanisms_spread_and_exact_coverage(data, epsilon):
    out = releases(data, {"aggregate": "count"}, epsilon)
    truth = len(data["score"])
    values = [r.groups[0].value for r in out]
    part = dp.plan(SCHEMA, q({"aggregate": "count"}), epsilon).parts["count"]
    assert_variance_matches(values, truth, part.std**2)
    lo_hi = [r.groups[0].ci95 for r in out]
    hits = [lo <= truth <= hi for lo, hi in lo_hi]
    # The geometric noise is whole, so the interval's true coverage is 1 - P(|X| > h) >= 95%.
    assert_coverage(hits, 1 - part.tail(part.halfwidth()))


@pytest.mark.parametrize("epsilon", EPSILONS)
def test_sum_noise_has_the_laplace_spread_for_the_declared_bounds_and_95_percent_coverage(data, epsilon):
    out = releases(data, {"aggregate": "sum", "column": "score"}, epsilon)
    truth = float(np.clip(data["score"], 0, 100).sum())
    b = 100.0 / epsilon  # sensitivity max(|0|, |100|) over epsilon
    assert_variance_matches([r.groups[0].value for r in out], truth, 2 * b * b)
    hits = [lo <= truth <= hi for lo, hi in (r.groups[0].ci95 for r in out)]
    assert_coverage(hits, 0.95)


@pytest.mark.parametrize("epsilon", EPSILONS)
def test_mean_noise_matches_its_first_order_spread_and_its_interval_covers_95_percent(data, epsilon):
    out = releases(data, {"aggregate": "mean", "column": "score"}, epsilon)
    values = data["score"]
    n, truth = len(values), float(values.mean())
    p = dp.plan(SCHEMA, q({"aggregate": "mean", "column": "score"}), epsilon)
    centred = truth - 50.0
    # error ~ (e_S - m e_C) / n with independent Laplace e_S (scale 50 / (eps/2)) and e_C (1 / (eps/2)).
    expected_var = (2 * p.parts["sum"].scale ** 2 + centred**2 * 2 * p.parts["count"].scale ** 2) / n**2
    # A weighted difference of two Laplace variables has kurtosis at most the Laplace's.
    assert_variance_matches([r.groups[0].value for r in out], truth, expected_var)
    hits = [lo <= truth <= hi for lo, hi in (r.groups[0].ci95 for r in out)]
    assert_coverage(hits, 0.95)


def test_mean_never_uses_the_true_subset_size(data):
    # With a tiny epsilon the noisy count differs from the true one, so a mean that divided by the
    # true size would equal mid + noisy_sum / n exactly; ours divides by the noisy count.
    query = q({"aggregate": "mean", "column": "score", "filters": [{"column": "member", "op": "eq", "value": True}]})
    rs1, rs2 = np.random.RandomState(3), np.random.RandomState(3)
    release = dp.run(data, SCHEMA, query, 0.01, random_state=rs1)
    p = dp.plan(SCHEMA, query, 0.01)
    mask = data["member"]
    count = float(p.parts["count"].mechanism(rs2).randomise(float(mask.sum())))
    noisy_sum = float(p.parts["sum"].mechanism(rs2).randomise(float((data["score"][mask] - 50).sum())))
    assert release.groups[0].value == pytest.approx(50 + np.clip(noisy_sum / max(count, 1), -50, 50))
    assert count != mask.sum()


def test_group_keys_come_from_the_declared_categories_and_absent_keys_still_appear(data):
    release = dp.run(data, SCHEMA, q({"aggregate": "count", "group_by": ["region", "member"]}), 1.0, random_state=1)
    keys = [tuple(g.key.values()) for g in release.groups]
    assert keys == [(r, m) for r in ("north", "south", "east") for m in (False, True)]
    east = [g.value for g in release.groups if g.key["region"] == "east"]
    assert all(v >= 0 for v in east)  # "east" has no rows but is released, noised


def test_filters_and_groups_select_the_right_rows_when_noise_is_negligible(data):
    big = 1e7  # noise scale 1e-7: the answer equals the exact value
    query = q(
        {
            "aggregate": "sum",
            "column": "score",
            "filters": [
                {"column": "score", "op": "range", "low": 50, "high": 90},
                {"column": "region", "op": "in", "values": ["north"]},
            ],
            "group_by": ["member"],
        }
    )
    release = dp.run(data, SCHEMA, query, big, random_state=1)
    s, r, m = data["score"], data["region"], data["member"]
    for group in release.groups:
        sel = (s >= 50) & (s <= 90) & (r == "north") & (m == group.key["member"])
        assert group.value == pytest.approx(s[sel].sum(), abs=1e-3)


def test_values_are_clipped_to_the_declared_bounds():
    schema = {"x": dp.ColumnMeta("x", "numeric", 0.0, 10.0)}
    data = {"x": np.array([5.0, 1000.0, -50.0])}
    release = dp.run(data, schema, dp.parse_query({"aggregate": "sum", "column": "x"}, schema), 1e7, random_state=1)
    assert release.groups[0].value == pytest.approx(15.0, abs=1e-3)


def test_histogram_counts_each_declared_bin():
    schema = {"x": dp.ColumnMeta("x", "numeric", 0.0, 10.0)}
    data = {"x": np.array([0.0, 1.0, 4.9, 5.0, 10.0, 10.0])}
    release = dp.run(
        data,
        schema,
        dp.parse_query({"aggregate": "histogram", "column": "x", "bins": [0, 5, 10]}, schema),
        1e7,
        random_state=1,
    )
    assert [b["count"] for b in release.groups[0].value] == [3, 3]


def test_quantile_lands_within_its_stated_rank_bound_95_percent_of_the_time():
    rs = np.random.RandomState(5)
    n = 2000
    schema = {"x": dp.ColumnMeta("x", "numeric", 0.0, 1.0)}
    data = {"x": rs.uniform(0, 1, n)}
    query = dp.parse_query({"aggregate": "quantile", "column": "x", "quantiles": [0.5]}, schema)
    bound = dp.estimate(schema, query, 1.0, rows=n).ci95_halfwidth
    sorted_x = np.sort(data["x"])
    hits = []
    for _ in range(500):
        value = dp.run(data, schema, query, 1.0, random_state=rs).groups[0].value[0]
        rank = np.searchsorted(sorted_x, value)
        hits.append(abs(rank - n / 2) <= bound)
    assert np.mean(hits) >= 0.95 - Z * math.sqrt(0.95 * 0.05 / 500)


def test_quantile_pruning_leaves_every_probability_unchanged():
    # The candidates dropped by the engine have exp(utility * eps / 2) == 0.0 exactly in float64.
    n, eps = 100_000, 1.0
    ranks = np.arange(n + 1, dtype=float)
    utility = -np.abs(ranks - 0.5 * n)
    weights = np.exp(eps / 2 * (utility - utility.max()))
    dropped = eps / 2 * (utility - utility.max()) <= -746.0
    assert dropped.any() and np.all(weights[dropped] == 0.0)


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"aggregate": "sum", "column": "region"}, "query.column"),
        ({"aggregate": "mean", "column": "nope"}, "query.column"),
        ({"aggregate": "median", "column": "score"}, "query.aggregate"),
        (
            {"aggregate": "count", "filters": [{"column": "region", "op": "eq", "value": "west"}]},
            "query.filters.0.value",
        ),
        ({"aggregate": "count", "filters": [{"column": "score", "op": "eq", "value": 3}]}, "query.filters.0.op"),
        ({"aggregate": "count", "group_by": ["score"]}, "query.group_by.0"),
        ({"aggregate": "quantile", "column": "score", "quantiles": [1.5]}, "query.quantiles.0"),
        ({"aggregate": "quantile", "column": "score", "quantiles": [float("nan")]}, "query.quantiles.0"),
        ({"aggregate": "histogram", "column": "score", "bins": [5, 1]}, "query.bins"),
        ({"aggregate": "count", "column": "score"}, "query.column"),
    ],
)
def test_a_query_that_does_not_fit_the_schema_names_the_field(raw, field):
    with pytest.raises(dp.QueryError) as info:
        dp.parse_query(raw, SCHEMA)
    assert info.value.field == field


@pytest.mark.parametrize("epsilon", [0, -1, float("nan"), float("inf")])
def test_epsilon_must_be_finite_and_positive(epsilon):
    with pytest.raises(dp.QueryError) as info:
        dp.plan(SCHEMA, q({"aggregate": "count"}), epsilon)
    assert info.value.field == "epsilon"


def test_a_delta_on_a_quantile_is_refused():
    with pytest.raises(dp.QueryError) as info:
        dp.plan(SCHEMA, q({"aggregate": "quantile", "column": "score", "quantiles": [0.5]}), 1.0, 1e-6)
    assert info.value.field == "delta"


def test_delta_switches_to_the_gaussian_mechanism_with_its_exact_interval():
    est = dp.estimate(SCHEMA, q({"aggregate": "sum", "column": "score"}), 1.0, 1e-5)
    assert "Gaussian" in est.mechanism
    assert est.ci95_halfwidth == pytest.approx(1.959964 * est.noise_scale, rel=1e-5)


@pytest.mark.parametrize(
    "raw", [{"aggregate": "count"}, {"aggregate": "sum", "column": "score"}, {"aggregate": "mean", "column": "score"}]
)
def test_epsilon_for_a_halfwidth_is_the_inverse_of_the_estimate(raw):
    query = q(raw)
    target = 5.0 if raw["aggregate"] != "mean" else 0.5
    eps = dp.epsilon_for_halfwidth(SCHEMA, query, target, rows=10_000)
    assert dp.estimate(SCHEMA, query, eps, rows=10_000).ci95_halfwidth <= target
    assert dp.estimate(SCHEMA, query, eps * 0.99, rows=10_000).ci95_halfwidth > target


def test_laplace_halfwidth_is_exact():
    part = dp.additive(0.5, 0.0, 10.0)
    assert part.tail(part.halfwidth()) == pytest.approx(0.05)


def test_canonical_form_ignores_filter_order():
    a = q(
        {
            "aggregate": "count",
            "filters": [
                {"column": "member", "op": "eq", "value": True},
                {"column": "region", "op": "in", "values": ["south", "north"]},
            ],
        }
    )
    b = q(
        {
            "aggregate": "count",
            "filters": [
                {"column": "region", "op": "in", "values": ["north", "south"]},
                {"column": "member", "op": "eq", "value": True},
            ],
        }
    )
    assert a.canonical() == b.canonical()


@pytest.mark.parametrize(
    "raw",
    [
        {"aggregate": "count", "filters": [{"column": "member", "op": "eq", "value": True}]},
        {
            "aggregate": "sum",
            "column": "score",
            "filters": [{"column": "score", "op": "range", "low": 1, "high": None}],
        },
        {"aggregate": "quantile", "column": "score", "quantiles": [0.9, 0.1], "group_by": ["region"]},
        {
            "aggregate": "histogram",
            "column": "score",
            "bins": 4,
            "filters": [{"column": "region", "op": "in", "values": ["east", "north"]}],
        },
    ],
)
def test_the_canonical_form_parses_back_to_the_same_query(raw):
    query = q(raw)
    assert dp.parse_query(query.canonical(), SCHEMA) == query


def test_rows_missing_a_value_the_query_reads_are_dropped_not_propagated():
    schema = {"x": dp.ColumnMeta("x", "numeric", 0.0, 10.0)}
    data = {"x": np.array([1.0, np.nan, 3.0])}
    total = dp.run(data, schema, dp.parse_query({"aggregate": "sum", "column": "x"}, schema), 1e7, random_state=1)
    count = dp.run(
        data,
        schema,
        dp.parse_query({"aggregate": "count", "filters": [{"column": "x", "op": "range", "low": 0}]}, schema),
        1e7,
        random_state=1,
    )
    assert total.groups[0].value == pytest.approx(4.0, abs=1e-3)
    assert count.groups[0].value == 2
