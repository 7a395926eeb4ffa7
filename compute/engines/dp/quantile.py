"""A differentially private quantile: the exponential mechanism over a fixed output grid.

The mechanism
-------------
The answer is drawn from a published grid: the multiples ``j * g`` (``j`` an integer) that lie in
the declared bounds ``[lower, upper]``, where ``g = quantile_granularity(lower, upper)`` is a power
of two chosen so the bounds hold between 2**20 and 2**21 grid points. The grid depends only on the
bounds, which are public, never on the data.

The values are clipped to the bounds and sorted, giving the edges ``lower = e_0 <= e_1 <= ... <=
e_n <= e_{n+1} = upper``. Gap ``i`` is the half-open interval ``[e_i, e_{i+1})`` (the last gap,
``i = n``, is closed: ``[e_n, upper]``). A grid point ``y`` in gap ``i`` has exactly ``i`` values
at or below it, so its utility is

    u(y) = -| #{values <= y} - q n | = -| i - q n |,

the same for every grid point of the gap. The exponential mechanism picks ``y`` with probability
proportional to ``exp(epsilon * u(y) / 2)``. Grouping the grid points by gap, gap ``i`` is chosen
with log-weight ``(epsilon / 2) * u_i + log(c_i)``, where ``c_i`` is the number of grid points in
it, and then one of its grid points uniformly. The two-stage draw is exactly the one-stage draw
over the grid, and it costs O(n) instead of O(grid).

Privacy
-------
Neighbouring datasets differ by adding or removing one row (n is private). For any fixed ``y``,
adding a row changes ``#{values <= y}`` by 0 or 1 and ``q n`` by ``q``, so ``#{values <= y} - q n``
moves by ``-q`` or ``1 - q``: the utility has sensitivity 1 (it is also 1 when a row is replaced).
The output set is the same for both datasets, so the exponential mechanism with weight
``exp(epsilon u / 2)`` is epsilon-DP (McSherry and Talwar, 2007). Clipping is a per-row map and the
grid is public, so neither spends privacy.

Two implementation details only approximate the ideal sampler. Gaps whose log-weight is more than
746 below the best are left out: their weight relative to the best is below exp(-746), which is
exactly 0.0 in float64, so they could not be drawn by a float64 sampler anyway (the distribution
moves by less than n * exp(-746) in total variation, a delta far below any that matters). And the
gap is drawn by inverting a float64 cumulative sum with a 53-bit uniform, so each probability is
exact up to relative rounding of order n * 2**-53. No continuous random number is ever added to a
private value: the within-gap draw is an integer (``randrange``) and the output is ``j * g``.

Why ties were a defect
----------------------
The engine's former sampler pruned gaps against the best utility over *all* gaps, zero-width ones
included. With many equal values the best-utility gaps are the zero-width ones between the ties;
they hold no output, yet they set the bar. Once ``(epsilon / 2) * q n`` passed 746 (2984 rows equal
to 50 in [0, 100] at epsilon 1, where 2983 still worked) every gap with positive width fell below
the bar, nothing was left, and the median came back as the lower bound every time: a deterministic
answer that changed between neighbouring datasets, so epsilon was infinite. Here the gaps holding
no grid point are dropped *before* the best log-weight is taken, and pruning is only against the
best over the gaps that can actually be drawn.

The former sampler also drew the answer as ``edge + random() * width``: a continuous float added
to a private value, whose low-order bits can leak the edge. Drawing a grid point by integer index
removes that channel.

The random generator is a stdlib :class:`random.Random`: ``secrets.SystemRandom()`` in production,
``random.Random(seed)`` in tests. Only its ``getrandbits`` and ``randrange`` are used.
"""

from __future__ import annotations

import math
import random

import numpy as np

# exp(x) is exactly 0.0 in float64 below this.
_EXP_UNDERFLOW = 746.0
# The bounds hold at least 2**_GRID_BITS grid points (and fewer than twice that).
_GRID_BITS = 20
_TWO_53 = float(2**53)


def _check_bounds(lower: float, upper: float) -> None:
    if not (math.isfinite(lower) and math.isfinite(upper)):
        raise ValueError("quantile bounds must be finite")
    if lower > upper:
        raise ValueError("quantile lower bound must not exceed the upper bound")


def quantile_granularity(lower: float, upper: float) -> float:
    """The spacing ``g`` of the published output grid for bounds ``[lower, upper]``.

    ``g = 2**floor(log2((upper - lower) / 2**20))``: the largest power of two with at least 2**20
    steps of it between the bounds (so ``(upper - lower) / g`` lies in [2**20, 2**21)). Computed
    from the binary exponent of the width, not from a rounded logarithm. Equal bounds return 1.0,
    which is never used (the answer is then the bound itself).
    """
    lower, upper = float(lower), float(upper)
    _check_bounds(lower, upper)
    if upper == lower:
        return 1.0
    width = upper - lower
    if not math.isfinite(width):
        raise ValueError("quantile bounds are too far apart for float64")
    _, exponent = math.frexp(width)  # width = m * 2**exponent with 0.5 <= m < 1
    g = math.ldexp(1.0, exponent - 1 - _GRID_BITS)
    if g == 0.0 or not (math.isfinite(lower / g) and math.isfinite(upper / g)):
        raise ValueError("quantile bounds are too close together for float64")
    return g


def dp_quantile(
    sorted_values: np.ndarray,
    lower: float,
    upper: float,
    q: float,
    epsilon: float,
    rng: random.Random,
) -> float:
    """An epsilon-DP estimate of the ``q``-quantile of ``sorted_values`` within ``[lower, upper]``.

    ``sorted_values`` are the private values (sorted ascending; they are clipped to the bounds
    here, and sorted here too if they are not). ``q`` is in [0, 1], ``epsilon`` > 0 is the budget
    of this one quantile. ``rng`` is a :class:`random.Random` (``secrets.SystemRandom()`` in
    production); only ``getrandbits`` and ``randrange`` are called on it, once each.

    The answer is always ``j * quantile_granularity(lower, upper)`` for an integer ``j``, inside
    the bounds; equal bounds return ``lower``. See the module docstring for the mechanism.
    """
    lower, upper, q, epsilon = float(lower), float(upper), float(q), float(epsilon)
    _check_bounds(lower, upper)
    if not 0.0 <= q <= 1.0:
        raise ValueError("quantile q must be in [0, 1]")
    if not (epsilon > 0.0 and math.isfinite(epsilon)):
        raise ValueError("epsilon must be positive and finite")
    values = np.asarray(sorted_values, dtype=np.float64).ravel()
    if np.isnan(values).any():
        raise ValueError("values must not be NaN")
    if lower == upper:
        return lower

    g = quantile_granularity(lower, upper)
    values = np.clip(values, lower, upper)
    if values.size > 1 and (values[1:] < values[:-1]).any():
        values = np.sort(values)
    n = values.size

    # Grid indexes. x / g is exact (g is a power of two), so ceil/floor of it are exact; every
    # index below is relative to the first grid point, j_lo, and lies in [0, 2**21 + 1].
    j_lo = math.ceil(lower / g)
    j_hi = math.floor(upper / g)
    # starts[i] = index (relative to j_lo) of the first grid point >= e_i, for i = 0 .. n, and
    # starts[n + 1] = one past the last grid point (the last gap is closed at upper). The float
    # subtraction is exact: both terms are integers, and either both are below 2**53 or they are
    # within a factor of two of each other (Sterbenz).
    starts = np.empty(n + 2, dtype=np.int64)
    starts[0] = 0
    starts[1 : n + 1] = (np.ceil(values / g) - float(j_lo)).astype(np.int64)
    starts[n + 1] = j_hi - j_lo + 1
    counts = np.diff(starts)  # grid points in gap i, i = 0 .. n

    # Gaps with no grid point (ties, zero width, or too narrow to hold one) have weight zero and
    # are dropped before anything is compared; at least one gap holds a grid point.
    gaps = np.flatnonzero(counts > 0)
    utility = -np.abs(gaps.astype(np.float64) - q * n)
    log_weight = (epsilon / 2.0) * utility + np.log(counts[gaps].astype(np.float64))
    log_weight -= log_weight.max()
    keep = log_weight > -_EXP_UNDERFLOW
    gaps = gaps[keep]
    weight = np.exp(log_weight[keep])
    # A few just above the cut still underflow to 0.0; drop them so no zero weight can be drawn.
    positive = weight > 0.0
    gaps, weight = gaps[positive], weight[positive]

    # Inverse CDF with a 53-bit uniform in [0, 1): the first gap whose cumulative weight exceeds
    # u times the total. The best gap has weight 1, so the total is at least 1.
    cumulative = np.cumsum(weight)
    u = rng.getrandbits(53) / _TWO_53
    pick = min(int(np.searchsorted(cumulative, u * cumulative[-1], side="right")), len(gaps) - 1)
    gap = int(gaps[pick])

    j = j_lo + int(starts[gap]) + rng.randrange(int(counts[gap]))
    # float(j) is exact below 2**53; above it j_lo and j_hi are floats already, and rounding is
    # monotone, so the answer stays in the bounds (and is still a multiple of g).
    return float(j) * g
