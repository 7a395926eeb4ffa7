"""bench/accounting.py's counting functions at small sizes: the accountant beats basic composition and
stays within what dp-accounting's PLD accountant proves for the same mechanisms.

No wall-time assertions (the numbers go to docs/BENCHMARKS.md).
"""

from __future__ import annotations

import math
from functools import cache

import pytest
from dp_accounting.pld import privacy_loss_distribution as pld

from bench import accounting as bench
from cloakroom_client.protocol.noise import mechanism
from compute.engines import accounting

# Counts at 0.1 only beat basic composition on a budget of some size: the (10, 1e-5). The
# Gaussian workloads do on a small one, which keeps the PLDs composed here small.
CAPS = {"counts": (10.0, 1e-5), "gaussian": (3.0, 1e-5), "mixed": (3.0, 1e-5)}


def _workloads() -> dict[str, list[bench.Release]]:
    """Small versions of the benchmark's workloads: Gaussian parts on a whole-number grid (one grid
    step of sensitivity) keep the PLDs small."""
    count = bench.from_mechanism("count", mechanism(0.1, 0, 1, integer=True))
    gaussian = bench.from_mechanism("gaussian count", mechanism(1.0, 1e-7, 1, integer=True))
    return {"counts": [count], "gaussian": [gaussian], "mixed": [count, gaussian]}


@cache
def _answers(name: str) -> dict[str, int]:
    return bench.answers(_workloads()[name], *CAPS[name])


@pytest.mark.parametrize("name", ["counts", "gaussian", "mixed"])
def test_the_accountant_fits_more_than_basic_composition_and_no_more_than_pld(name):
    cycle, cap, got = _workloads()[name], CAPS[name], _answers(name)
    assert got["cloakroom"] > got["basic"], got
    assert got["cloakroom"] <= got["pld"], got
    # The ledger's decimal rule (rho_charge against rho_allowance) admits what accounting.fits does.
    assert got["ledger"] == got["cloakroom"], got
    # Each count is the largest that fits: one more answer is over the cap.
    n = got["cloakroom"]
    assert accounting.fits(accounting.compose(r.loss for r in _prefix(cycle, n)), *cap)
    assert not accounting.fits(accounting.compose(r.loss for r in _prefix(cycle, n + 1)), *cap)
    assert bench.pld_epsilon(bench.prefix(cycle, got["pld"]), cap[1]) <= cap[0]
    assert bench.pld_epsilon(bench.prefix(cycle, got["pld"] + 1), cap[1]) > cap[0]


def _prefix(cycle, n):
    return [cycle[i % len(cycle)] for i in range(n)]


def test_counts_at_a_tenth_fit_well_past_basic_compositions_hundred():
    got = _answers("counts")
    assert got["basic"] == 100
    assert got["cloakroom"] >= 200  # the bar


def test_randomized_response_stands_for_a_counts_discrete_laplace_in_the_rdp_accountant():
    """The RDP peer enters a count as binary randomized response: its privacy loss distribution is
    the discrete Laplace's at sensitivity 1, so both PLDs give the same epsilon."""
    count = _workloads()["counts"][0]
    m = count.parts[0]
    laplace = bench.part_pld(m).self_compose(200).get_epsilon_for_delta(1e-5)
    rr = (
        pld.from_randomized_response(2.0 / (1.0 + math.exp(m.epsilon)), 2, pessimistic_estimate=True)
        .self_compose(200)
        .get_epsilon_for_delta(1e-5)
    )
    assert rr == pytest.approx(laplace, rel=0.01)


def test_hundred_gaussian_queries_compose_far_below_basic_composition():
    ours, reference = bench.hundred_gaussians()
    for ex in (ours, reference):
        assert ex.basic == (100.0, pytest.approx(1e-4))
        assert ex.cloakroom.method == accounting.ZCDP
        assert ex.pld <= ex.cloakroom.epsilon < 15.0
    # The discrete Gaussian is calibrated by the simple zCDP conversion: more noise than the analytic
    # calibration, so a smaller composed epsilon.
    assert ours.sigma > reference.sigma
    assert ours.cloakroom.epsilon < reference.cloakroom.epsilon
