"""A query's plan: how it spends its epsilon and delta between its noisy parts, before any data is read.

The *split* is the number of equal shares a query's budget is cut into: one per noisy part (a mean
measures a count and a centred sum, a variance also a centred sum of squares) or one per quantile
asked. Each part's grid mechanism (:mod:`cloakroom_client.protocol.noise`) is then calibrated to its
share and to its sensitivity, which comes from the declared bounds alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

from cloakroom_client.protocol.errors import QueryError
from cloakroom_client.protocol.noise import Mechanism, mechanism
from compute.engines.dp.query import ColumnMeta, Query, needs_delta

NEIGHBOURING = "add or remove one row"

# The grid mechanism of every noisy part (cloakroom_client.protocol.noise), under its old name here.
Additive = Mechanism


def additive(epsilon: float, delta: float, sensitivity: float, *, integer: bool = False) -> Additive:
    """The grid mechanism for one noisy part: discrete Laplace (geometric for whole numbers), or the
    discrete Gaussian when delta > 0."""
    return mechanism(epsilon, delta, sensitivity, integer=integer)


@dataclass(frozen=True)
class Plan:
    query: Query
    epsilon: float
    delta: float
    parts: dict[str, Additive] = field(default_factory=dict)
    mechanism: str = ""
    quantile_epsilon: float = 0.0

    @property
    def rho(self) -> float:
        """The query's zCDP cost: its noisy parts' rhos added up (each quantile is a pure
        ``quantile_epsilon``-DP release, charged ``quantile_epsilon**2 / 2``)."""
        if self.query.aggregate == "quantile":
            return split(self.query) * float(Fraction(repr(self.quantile_epsilon)) ** 2 / 2)
        return sum(part.rho for part in self.parts.values())

    @property
    def noise_scale(self) -> float:
        """The scale of the noise on the main answer (Laplace b or Gaussian sigma)."""
        if self.query.aggregate == "quantile":
            return 2.0 / self.quantile_epsilon  # exponential mechanism temperature, in ranks
        main = {"count": "count", "histogram": "count", "sum": "sum"}.get(self.query.aggregate, "sum")
        return self.parts[main].scale


def split(query: Query) -> int:
    """How many equal shares a query's epsilon and delta are split into.

    A mean's noisy count and centred sum get half each, a variance's (or standard deviation's) count,
    centred sum and centred sum of squares a third each, and each quantile asked an even share; a
    count, a sum or a histogram is one measurement and spends the whole budget on it.
    """
    if query.aggregate == "mean":
        return 2
    if query.aggregate in ("variance", "std"):
        return 3
    if query.aggregate == "quantile":
        return len(query.quantiles)
    return 1


def check_budget(query: Query, epsilon: float, delta: float) -> None:
    """Refuse an epsilon or delta the mechanisms cannot use (a QueryError naming it)."""
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise QueryError("epsilon", "Must be a finite number greater than 0.")
    if not (math.isfinite(delta) and 0 <= delta < 1):
        raise QueryError("delta", "Must be a finite number in [0, 1).")
    if delta > 0 and not needs_delta(query):
        raise QueryError("delta", "A quantile uses the exponential mechanism and needs no delta; send 0.")


def plan(schema: dict[str, ColumnMeta], query: Query, epsilon: float, delta: float = 0.0) -> Plan:
    """Split epsilon and delta between the noisy parts of a query. Depends on the declaration only."""
    check_budget(query, epsilon, delta)
    agg = query.aggregate
    shares = split(query)
    e, d = epsilon / shares, delta / shares
    kind = "discrete Gaussian" if delta > 0 else None
    if agg in ("count", "histogram"):
        part = additive(e, d, 1.0, integer=True)
        return Plan(query, epsilon, delta, {"count": part}, kind or "two-sided geometric")
    if agg == "quantile":
        label = "exponential mechanism over sorted gaps"
        if shares > 1:
            label += f", epsilon split evenly over {shares} quantiles"
        return Plan(query, epsilon, 0.0, {}, label, quantile_epsilon=e)
    if query.column is None or query.column not in schema:
        raise QueryError("query.column", f"A {agg} needs a declared column.")  # pragma: no cover - parse_query
    lower, upper = schema[query.column].bounds()
    radius = (upper - lower) / 2.0
    if agg == "sum":
        part = additive(e, d, max(abs(lower), abs(upper)))
        return Plan(query, epsilon, delta, {"sum": part}, kind or "discrete Laplace")
    parts = {"count": additive(e, d, 1.0), "sum": additive(e, d, radius)}
    if agg == "mean":
        label = ": noisy count and noisy centred sum, epsilon split 1/2 + 1/2"
    elif agg in ("variance", "std"):
        parts["sumsq"] = additive(e, d, radius**2)
        label = ": noisy count, centred sum and centred sum of squares, epsilon split in thirds"
    else:  # pragma: no cover - parse_query accepts only the aggregates above
        raise QueryError("query.aggregate", f"Unknown aggregate {agg!r}.")
    return Plan(query, epsilon, delta, parts, (kind or "discrete Laplace") + label)


def epsilon_at_rho(schema: dict[str, ColumnMeta], query: Query, rho: float, delta: float) -> float:
    """The largest epsilon at which the query, at ``delta``, costs at most ``rho`` (its plan's rho grows
    with epsilon): for comparing mechanisms at the same share of a budget. Bisection; 0 when none."""
    if rho <= 0:
        return 0.0
    lo, hi = 0.0, 1.0
    while plan(schema, query, hi, delta).rho <= rho:
        lo, hi = hi, hi * 2.0
        if hi > 1e9:  # pragma: no cover - a rho no epsilon reaches
            return lo
    for _ in range(60):
        mid = (lo + hi) / 2.0
        if mid > 0 and plan(schema, query, mid, delta).rho <= rho:
            lo = mid
        else:
            hi = mid
    return lo
