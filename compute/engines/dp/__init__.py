"""The differential-privacy query engine.

Pure functions over column arrays and the owner's declared schema. Nothing here reads a bound or a
category off the data: clipping bounds, group keys and histogram bins all come from the schema or
the query. Every noisy measurement is released on a grid (:mod:`cloakroom_client.protocol.noise`):
the value is rounded to a multiple of a power-of-two granularity and exact discrete noise is added
in grid steps, so no floating-point sample is ever added to a private value.

Neighbouring datasets differ by adding or removing one row, and the row count is private, so:

* count: sensitivity 1. Pure epsilon uses the two-sided geometric mechanism (integer noise);
  delta > 0 uses the discrete Gaussian.
* sum: values clipped to [lower, upper]; sensitivity max(|lower|, |upper|). Discrete Laplace on
  the grid, or the discrete Gaussian when delta > 0.
* mean: epsilon (and delta) split evenly between a noisy count and a noisy sum of the values
  centred on the middle of the bounds (sensitivity (upper - lower) / 2). The mean is
  mid + noisy_sum / noisy_count, clipped to the bounds. It never divides by the true size.
* variance and std: epsilon split in three: a noisy count, a noisy centred sum and a noisy centred
  sum of squares (sensitivity ((upper - lower) / 2) ** 2).
* quantile: the exponential mechanism over the grid points of the declared bounds
  (:mod:`compute.engines.dp.quantile`), each scored by the rank of the gap of the sorted, clipped
  values it falls in, utility -|rank - q n|; epsilon is split evenly between the quantiles asked.
* histogram: one noisy count per declared bin (or declared category). The bins are disjoint, so one
  row changes one bin and the whole histogram costs epsilon once.
* group-by: groups are the product of the declared categories of the group columns; a key with no
  rows still appears, noised. Groups are disjoint, so every group gets the full epsilon.

The package, in the order a query goes through it:

* :mod:`.query`: the declared schema (:class:`ColumnMeta`), the query language and
  :func:`parse_query`, which checks a query body against the schema;
* :mod:`.budget`: a query's plan (:func:`plan`), the split of its epsilon and delta between its
  noisy parts and each part's grid mechanism;
* :mod:`.accuracy`: the accuracy of a plan before anything is spent, and the epsilon an accuracy
  needs;
* :mod:`.select` and :mod:`.release`: the rows a query reads and its noisy answer (:func:`run`);
* :mod:`.quantile`: the exponential mechanism of a quantile.

Callers use the package as one module: ``from compute.engines import dp; dp.parse_query(...)``.
"""

from cloakroom_client.protocol.errors import QueryError
from compute.engines.dp.accuracy import (
    CONFIDENCE,
    Estimate,
    epsilon_for_halfwidth,
    estimate,
    mean_halfwidth,
    smallest_epsilon,
    variance_halfwidth,
)
from compute.engines.dp.budget import NEIGHBOURING, Additive, Plan, additive, epsilon_at_rho, plan, split
from compute.engines.dp.quantile import dp_quantile, quantile_granularity
from compute.engines.dp.query import (
    AGGREGATES,
    MAX_BINS,
    MAX_GROUPS,
    MAX_QUANTILES,
    NUMERIC_AGGREGATES,
    ColumnMeta,
    Filter,
    Query,
    needs_delta,
    parse_query,
)
from compute.engines.dp.release import GroupResult, Release, run

__all__ = [
    "epsilon_at_rho",
    "AGGREGATES",
    "CONFIDENCE",
    "MAX_BINS",
    "MAX_GROUPS",
    "MAX_QUANTILES",
    "NEIGHBOURING",
    "NUMERIC_AGGREGATES",
    "Additive",
    "ColumnMeta",
    "Estimate",
    "Filter",
    "GroupResult",
    "Plan",
    "Query",
    "QueryError",
    "Release",
    "additive",
    "dp_quantile",
    "epsilon_for_halfwidth",
    "estimate",
    "mean_halfwidth",
    "needs_delta",
    "parse_query",
    "plan",
    "quantile_granularity",
    "run",
    "smallest_epsilon",
    "split",
    "variance_halfwidth",
]
