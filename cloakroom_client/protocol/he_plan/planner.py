"""The planner: an HE query, the bundle's manifest and the job's epsilon become a :class:`Plan`.

One function per kind of aggregate adds the encrypted aggregates it needs and the components the
key holder releases, with their sensitivities under the replace-one relation (see the package's
docstring). The order in which aggregates and components are added is part of the protocol: it
names them (``a0``, ``a1``, ...), and the key holder compares a served release spec with its own
plan name by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cloakroom_client.protocol.errors import QueryError
from cloakroom_client.protocol.he_plan.columns import (
    HeColumn,
    manifest_columns,
    product_range,
    query_column,
    query_filter,
    query_weights,
)
from cloakroom_client.protocol.he_plan.model import Aggregate, Component, Plan
from cloakroom_client.protocol.noise import Mechanism, mechanism

AGGREGATES = ("count", "sum", "mean", "variance", "dot", "regression")
MAX_REGRESSION_COLUMNS = 10
NEIGHBOURING = "replace one row in place"
# Limits the planner applies when the caller sets none (the key holder: it plans what the server
# accepted, so only the noise matters there, not the request size).
UNLIMITED_WEIGHTS = 10**9
# The fields each kind of HE query takes, beside "aggregate".
QUERY_FIELDS = {
    "count": {"column", "category", "filter"},
    "sum": {"column", "filter"},
    "mean": {"column", "filter"},
    "variance": {"column", "filter"},
    "dot": {"column", "weights"},
    "regression": {"columns", "target", "filter"},
}
NUMERIC_KINDS = ("numeric", "boolean", "indicator")

Terms = list[tuple[str, float]]


class _Builder:
    """The encrypted aggregates of a plan, each added once however many components use it."""

    def __init__(self, rows: int, max_depth: int):
        self.rows, self.max_depth = rows, max_depth
        self.aggregates: list[Aggregate] = []
        self.factors: dict[str, tuple[HeColumn, ...]] = {}

    def aggregate(self, *factors: HeColumn, weight_bound: float = 0.0, field_name: str = "query") -> str:
        names = tuple(f.name for f in factors)
        weighted = bool(weight_bound)
        for agg in self.aggregates:
            if agg.factors == names and agg.weighted == weighted:
                return agg.name
        depth = len(names) - 1 + int(weighted)
        if depth > self.max_depth:
            if self.max_depth == 0:
                raise QueryError(
                    field_name,
                    "This dataset was encrypted for sums only (job class 'sum'): products, squares, weights and "
                    "filters need the owner to encrypt it with job classes sum and product.",
                )
            raise QueryError(
                field_name, f"Needs {depth} multiplications; this dataset's parameters allow {self.max_depth}."
            )
        ranges = [(f.lower, f.upper) for f in factors]
        if weighted:
            ranges.append((-weight_bound, weight_bound))
        name = f"a{len(self.aggregates)}"
        self.aggregates.append(Aggregate(name, names, weighted, product_range(ranges)))
        self.factors[name] = factors
        return name


@dataclass
class _Job:
    """One query being planned: what each aggregate's planner reads and adds to."""

    query: dict[str, Any]
    columns: dict[str, HeColumn]
    rows: int
    epsilon: float
    builder: _Builder
    flt: HeColumn | None
    max_weights: int
    max_weight: float
    canonical: dict[str, Any]
    components: list[Component] = field(default_factory=list)
    weights: np.ndarray | None = None
    weight_bound: float = 0.0

    def component(self, name: str, label: str, terms: Terms, offset: float, noise: Mechanism, budget: str = "") -> None:
        self.components.append(Component(name, label, tuple(terms), offset, noise, budget or name))

    def times_filter(self, *factors: HeColumn) -> tuple[HeColumn, ...]:
        return (*factors, self.flt) if self.flt is not None else factors

    def spread(self, *factors: HeColumn) -> float:
        """How far one replaced row moves the sum of this product (the filter included)."""
        lo, hi = product_range([(f.lower, f.upper) for f in self.times_filter(*factors)])
        return hi - lo

    def count_terms(self) -> tuple[Terms, float]:
        """The (filtered) row count: the filter's sum, or the manifest's row count."""
        if self.flt is None:
            return [], float(self.rows)
        return [(self.builder.aggregate(self.flt, field_name="query.filter"), 1.0)], 0.0

    def sum_of(self, *factors: HeColumn, field_name: str) -> str:
        """The aggregate of a product of columns, times the filter when there is one."""
        return self.builder.aggregate(*self.times_filter(*factors), field_name=field_name)


# Each planner adds its aggregates and components to the job and returns the layout (how the
# server reads the components back into an answer) and the mechanism's description.
Planned = tuple[dict[str, Any], str]


def _count_targets(job: _Job) -> list[HeColumn]:
    columns, query = job.columns, job.query
    raw = query.get("column")
    job.canonical["column"] = raw
    if raw in columns and "category" not in query:
        return [query_column(columns, raw, "query.column", kinds=("indicator", "boolean"))]
    sources = {c.source for c in columns.values() if c.kind == "indicator"}
    if raw not in sources:
        query_column(columns, raw, "query.column", kinds=("indicator", "boolean"))
    targets = [c for c in columns.values() if c.kind == "indicator" and c.source == raw]
    if "category" in query:
        name = f"{raw}={query['category']}"
        if name not in columns:
            raise QueryError("query.category", f"{query['category']!r} is not a declared category of {raw!r}.")
        targets = [columns[name]]
        job.canonical["category"] = query["category"]
    return targets


def _plan_count(job: _Job) -> Planned:
    targets = _count_targets(job)
    # A replaced row changes one count by 1, or moves from one category to another: the counts
    # of several categories together have L1 sensitivity 2 and share one epsilon.
    sensitivity = 1.0 if len(targets) == 1 else 2.0
    noise = mechanism(job.epsilon, 0.0, sensitivity, integer=True)
    groups = []
    for i, col in enumerate(targets):
        terms = [(job.sum_of(col, field_name="query.column"), 1.0)]
        job.component(f"count{i}", f"count({col.name})", terms, 0.0, noise, "counts")
        # An indicator's group is keyed by its category, a boolean column's by True.
        key: dict[str, str | bool | None] = {col.source: col.category} if col.kind == "indicator" else {col.name: True}
        groups.append((f"count{i}", key))
    layout = {"kind": "counts", "groups": groups, "main": "count0"}
    return layout, f"two-sided geometric (key holder), sensitivity {sensitivity:g}"


def _plan_moments(job: _Job) -> Planned:
    """A sum, or a mean or variance from a noisy count and noisy centred sums."""
    agg = job.canonical["aggregate"]
    col = query_column(job.columns, job.query.get("column"), "query.column", kinds=NUMERIC_KINDS)
    job.canonical["column"] = col.name
    s = job.sum_of(col, field_name="query.column")
    if agg == "sum":
        job.component("sum", f"sum({col.name})", [(s, 1.0)], 0.0, mechanism(job.epsilon, 0.0, job.spread(col)))
        return {"kind": "sum", "main": "sum"}, "discrete Laplace on a grid (key holder), sensitivity upper - lower"
    e = job.epsilon / (2 if agg == "mean" else 3)
    mid, radius = (col.lower + col.upper) / 2.0, (col.upper - col.lower) / 2.0
    cterms, coffset = job.count_terms()
    job.component("count", "count", cterms, coffset, mechanism(e, 0.0, 1.0))
    # Centred sum: S - mid * count; a replaced row moves it by at most 2 * radius.
    job.component(
        "sum",
        f"centred sum({col.name})",
        [(s, 1.0), *((a, -mid * c) for a, c in cterms)],
        -mid * coffset,
        mechanism(e, 0.0, 2.0 * radius),
    )
    layout = {"kind": agg, "lower": col.lower, "upper": col.upper, "main": "sum"}
    if agg == "mean":
        return layout, (
            "discrete Laplace on a grid (key holder): noisy count and noisy centred sum, epsilon split 1/2 + 1/2"
        )
    ss = job.sum_of(col, col, field_name="query.column")
    # Centred sum of squares: SS - 2 mid S + mid^2 count; each term lies in [0, radius^2].
    job.component(
        "sumsq",
        f"centred sum of squares({col.name})",
        [(ss, 1.0), (s, -2.0 * mid), *((a, mid * mid * c) for a, c in cterms)],
        mid * mid * coffset,
        mechanism(e, 0.0, radius * radius),
    )
    return layout, (
        "discrete Laplace on a grid (key holder): noisy count, centred sum and centred sum of squares, "
        "epsilon split in thirds"
    )


def _plan_dot(job: _Job) -> Planned:
    col = query_column(job.columns, job.query.get("column"), "query.column", kinds=NUMERIC_KINDS)
    if "weights" not in job.query:
        raise QueryError("query.weights", "A dot product needs the weights, one per row.")
    job.weights, canonical_weights, job.weight_bound = query_weights(
        job.query["weights"], job.rows, job.max_weights, job.max_weight
    )
    job.canonical.update(column=col.name, weights=canonical_weights)
    a = job.builder.aggregate(col, weight_bound=job.weight_bound, field_name="query.weights")
    # A row replaced in place moves the dot product by at most its weight times the column's range.
    sensitivity = job.weight_bound * (col.upper - col.lower)
    job.component("dot", f"dot({col.name}, weights)", [(a, 1.0)], 0.0, mechanism(job.epsilon, 0.0, sensitivity))
    return {"kind": "sum", "main": "dot"}, (
        "discrete Laplace on a grid (key holder), sensitivity max|weight| x (upper - lower)"
    )


def _regression_columns(job: _Job) -> tuple[list[HeColumn], HeColumn]:
    raw_cols = job.query.get("columns")
    if not isinstance(raw_cols, list) or not raw_cols:
        raise QueryError("query.columns", "Must be a non-empty list of column names.")
    if len(raw_cols) > MAX_REGRESSION_COLUMNS:
        raise QueryError("query.columns", f"At most {MAX_REGRESSION_COLUMNS} columns.")
    if len(set(map(str, raw_cols))) != len(raw_cols):
        raise QueryError("query.columns", "Must not repeat a column.")
    xs = [query_column(job.columns, n, f"query.columns.{i}", kinds=NUMERIC_KINDS) for i, n in enumerate(raw_cols)]
    y = query_column(job.columns, job.query.get("target"), "query.target", kinds=NUMERIC_KINDS)
    if y.name in raw_cols:
        raise QueryError("query.target", "The target must not also be one of the columns.")
    job.canonical.update(columns=[x.name for x in xs], target=y.name)
    return xs, y


def _plan_regression(job: _Job) -> Planned:
    """The sufficient statistics of a linear regression: X'X (with the count) and X'y."""
    xs, y = _regression_columns(job)
    stats: list[tuple[str, Terms, float, float]] = []  # name, terms, offset, sensitivity
    xtx: dict[tuple[int, int], str] = {}

    def product_stat(label: str, *factors: HeColumn, field_name: str) -> None:
        pair = sorted(factors, key=lambda c: c.index)
        stats.append((label, [(job.sum_of(*pair, field_name=field_name), 1.0)], 0.0, job.spread(*pair)))

    cterms, coffset = job.count_terms()
    stats.append(("n", cterms, coffset, 1.0))
    xtx[(0, 0)] = "n"
    for i, x in enumerate(xs, start=1):
        product_stat(f"sum({x.name})", x, field_name="query.columns")
        xtx[(0, i)] = f"sum({x.name})"
    for i, x in enumerate(xs, start=1):
        for j in range(i, len(xs) + 1):
            z = xs[j - 1]
            product_stat(f"sum({x.name}*{z.name})", x, z, field_name="query.columns")
            xtx[(i, j)] = f"sum({x.name}*{z.name})"
    xty = [f"sum({y.name})"]
    product_stat(xty[0], y, field_name="query.target")
    for x in xs:
        product_stat(f"sum({x.name}*{y.name})", x, y, field_name="query.target")
        xty.append(f"sum({x.name}*{y.name})")
    # Epsilon split evenly: each statistic gets its own noise from its own sensitivity, so the
    # count is not drowned by the noise the products need.
    share = job.epsilon / len(stats)
    names: dict[str, str] = {}
    for k, (label, terms, offset, sensitivity) in enumerate(stats):
        names[label] = f"s{k}"
        job.component(f"s{k}", label, terms, offset, mechanism(share, 0.0, sensitivity))
    layout = {
        "kind": "regression",
        "main": "s0",
        "columns": [x.name for x in xs],
        "target": y.name,
        "xtx": {key: names[label] for key, label in xtx.items()},
        "xty": [names[label] for label in xty],
    }
    return (
        layout,
        f"discrete Laplace on a grid (key holder) on each of the {len(stats)} statistics, epsilon split evenly",
    )


PLANNERS: dict[str, Callable[[_Job], Planned]] = {
    "count": _plan_count,
    "sum": _plan_moments,
    "mean": _plan_moments,
    "variance": _plan_moments,
    "dot": _plan_dot,
    "regression": _plan_regression,
}


def _checked_epsilon(epsilon: Any) -> float:
    if (
        isinstance(epsilon, bool)
        or not isinstance(epsilon, int | float)
        or not (math.isfinite(epsilon) and epsilon > 0)
    ):
        raise QueryError("epsilon", "Must be a finite number greater than 0.")
    return float(epsilon)


def _checked_aggregate(query: Any) -> str:
    """The query's aggregate, once the query is an object with only that aggregate's fields."""
    if not isinstance(query, dict):
        raise QueryError("query", "Must be an object with an 'aggregate'.")
    agg = query.get("aggregate")
    if agg not in AGGREGATES:
        raise QueryError("query.aggregate", f"Must be one of: {', '.join(AGGREGATES)} (HE datasets).")
    allowed = QUERY_FIELDS[agg] | {"aggregate"}
    unknown = sorted(set(query) - allowed)
    if unknown:
        raise QueryError(
            f"query.{unknown[0]}", f"Not a field of an HE {agg} query (fields: {', '.join(sorted(allowed))})."
        )
    return agg


def plan(
    query: Any,
    manifest: Mapping[str, Any],
    epsilon: float,
    *,
    max_weights: int = UNLIMITED_WEIGHTS,
    max_weight: float = math.inf,
) -> Plan:
    """Check an HE query against the manifest's declared columns and plan it. Raises QueryError."""
    epsilon = _checked_epsilon(epsilon)
    agg = _checked_aggregate(query)
    columns = manifest_columns(manifest)
    rows = int(manifest["rows"])
    params = {k: manifest[k] for k in ("poly_modulus_degree", "coeff_mod_bit_sizes", "global_scale_bits", "slots")}
    max_depth = len(manifest["coeff_mod_bit_sizes"]) - 2 if "product" in manifest.get("job_classes", []) else 0
    builder = _Builder(rows, max_depth)
    flt = query_filter(columns, query.get("filter"))
    job = _Job(query, columns, rows, epsilon, builder, flt, max_weights, max_weight, canonical={"aggregate": agg})
    layout, mechanism_label = PLANNERS[agg](job)
    if flt is not None:
        job.canonical["filter"] = {"column": flt.name}
    return Plan(
        query=job.canonical,
        aggregate=agg,
        epsilon=epsilon,
        rows=rows,
        slots=int(manifest["slots"]),
        params=params,
        aggregates=tuple(builder.aggregates),
        components=tuple(job.components),
        mechanism=mechanism_label,
        weights=job.weights,
        weight_bound=job.weight_bound,
        layout=layout,
    )
