"""The DP query language: the declared schema, a query and its check against that schema.

A query body is a JSON object. :func:`parse_query` checks it part by part (the aggregate, its
column, quantiles, bins, filters and group-by), in that order, so that the first error a buyer
sees names the first offending field. Every limit comes from the declaration or from the
constants below, never from the data.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from cloakroom_client.protocol.errors import QueryError

AGGREGATES = ("count", "sum", "mean", "variance", "std", "quantile", "histogram")
NUMERIC_AGGREGATES = ("sum", "mean", "variance", "std", "quantile")
QUERY_FIELDS = frozenset({"aggregate", "column", "quantiles", "bins", "filters", "group_by"})
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

    def bounds(self) -> tuple[float, float]:
        """The declared clipping bounds of a numeric column (the upload checks guarantee both)."""
        if self.lower is None or self.upper is None:
            raise ValueError(f"column {self.name!r} declares no bounds")
        return self.lower, self.upper


@dataclass(frozen=True)
class Filter:
    column: str
    op: str  # eq | in | range
    values: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None

    def canonical(self) -> dict[str, Any]:
        """The filter as stored: an ``in`` filter's values deduplicated and in a fixed order."""
        if self.op == "range":
            return {"column": self.column, "op": "range", "low": self.low, "high": self.high}
        if self.op == "eq":
            return {"column": self.column, "op": "eq", "value": self.values[0]}
        values = sorted(set(self.values), key=lambda v: (type(v).__name__, str(v)))
        return {"column": self.column, "op": "in", "values": values}


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
        filters = sorted((f.canonical() for f in self.filters), key=lambda f: json.dumps(f, sort_keys=True))
        out: dict[str, Any] = {"aggregate": self.aggregate, "filters": filters, "group_by": list(self.group_by)}
        if self.column is not None:
            out["column"] = self.column
        if self.quantiles:
            out["quantiles"] = list(self.quantiles)
        if self.bins:
            out["bins"] = list(self.bins)
        return out


def parse_query(raw: Any, schema: dict[str, ColumnMeta], *, field_prefix: str = "query") -> Query:
    """Check a query body against the schema and return it as a :class:`Query`.

    Raises :class:`QueryError` naming the offending field.
    """
    p = field_prefix
    if not isinstance(raw, dict):
        raise QueryError(p, "Must be an object.")
    unknown = set(raw) - QUERY_FIELDS
    if unknown:
        raise QueryError(f"{p}.{sorted(unknown)[0]}", "Unknown field.")
    aggregate = raw.get("aggregate")
    if aggregate not in AGGREGATES:
        raise QueryError(f"{p}.aggregate", f"Must be one of: {', '.join(AGGREGATES)}.")
    meta = parse_column(raw.get("column"), aggregate, schema, p)
    return Query(
        aggregate=aggregate,
        column=raw.get("column") if meta is not None else None,
        quantiles=parse_quantiles(raw.get("quantiles"), aggregate, p),
        bins=parse_bins(raw.get("bins"), aggregate, meta, p),
        filters=parse_filters(raw.get("filters"), schema, p),
        group_by=parse_group_by(raw.get("group_by"), schema, p),
    )


def needs_delta(query: Query) -> bool:
    """Whether a delta may be given: everything but quantiles can use the Gaussian mechanism."""
    return query.aggregate != "quantile"


# ---------------------------------------------------------------------------------------------
# The parts of a query, each checked on its own


def finite(value: Any, field_name: str) -> float:
    """``value`` as a float, or a QueryError unless it is a finite JSON number (not a boolean)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise QueryError(field_name, "Must be a number.")
    if not math.isfinite(value):
        raise QueryError(field_name, "Must be a finite number.")
    return float(value)


def parse_column(column: Any, aggregate: str, schema: dict[str, ColumnMeta], p: str) -> ColumnMeta | None:
    """The declared column an aggregate reads; None for a count, which reads none."""
    if aggregate == "count":
        if column is not None:
            raise QueryError(f"{p}.column", "A count takes no column; use filters to count a subset.")
        return None
    if not isinstance(column, str) or not column:
        raise QueryError(f"{p}.column", f"A {aggregate} needs a column.")
    meta = schema.get(column)
    if meta is None:
        raise QueryError(f"{p}.column", f"Unknown column {column!r}.")
    if aggregate in NUMERIC_AGGREGATES and meta.kind != "numeric":
        raise QueryError(f"{p}.column", f"A {aggregate} needs a numeric column; '{column}' is {meta.kind}.")
    return meta


def parse_quantiles(raw: Any, aggregate: str, p: str) -> tuple[float, ...]:
    """The quantiles a quantile query asks for, each in [0, 1]; nothing for any other query."""
    if aggregate != "quantile":
        if raw not in (None, []):
            raise QueryError(f"{p}.quantiles", "Only a quantile query takes quantiles.")
        return ()
    if not isinstance(raw, list) or not raw:
        raise QueryError(f"{p}.quantiles", "Give a list of quantiles between 0 and 1, e.g. [0.5].")
    if len(raw) > MAX_QUANTILES:
        raise QueryError(f"{p}.quantiles", f"At most {MAX_QUANTILES} quantiles per job.")
    quantiles = tuple(finite(q, f"{p}.quantiles.{i}") for i, q in enumerate(raw))
    for i, q in enumerate(quantiles):
        if not 0 <= q <= 1:
            raise QueryError(f"{p}.quantiles.{i}", "Must be between 0 and 1.")
    return quantiles


def parse_bins(raw: Any, aggregate: str, meta: ColumnMeta | None, p: str) -> tuple[float, ...]:
    """A histogram's bin edges over a numeric column; nothing for categories, which are the bins."""
    if aggregate != "histogram":
        if raw not in (None, []):
            raise QueryError(f"{p}.bins", "Only a histogram takes bins.")
        return ()
    if meta is None:  # pragma: no cover - parse_column gives every histogram a column
        raise QueryError(f"{p}.column", "A histogram needs a column.")
    if meta.kind == "numeric":
        return numeric_bins(raw, meta, p)
    if raw not in (None, []):
        raise QueryError(f"{p}.bins", f"'{meta.name}' is {meta.kind}: its bins are its declared categories.")
    return ()


def numeric_bins(raw: Any, meta: ColumnMeta, p: str) -> tuple[float, ...]:
    """Edges from a number of equal-width bins over the declared bounds, or from a list of edges."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        if not 1 <= raw <= MAX_BINS:
            raise QueryError(f"{p}.bins", f"Between 1 and {MAX_BINS} bins.")
        lower, upper = meta.bounds()
        return tuple(float(x) for x in np.linspace(lower, upper, raw + 1))
    if isinstance(raw, list) and len(raw) >= 2:
        if len(raw) > MAX_BINS + 1:
            raise QueryError(f"{p}.bins", f"At most {MAX_BINS} bins.")
        bins = tuple(finite(b, f"{p}.bins.{i}") for i, b in enumerate(raw))
        if any(b2 <= b1 for b1, b2 in zip(bins, bins[1:])):
            raise QueryError(f"{p}.bins", "Bin edges must be strictly increasing.")
        return bins
    raise QueryError(
        f"{p}.bins",
        "Give a number of equal-width bins over the declared bounds, or a list of at least two edges.",
    )


def parse_filters(raw: Any, schema: dict[str, ColumnMeta], p: str) -> tuple[Filter, ...]:
    """The filters, all of which a row must pass: a range on a numeric column, eq or in otherwise."""
    raw_filters = raw or []
    if not isinstance(raw_filters, list):
        raise QueryError(f"{p}.filters", "Must be a list.")
    return tuple(parse_filter(f, schema, f"{p}.filters.{i}") for i, f in enumerate(raw_filters))


def parse_filter(raw: Any, schema: dict[str, ColumnMeta], fp: str) -> Filter:
    if not isinstance(raw, dict):
        raise QueryError(fp, "Must be an object with column, op and value(s) or low/high.")
    name = raw.get("column")
    meta = schema.get(name) if isinstance(name, str) else None
    if meta is None:
        raise QueryError(f"{fp}.column", f"Unknown column {name!r}.")
    if meta.kind == "numeric":
        return range_filter(raw, meta, fp)
    return key_filter(raw, meta, fp)


def range_filter(raw: dict[str, Any], meta: ColumnMeta, fp: str) -> Filter:
    """A numeric column's filter: the rows whose clipped value lies in [low, high], either end open."""
    if raw.get("op") != "range":
        raise QueryError(f"{fp}.op", f"'{meta.name}' is numeric: filter it with op 'range' and low/high.")
    low = None if raw.get("low") is None else finite(raw.get("low"), f"{fp}.low")
    high = None if raw.get("high") is None else finite(raw.get("high"), f"{fp}.high")
    if low is None and high is None:
        raise QueryError(f"{fp}.low", "A range needs low, high or both.")
    if low is not None and high is not None and low > high:
        raise QueryError(f"{fp}.high", "Must not be below low.")
    return Filter(column=meta.name, op="range", low=low, high=high)


def key_filter(raw: dict[str, Any], meta: ColumnMeta, fp: str) -> Filter:
    """A categorical or boolean column's filter: one declared key (eq) or several (in)."""
    op = raw.get("op")
    if op == "eq":
        if "value" not in raw:
            raise QueryError(f"{fp}.value", "An 'eq' filter needs a value.")
        return Filter(column=meta.name, op="eq", values=(declared_key(meta, raw["value"], f"{fp}.value"),))
    if op == "in":
        values = raw.get("values")
        if not isinstance(values, list) or not values:
            raise QueryError(f"{fp}.values", "An 'in' filter needs a non-empty list of values.")
        keys = tuple(declared_key(meta, v, f"{fp}.values.{j}") for j, v in enumerate(values))
        return Filter(column=meta.name, op="in", values=keys)
    raise QueryError(f"{fp}.op", f"'{meta.name}' is {meta.kind}: use op 'eq' or 'in'.")


def declared_key(meta: ColumnMeta, value: Any, field_name: str) -> Any:
    """``value`` if it is one of the column's declared keys (true or false for a boolean column)."""
    if meta.kind == "boolean":
        if isinstance(value, bool):
            return value
        raise QueryError(field_name, f"Column '{meta.name}' is boolean: use true or false.")
    if not isinstance(value, str) or value not in meta.categories:
        shown = ", ".join(repr(c) for c in meta.categories[:10])
        raise QueryError(field_name, f"{value!r} is not a declared category of '{meta.name}' (declared: {shown}).")
    return value


def parse_group_by(raw: Any, schema: dict[str, ColumnMeta], p: str) -> tuple[str, ...]:
    """The group columns: distinct categorical or boolean columns, at most MAX_GROUPS groups in all."""
    group_by = raw or []
    if not isinstance(group_by, list):
        raise QueryError(f"{p}.group_by", "Must be a list of column names.")
    n_groups = 1
    for i, g in enumerate(group_by):
        meta = schema.get(g) if isinstance(g, str) else None
        if meta is None:
            raise QueryError(f"{p}.group_by.{i}", f"Unknown column {g!r}.")
        if meta.kind == "numeric":
            raise QueryError(f"{p}.group_by.{i}", f"'{g}' is numeric; group by categorical or boolean columns only.")
        if group_by.count(g) > 1:
            raise QueryError(f"{p}.group_by.{i}", f"'{g}' is listed twice.")
        n_groups *= len(meta.keys)
    if n_groups > MAX_GROUPS:
        raise QueryError(f"{p}.group_by", f"That makes {n_groups} groups; the limit is {MAX_GROUPS}.")
    return tuple(group_by)
