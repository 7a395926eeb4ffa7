"""Accuracy before spending: a query's 95% half-width at an epsilon, and the epsilon a half-width needs.

Nothing here reads the data, so an estimate costs no privacy. Counts, sums and histograms have an
exact interval (the noise's own); means, variances and quantiles depend on how many rows the answer
covers, which the caller gives (the public row count, or the buyer's guess of a subset's size).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from cloakroom_client.protocol.errors import QueryError
from cloakroom_client.protocol.noise import Mechanism
from compute.engines.dp.budget import plan
from compute.engines.dp.query import ColumnMeta, Query

CONFIDENCE = 0.95


class NoisyParts(Protocol):
    """What the interval bounds read of a plan: its noisy parts by name (a DP plan, or an HE one)."""

    @property
    def parts(self) -> Mapping[str, Mechanism]: ...


def diff_laplace_tail(s1: float, s2: float, t: float) -> float:
    """P(|s1 L1 - s2 L2| > t) for independent standard Laplace L1, L2 scaled by s1, s2."""
    if s2 <= 1e-15 * max(s1, 1e-300):
        return math.exp(-t / s1)
    if s1 <= 1e-15 * s2:
        return math.exp(-t / s2)
    if abs(s1 - s2) <= 1e-9 * max(s1, s2):
        s = (s1 + s2) / 2.0
        return math.exp(-t / s) * (2.0 + t / s) / 2.0
    return (s1 * s1 * math.exp(-t / s1) - s2 * s2 * math.exp(-t / s2)) / (s1 * s1 - s2 * s2)


def solve_tail(tail: Callable[[float], float], target: float, hi: float) -> float:
    """The smallest t (by bisection) at which a falling tail probability is at most ``target``."""
    lo = 0.0
    while tail(hi) > target:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if tail(mid) > target:
            lo = mid
        else:
            hi = mid
    return hi


def mean_halfwidth(p: NoisyParts, n: float, centred_mean: float, confidence: float = CONFIDENCE) -> float:
    """Half-width of the mean's interval, to first order in the noise over n.

    The error of mid + S~/C~ is about (e_S - m e_C) / n, where m is the centred mean; the tail of
    that combination is exact for Laplace noise and for Gaussian noise.
    """
    s, c = p.parts["sum"], p.parts["count"]
    n = max(n, 1.0)
    if s.kind == "gaussian":
        return s.halfwidth(confidence) * math.hypot(1.0, centred_mean * c.scale / s.scale) / n
    return solve_tail(lambda t: diff_laplace_tail(s.scale, abs(centred_mean) * c.scale, t), 1 - confidence, s.scale) / n


def variance_halfwidth(p: NoisyParts, n: float, radius: float, confidence: float = CONFIDENCE) -> float:
    """A stated bound: each of the three noisy parts stays within its (1 - alpha/3) interval."""
    third = 1 - (1 - confidence) / 3.0
    hc = p.parts["count"].halfwidth(third)
    h1 = p.parts["sum"].halfwidth(third)
    h2 = p.parts["sumsq"].halfwidth(third)
    if n <= hc:
        return radius**2
    dq = (h2 + radius**2 * hc) / (n - hc)
    dm = (h1 + radius * hc) / (n - hc)
    return min(dq + dm * (2 * radius + dm), radius**2)


@dataclass(frozen=True)
class Estimate:
    mechanism: str
    noise_scale: float
    ci95_halfwidth: float | None
    exact: bool
    note: str


def estimate(
    schema: dict[str, ColumnMeta], query: Query, epsilon: float, delta: float = 0.0, *, rows: float | None = None
) -> Estimate:
    """The accuracy of a query at ``epsilon``, from the declaration and the mechanism alone.

    ``rows`` is the number of rows the answer is taken over (the public row count, or the buyer's
    own guess of a subset's size); it is needed for means, variances and quantiles, whose error
    shrinks with the size of the data. Costs no privacy: nothing here reads the data.
    """
    p = plan(schema, query, epsilon, delta)
    agg = query.aggregate
    if agg in ("count", "histogram", "sum"):
        part = p.parts["count" if agg != "sum" else "sum"]
        note = "exact: the 95% interval of the noise added to each value"
        return Estimate(p.mechanism, part.scale, part.halfwidth(), True, note)
    if rows is None or rows <= 0:
        return Estimate(
            p.mechanism,
            p.noise_scale,
            None,
            False,
            "the error depends on how many rows the answer covers; give rows to bound it",
        )
    if agg == "quantile":
        # A rank bound. With n rows and values spread over the bounds, the released value's rank
        # is within (2 / eps_q) * ln(n / 0.05) of q * n with probability at least 95%.
        rank = (2.0 / p.quantile_epsilon) * math.log(max(rows, 2.0) / (1 - CONFIDENCE))
        note = f"in ranks, not values: the answer's rank is within this of q x {rows:g}"
        return Estimate(p.mechanism, p.noise_scale, rank, False, note)
    lower, upper = schema[str(query.column)].bounds()
    radius = (upper - lower) / 2.0
    if agg == "mean":
        # Worst case over where the mean may lie inside the bounds (|m| <= radius).
        h = min(mean_halfwidth(p, rows, radius), 2 * radius)
        return Estimate(
            p.mechanism, p.noise_scale, h, False, f"bound for {rows:g} rows, worst case over the declared bounds"
        )
    h = variance_halfwidth(p, rows, radius)
    if agg == "std":
        h = math.sqrt(h)
    note = f"bound for {rows:g} rows (union bound over the three noisy parts)"
    return Estimate(p.mechanism, p.noise_scale, h, False, note)


def epsilon_for_halfwidth(
    schema: dict[str, ColumnMeta], query: Query, halfwidth: float, delta: float = 0.0, *, rows: float | None = None
) -> float:
    """The smallest epsilon (to 0.1%) whose 95% half-width is at most ``halfwidth``."""
    if not (math.isfinite(halfwidth) and halfwidth > 0):
        raise QueryError("ci95_halfwidth", "Must be a finite number greater than 0.")

    def width(e: float) -> float:
        h = estimate(schema, query, e, delta, rows=rows).ci95_halfwidth
        if h is None:
            raise QueryError(
                "rows", "Give rows (the size of the data the answer covers) to size epsilon for this query."
            )
        return h

    return smallest_epsilon(width, halfwidth)


def smallest_epsilon(width: Callable[[float], float], halfwidth: float, *, ratio: float = 1.001) -> float:
    """The smallest epsilon (to within ``ratio``) at which ``width(epsilon)``, a half-width that falls
    as epsilon grows, is at most ``halfwidth``; a QueryError if no epsilon up to 10^6 reaches it."""
    lo, hi = 1e-6, 1.0
    while width(hi) > halfwidth:
        hi *= 2.0
        if hi > 1e6:
            raise QueryError("ci95_halfwidth", "No epsilon up to 10^6 reaches that accuracy.")
    while hi / lo > ratio:
        mid = math.sqrt(lo * hi)
        if width(mid) > halfwidth:
            lo = mid
        else:
            hi = mid
    return hi
