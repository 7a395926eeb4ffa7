"""The data-dependent Renyi-DP analysis of Confident-GNMax (Papernot et al., "Scalable Private Learning
with PATE", ICLR 2018, section 4 and appendix A), written for this engine's integer noise.

The data-independent cost (spec.py) is what the ledger reserves and commits. This module computes the
tighter bound that holds for the votes actually counted; that bound is itself a function of the votes, so
it is private: it may be charged only after its smooth-sensitivity sanitisation (not done here), and it
is never released as it is by the marketplace.

1. A data-dependent RDP bound from a likely outcome (the paper's Theorem 6). Let M be (mu1, eps1)- and
   (mu2, eps2)-RDP, ``mu1, mu2 > 1``, and on the dataset D let ``P[M(D) != o*] <= q`` for some outcome o*.
   If ``q <= exp((mu2 - 1) eps2) / (mu1 / (mu1 - 1) * mu2 / (mu2 - 1))**mu2`` (and ``q exp(eps2) < 1``),
   then for every neighbour D' and order ``1 < lambda <= mu1``::

       D_lambda(M(D) || M(D')) <= log((1 - q) A**(lambda - 1) + q B**(lambda - 1)) / (lambda - 1),
       A = (1 - q) / (1 - (q exp(eps2))**((mu2 - 1) / mu2)),   B = exp(eps1) / q**(1 / (mu1 - 1)).

   Intuition: when one outcome has probability ``1 - q`` close to 1, a neighbour can move it only a little
   (by the RDP at the higher order mu2, a Holder argument), and the rare outcomes' share is controlled by
   the RDP at mu1. For a mechanism that is ``(lambda, lambda / s**2)``-RDP at every order (a Gaussian
   mechanism of sensitivity sqrt(2) and noise s, the GNMax step), the paper's Proposition 10 picks
   ``mu2 = s sqrt(log(1/q))`` and ``mu1 = mu2 + 1``; :func:`rdp_from_q` does that and takes the smaller of
   this bound and the data-independent ``lambda / s**2`` at each order (both hold).

2. GNMax (the paper's Proposition 7). With o* the true argmax i* and gaps ``g_i = n_i* - n_i``, the answer
   differs from i* only if some ``n_i + Z_i >= n_i* + Z_i*`` (ties are broken at random, so a tie is counted
   as a loss), hence ``q <= sum_{i != i*} P(Z_i - Z_i* >= g_i)``; also ``q <= 1 - 1/m``, the true argmax
   being the likeliest answer. For continuous N(0, s**2) noise each term is ``erfc(g_i / (2 s)) / 2``.
   Here Z is the discrete Gaussian (integers), whose differences put mass on ``g_i`` itself: the continuous
   tail from ``g_i - 1/2`` is the right comparison, and :func:`log_q_gnmax` uses the tail from ``g_i - 1``
   (half a step of margin), which bounds the exact discrete law for every sigma >= 1 (checked against the
   exact convolution of two discrete Gaussians in tests/compute/engines/pate/test_rdp.py). ``integer=False``
   gives the paper's formula for continuous noise (used to check against the reference implementation).

3. The threshold step. Its output (answered or not) is one bit whose likelier value has probability
   ``1 - q``, ``q = min(p, 1 - p)`` with ``p = P(max(n) + Z >= T_c)``. Here p is computed exactly for the
   discrete Gaussian (its normalised pmf summed in log space). The step is ``lambda / (2 sigma1**2)``-RDP,
   i.e. ``lambda / s**2`` with ``s = sqrt(2) sigma1``, so item 1 applies with that s (the paper's code does
   the same).

4. Composition. A job's curve is, order by order, the sum of every asked query's threshold bound and every
   answered query's GNMax bound (RDP composes adaptively by adding at each order; an unanswered query runs
   no GNMax, as in the paper's analysis), and its epsilon at delta is dp-accounting's conversion of the
   curve (``rdp_privacy_accountant.compute_epsilon``, tighter than the paper's ``rdp + log(1/delta) /
   (lambda - 1)``, which :func:`epsilon_classic` keeps for comparison with published numbers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from dp_accounting.rdp import rdp_privacy_accountant
from scipy import special

ORDERS: tuple[float, ...] = tuple(
    float(x)
    for x in np.concatenate([np.arange(1.25, 10.0, 0.25), np.arange(10.0, 100.0, 1.0), np.geomspace(100.0, 5000.0, 60)])
)
_LOG_TINY = -1e4  # log q below this is as good as 0 for any order used here


def _log1mexp(x: float) -> float:
    """log(1 - exp(x)) for x <= 0, without cancellation."""
    if x > 0:
        raise ValueError("x must be <= 0")
    if x == 0:
        return -math.inf
    return math.log1p(-math.exp(x)) if x < -math.log(2.0) else math.log(-math.expm1(x))


def rdp_from_q(log_q: float, s: float, orders: Sequence[float] = ORDERS) -> np.ndarray:
    """Item 1: the RDP at each order of a ``(lambda, lambda / s**2)``-RDP mechanism whose likeliest outcome
    on D misses with probability at most ``exp(log_q)``: Theorem 6 where it applies, else ``lambda / s**2``."""
    lam = np.asarray(orders, dtype=float)
    if np.any(lam <= 1.0) or not s > 0:
        raise ValueError("orders must be > 1 and s > 0")
    independent = lam / (s * s)
    log_q = min(float(log_q), 0.0)
    if log_q == -math.inf or log_q < _LOG_TINY:
        return np.zeros_like(lam)
    mu2 = s * math.sqrt(-log_q)
    mu1 = mu2 + 1.0
    eps1, eps2 = mu1 / (s * s), mu2 / (s * s)
    if mu2 <= 1.0 or -log_q <= eps2:  # the second keeps q exp(eps2) < 1, so A is finite and positive
        return independent
    limit = (mu2 - 1.0) * eps2 - mu2 * (math.log(mu1 / (mu1 - 1.0)) + math.log(mu2 / (mu2 - 1.0)))
    if log_q > limit:
        return independent
    log_1q = _log1mexp(log_q)
    log_a = log_1q - _log1mexp((log_q + eps2) * (mu2 - 1.0) / mu2)
    log_b = eps1 - log_q / (mu1 - 1.0)
    with np.errstate(over="ignore"):
        bound = np.logaddexp(log_1q + (lam - 1.0) * log_a, log_q + (lam - 1.0) * log_b) / (lam - 1.0)
    out = np.where(lam <= mu1, np.minimum(independent, bound), independent)
    return np.maximum(out, 0.0)


def log_q_gnmax(counts: Sequence[int] | np.ndarray, sigma: float, *, integer: bool = True) -> float:
    """Item 2: log of an upper bound on P[GNMax(counts) != argmax(counts)] with noise sigma."""
    n = np.asarray(counts, dtype=float)
    m = len(n)
    top = int(np.argmax(n))
    gaps = np.delete(n[top] - n, top)
    if integer:
        gaps = gaps - 1.0
    log_terms = special.log_ndtr(-gaps / (math.sqrt(2.0) * sigma))
    return min(float(special.logsumexp(log_terms)), math.log(1.0 - 1.0 / m))


@lru_cache(maxsize=64)
def _log_normaliser(sigma: float) -> tuple[float, int]:
    """log of the discrete Gaussian's normaliser ``sum_z exp(-z**2 / (2 sigma**2))`` and the half-width
    of the support summed (beyond 40 sigma the terms are below exp(-800), far below float precision)."""
    width = int(40 * sigma) + 10
    z = np.arange(-width, width + 1, dtype=float)
    return float(special.logsumexp(-(z * z) / (2.0 * sigma * sigma))), width


def log_tail_discrete(k: float, sigma: float) -> float:
    """log P(Z >= k) for the discrete Gaussian N_Z(0, sigma**2) (whole k), summed from its pmf."""
    k = math.ceil(k)
    log_norm, width = _log_normaliser(sigma)
    if k <= 0:  # P(Z >= k) = 1 - P(Z <= k - 1) = 1 - P(Z >= 1 - k)
        return _log1mexp(log_tail_discrete(1 - k, sigma))
    z = np.arange(k, k + width + 1, dtype=float)
    return float(special.logsumexp(-(z * z) / (2.0 * sigma * sigma))) - log_norm


def log_p_answered(top: float, threshold: float, sigma1: float, *, integer: bool = True) -> float:
    """log P(top + Z >= threshold): Z the discrete Gaussian (``integer``) or N(0, sigma1**2)."""
    if integer:
        return log_tail_discrete(threshold - top, sigma1)
    return float(special.log_ndtr((top - threshold) / sigma1))


def rdp_threshold(log_p: float, sigma1: float, orders: Sequence[float] = ORDERS) -> np.ndarray:
    """Item 3: the threshold step's data-dependent RDP from log P(answered)."""
    log_q = min(log_p, _log1mexp(min(log_p, 0.0)))
    return rdp_from_q(log_q, math.sqrt(2.0) * sigma1, orders)


def rdp_gnmax(counts: Sequence[int] | np.ndarray, sigma2: float, orders: Sequence[float] = ORDERS) -> np.ndarray:
    """The GNMax step's data-dependent RDP on one vote histogram."""
    return rdp_from_q(log_q_gnmax(counts, sigma2), sigma2, orders)


def confident_gnmax_rdp(
    counts: np.ndarray, answered: Sequence[bool], spec: Any, orders: Sequence[float] = ORDERS
) -> list[tuple[float, float]]:
    """Item 4: the (order, RDP) curve of a run: every asked query's threshold step plus every answered
    query's GNMax step, on the counted votes. ``spec`` has ``threshold``, ``sigma1`` and ``sigma2``."""
    total = np.zeros(len(orders))
    threshold_cache: dict[int, np.ndarray] = {}
    for row, was_answered in zip(np.asarray(counts), answered):
        top = int(row.max())
        if top not in threshold_cache:
            log_p = log_p_answered(top, spec.threshold, spec.sigma1)
            threshold_cache[top] = rdp_threshold(log_p, spec.sigma1, orders)
        total += threshold_cache[top]
        if was_answered:
            total += rdp_gnmax(row, spec.sigma2, orders)
    return list(zip(map(float, orders), map(float, total)))


def epsilon(curve: Sequence[tuple[float, float]], delta: float) -> float:
    """The epsilon at delta of an RDP curve, by dp-accounting's conversion."""
    orders, values = zip(*curve)
    eps, _ = rdp_privacy_accountant.compute_epsilon(list(orders), list(values), delta)
    return float(eps)


def epsilon_classic(curve: Sequence[tuple[float, float]], delta: float) -> float:
    """The paper's conversion, ``min over orders of rdp + log(1/delta) / (lambda - 1)`` (Mironov 2017,
    Proposition 3): looser than :func:`epsilon`, kept to compare with the papers' numbers."""
    return min(value + math.log(1.0 / delta) / (order - 1.0) for order, value in curve)
