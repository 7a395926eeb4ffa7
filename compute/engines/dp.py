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
  (:mod:`compute.engines.quantile`), each scored by the rank of the gap of the sorted, clipped
  values it falls in, utility -|rank - q n|; epsilon is split evenly between the quantiles asked.
* histogram: one noisy count per declared bin (or declared category). The bins are disjoint, so one
  row changes one bin and the whole histogram costs epsilon once.
* group-by: groups are the product of the declared categories of the group columns; a key with no
  rows still appears, noised. Groups are disjoint, so every group gets the full epsilon.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import product
from typing import Any

import numpy as np

from cloakroom_client.protocol.errors import QueryError
from cloakroom_client.protocol.noise import Mechanism, make_rng, mechanism
from compute.engines.quantile import dp_quantile, quantile_granularity

CONFIDENCE = 0.95
NEIGHBOURING = "add or remove one row"
AGGREGATES = ("count", "sum", "mean", "variance", "std", "quantile", "histogram")
NUMERIC_AGGREGATES = ("sum", "mean", "variance", "std", "quantile")
MAX_GROUPS = 10_000
MAX_BINS = 1_000
MAX_QUANTILES = 20


@dataclass(frozen=True)
class ColumnMeta:
    name: str
    kind: str  # numeric | categorical | boolean
    lower: float | None = None
    upper: float | None = None
    categories: tuple[str, ...] = ()

    @property
    def keys(self) -> tuple[Any, ...]:
        """The declared group keys of a categorical or boolean column."""
        if self.kind == "boolean":
            return (False, True)
        return tuple(self.categories)


@dataclass(frozen=True)
class Filter:
    column: str
    op: str  # eq | in | range
    values: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class Query:
    aggregate: str
    column: str | None = None
    quantiles: tuple[float, ...] = ()
    bins: tuple[float, ...] = ()
    filters: tuple[Filter, ...] = ()
    group_by: tuple[str, ...] = ()

    def canonical(self) -> dict[str, Any]:
        """A canonical, order-insensitive form that parse_query reads back to the same query.

        Used to store a job's query and to recognise a repeated one.
        """
        filters = []
        for f in self.filters:
            if f.op == "range":
                filters.append({"column": f.column, "op": "range", "low": f.low, "high": f.high})
            elif f.op == "eq":
                filters.append({"column": f.column, "op": "eq", "value": f.values[0]})
            else:
                values = sorted(set(f.values), key=lambda v: (type(v).__name__, str(v)))
                filters.append({"column": f.column, "op": "in", "values": values})
        filters.sort(key=lambda f: json.dumps(f, sort_keys=True))
        out: dict[str, Any] = {"aggregate": self.aggregate, "filters": filters, "group_by": list(self.group_by)}
        if self.column is not None:
            out["column"] = self.column
        if self.quantiles:
            out["quantiles"] = list(self.quantiles)
        if self.bins:
            out["bins"] = list(self.bins)
        return out


# ---------------------------------------------------------------------------------------------
# Validation


def _finite(value: Any, field_name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise QueryError(field_name, "Must be a number.")
    if not math.isfinite(value):
        raise QueryError(field_name, "Must be a finite number.")
    return float(value)


def _coerce_key(meta: ColumnMeta, value: Any, field_name: str) -> Any:
    if meta.kind == "boolean":
        if isinstance(value, bool):
            return value
        raise QueryError(field_name, f"Column '{meta.name}' is boolean: use true or false.")
    if not isinstance(value, str) or value not in meta.categories:
        shown = ", ".join(repr(c) for c in meta.categories[:10])
        raise QueryError(field_name, f"{value!r} is not a declared category of '{meta.name}' (declared: {shown}).")
    return value


def parse_query(raw: Any, schema: dict[str, ColumnMeta], *, field_prefix: str = "query") -> Query:
    """Check a query body against the schema and return it as a :class:`Query`.

    Raises :class:`QueryError` naming the offending field.
    """
    p = field_prefix
    if not isinstance(raw, dict):
        raise QueryError(p, "Must be an object.")
    unknown = set(raw) - {"aggregate", "column", "quantiles", "bins", "filters", "group_by"}
    if unknown:
        raise QueryError(f"{p}.{sorted(unknown)[0]}", "Unknown field.")
    aggregate = raw.get("aggregate")
    if aggregate not in AGGREGATES:
        raise QueryError(f"{p}.aggregate", f"Must be one of: {', '.join(AGGREGATES)}.")

    column = raw.get("column")
    meta: ColumnMeta | None = None
    if aggregate == "count":
        if column is not None:
            raise QueryError(f"{p}.column", "A count takes no column; use filters to count a subset.")
    else:
        if not isinstance(column, str) or not column:
            raise QueryError(f"{p}.column", f"A {aggregate} needs a column.")
        meta = schema.get(column)
        if meta is None:
            raise QueryError(f"{p}.column", f"Unknown column {column!r}.")
        if aggregate in NUMERIC_AGGREGATES and meta.kind != "numeric":
            raise QueryError(f"{p}.column", f"A {aggregate} needs a numeric column; '{column}' is {meta.kind}.")

    quantiles: tuple[float, ...] = ()
    if aggregate == "quantile":
        qs = raw.get("quantiles")
        if not isinstance(qs, list) or not qs:
            raise QueryError(f"{p}.quantiles", "Give a list of quantiles between 0 and 1, e.g. [0.5].")
        if len(qs) > MAX_QUANTILES:
            raise QueryError(f"{p}.quantiles", f"At most {MAX_QUANTILES} quantiles per job.")
        quantiles = tuple(_finite(q, f"{p}.quantiles.{i}") for i, q in enumerate(qs))
        for i, q in enumerate(quantiles):
            if not 0 <= q <= 1:
                raise QueryError(f"{p}.quantiles.{i}", "Must be between 0 and 1.")
    elif raw.get("quantiles") not in (None, []):
        raise QueryError(f"{p}.quantiles", "Only a quantile query takes quantiles.")

    bins: tuple[float, ...] = ()
    if aggregate == "histogram":
        assert meta is not None
        raw_bins = raw.get("bins")
        if meta.kind == "numeric":
            if isinstance(raw_bins, int) and not isinstance(raw_bins, bool):
                if not 1 <= raw_bins <= MAX_BINS:
                    raise QueryError(f"{p}.bins", f"Between 1 and {MAX_BINS} bins.")
                bins = tuple(float(x) for x in np.linspace(meta.lower, meta.upper, raw_bins + 1))
            elif isinstance(raw_bins, list) and len(raw_bins) >= 2:
                if len(raw_bins) > MAX_BINS + 1:
                    raise QueryError(f"{p}.bins", f"At most {MAX_BINS} bins.")
                bins = tuple(_finite(b, f"{p}.bins.{i}") for i, b in enumerate(raw_bins))
                if any(b2 <= b1 for b1, b2 in zip(bins, bins[1:])):
                    raise QueryError(f"{p}.bins", "Bin edges must be strictly increasing.")
            else:
                raise QueryError(
                    f"{p}.bins",
                    "Give a number of equal-width bins over the declared bounds, or a list of at least two edges.",
                )
        elif raw_bins not in (None, []):
            raise QueryError(f"{p}.bins", f"'{meta.name}' is {meta.kind}: its bins are its declared categories.")
    elif raw.get("bins") not in (None, []):
        raise QueryError(f"{p}.bins", "Only a histogram takes bins.")

    filters = []
    raw_filters = raw.get("filters") or []
    if not isinstance(raw_filters, list):
        raise QueryError(f"{p}.filters", "Must be a list.")
    for i, f in enumerate(raw_filters):
        fp = f"{p}.filters.{i}"
        if not isinstance(f, dict):
            raise QueryError(fp, "Must be an object with column, op and value(s) or low/high.")
        fmeta = schema.get(f.get("column")) if isinstance(f.get("column"), str) else None
        if fmeta is None:
            raise QueryError(f"{fp}.column", f"Unknown column {f.get('column')!r}.")
        op = f.get("op")
        if fmeta.kind == "numeric":
            if op != "range":
                raise QueryError(f"{fp}.op", f"'{fmeta.name}' is numeric: filter it with op 'range' and low/high.")
            low = None if f.get("low") is None else _finite(f.get("low"), f"{fp}.low")
            high = None if f.get("high") is None else _finite(f.get("high"), f"{fp}.high")
            if low is None and high is None:
                raise QueryError(f"{fp}.low", "A range needs low, high or both.")
            if low is not None and high is not None and low > high:
                raise QueryError(f"{fp}.high", "Must not be below low.")
            filters.append(Filter(column=fmeta.name, op="range", low=low, high=high))
        elif op == "eq":
            if "value" not in f:
                raise QueryError(f"{fp}.value", "An 'eq' filter needs a value.")
            filters.append(Filter(column=fmeta.name, op="eq", values=(_coerce_key(fmeta, f["value"], f"{fp}.value"),)))
        elif op == "in":
            values = f.get("values")
            if not isinstance(values, list) or not values:
                raise QueryError(f"{fp}.values", "An 'in' filter needs a non-empty list of values.")
            filters.append(
                Filter(
                    column=fmeta.name,
                    op="in",
                    values=tuple(_coerce_key(fmeta, v, f"{fp}.values.{j}") for j, v in enumerate(values)),
                )
            )
        else:
            raise QueryError(f"{fp}.op", f"'{fmeta.name}' is {fmeta.kind}: use op 'eq' or 'in'.")

    group_by = raw.get("group_by") or []
    if not isinstance(group_by, list):
        raise QueryError(f"{p}.group_by", "Must be a list of column names.")
    n_groups = 1
    for i, g in enumerate(group_by):
        gmeta = schema.get(g) if isinstance(g, str) else None
        if gmeta is None:
            raise QueryError(f"{p}.group_by.{i}", f"Unknown column {g!r}.")
        if gmeta.kind == "numeric":
            raise QueryError(f"{p}.group_by.{i}", f"'{g}' is numeric; group by categorical or boolean columns only.")
        if group_by.count(g) > 1:
            raise QueryError(f"{p}.group_by.{i}", f"'{g}' is listed twice.")
        n_groups *= len(gmeta.keys)
    if n_groups > MAX_GROUPS:
        raise QueryError(f"{p}.group_by", f"That makes {n_groups} groups; the limit is {MAX_GROUPS}.")

    return Query(
        aggregate=aggregate,
        column=column if aggregate != "count" else None,
        quantiles=quantiles,
        bins=bins,
        filters=tuple(filters),
        group_by=tuple(group_by),
    )


def needs_delta(query: Query) -> bool:
    """Whether a delta may be given: everything but quantiles can use the Gaussian mechanism."""
    return query.aggregate != "quantile"


# ---------------------------------------------------------------------------------------------
# Additive mechanisms and their exact accuracy


# The grid mechanism of every noisy part (cloakroom_client.protocol.noise), under its old name here.
Additive = Mechanism


def additive(epsilon: float, delta: float, sensitivity: float, *, integer: bool = False) -> Additive:
    """The grid mechanism for one noisy part: discrete Laplace (geometric for whole numbers), or the
    discrete Gaussian when delta > 0."""
    return mechanism(epsilon, delta, sensitivity, integer=integer)


# ---------------------------------------------------------------------------------------------
# Plans: how a query spends its epsilon, independent of the data


@dataclass(frozen=True)
class Plan:
    query: Query
    epsilon: float
    delta: float
    parts: dict[str, Additive] = field(default_factory=dict)
    mechanism: str = ""
    quantile_epsilon: float = 0.0

    @property
    def noise_scale(self) -> float:
        """The scale of the noise on the main answer (Laplace b or Gaussian sigma)."""
        if self.query.aggregate == "quantile":
            return 2.0 / self.quantile_epsilon  # exponential mechanism temperature, in ranks
        main = {"count": "count", "histogram": "count", "sum": "sum"}.get(self.query.aggregate, "sum")
        return self.parts[main].scale


def plan(schema: dict[str, ColumnMeta], query: Query, epsilon: float, delta: float = 0.0) -> Plan:
    """Split epsilon and delta between the noisy parts of a query. Depends on the declaration only."""
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise QueryError("epsilon", "Must be a finite number greater than 0.")
    if not (math.isfinite(delta) and 0 <= delta < 1):
        raise QueryError("delta", "Must be a finite number in [0, 1).")
    if delta > 0 and not needs_delta(query):
        raise QueryError("delta", "A quantile uses the exponential mechanism and needs no delta; send 0.")
    agg = query.aggregate
    meta = schema.get(query.column) if query.column else None
    kind = "discrete Gaussian" if delta > 0 else None
    if agg in ("count", "histogram"):
        part = additive(epsilon, delta, 1.0, integer=True)
        return Plan(query, epsilon, delta, {"count": part}, kind or "two-sided geometric")
    assert meta is not None and meta.lower is not None and meta.upper is not None
    radius = (meta.upper - meta.lower) / 2.0
    if agg == "sum":
        part = additive(epsilon, delta, max(abs(meta.lower), abs(meta.upper)))
        return Plan(query, epsilon, delta, {"sum": part}, kind or "discrete Laplace")
    if agg == "mean":
        e, d = epsilon / 2.0, delta / 2.0
        return Plan(
            query,
            epsilon,
            delta,
            {"count": additive(e, d, 1.0), "sum": additive(e, d, radius)},
            (kind or "discrete Laplace") + ": noisy count and noisy centred sum, epsilon split 1/2 + 1/2",
        )
    if agg in ("variance", "std"):
        e, d = epsilon / 3.0, delta / 3.0
        return Plan(
            query,
            epsilon,
            delta,
            {"count": additive(e, d, 1.0), "sum": additive(e, d, radius), "sumsq": additive(e, d, radius**2)},
            (kind or "discrete Laplace")
            + ": noisy count, centred sum and centred sum of squares, epsilon split in thirds",
        )
    if agg == "quantile":
        return Plan(
            query,
            epsilon,
            0.0,
            {},
            "exponential mechanism over sorted gaps"
            + (f", epsilon split evenly over {len(query.quantiles)} quantiles" if len(query.quantiles) > 1 else ""),
            quantile_epsilon=epsilon / len(query.quantiles),
        )
    raise QueryError("query.aggregate", f"Unknown aggregate {agg!r}.")  # pragma: no cover


# ---------------------------------------------------------------------------------------------
# Accuracy before spending


def _diff_laplace_tail(s1: float, s2: float, t: float) -> float:
    """P(|s1 L1 - s2 L2| > t) for independent standard Laplace L1, L2 scaled by s1, s2."""
    if s2 <= 1e-15 * max(s1, 1e-300):
        return math.exp(-t / s1)
    if s1 <= 1e-15 * s2:
        return math.exp(-t / s2)
    if abs(s1 - s2) <= 1e-9 * max(s1, s2):
        s = (s1 + s2) / 2.0
        return math.exp(-t / s) * (2.0 + t / s) / 2.0
    return (s1 * s1 * math.exp(-t / s1) - s2 * s2 * math.exp(-t / s2)) / (s1 * s1 - s2 * s2)


def _solve_tail(tail, target: float, hi: float) -> float:
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


def mean_halfwidth(p: Plan, n: float, centred_mean: float, confidence: float = CONFIDENCE) -> float:
    """Half-width of the mean's interval, to first order in the noise over n.

    The error of mid + S~/C~ is about (e_S - m e_C) / n, where m is the centred mean; the tail of
    that combination is exact for Laplace noise and for Gaussian noise.
    """
    s, c = p.parts["sum"], p.parts["count"]
    n = max(n, 1.0)
    if s.kind == "gaussian":
        return s.halfwidth(confidence) * math.hypot(1.0, centred_mean * c.scale / s.scale) / n
    return (
        _solve_tail(lambda t: _diff_laplace_tail(s.scale, abs(centred_mean) * c.scale, t), 1 - confidence, s.scale) / n
    )


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
    meta = schema[query.column]  # type: ignore[index]
    radius = (meta.upper - meta.lower) / 2.0  # type: ignore[operator]
    if rows is None or rows <= 0:
        return Estimate(
            p.mechanism,
            p.noise_scale,
            None,
            False,
            "the error depends on how many rows the answer covers; give rows to bound it",
        )
    if agg == "mean":
        # Worst case over where the mean may lie inside the bounds (|m| <= radius).
        return Estimate(
            p.mechanism,
            p.noise_scale,
            min(mean_halfwidth(p, rows, radius), 2 * radius),
            False,
            f"bound for {rows:g} rows, worst case over the declared bounds",
        )
    if agg in ("variance", "std"):
        h = variance_halfwidth(p, rows, radius)
        if agg == "std":
            h = math.sqrt(h)
        return Estimate(
            p.mechanism, p.noise_scale, h, False, f"bound for {rows:g} rows (union bound over the three noisy parts)"
        )
    # Quantile: a rank bound. With n rows and values spread over the bounds, the released value's
    # rank is within (2 / eps_q) * ln(n / 0.05) of q * n with probability at least 95%.
    rank = (2.0 / p.quantile_epsilon) * math.log(max(rows, 2.0) / (1 - CONFIDENCE))
    return Estimate(
        p.mechanism,
        p.noise_scale,
        rank,
        False,
        f"in ranks, not values: the answer's rank is within this of q x {rows:g}",
    )


def variance_halfwidth(p: Plan, n: float, radius: float, confidence: float = CONFIDENCE) -> float:
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


# ---------------------------------------------------------------------------------------------
# Running a query


@dataclass
class GroupResult:
    key: dict[str, Any] | None
    value: Any
    ci95: Any
    # The raw noisy measurements behind a post-processed value (a mean's noisy count and centred
    # sum), each an exact multiple of its part's granularity; None where the value is the measurement.
    raw: dict[str, float] | None = None


@dataclass
class Release:
    aggregate: str
    groups: list[GroupResult]
    mechanism: str
    noise_scale: float
    epsilon: float
    delta: float
    interval_note: str
    granularity: dict[str, float] = field(default_factory=dict)  # each noisy part's grid step

    def as_dict(self) -> dict[str, Any]:
        groups = []
        for g in self.groups:
            group = {"key": g.key, "value": g.value, "ci95": g.ci95}
            if g.raw is not None:
                group["raw"] = g.raw
            groups.append(group)
        return {
            "aggregate": self.aggregate,
            "groups": groups,
            "mechanism": self.mechanism,
            "noise_scale": self.noise_scale,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "interval_note": self.interval_note,
            "granularity": self.granularity,
        }


def _mask(
    data: dict[str, np.ndarray], schema: dict[str, ColumnMeta], filters: tuple[Filter, ...], n: int
) -> np.ndarray:
    mask = np.ones(n, dtype=bool)
    for f in filters:
        col = data[f.column]
        if f.op == "range":
            meta = schema[f.column]
            values = np.clip(col.astype(float), meta.lower, meta.upper)
            if f.low is not None:
                mask &= values >= f.low
            if f.high is not None:
                mask &= values <= f.high
        elif schema[f.column].kind == "boolean":
            mask &= np.isin(np.asarray(col, dtype=bool), np.array(f.values, dtype=bool))
        else:
            keys = schema[f.column].keys
            mask &= np.isin(_codes(col, keys), [keys.index(v) for v in f.values])
    return mask


def _codes(column: Any, keys: tuple[Any, ...]) -> np.ndarray:
    """Category numbers of a column, -1 outside the declared keys.

    A pandas Categorical whose categories are exactly the declared ones is used as it is (the
    service loads stored columns that way); anything else is matched against the declaration.
    """
    import pandas as pd

    if isinstance(column, pd.Categorical) and tuple(column.categories) == tuple(keys):
        return column.codes.astype(np.int64)
    return pd.Categorical(column, categories=list(keys)).codes.astype(np.int64)


def _group_index(
    data: dict[str, np.ndarray], schema: dict[str, ColumnMeta], group_by: tuple[str, ...], n: int
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Each row's group number, and the list of every declared group key (empty groups included)."""

    index = np.zeros(n, dtype=np.int64)
    radix = 1
    for name in reversed(group_by):
        meta = schema[name]
        keys = meta.keys
        if meta.kind == "boolean":
            codes = data[name].astype(bool).astype(np.int64)
        else:
            codes = _codes(data[name], keys)
        # Rows outside the declared keys cannot exist after the upload checks; drop them if they do.
        index = np.where(codes < 0, -1, np.where(index < 0, -1, index + codes * radix))
        radix *= len(keys)
    labels = (
        [dict(zip(group_by, combo)) for combo in product(*(schema[g].keys for g in group_by))] if group_by else [None]
    )
    return index, labels  # type: ignore[return-value]


def _group_sums(rows_in: np.ndarray, weights: np.ndarray | None, n_groups: int) -> np.ndarray:
    """Per-group sums (or counts when ``weights`` is None); a plain sum when there is one group."""
    if n_groups == 1:
        return np.array([float(len(rows_in)) if weights is None else float(weights.sum())])
    return np.bincount(rows_in, weights=weights, minlength=n_groups)


def _draw(part: Additive, value: float, rng: Any) -> float:
    return part.release(value, rng)


def run(
    data: dict[str, np.ndarray],
    schema: dict[str, ColumnMeta],
    query: Query,
    epsilon: float,
    delta: float = 0.0,
    *,
    random_state: Any = None,
) -> Release:
    """Answer ``query`` over the column arrays in ``data`` with (epsilon, delta)-DP noise.

    ``random_state`` None draws from the operating system's secure generator; an int or a
    ``random.Random`` makes the noise reproducible, for tests only. One generator serves every draw,
    so repeated draws within a job are independent.
    """
    random_state = make_rng(random_state)
    p = plan(schema, query, epsilon, delta)
    n = len(next(iter(data.values()))) if data else 0
    mask = _mask(data, schema, query.filters, n)
    # Missing values are dropped explicitly: a row with no value in a numeric column the query
    # reads takes no part in the answer (a per-row rule, so neighbouring datasets stay neighbours).
    # Uploads refuse missing values, so this only guards data that reached the engine otherwise.
    for name in {query.column, *(f.column for f in query.filters)} - {None}:
        if schema[name].kind == "numeric":
            mask &= ~np.isnan(np.asarray(data[name], dtype=float))
    gidx, labels = _group_index(data, schema, query.group_by, n)
    gidx = np.where(mask, gidx, -1)
    n_groups = len(labels)
    keep = gidx >= 0
    rows_in = gidx[keep]
    agg = query.aggregate
    meta = schema.get(query.column) if query.column else None
    results: list[GroupResult] = []
    note = "95% interval of the added noise"

    if agg == "count":
        counts = _group_sums(rows_in, None, n_groups)
        part = p.parts["count"]
        h = part.halfwidth()
        for g, label in enumerate(labels):
            noisy = max(0, int(round(_draw(part, int(counts[g]), random_state))))
            results.append(GroupResult(label, noisy, [max(0.0, noisy - h), noisy + h]))
    elif agg == "histogram":
        assert meta is not None
        part = p.parts["count"]
        h = part.halfwidth()
        col = data[meta.name][keep]
        if meta.kind == "numeric":
            values = np.clip(col.astype(float), meta.lower, meta.upper)
            edges = np.array(query.bins)
            b = np.searchsorted(edges, values, side="right") - 1
            b = np.where(values == edges[-1], len(edges) - 2, b)
            inside = (b >= 0) & (b < len(edges) - 1)
            bin_labels = [[float(edges[i]), float(edges[i + 1])] for i in range(len(edges) - 1)]
        else:
            keys = meta.keys
            if meta.kind == "boolean":
                b = col.astype(bool).astype(np.int64)
            else:
                b = _codes(col, keys)
            inside = b >= 0
            bin_labels = list(keys)
        nb = len(bin_labels)
        flat = np.bincount(rows_in[inside] * nb + b[inside], minlength=n_groups * nb).reshape(n_groups, nb)
        for g, label in enumerate(labels):
            counts = []
            for j in range(nb):
                noisy = max(0, int(round(_draw(part, int(flat[g, j]), random_state))))
                counts.append({"bin": bin_labels[j], "count": noisy, "ci95": [max(0.0, noisy - h), noisy + h]})
            results.append(GroupResult(label, counts, None))
    else:
        assert meta is not None and meta.lower is not None and meta.upper is not None
        values = np.clip(data[meta.name].astype(float)[keep], meta.lower, meta.upper)
        lower, upper = float(meta.lower), float(meta.upper)
        mid, radius = (lower + upper) / 2.0, (upper - lower) / 2.0
        if agg == "sum":
            part = p.parts["sum"]
            sums = _group_sums(rows_in, values, n_groups)
            h = part.halfwidth()
            for g, label in enumerate(labels):
                noisy = _draw(part, float(sums[g]), random_state)
                results.append(GroupResult(label, noisy, [noisy - h, noisy + h]))
        elif agg == "mean":
            counts = _group_sums(rows_in, None, n_groups)
            centred = _group_sums(rows_in, values - mid, n_groups)
            note = "approximate 95% interval from the noise scales and the noisy count (post-processing)"
            for g, label in enumerate(labels):
                c = _draw(p.parts["count"], float(counts[g]), random_state)
                s = _draw(p.parts["sum"], float(centred[g]), random_state)
                c_used = max(c, 1.0)
                m = float(np.clip(s / c_used, -radius, radius))
                h = mean_halfwidth(p, c_used, m)
                ci = [max(lower, mid + m - h), min(upper, mid + m + h)]
                results.append(GroupResult(label, mid + m, ci, {"count": c, "sum": s}))
        elif agg in ("variance", "std"):
            counts = _group_sums(rows_in, None, n_groups)
            c1 = _group_sums(rows_in, values - mid, n_groups)
            c2 = _group_sums(rows_in, (values - mid) ** 2, n_groups)
            note = "stated bound: each noisy part within its 98.3% interval, from the noisy count"
            for g, label in enumerate(labels):
                raw_count = _draw(p.parts["count"], float(counts[g]), random_state)
                s1 = _draw(p.parts["sum"], float(c1[g]), random_state)
                s2 = _draw(p.parts["sumsq"], float(c2[g]), random_state)
                c = max(raw_count, 1.0)
                m = float(np.clip(s1 / c, -radius, radius))
                var = float(np.clip(s2 / c - m * m, 0.0, radius**2))
                h = variance_halfwidth(p, c, radius)
                if agg == "std":
                    value = math.sqrt(var)
                    ci = [math.sqrt(max(0.0, var - h)), min(radius, math.sqrt(var + h))]
                else:
                    value = var
                    ci = [max(0.0, var - h), min(radius**2, var + h)]
                results.append(GroupResult(label, value, ci, {"count": raw_count, "sum": s1, "sumsq": s2}))
        elif agg == "quantile":
            order = np.argsort(rows_in, kind="stable") if n_groups > 1 else None
            note = "no value interval: the exponential mechanism's accuracy is stated in ranks"
            if order is not None:
                grouped_rows, grouped_vals = rows_in[order], values[order]
                bounds = np.searchsorted(grouped_rows, np.arange(n_groups + 1))
            for g, label in enumerate(labels):
                vals = values if order is None else grouped_vals[bounds[g] : bounds[g + 1]]
                vals = np.sort(vals, kind="quicksort")
                answer = [dp_quantile(vals, lower, upper, q, p.quantile_epsilon, random_state) for q in query.quantiles]
                # Quantiles are released in the order asked; sorting them is post-processing.
                results.append(GroupResult(label, answer, None))
    granularity = {name: part.granularity for name, part in p.parts.items()}
    if agg == "quantile":
        granularity = {"quantile": quantile_granularity(float(meta.lower), float(meta.upper))}  # type: ignore[union-attr]
    return Release(agg, results, p.mechanism, p.noise_scale, epsilon, delta, note, granularity)
