"""The data-dependent RDP analysis of Confident-GNMax (compute/engines/pate/rdp.py) against the authors'
reference implementation, and its discrete-noise bound against the exact law of the discrete Gaussian.

Where the expected numbers come from: tensorflow/privacy, research/pate_2018/core.py at commit
03035d5d4a271ac795dab80f5bc1cef82fc3d462 (the code of Papernot et al., "Scalable Private Learning with
PATE", ICLR 2018), run on the inputs written beside each number: ``rdp_gaussian(logq, sigma, orders)``
(Theorem 6 with Proposition 10's orders), ``compute_logq_gaussian(counts, sigma)`` (Proposition 7) and
``compute_logpr_answered(threshold, sigma, [top])`` / ``compute_rdp_threshold``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

from compute.engines import accounting, pate
from compute.engines.pate import rdp

ORDERS = [2.0, 5.0, 10.0, 20.0, 50.0]


def test_theorem_6_gives_the_reference_implementations_values():
    # rdp_gaussian(-10.0, 40.0, [2, 5, 10, 20, 50])
    expected = [1.55539374e-05, 1.78100125e-05, 2.37478333e-05, 5.40968379e-05, 2.10677309e-03]
    assert rdp.rdp_from_q(-10.0, 40.0, ORDERS) == pytest.approx(expected, rel=1e-8)
    # rdp_gaussian(log(1e-3), 10.0, [2, 5, 10])
    assert rdp.rdp_from_q(math.log(1e-3), 10.0, [2.0, 5.0, 10.0]) == pytest.approx(
        [0.00138279, 0.0025433, 0.01349771], rel=1e-5
    )


def test_the_bound_never_exceeds_the_data_independent_one_and_grows_with_q():
    lam = np.array(rdp.ORDERS)
    previous = np.zeros(len(lam))
    for log_q in (-60.0, -30.0, -15.0, -8.0, -3.0, -0.5):
        curve = rdp.rdp_from_q(log_q, 40.0)
        assert np.all(curve <= lam / 1600.0 + 1e-15)
        assert np.all(curve >= previous - 1e-15)
        previous = curve
    assert np.array_equal(rdp.rdp_from_q(-0.5, 40.0), lam / 1600.0)  # an unsure vote: no gain
    assert np.all(rdp.rdp_from_q(-math.inf, 40.0) == 0.0)  # a certain outcome costs nothing


def test_proposition_7_for_continuous_noise_is_the_reference_implementations():
    # compute_logq_gaussian(np.array([230, 15, 5]), 40.0) and rdp_gaussian of it at ORDERS
    counts = np.array([230, 15, 5])
    assert rdp.log_q_gnmax(counts, 40.0, integer=False) == pytest.approx(-9.142965540325376, rel=1e-12)
    expected = [3.49175811e-05, 3.97186144e-05, 5.20861301e-05, 1.12372671e-04, 3.42387161e-03]
    assert rdp.rdp_from_q(rdp.log_q_gnmax(counts, 40.0, integer=False), 40.0, ORDERS) == pytest.approx(
        expected, rel=1e-8
    )


def test_the_threshold_at_sigma1_200_costs_its_data_independent_rdp():
    # compute_logpr_answered(200, 200, [230]) = -0.5805014205893697, and compute_rdp_threshold of it at
    # ORDERS is order / (2 * 200**2): the paper's observation that sigma1 = 200 gains nothing from the data.
    assert rdp.log_p_answered(230, 200, 200.0, integer=False) == pytest.approx(-0.5805014205893697, rel=1e-12)
    assert rdp.rdp_threshold(rdp.log_p_answered(230, 200, 200.0), 200.0, ORDERS) == pytest.approx(
        [o / 80000.0 for o in ORDERS], rel=1e-12
    )


def _exact_difference_tail(sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """P(Z1 - Z2 >= g) for g = 0, 1, ..., Z1, Z2 independent discrete Gaussians: the convolution of the
    exact (normalised) pmfs."""
    width = int(40 * sigma) + 10
    z = np.arange(-width, width + 1, dtype=float)
    pmf = np.exp(-(z * z) / (2 * sigma * sigma))
    pmf /= pmf.sum()
    diff = np.convolve(pmf, pmf[::-1])  # support -2 width .. 2 width
    tail = np.cumsum(diff[::-1])[::-1]
    gaps = np.arange(0, int(12 * sigma) + 2)
    return gaps, tail[2 * width + gaps]


@pytest.mark.parametrize("sigma", [1.0, 1.5, 2.0, 5.0, 13.0, 40.0, 150.0])
def test_the_integer_bound_covers_the_exact_law_of_the_discrete_noise(sigma):
    gaps, exact = _exact_difference_tail(sigma)
    bound = np.exp(special.log_ndtr(-(gaps - 1.0) / (math.sqrt(2.0) * sigma)))
    assert np.all(exact <= bound * (1 + 1e-9) + 1e-300)
    # ... and the continuous formula alone would not: the discrete law puts mass on the gap itself.
    continuous = np.exp(special.log_ndtr(-gaps / (math.sqrt(2.0) * sigma)))
    assert np.any(exact > continuous)


def test_the_discrete_threshold_probability_is_the_pmfs_tail():
    sigma = 3.0
    z = np.arange(-200, 201, dtype=float)
    pmf = np.exp(-(z * z) / (2 * sigma * sigma))
    pmf /= pmf.sum()
    for top, threshold in ((10, 12), (10, 10), (10, 5.5), (0, 30)):
        expected = pmf[z >= math.ceil(threshold - top)].sum()
        assert math.exp(rdp.log_p_answered(top, threshold, sigma)) == pytest.approx(expected, rel=1e-9)


def test_a_runs_curve_adds_the_asked_thresholds_and_the_answered_gnmax_steps():
    spec = pate.parse_spec({"teachers": 250, "threshold": 200, "sigma1": 150, "sigma2": 40}, 10)
    counts = np.array([[240, 10], [130, 120], [250, 0]])
    curve = rdp.confident_gnmax_rdp(counts, [True, False, True], spec, ORDERS)
    expected = sum(rdp.rdp_threshold(rdp.log_p_answered(row.max(), 200, 150.0), 150.0, ORDERS) for row in counts)
    expected = expected + rdp.rdp_gnmax(counts[0], 40.0, ORDERS) + rdp.rdp_gnmax(counts[2], 40.0, ORDERS)
    assert [v for _, v in curve] == pytest.approx(list(expected), rel=1e-12)
    independent = [3 * o / (2 * 150**2) + 2 * o / 40**2 for o in ORDERS]
    assert all(v <= w + 1e-15 for (_, v), w in zip(curve, independent))


def test_the_conversion_is_dp_accountings_and_tighter_than_the_papers():
    curve = [(o, 0.01 * o) for o in rdp.ORDERS]  # 0.01-zCDP
    assert rdp.epsilon(curve, 1e-5) == pytest.approx(accounting.zcdp_epsilon(0.01, 1e-5), rel=1e-3)
    assert rdp.epsilon(curve, 1e-5) < rdp.epsilon_classic(curve, 1e-5)


def test_a_run_reports_its_data_dependent_epsilon_below_the_data_independent_one():
    rs = np.random.RandomState(0)
    x = rs.normal(size=(3000, 3))
    y = np.where(x[:, 0] > 0, "yes", "no")
    u = rs.normal(size=(200, 3))
    spec = pate.parse_spec({"teachers": 100, "threshold": 80, "sigma1": 40, "sigma2": 10}, 200)
    result = pate.run([(x, y)], u, ["no", "yes"], spec, rng=1, delta=1e-5)
    assert result.epsilon_data_dependent is not None and result.delta == 1e-5
    assert 0 < result.epsilon_data_dependent < accounting.zcdp_epsilon(result.rho, 1e-5)
    assert pate.run([(x, y)], u, ["no", "yes"], spec, rng=1).epsilon_data_dependent is None
