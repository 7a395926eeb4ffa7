"""Unit and statistical tests of the pure DP engine (no database).

Every noisy measurement is released on a grid (cloakroom_client.protocol.noise): the value rounded
to a multiple of a power-of-two granularity g plus exact discrete noise in grid steps. The noise of
a pure-epsilon part is the discrete Laplace law P(z) = (1 - p) / (1 + p) p^|z| in grid steps, with
p = exp(-epsilon / steps); with delta > 0 it is the discrete Gaussian P(z) ∝ exp(-z^2 / (2 sigma^2)).
The moments and tails used below are summed from those exact pmfs, not taken from the library.

Statistical tests use a fixed seed and tolerances derived from the mechanism and the sample size:
a sample variance of N draws has standard error sqrt((mu4 - sigma^4) / N), and a coverage rate has
binomial standard error sqrt(p (1 - p) / N). Each check allows Z standard errors.
"""

from __future__ import annotations

import json
import math
import random
from fractions import Fraction
from statistics import NormalDist

import numpy as np
import pytest

from compute.engines import dp

Z = 4.5  # standard errors allowed; with ~30 checks the chance of a false failure is < 1e-4
DRAWS = 3000
EPSILONS = (0.1, 1.0, 5.0)

SCHEMA = {
    "score": dp.ColumnMeta("score", "numeric", 0.0, 100.0),
    "region": dp.ColumnMeta("region", "categorical", categories=("north", "south", "east")),
    "member": dp.ColumnMeta("member", "boolean"),
}


@pytest.fixture(scope="module")
def data():
    rs = np.random.RandomState(7)  # public test data; the noise comes from random.Random below
    n = 10_000
    return {
        # Skewed towards the top of the bounds, so the mean sits away from the middle.
        "score": 100 * rs.beta(5, 1.5, n),
        "region": rs.choice(["north", "south"], n).astype(object),
        "member": rs.rand(n) < 0.25,
    }


def q(raw):
    return dp.parse_query(raw, SCHEMA)


def releases(data, raw, epsilon, draws=DRAWS, seed=11, delta=0.0):
    rng = random.Random(seed)  # one generator for every draw, so the releases are independent
    query = q(raw)
    return [dp.run(data, SCHEMA, query, epsilon, delta, random_state=rng) for _ in range(draws)]


# -- the exact discrete laws ------------------------------------------------------------------------


class Law:
    """A symmetric law on the whole numbers (grid steps), from its pmf on 0, 1, 2, ... (P(|Z| = k))."""

    def __init__(self, weights: np.ndarray):
        total = math.fsum(weights)
        self.abs_pmf = weights / total  # P(|Z| = k)
        k = np.arange(len(weights), dtype=float)
        self.var = math.fsum(self.abs_pmf * k**2)
        self.mu4 = math.fsum(self.abs_pmf * k**4)
        self.cdf = np.cumsum(self.abs_pmf)  # P(|Z| <= k)

    def within(self, k: int) -> float:
        """P(|Z| <= k)."""
        return 0.0 if k < 0 else float(self.cdf[min(k, len(self.cdf) - 1)])


def laplace_law(part) -> Law:
    """The discrete Laplace in grid steps for ``part``, p = exp(-epsilon / steps), to p^k < 1e-30."""
    p = math.exp(-part.epsilon / part.steps)
    k = np.arange(0, math.ceil(math.log(1e-30) / math.log(p)) + 1, dtype=float)
    weights = np.exp(k * math.log(p))
    weights[1:] *= 2.0
    law = Law(weights)
    assert math.isclose(law.var, 2 * p / (1 - p) ** 2, rel_tol=1e-9)  # the closed form, checked
    return law


def gaussian_law(part) -> Law:
    """The discrete Gaussian in grid steps for ``part`` (its sigma^2 in steps), to 40 sigma."""
    sigma2 = float(part.sigma2_steps)
    k = np.arange(0, math.ceil(40 * math.sqrt(sigma2)) + 1, dtype=float)
    weights = np.exp(-(k**2) / (2 * sigma2))
    weights[1:] *= 2.0
    return Law(weights)


def law_of(part) -> Law:
    return gaussian_law(part) if part.kind == "gaussian" else laplace_law(part)


def on_grid(value, g) -> bool:
    """Whether ``value`` is exactly a whole multiple of ``g`` (no float tolerance)."""
    return math.isfinite(value) and (Fraction(value) / Fraction(g)).denominator == 1


def is_power_of_two(g) -> bool:
    m, _ = math.frexp(g)
    return g > 0 and m == 0.5


def assert_variance_matches(samples, centre, var, mu4):
    """The sample variance and mean of ``samples - centre`` against a law's variance and 4th moment."""
    errors = np.asarray(samples, dtype=float) - centre
    n = len(errors)
    observed = errors.var(ddof=1)
    se = math.sqrt((mu4 - var**2) / n)
    assert abs(observed - var) <= Z * se, f"variance {observed:.4g}, mechanism's {var:.4g} (se {se:.3g})"
    assert abs(errors.mean()) <= Z * math.sqrt(var / n), "noise is biased"


def assert_coverage(hits, rate):
    n = len(hits)
    observed = float(np.mean(hits))
    se = math.sqrt(rate * (1 - rate) / n)
    assert abs(observed - rate) <= Z * se, f"coverage {observed:.4f}, expected {rate:.4f} +- {Z * se:.4f}"


# -- the noise of each aggregate ---------------------------------------------------------------------


@pytest.mark.parametrize("epsilon", EPSILONS)
def test_count_noise_has_the_geometric_mechanisms_law_and_exact_coverage(data, epsilon):
    out = releases(data, {"aggregate": "count"}, epsilon)
    truth = len(data["score"])
    values = [r.groups[0].value for r in out]
    assert all(type(v) is int for v in values)
    part = dp.plan(SCHEMA, q({"aggregate": "count"}), epsilon).parts["count"]
    assert (part.kind, part.granularity, part.steps) == ("geometric", 1.0, 1)
    law = laplace_law(part)
    assert part.std**2 == pytest.approx(law.var, rel=1e-9)
    assert_variance_matches(values, truth, law.var, law.mu4)
    # P(0) of the two-sided geometric: (1 - p) / (1 + p).
    p0 = float(law.abs_pmf[0])
    assert_coverage([v == truth for v in values], p0)
    # The noise is whole, so the interval's true coverage is P(|X| <= h) >= 95%, from the pmf.
    h = part.halfwidth()
    assert h == int(h)
    hits = [lo <= truth <= hi for lo, hi in (r.groups[0].ci95 for r in out)]
    assert_coverage(hits, law.within(int(h)))


@pytest.mark.parametrize("epsilon", EPSILONS)
def test_sum_noise_has_the_discrete_laplace_law_for_the_declared_bounds_and_exact_coverage(data, epsilon):
    out = releases(data, {"aggregate": "sum", "column": "score"}, epsilon)
    truth = float(np.clip(data["score"], 0, 100).sum())
    part = dp.plan(SCHEMA, q({"aggregate": "sum", "column": "score"}), epsilon).parts["sum"]
    # Sensitivity max(|0|, |100|); the largest power of two <= 100 / 1024 is 1/16; 1600 + 1 steps.
    assert (part.kind, part.sensitivity, part.granularity, part.steps) == ("laplace", 100.0, 0.0625, 1601)
    # The rounding costs at most 1/1024 more noise than the continuous Laplace's b = 100 / epsilon.
    assert 100.0 / epsilon <= part.scale <= 100.0 / epsilon * (1 + 1 / 1024)
    g = part.granularity
    values = [r.groups[0].value for r in out]
    assert all(on_grid(v, g) for v in values)
    law = laplace_law(part)
    assert part.std**2 == pytest.approx(law.var * g**2, rel=1e-9)
    # The release is the truth rounded to the grid plus the noise: centred there, the error is exactly
    # the discrete Laplace in steps of g.
    assert_variance_matches(np.asarray(values) / g, round(truth / g), law.var, law.mu4)
    # h = k g + g / 2 and the truth lies within g / 2 of its grid point, so the interval covers the
    # truth exactly when |noise| <= k steps.
    h = part.halfwidth()
    k = math.floor(h / g)
    assert h == k * g + g / 2
    hits = [lo <= truth <= hi for lo, hi in (r.groups[0].ci95 for r in out)]
    assert_coverage(hits, law.within(k))


@pytest.mark.parametrize("epsilon", EPSILONS)
def test_mean_noise_matches_its_first_order_spread_and_its_interval_covers_95_percent(data, epsilon):
    out = releases(data, {"aggregate": "mean", "column": "score"}, epsilon)
    values = data["score"]
    n, truth = len(values), float(values.mean())
    p = dp.plan(SCHEMA, q({"aggregate": "mean", "column": "score"}), epsilon)
    s, c = p.parts["sum"], p.parts["count"]
    assert (s.epsilon, c.epsilon, s.sensitivity, c.sensitivity) == (epsilon / 2, epsilon / 2, 50.0, 1.0)
    centred = truth - 50.0
    # error ~ (e_S - m e_C) / n with independent discrete Laplace e_S and e_C (in value units).
    ls, lc = laplace_law(s), laplace_law(c)
    x_var, x_mu4 = ls.var * s.granularity**2 / n**2, ls.mu4 * s.granularity**4 / n**4
    y_var, y_mu4 = lc.var * (centred * c.granularity) ** 2 / n**2, lc.mu4 * (centred * c.granularity) ** 4 / n**4
    # Independent and centred: E(X + Y)^4 = E X^4 + 6 Var X Var Y + E Y^4.
    assert_variance_matches([r.groups[0].value for r in out], truth, x_var + y_var, x_mu4 + 6 * x_var * y_var + y_mu4)
    hits = [lo <= truth <= hi for lo, hi in (r.groups[0].ci95 for r in out)]
    assert_coverage(hits, 0.95)


def test_mean_never_uses_the_true_subset_size(data):
    # With a tiny epsilon the noisy count differs from the true one, so a mean that divided by the
    # true size would equal mid + noisy_sum / n exactly; ours divides by the noisy count.
    query = q({"aggregate": "mean", "column": "score", "filters": [{"column": "member", "op": "eq", "value": True}]})
    release = dp.run(data, SCHEMA, query, 0.01, random_state=3)
    p = dp.plan(SCHEMA, query, 0.01)
    mask = data["member"]
    rng = random.Random(3)  # the engine draws the count, then the centred sum, from one generator
    count = p.parts["count"].release(float(mask.sum()), rng)
    noisy_sum = p.parts["sum"].release(float((data["score"][mask] - 50).sum()), rng)
    group = release.groups[0]
    assert group.raw == {"count": count, "sum": noisy_sum}
    assert group.value == 50 + float(np.clip(noisy_sum / max(count, 1.0), -50, 50))
    assert count != mask.sum()


def test_group_keys_come_from_the_declared_categories_and_absent_keys_still_appear(data):
    release = dp.run(data, SCHEMA, q({"aggregate": "count", "group_by": ["region", "member"]}), 1.0, random_state=1)
    keys = [tuple(g.key.values()) for g in release.groups]
    assert keys == [(r, m) for r in ("north", "south", "east") for m in (False, True)]
    east = [g.value for g in release.groups if g.key["region"] == "east"]
    assert all(v >= 0 for v in east)  # "east" has no rows but is released, noised


def test_filters_and_groups_select_the_right_rows_when_noise_is_negligible(data):
    big = 1e7  # p = exp(-1e7 / 1601) is 0.0: the noise is 0 and the answer is the exact value on its grid
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
    g = release.granularity["sum"]
    s, r, m = data["score"], data["region"], data["member"]
    for group in release.groups:
        sel = (s >= 50) & (s <= 90) & (r == "north") & (m == group.key["member"])
        truth = float(s[sel].sum())
        assert group.value == round(truth / g) * g  # rounded to the nearest grid point, nothing added
        assert abs(group.value - truth) <= g / 2


def test_values_are_clipped_to_the_declared_bounds():
    schema = {"x": dp.ColumnMeta("x", "numeric", 0.0, 10.0)}
    data = {"x": np.array([5.0, 1000.0, -50.0])}
    release = dp.run(data, schema, dp.parse_query({"aggregate": "sum", "column": "x"}, schema), 1e7, random_state=1)
    assert release.groups[0].value == 15.0  # 5 + 10 + 0, a grid point, and no noise at this epsilon


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
    rs = np.random.RandomState(5)  # public test data
    n = 2000
    schema = {"x": dp.ColumnMeta("x", "numeric", 0.0, 1.0)}
    data = {"x": rs.uniform(0, 1, n)}
    query = dp.parse_query({"aggregate": "quantile", "column": "x", "quantiles": [0.5]}, schema)
    bound = dp.estimate(schema, query, 1.0, rows=n).ci95_halfwidth
    sorted_x = np.sort(data["x"])
    rng = random.Random(5)
    hits = []
    for _ in range(500):
        value = dp.run(data, schema, query, 1.0, random_state=rng).groups[0].value[0]
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


# -- every measurement on its grid; reproducible noise ----------------------------------------------

GRID_QUERIES = [
    {"aggregate": "count", "group_by": ["member"]},
    {"aggregate": "sum", "column": "score", "group_by": ["region"]},
    {"aggregate": "histogram", "column": "score", "bins": 4},
    {"aggregate": "histogram", "column": "region", "group_by": ["member"]},
    {"aggregate": "mean", "column": "score", "group_by": ["region"]},
    {"aggregate": "variance", "column": "score"},
    {"aggregate": "std", "column": "score", "filters": [{"column": "member", "op": "eq", "value": True}]},
]


@pytest.mark.parametrize("delta", [0.0, 1e-6])
@pytest.mark.parametrize("raw", GRID_QUERIES, ids=lambda raw: raw["aggregate"])
def test_every_released_measurement_is_an_exact_multiple_of_the_granularity_the_release_states(data, raw, delta):
    query = q(raw)
    plan = dp.plan(SCHEMA, query, 0.7, delta)
    stated = dp.run(data, SCHEMA, query, 0.7, delta, random_state=21).as_dict()
    # The release states each noisy part's grid step: the plan's, a power of two (1 for whole counts).
    assert stated["granularity"] == {name: part.granularity for name, part in plan.parts.items()}
    assert all(is_power_of_two(g) for g in stated["granularity"].values())
    g = stated["granularity"]
    for group in stated["groups"]:
        if raw["aggregate"] == "count":
            assert g == {"count": 1.0}
            assert type(group["value"]) is int
        elif raw["aggregate"] == "sum":
            assert g["sum"] == 0.0625 and on_grid(group["value"], g["sum"])
        elif raw["aggregate"] == "histogram":
            assert g == {"count": 1.0}
            assert all(type(b["count"]) is int for b in group["value"])
        else:
            # A mean, variance or std is post-processing of raw measurements, each on its part's grid.
            raw_parts = group["raw"]
            assert set(raw_parts) == set(g)
            for name, value in raw_parts.items():
                assert on_grid(value, g[name]), (name, value, g[name])
            assert any(not on_grid(v, 1.0) for v in raw_parts.values())  # a finer grid than the integers
            c, s = max(raw_parts["count"], 1.0), raw_parts["sum"]
            m = float(np.clip(s / c, -50.0, 50.0))
            if raw["aggregate"] == "mean":
                assert group["value"] == 50.0 + m
            else:
                var = float(np.clip(raw_parts["sumsq"] / c - m * m, 0.0, 50.0**2))
                assert group["value"] == (var if raw["aggregate"] == "variance" else math.sqrt(var))
    # A value on its grid survives a JSON round trip exactly.
    assert json.loads(json.dumps(stated)) == stated


def test_the_release_dict_states_the_quantile_grid_and_the_answers_lie_on_it(data):
    stated = dp.run(
        data, SCHEMA, q({"aggregate": "quantile", "column": "score", "quantiles": [0.25, 0.5]}), 1.0, random_state=4
    ).as_dict()
    g = stated["granularity"]["quantile"]
    assert is_power_of_two(g) and 2**20 <= 100.0 / g < 2**21
    assert all(on_grid(v, g) and 0.0 <= v <= 100.0 for v in stated["groups"][0]["value"])


@pytest.mark.parametrize(
    "raw",
    [
        {"aggregate": "count", "group_by": ["region", "member"]},
        {"aggregate": "sum", "column": "score", "group_by": ["region", "member"]},
        {"aggregate": "mean", "column": "score", "group_by": ["region"]},
        {"aggregate": "histogram", "column": "score", "bins": 5},
        {"aggregate": "quantile", "column": "score", "quantiles": [0.1, 0.9]},
    ],
    ids=lambda raw: raw["aggregate"],
)
def test_the_same_seed_gives_the_same_release_and_another_seed_another(data, raw):
    query = q(raw)
    first = dp.run(data, SCHEMA, query, 1.0, random_state=123).as_dict()
    assert dp.run(data, SCHEMA, query, 1.0, random_state=123).as_dict() == first
    assert dp.run(data, SCHEMA, query, 1.0, random_state=random.Random(123)).as_dict() == first
    assert dp.run(data, SCHEMA, query, 1.0, random_state=124).as_dict() != first
    # Without a seed the noise comes from the operating system's generator: two runs differ.
    assert dp.run(data, SCHEMA, query, 1.0).as_dict() != dp.run(data, SCHEMA, query, 1.0).as_dict()


@pytest.mark.parametrize("bad", [np.random.RandomState(1), np.random.default_rng(1), 1.5, True])
def test_a_numpy_generator_or_a_non_integer_seed_is_refused(data, bad):
    with pytest.raises(TypeError):
        dp.run(data, SCHEMA, q({"aggregate": "count"}), 1.0, random_state=bad)


# -- validation ---------------------------------------------------------------------------------------


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


# -- accuracy stated before spending ----------------------------------------------------------------


def test_delta_switches_to_the_discrete_gaussian_with_its_interval_checked_against_the_exact_law():
    epsilon, delta = 1.0, 1e-5
    query = q({"aggregate": "sum", "column": "score"})
    est = dp.estimate(SCHEMA, query, epsilon, delta)
    part = dp.plan(SCHEMA, query, epsilon, delta).parts["sum"]
    assert "Gaussian" in est.mechanism and part.kind == "gaussian"
    # Calibrated through zCDP: rho = (sqrt(ln(1/delta) + epsilon) - sqrt(ln(1/delta)))^2, which gives
    # back epsilon = rho + 2 sqrt(rho ln(1/delta)), and sigma^2 >= steps^2 / (2 rho) in grid steps.
    log = math.log(1 / delta)
    rho = (math.sqrt(log + epsilon) - math.sqrt(log)) ** 2
    assert rho + 2 * math.sqrt(rho * log) == pytest.approx(epsilon, rel=1e-12)
    sigma2 = float(part.sigma2_steps)
    assert part.steps**2 / (2 * rho) <= sigma2 <= part.steps**2 / (2 * rho) * (1 + 1e-9)
    g = part.granularity
    sigma = math.sqrt(sigma2)
    assert est.noise_scale == pytest.approx(sigma * g, rel=1e-12)
    # The stated half-width: the normal quantile of sigma plus half a grid step for the rounding.
    z = NormalDist().inv_cdf(0.975)
    assert est.ci95_halfwidth == pytest.approx(z * sigma * g + g / 2, rel=1e-12)
    # Against the exact discrete Gaussian: a value on the grid is within h of its release with
    # probability >= 95%, and the half-width is at most about one grid step too wide.
    law = gaussian_law(part)
    assert law.var == pytest.approx(sigma2, rel=1e-9)  # a wide discrete Gaussian has variance ~ sigma^2
    covered = law.within(math.floor(est.ci95_halfwidth / g))
    assert 0.95 <= covered <= 0.95 + 2 * NormalDist().pdf(z) / sigma


@pytest.mark.parametrize("epsilon", EPSILONS)
def test_gaussian_noise_has_the_discrete_gaussians_spread(data, epsilon):
    delta = 1e-6
    out = releases(data, {"aggregate": "sum", "column": "score"}, epsilon, delta=delta, seed=13)
    truth = float(np.clip(data["score"], 0, 100).sum())
    part = dp.plan(SCHEMA, q({"aggregate": "sum", "column": "score"}), epsilon, delta).parts["sum"]
    g = part.granularity
    values = np.asarray([r.groups[0].value for r in out])
    assert all(on_grid(v, g) for v in values)
    law = gaussian_law(part)
    assert_variance_matches(values / g, round(truth / g), law.var, law.mu4)


@pytest.mark.parametrize(
    "raw", [{"aggregate": "count"}, {"aggregate": "sum", "column": "score"}, {"aggregate": "mean", "column": "score"}]
)
def test_epsilon_for_a_halfwidth_is_the_inverse_of_the_estimate(raw):
    query = q(raw)
    target = 5.0 if raw["aggregate"] != "mean" else 0.5
    eps = dp.epsilon_for_halfwidth(SCHEMA, query, target, rows=10_000)
    assert dp.estimate(SCHEMA, query, eps, rows=10_000).ci95_halfwidth <= target
    assert dp.estimate(SCHEMA, query, eps * 0.99, rows=10_000).ci95_halfwidth > target


@pytest.mark.parametrize(
    ("epsilon", "sensitivity", "integer"),
    [(0.5, 10.0, False), (0.1, 100.0, False), (3.0, 0.37, False), (0.5, 1.0, True), (2.0, 1.0, True)],
)
def test_laplace_halfwidth_is_exact(epsilon, sensitivity, integer):
    """h = k g (+ g / 2 for the rounding of a real value): P(|noise| <= k steps) >= 95% from the exact
    pmf, and one grid step less covers less than 95% (for a value on the grid)."""
    part = dp.additive(epsilon, 0.0, sensitivity, integer=integer)
    g = part.granularity
    h = part.halfwidth()
    k = (h - (0.0 if integer else g / 2)) / g
    assert k == int(k)
    k = int(k)
    law = laplace_law(part)
    assert law.within(k) >= 0.95
    assert law.within(k - 1) < 0.95
    # The library's exact tail agrees with the pmf.
    assert part.tail(h) == pytest.approx(1 - law.within(k), rel=1e-9)
    assert part.tail(h - g) == pytest.approx(1 - law.within(k - 1), rel=1e-9)


# -- canonical forms, missing values ----------------------------------------------------------------


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
