"""The DP quantile on tied data, audited statistically (pure unit tests, no database).

The former engine sampler pruned the gaps between sorted values against the best utility over all
gaps, zero-width ones between ties included. From 2984 rows equal to 50 in [0, 100] (median,
epsilon 1) every gap that can hold an answer was pruned and the median was the lower bound every
time, while 2983 rows gave answers spread over [0, 100]: an infinite privacy loss between
neighbours. ``test_old_pruning_rule_fails_the_audit`` replays that rule and shows these checks
catch it.

Every tolerance comes from the mechanism or from exact statistics, with a fixed seed:

* rates are bounded with Clopper-Pearson intervals at ``ALPHA``;
* empirical epsilon lower bounds (tests/privacy/audit.py) exceed the true epsilon with
  probability at most ``ALPHA``;
* accuracy uses the exponential mechanism's tail bound: the output's utility is at most
  OPT - (2 / epsilon) (ln |grid| + t) with probability at most exp(-t);
* the whole output distribution is compared with the exact one by the Dvoretzky-Kiefer-Wolfowitz
  inequality, P(sup |F_n - F| > e) <= 2 exp(-2 n e^2) (valid for discrete distributions too).

Each check fails a correct mechanism with probability at most ``ALPHA``; with the few dozen checks
here the chance of any false failure is below 1e-4.
"""

from __future__ import annotations

import math
import random
import secrets

import numpy as np
import pytest

from compute.engines.dp.quantile import dp_quantile, quantile_granularity
from tests.privacy.audit import clopper_pearson, empirical_epsilon, empirical_epsilon_lower_bound

ALPHA = 1e-6
EPSILON = 1.0
RELEASES = 2000
LOWER, UPPER = 0.0, 100.0
MEDIAN = 0.5
# At most this fraction of answers may be the lower bound (checked on the Clopper-Pearson upper end).
LOWER_BOUND_RATE = 0.05


def draw(values, lower=LOWER, upper=UPPER, q=MEDIAN, epsilon=EPSILON, seed=0, count=RELEASES) -> np.ndarray:
    rng = random.Random(seed)
    ordered = np.sort(np.asarray(values, dtype=float))
    return np.array([dp_quantile(ordered, lower, upper, q, epsilon, rng) for _ in range(count)])


def grid_of(lower: float, upper: float) -> np.ndarray:
    g = quantile_granularity(lower, upper)
    return np.arange(math.ceil(lower / g), math.floor(upper / g) + 1) * g


def grid_utility(values, lower: float, upper: float, q: float) -> tuple[np.ndarray, np.ndarray]:
    """Every grid point and its utility -|#{values <= y} - q n|, computed point by point (an oracle
    independent of the implementation's gap bookkeeping)."""
    ordered = np.sort(np.clip(np.asarray(values, dtype=float), lower, upper))
    grid = grid_of(lower, upper)
    return grid, -np.abs(np.searchsorted(ordered, grid, side="right") - q * len(ordered))


def exact_cdf(values, lower: float, upper: float, q: float, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """The grid and the exact CDF of the ideal exponential mechanism over it."""
    grid, utility = grid_utility(values, lower, upper, q)
    log_weight = (epsilon / 2.0) * utility
    weight = np.exp(log_weight - log_weight.max())
    return grid, np.cumsum(weight) / weight.sum()


def admissible(values, lower: float, upper: float, q: float, epsilon: float, beta: float) -> np.ndarray:
    """The grid points the exponential mechanism's tail bound allows: each release falls outside
    this set with probability at most ``beta``."""
    grid, utility = grid_utility(values, lower, upper, q)
    radius = (2.0 / epsilon) * (math.log(len(grid)) + math.log(1.0 / beta))
    return grid[utility > utility.max() - radius]


def lower_bound_rate_upper(releases: np.ndarray, lower: float = LOWER) -> float:
    """Clopper-Pearson upper end (one-sided, level ALPHA) of the rate of answers equal to ``lower``."""
    return clopper_pearson(int((releases == lower).sum()), len(releases), 2 * ALPHA)[1]


def ages(extra_forties: int = 0) -> np.ndarray:
    """5200 ages in [0, 100]: 3200 equal to 40 and 2000 whole ages spread uniformly (fixed seed)."""
    spread = np.random.default_rng(20240501).integers(0, 101, 2000).astype(float)
    return np.concatenate([np.full(3200 + extra_forties, 40.0), spread])


# Events are fixed before any release is drawn (the Bonferroni correction covers all of them).
TIED_EVENTS = [lambda r: r == LOWER, 10.0, 25.0, 49.99, 50.0, 75.0, 90.0]
AGES_EVENTS = [lambda r: r == LOWER, 39.99, 40.0, 40.25, 40.5, 40.75, 41.0, 42.0, 50.0]


@pytest.fixture(scope="module")
def tied_releases() -> dict[int, np.ndarray]:
    return {n: draw(np.full(n, 50.0), seed=n) for n in (2983, 2984)}


@pytest.fixture(scope="module")
def ages_releases() -> dict[int, np.ndarray]:
    return {extra: draw(ages(extra), seed=100 + extra) for extra in (-1, 0, 1)}


# Ties ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2983, 2984])
def test_tied_median_is_rarely_the_lower_bound(tied_releases, n):
    # Formerly 2984 rows equal to 50 gave exactly LOWER on every release (fraction 1.0).
    assert lower_bound_rate_upper(tied_releases[n]) < LOWER_BOUND_RATE


def test_tied_neighbours_stay_within_epsilon(tied_releases):
    bound = empirical_epsilon(tied_releases[2983], tied_releases[2984], TIED_EVENTS, alpha=ALPHA)
    assert bound < EPSILON


@pytest.mark.parametrize("n", [2983, 2984])
def test_tied_median_follows_the_exact_distribution(tied_releases, n):
    assert_matches_exact(tied_releases[n], np.full(n, 50.0), LOWER, UPPER, MEDIAN, EPSILON)


@pytest.mark.parametrize("extra", [-1, 0, 1])
def test_ages_median_is_rarely_the_lower_bound(ages_releases, extra):
    assert lower_bound_rate_upper(ages_releases[extra]) < LOWER_BOUND_RATE


@pytest.mark.parametrize("extra", [-1, 1])
def test_ages_neighbours_stay_within_epsilon(ages_releases, extra):
    bound = empirical_epsilon(ages_releases[0], ages_releases[extra], AGES_EVENTS, alpha=ALPHA)
    assert bound < EPSILON


@pytest.mark.parametrize("extra", [-1, 0, 1])
def test_ages_median_lies_near_40(ages_releases, extra):
    # Each release leaves the tail bound's set with probability <= ALPHA / RELEASES (union bound).
    allowed = admissible(ages(extra), LOWER, UPPER, MEDIAN, EPSILON, ALPHA / RELEASES)
    # The data put the true median on 40 and the next value at 41; the tail bound allows [40, 44).
    assert 40.0 <= allowed.min() and allowed.max() < 44.0
    assert np.isin(ages_releases[extra], allowed).all()


def test_ages_median_follows_the_exact_distribution(ages_releases):
    assert_matches_exact(ages_releases[0], ages(), LOWER, UPPER, MEDIAN, EPSILON)


def assert_matches_exact(releases, values, lower, upper, q, epsilon):
    """DKW: the empirical CDF of the releases is within e of the exact CDF, e from ALPHA."""
    grid, cdf = exact_cdf(values, lower, upper, q, epsilon)
    ordered = np.sort(releases)
    at = np.searchsorted(grid, ordered)
    assert (grid[at] == ordered).all()  # every release is a grid point
    n = len(ordered)
    below = np.where(at > 0, cdf[np.maximum(at - 1, 0)], 0.0)
    gap = max(
        np.abs(np.searchsorted(ordered, ordered, side="right") / n - cdf[at]).max(),
        np.abs(np.searchsorted(ordered, ordered, side="left") / n - below).max(),
    )
    assert gap <= math.sqrt(math.log(2.0 / ALPHA) / (2.0 * n))


# The former defect -------------------------------------------------------------------------------


def old_quantile(sorted_values, lower, upper, q, epsilon, rng: random.Random) -> float:
    """The former engine rule, replayed: prune against the best utility over ALL gaps (zero-width
    ones included), weight by width, and add a continuous uniform to the chosen edge."""
    n = len(sorted_values)
    edges = np.concatenate(([lower], sorted_values, [upper]))
    widths = np.diff(edges)
    utility = -np.abs(np.arange(n + 1) - q * n)
    scale = epsilon / 2.0
    keep = (widths > 0) & (scale * (utility - utility.max()) > -746.0)
    if not keep.any():
        return float(lower)  # with 2984 values tied at 50 this is every answer
    idx = np.flatnonzero(keep)
    log_weight = scale * utility[idx] + np.log(widths[idx])
    weight = np.exp(log_weight - log_weight.max())
    chosen = idx[min(np.searchsorted(np.cumsum(weight), rng.random() * weight.sum(), side="right"), len(idx) - 1)]
    return float(edges[chosen] + rng.random() * widths[chosen])


def test_old_pruning_rule_fails_the_audit():
    # With all 2984 values tied at 50 the former rule always answered the lower bound; these are
    # the checks above, and they fail it. 500 releases a side are already plenty.
    rng = random.Random(7)
    old = {
        n: np.array([old_quantile(np.full(n, 50.0), LOWER, UPPER, MEDIAN, EPSILON, rng) for _ in range(500)])
        for n in (2983, 2984)
    }
    assert (old[2984] == LOWER).all()
    assert lower_bound_rate_upper(old[2984]) > LOWER_BOUND_RATE
    assert empirical_epsilon(old[2983], old[2984], TIED_EVENTS, alpha=ALPHA) > EPSILON


# The grid, the bounds and the generator --------------------------------------------------------


@pytest.mark.parametrize(
    ("lower", "upper"), [(0.0, 100.0), (0.3, 17.1), (-5.5, 3.25), (-1e6, -2.0), (1e9, 1e9 + 3.0), (0.0, 1e-3)]
)
@pytest.mark.parametrize("q", [0.0, 0.25, 0.5, 1.0])
def test_outputs_are_grid_points_inside_the_bounds(lower, upper, q):
    g = quantile_granularity(lower, upper)
    assert g == 2.0 ** math.floor(math.log2(g))  # a power of two
    assert 2**20 <= (upper - lower) / g < 2**21
    width = upper - lower
    # Values inside, outside and on the bounds, with ties.
    values = np.concatenate(
        [lower + width * np.random.default_rng(5).random(300), np.full(50, lower - width), np.full(50, upper + width)]
    )
    values = np.concatenate([values, np.full(100, lower + width / 3)])
    out = draw(values, lower, upper, q, epsilon=0.5, seed=11, count=200)
    assert ((out >= lower) & (out <= upper)).all()
    assert all((y / g).is_integer() for y in out)


def test_equal_bounds_return_the_lower_bound():
    assert dp_quantile(np.array([1.0, 2.0, 3.0]), 2.5, 2.5, 0.5, 1.0, random.Random(0)) == 2.5
    assert quantile_granularity(2.5, 2.5) == 1.0


def test_empty_data_is_uniform_over_the_grid():
    out = draw(np.array([]), seed=3, count=500)
    # The utility is 0 everywhere, so the answer is uniform on the grid: its CDF is (y - L) / W.
    assert_matches_exact(out, np.array([]), LOWER, UPPER, MEDIAN, EPSILON)


@pytest.mark.parametrize("q", [0.1, 0.5, 0.9])
def test_untied_quantile_is_accurate_at_large_epsilon(q):
    values = np.random.default_rng(9).normal(50.0, 15.0, 10_001)
    epsilon = 10.0
    out = draw(values, q=q, epsilon=epsilon, seed=13, count=500)
    allowed = admissible(values, LOWER, UPPER, q, epsilon, ALPHA / 500)
    assert np.isin(out, allowed).all()
    # What the tail bound means in rank: within (2 / epsilon)(ln |grid| + ln(500 / ALPHA)) + 1 of q n.
    ordered = np.sort(np.clip(values, LOWER, UPPER))
    radius = (2.0 / epsilon) * (math.log(len(grid_of(LOWER, UPPER))) + math.log(500 / ALPHA))
    rank = np.searchsorted(ordered, out, side="right")
    assert (np.abs(rank - q * len(ordered)) <= radius + 1).all()


def test_untied_quantile_follows_the_exact_distribution():
    values = np.random.default_rng(17).uniform(20.0, 80.0, 400)
    out = draw(values, q=0.3, epsilon=0.2, seed=19)
    assert_matches_exact(out, values, LOWER, UPPER, 0.3, 0.2)


def test_same_seed_same_answer():
    values = ages()
    assert draw(values, seed=42, count=20).tolist() == draw(values, seed=42, count=20).tolist()


class OnlyBitsAndRange:
    """A generator exposing only the two methods the mechanism may use."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self.calls: list[str] = []

    def getrandbits(self, k: int) -> int:
        self.calls.append("getrandbits")
        return self._rng.getrandbits(k)

    def randrange(self, *args: int) -> int:
        self.calls.append("randrange")
        return self._rng.randrange(*args)


def test_uses_only_getrandbits_and_randrange():
    rng = OnlyBitsAndRange(1)
    y = dp_quantile(np.sort(ages()), LOWER, UPPER, MEDIAN, EPSILON, rng)  # type: ignore[arg-type]
    assert rng.calls == ["getrandbits", "randrange"]
    assert LOWER <= y <= UPPER
    assert LOWER <= dp_quantile(np.sort(ages()), LOWER, UPPER, MEDIAN, EPSILON, secrets.SystemRandom()) <= UPPER


def test_large_input_at_small_epsilon():
    values = np.sort(np.random.default_rng(23).normal(50.0, 10.0, 1_000_000))
    g = quantile_granularity(LOWER, UPPER)
    y = dp_quantile(values, LOWER, UPPER, MEDIAN, 0.01, random.Random(29))
    assert LOWER <= y <= UPPER and (y / g).is_integer()


def test_unsorted_input_is_sorted_first():
    values = ages()
    shuffled = np.random.default_rng(31).permutation(values)
    a = dp_quantile(np.sort(values), LOWER, UPPER, MEDIAN, EPSILON, random.Random(37))
    b = dp_quantile(shuffled, LOWER, UPPER, MEDIAN, EPSILON, random.Random(37))
    assert a == b


@pytest.mark.parametrize(
    ("values", "lower", "upper", "q", "epsilon"),
    [
        ([1.0], 2.0, 1.0, 0.5, 1.0),
        ([1.0], 0.0, math.inf, 0.5, 1.0),
        ([1.0], 0.0, 1.0, 1.5, 1.0),
        ([1.0], 0.0, 1.0, 0.5, 0.0),
        ([1.0], 0.0, 1.0, 0.5, math.inf),
        ([math.nan], 0.0, 1.0, 0.5, 1.0),
    ],
)
def test_bad_arguments_are_refused(values, lower, upper, q, epsilon):
    with pytest.raises(ValueError):
        dp_quantile(np.array(values), lower, upper, q, epsilon, random.Random(0))


# The audit helpers -------------------------------------------------------------------------------


def test_clopper_pearson_ends():
    assert clopper_pearson(0, 100, 0.05)[0] == 0.0
    assert clopper_pearson(100, 100, 0.05)[1] == 1.0
    # With no hits in n trials the one-sided upper end at level a/2 is 1 - (a/2)^(1/n).
    assert clopper_pearson(0, 2000, 2e-6)[1] == pytest.approx(1 - 1e-6 ** (1 / 2000), rel=1e-9)
    lo, hi = clopper_pearson(30, 100, 0.05)
    assert lo < 0.3 < hi


def test_empirical_epsilon_lower_bound_sees_a_clear_violation():
    # Rate 1 against rate 0: the ends are x = (a/2)^(1/n) and 1 - x, so the bound is log(x / (1 - x));
    # the reverse direction has no evidence at all.
    x = (ALPHA / 2) ** (1 / 2000)
    assert empirical_epsilon_lower_bound(2000, 2000, 0, 2000, ALPHA) == pytest.approx(math.log(x / (1 - x)), rel=1e-9)
    assert empirical_epsilon_lower_bound(0, 2000, 2000, 2000, ALPHA) == -math.inf
