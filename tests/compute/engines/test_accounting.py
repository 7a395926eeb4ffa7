"""The privacy accountant (compute/engines/accounting.py): tighter than basic composition, never below
what the mechanisms really leak, and consistent with the ledger's decimals."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from dp_accounting.pld import privacy_loss_distribution as pld
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from cloakroom_client.protocol.noise import gaussian_rho, mechanism
from compute.engines import accounting
from compute.engines.dp.budget import plan
from compute.engines.dp.query import ColumnMeta, parse_query


def exact_gaussian_epsilon(mu: float, delta: float) -> float:
    """The exact epsilon at delta of the Gaussian mechanism with sensitivity / sigma = mu (Balle and
    Wang 2018, Theorem 8), by bisection: written here, independently of the library under test."""

    def delta_at(eps: float) -> float:
        return norm.cdf(-eps / mu + mu / 2) - math.exp(eps) * norm.cdf(-eps / mu - mu / 2)

    lo, hi = 0.0, 1.0
    while delta_at(hi) > delta:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if delta_at(mid) > delta else (lo, mid)
    return hi


def test_a_pure_release_is_charged_epsilon_squared_over_two():
    assert accounting.pure(0.1) == accounting.Loss(0.1, 0.0, 0.005)  # squared exactly, rounded once
    assert accounting.pure_rho(2.0) == 2.0


def test_the_rho_cap_is_the_largest_rho_within_the_cap():
    cap = accounting.rho_cap(10.0, 1e-5)
    assert accounting.zcdp_epsilon(cap, 1e-5) <= 10.0 < accounting.zcdp_epsilon(cap * (1 + 1e-9), 1e-5)
    assert accounting.rho_cap(10.0, 0.0) == 0.0  # no delta: zCDP gives no finite epsilon
    assert accounting.rho_cap(1.0, 1e-6) < accounting.rho_cap(2.0, 1e-6) < accounting.rho_cap(2.0, 1e-5)


def test_the_ledger_rounds_a_charge_up_and_an_allowance_down():
    assert accounting.rho_charge(0.03**2 / 2) == Decimal("0.00045")
    assert accounting.rho_charge(1e-13) == Decimal("0.000000000001")
    allowance = accounting.rho_allowance(Decimal("10"), Decimal("0.00001"))
    assert Decimal(repr(accounting.rho_cap(10.0, 1e-5))) - Decimal("0.000000000001") < allowance
    assert allowance <= Decimal(repr(accounting.rho_cap(10.0, 1e-5)))


def test_counts_at_a_tenth_fit_a_ten_epsilon_purchase_more_than_three_times_as_often():
    # The figure: basic composition allows 100, zCDP about 310 at (10, 1e-5).
    n = accounting.releases_that_fit(accounting.pure(0.1), 10.0, 1e-5)
    assert n >= 300
    total = accounting.compose([accounting.pure(0.1)] * n)
    assert accounting.fits(total, 10.0, 1e-5)
    assert not accounting.fits(total + accounting.pure(0.1), 10.0, 1e-5)
    assert accounting.guarantee(total, 1e-5).epsilon <= 10.0


def test_a_hundred_gaussian_releases_cost_far_less_than_a_hundred_epsilons():
    one = accounting.Loss(1.0, 1e-6, gaussian_rho(1.0, 1e-6))
    total = accounting.compose([one] * 100)
    bound = accounting.guarantee(total, 1e-4)
    assert bound.method == accounting.ZCDP
    assert bound.epsilon < 15.0  # against (100, 1e-4) by basic composition
    # Never below the exact composition: 100 Gaussians of noise multiplier z are one of z / 10.
    mu = math.sqrt(2 * total.rho)
    assert bound.epsilon >= exact_gaussian_epsilon(mu, 1e-4)


def test_a_few_large_releases_keep_basic_composition_when_it_is_tighter():
    total = accounting.compose([accounting.pure(3.0)])
    bound = accounting.guarantee(total, 1e-5)
    assert (bound.epsilon, bound.delta, bound.method) == (3.0, 0.0, accounting.BASIC)
    assert accounting.share(total, 10.0, 1e-5) == pytest.approx(0.3)
    assert accounting.fits(accounting.compose([accounting.pure(3.0)] * 3), 10.0, 1e-5)


def test_the_epsilon_left_is_the_largest_pure_release_that_still_fits():
    used = accounting.compose([accounting.pure(0.1)] * 200)
    left = accounting.epsilon_left(used, 10.0, 1e-5)
    assert 0 < left < 10.0
    assert accounting.fits(used + accounting.pure(left), 10.0, 1e-5)
    assert not accounting.fits(used + accounting.pure(left * 1.001), 10.0, 1e-5)
    assert accounting.epsilon_left(accounting.NONE, 10.0, 1e-5) == 10.0
    assert accounting.epsilon_left(accounting.pure(11.0), 10.0, 0.0) == 0.0


SCHEMA = {
    "age": ColumnMeta(name="age", kind="numeric", lower=0.0, upper=100.0),
}


@pytest.mark.parametrize("aggregate", ["count", "sum", "mean", "variance", "std"])
@pytest.mark.parametrize(("epsilon", "delta"), [(0.5, 0.0), (1.0, 1e-6), (0.1, 1e-9), (3.0, 1e-5)])
def test_the_migrations_bound_covers_every_plan(aggregate, epsilon, delta):
    """upper_bound_rho, which migration 0005 gives the old ledger rows, is never below a plan's rho."""
    query = parse_query({"aggregate": aggregate, **({} if aggregate == "count" else {"column": "age"})}, SCHEMA)
    rho = plan(SCHEMA, query, epsilon, delta).rho
    assert 0 < rho <= accounting.upper_bound_rho(epsilon, delta)


def test_a_split_query_is_charged_its_parts():
    # A pure mean spends epsilon/2 on each of two parts: rho = 2 * (eps/2)**2 / 2, half a count's.
    query = parse_query({"aggregate": "mean", "column": "age"}, SCHEMA)
    assert plan(SCHEMA, query, 1.0, 0.0).rho == pytest.approx(0.25)
    quantiles = parse_query({"aggregate": "quantile", "column": "age", "quantiles": [0.25, 0.5]}, SCHEMA)
    assert plan(SCHEMA, quantiles, 1.0, 0.0).rho == pytest.approx(0.25)


# -- the property: never above basic composition, never below what the mechanisms leak -----------------

release = st.one_of(
    st.tuples(st.just("laplace"), st.floats(0.05, 1.0), st.just(0.0)),
    st.tuples(st.just("gaussian"), st.floats(0.1, 1.0), st.sampled_from([1e-9, 1e-7, 1e-6])),
)


def _lower_bound_pld(releases: list[tuple[str, float, float]]):
    """The optimistic privacy-loss distribution of the releases' real mechanisms (counts: the geometric
    or the discrete Gaussian of cloakroom_client.protocol.noise): a lower bound on their epsilon."""
    total = None
    for kind, eps, delta in releases:
        noise = mechanism(eps, delta, 1.0, integer=True)
        if kind == "laplace":
            one = pld.from_discrete_laplace_mechanism(
                eps, sensitivity=1, pessimistic_estimate=False, value_discretization_interval=1e-3
            )
        else:
            one = pld.from_discrete_gaussian_mechanism(
                noise.scale, sensitivity=1, pessimistic_estimate=False, value_discretization_interval=1e-3
            )
        total = one if total is None else total.compose(one)
    return total


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(release, min_size=1, max_size=12))
def test_the_accountant_is_between_the_mechanisms_leak_and_basic_composition(releases):
    losses = []
    for kind, eps, delta in releases:
        noise = mechanism(eps, delta, 1.0, integer=True)
        assert noise.kind == ("geometric" if kind == "laplace" else "gaussian")
        losses.append(accounting.Loss(eps, delta, noise.rho))
    total = accounting.compose(losses)
    budget_delta = max(total.delta, 1e-6)  # where basic composition is valid too
    bound = accounting.guarantee(total, budget_delta)
    assert bound.epsilon <= total.epsilon + 1e-12
    assert bound.delta <= budget_delta
    leak = _lower_bound_pld(releases).get_epsilon_for_delta(bound.delta if bound.delta > 0 else 1e-12)
    assert leak <= bound.epsilon + 1e-9
