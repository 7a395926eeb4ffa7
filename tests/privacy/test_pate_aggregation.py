"""A statistical audit of Confident-GNMax's release (compute/engines/pate/aggregate.py) on neighbouring
vote histograms: ``n = (6, 4)`` and ``n' = (5, 5)``, one teacher's vote moved from class 0 to class 1,
which moves the top count by 1 and the histogram by sqrt(2) in L2, the most one owner's row can
(compute/engines/pate/spec.py).

The claim. One query costs ``rho = 1 / (2 sigma1**2) + 1 / sigma2**2`` (zCDP), i.e. RDP ``lambda rho`` at
every order, so for every event S (Mironov, "Renyi Differential Privacy", 2017, Proposition 10, from
Holder's inequality) ``P(S) <= (exp(lambda rho) P'(S))**(1 - 1/lambda)``, that is::

    log(P(S) / P'(S)) <= (lambda - 1) rho + log(1 / P'(S)) / lambda     for every lambda > 1.

With ``p`` the smallest probability of any outcome on either side (computed from the exact pmfs of the
discrete Gaussians below), every event the audit tries is bounded by the minimum over lambda of that
expression at ``P' = p``: the claimed epsilon. The empirical lower confidence bound (tests/privacy/
audit.py) must stay below it; the tolerance is the audit's alpha. A GNMax whose noise ignored the
histogram's sqrt(2) sensitivity (sigma2 halved) is told apart well past the claim.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from compute.engines.pate import aggregate, spec
from tests.privacy.audit import empirical_epsilon

DRAWS = 20_000
SIGMA1, SIGMA2, THRESHOLD = 2.0, 2.0, 5.0
BASE, NEIGHBOUR = np.array([[6, 4]]), np.array([[5, 5]])


def pmf(sigma: float) -> tuple[np.ndarray, np.ndarray]:
    z = np.arange(-60, 61)
    p = np.exp(-(z.astype(float) ** 2) / (2 * sigma * sigma))
    return z, p / p.sum()


def outcome_probabilities(counts: np.ndarray) -> dict[int, float]:
    """P(None), P(class 0), P(class 1) of one query, exactly (ties split evenly)."""
    z, p1 = pmf(SIGMA1)
    answered = float(p1[counts.max() + z >= THRESHOLD].sum())
    z2, p2 = pmf(SIGMA2)
    diff = np.convolve(p2, p2[::-1])  # Z_0 - Z_1 on -120 .. 120
    support = np.arange(-120, 121)
    margin = support + (counts[0] - counts[1])  # noisy count 0 minus noisy count 1
    zero = float(diff[margin > 0].sum() + diff[margin == 0].sum() / 2)
    return {-1: 1 - answered, 0: answered * zero, 1: answered * (1 - zero)}


def claim(rho: float, p: float) -> float:
    lams = np.linspace(1.001, 200, 200_000)
    return float(np.min((lams - 1) * rho + math.log(1 / p) / lams))


def releases(counts: np.ndarray, sigma2: float, seed: int) -> np.ndarray:
    rng = random.Random(seed)
    out = aggregate.confident_gnmax(np.repeat(counts, DRAWS, axis=0), THRESHOLD, SIGMA1, sigma2, rng)
    return np.array([-1 if a is None else a for a in out], dtype=float)


EVENTS = [lambda r: r == -1, lambda r: r == 0, lambda r: r == 1]


def test_the_noisy_argmax_tells_neighbours_apart_no_more_than_its_rho():
    rho = spec.threshold_rho(SIGMA1) + spec.gnmax_rho(SIGMA2)
    probs = [outcome_probabilities(c[0]) for c in (BASE, NEIGHBOUR)]
    p = min(min(v, 1 - v) for side in probs for v in side.values())
    claimed = claim(rho, p)
    found = empirical_epsilon(releases(BASE, SIGMA2, 1), releases(NEIGHBOUR, SIGMA2, 2), EVENTS, alpha=0.05)
    assert found <= claimed, (found, claimed)
    # ... with power: the exact law's largest log ratio is about half the claim, and the audit sees most of it.
    exact = max(abs(math.log(probs[0][k] / probs[1][k])) for k in probs[0])
    assert exact > 0.4 * claimed and found > 0.7 * exact, (found, exact, claimed)


def test_the_audit_catches_noise_too_small_for_the_histograms_sensitivity():
    rho = spec.threshold_rho(SIGMA1) + spec.gnmax_rho(SIGMA2)
    probs = [outcome_probabilities(c[0]) for c in (BASE, NEIGHBOUR)]
    p = min(min(v, 1 - v) for side in probs for v in side.values())
    # A wrong GNMax: 0.4 of the noise it is charged for.
    found = empirical_epsilon(releases(BASE, 0.4 * SIGMA2, 3), releases(NEIGHBOUR, 0.4 * SIGMA2, 4), EVENTS)
    assert found > claim(rho, p), found


@pytest.mark.parametrize("counts", [BASE, NEIGHBOUR])
def test_the_sampler_has_the_exact_outcome_law(counts):
    draws = releases(counts, SIGMA2, 7)
    for outcome, prob in outcome_probabilities(counts[0]).items():
        rate = float(np.mean(draws == outcome))
        assert abs(rate - prob) <= 4.5 * math.sqrt(prob * (1 - prob) / DRAWS), (outcome, rate, prob)
