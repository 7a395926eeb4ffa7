"""Helpers for statistical privacy audits: a lower confidence bound on epsilon from samples.

An epsilon-DP mechanism M satisfies P[M(D) in S] <= exp(epsilon) P[M(D') in S] for neighbouring
datasets D, D' and every event S. Run M many times on D and on D', count how often an event S
happens, and bound the two rates with Clopper-Pearson intervals: the lower bound of the rate on D
over the upper bound of the rate on D' is, with probability at least 1 - alpha, at most the true
ratio, hence at most exp(epsilon). So

    log(lower_CP(rate on D) / upper_CP(rate on D'))

is a lower confidence bound on the epsilon the mechanism actually provides. A test that asserts
this bound stays below the claimed epsilon fails a correct mechanism with probability at most
alpha, whatever the seed: the tolerance comes from the statistics, not from tuning. A mechanism
that breaks its claim on some event (for example one that answers the lower bound every time on D
and almost never on D') drives the bound far above the claim once enough releases are drawn.

Events must be chosen before the releases are looked at; the Bonferroni correction in
:func:`empirical_epsilon` covers every event (and direction) tried.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import beta

Event = Callable[[np.ndarray], np.ndarray] | float


def clopper_pearson(k: int, n: int, alpha: float) -> tuple[float, float]:
    """The exact (Clopper-Pearson) two-sided 1 - alpha confidence interval for a binomial rate.

    ``k`` successes in ``n`` trials; each side misses with probability at most alpha / 2, so each
    end on its own is a one-sided bound at level alpha / 2.
    """
    if n <= 0 or not 0 <= k <= n:
        raise ValueError("need 0 <= k <= n and n > 0")
    if not 0.0 < alpha < 1.0:
        raise ValueError("alpha must be in (0, 1)")
    lo = 0.0 if k == 0 else float(beta.ppf(alpha / 2.0, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.isf(alpha / 2.0, k + 1, n - k))
    return lo, hi


def empirical_epsilon_lower_bound(hits_a: int, n_a: int, hits_b: int, n_b: int, alpha: float = 0.05) -> float:
    """A 1 - alpha lower confidence bound on epsilon from one event, in the direction a over b.

    ``log(lower_CP(hits_a / n_a) / upper_CP(hits_b / n_b))``, each end of the interval taken at
    level alpha (so alpha / 2 per side, alpha in all by the union bound). If the mechanism is
    epsilon-DP the result exceeds epsilon with probability at most alpha. ``-inf`` when the event
    was never seen on side a (no evidence at all).
    """
    lo_a, _ = clopper_pearson(hits_a, n_a, alpha)
    _, hi_b = clopper_pearson(hits_b, n_b, alpha)
    if lo_a <= 0.0:
        return -math.inf
    return math.log(lo_a / hi_b)


def _indicator(event: Event, releases: np.ndarray) -> np.ndarray:
    if callable(event):
        hit = np.asarray(event(releases), dtype=bool)
        if hit.shape != releases.shape:
            raise ValueError("an event must return one boolean per release")
        return hit
    return releases <= float(event)


def empirical_epsilon(
    releases_a: Sequence[float] | np.ndarray,
    releases_b: Sequence[float] | np.ndarray,
    events: Sequence[Event],
    alpha: float = 0.05,
) -> float:
    """The largest lower confidence bound on epsilon over ``events``, both directions.

    ``releases_a`` and ``releases_b`` are independent releases of the mechanism on two neighbouring
    datasets. An event is a callable mapping the array of releases to a boolean array, or a number
    ``t`` meaning "release <= t". Each event is tried together with its complement, each in both
    directions (a over b and b over a): 4 bounds per event, and alpha is split evenly over all of
    them (Bonferroni), so the returned maximum exceeds the true epsilon with probability at most
    alpha when the mechanism is epsilon-DP.
    """
    a = np.asarray(releases_a, dtype=np.float64)
    b = np.asarray(releases_b, dtype=np.float64)
    if a.size == 0 or b.size == 0 or not events:
        raise ValueError("need releases on both sides and at least one event")
    per_bound = alpha / (4 * len(events))
    best = -math.inf
    for event in events:
        hit_a = int(_indicator(event, a).sum())
        hit_b = int(_indicator(event, b).sum())
        for ka, kb in ((hit_a, hit_b), (a.size - hit_a, b.size - hit_b)):
            best = max(
                best,
                empirical_epsilon_lower_bound(ka, a.size, kb, b.size, per_bound),
                empirical_epsilon_lower_bound(kb, b.size, ka, a.size, per_bound),
            )
    return best
