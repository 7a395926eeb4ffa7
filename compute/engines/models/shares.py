"""A part's share of a job's budget, for the models that split it between noisy parts (stats.py's
statistics, logistic.py's count and weights)."""

from __future__ import annotations

import math
from fractions import Fraction

from cloakroom_client.protocol.noise import gaussian_rho

# The share of the Gaussian's rho handed out, so that float rounding never adds up past it.
RHO_SAFETY = 1.0 - 1e-9


def budget_share(epsilon: float, delta: float, part: int, total: int) -> tuple[float, float]:
    """Part ``part`` of ``total`` of the budget as (epsilon, rho): ``epsilon * part / total`` rounded down
    when pure (rho 0 here: the job is charged epsilon**2 / 2 as a whole), else that share of the rho whose
    conversion gives (epsilon, delta) and the epsilon it implies at delta. The shares never add up past
    the whole."""
    if delta <= 0:
        exact = Fraction(repr(epsilon)) * part / total
        value = float(exact)
        return (math.nextafter(value, 0.0) if Fraction(value) > exact else value), 0.0
    rho = gaussian_rho(epsilon, delta) * RHO_SAFETY * part / total
    return rho + 2.0 * math.sqrt(rho * math.log(1.0 / delta)), rho
