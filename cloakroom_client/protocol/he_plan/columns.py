"""The parts of an HE query that name the bundle's columns: the columns themselves, a filter, the
buyer's public weights. Each is checked against the manifest's declared columns and raises a
:class:`~cloakroom_client.protocol.errors.QueryError` naming the offending field."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cloakroom_client.protocol.errors import QueryError


@dataclass(frozen=True)
class HeColumn:
    name: str
    kind: str  # numeric | indicator | boolean
    lower: float
    upper: float
    source: str
    category: str | None
    index: int  # position in the manifest, which names the ciphertext files

    @property
    def bound(self) -> float:
        return max(abs(self.lower), abs(self.upper))


def manifest_columns(manifest: Mapping[str, Any]) -> dict[str, HeColumn]:
    return {
        c["name"]: HeColumn(
            c["name"], c["kind"], float(c["lower"]), float(c["upper"]), c["source"], c.get("category"), i
        )
        for i, c in enumerate(manifest["columns"])
    }


def product_range(ranges: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """The range of a product of factors each within its ``(lo, hi)`` (interval arithmetic)."""
    lo, hi = 1.0, 1.0
    for a, b in ranges:
        corners = (lo * a, lo * b, hi * a, hi * b)
        lo, hi = min(corners), max(corners)
    return lo, hi


def query_column(columns: Mapping[str, HeColumn], name: Any, field_name: str, *, kinds: Sequence[str]) -> HeColumn:
    """The declared column a query field names, which must be of one of ``kinds``."""
    if not isinstance(name, str) or name not in columns:
        sources = sorted({c.source for c in columns.values() if c.kind == "indicator"})
        hint = f" (categorical columns are encoded as indicators such as {sources[0]}=...)" if sources else ""
        raise QueryError(field_name, f"Unknown column {name!r}{hint}.")
    column = columns[name]
    if column.kind not in kinds:
        raise QueryError(field_name, f"Column {name!r} is {column.kind}; this needs one of: {', '.join(kinds)}.")
    return column


def query_filter(columns: Mapping[str, HeColumn], raw: Any) -> HeColumn | None:
    """A filter is an indicator or boolean column: {"column": "sex=F"} or {"column": "sex", "category": "F"}."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or "column" not in raw or set(raw) - {"column", "category"}:
        raise QueryError("query.filter", 'Must be {"column": "<indicator or boolean>"} or {"column", "category"}.')
    name = raw["column"]
    if "category" in raw:
        name = f"{raw['column']}={raw['category']}"
        if name not in columns:
            raise QueryError(
                "query.filter.category", f"{raw['category']!r} is not a declared category of {raw['column']!r}."
            )
    return query_column(columns, name, "query.filter.column", kinds=("indicator", "boolean"))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _dense_weights(raw: list, max_weights: int) -> tuple[np.ndarray, None, Any]:
    if not raw:
        raise QueryError("query.weights", "Must not be empty.")
    if len(raw) > max_weights:
        raise QueryError("query.weights", f"At most {max_weights} dense weights; send larger ones sparse.")
    if not all(_is_number(w) for w in raw):
        raise QueryError("query.weights", "Every weight must be a number.")
    return np.asarray(raw, dtype=float), None, [float(w) for w in raw]


def _sparse_weights(raw: dict, max_weights: int) -> tuple[np.ndarray, np.ndarray, Any]:
    idx, vals = raw["indexes"], raw["values"]
    if not isinstance(idx, list) or not isinstance(vals, list) or len(idx) != len(vals) or not idx:
        raise QueryError("query.weights", "indexes and values must be non-empty lists of the same length.")
    if len(idx) > max_weights:
        raise QueryError("query.weights", f"At most {max_weights} weights.")
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in idx):
        raise QueryError("query.weights.indexes", "Must be whole numbers, 0 or more.")
    if len(set(idx)) != len(idx):
        raise QueryError("query.weights.indexes", "Must not repeat a row.")
    if not all(_is_number(w) for w in vals):
        raise QueryError("query.weights.values", "Every weight must be a number.")
    order = sorted(range(len(idx)), key=idx.__getitem__)
    indexes = np.asarray([idx[k] for k in order], dtype=np.int64)
    values = np.asarray([vals[k] for k in order], dtype=float)
    return values, indexes, {"indexes": indexes.tolist(), "values": [float(v) for v in values]}


def query_weights(raw: Any, rows: int, max_weights: int, max_weight: float) -> tuple[np.ndarray, Any, float]:
    """Dense ``[w0, w1, ...]`` or sparse ``{"indexes": [...], "values": [...]}`` weights: the dense
    weights by row, their canonical form and the largest absolute weight sent.

    Weights past the last row are ignored, so that a buyer of a dataset whose row count is private
    learns nothing about it from an error; the largest weight sent (returned last) sets the noise,
    so that the noise scale does not reveal it either.
    """
    indexes: np.ndarray | None
    if isinstance(raw, list):
        values, indexes, canonical = _dense_weights(raw, max_weights)
    elif isinstance(raw, dict) and set(raw) == {"indexes", "values"}:
        values, indexes, canonical = _sparse_weights(raw, max_weights)
    else:
        raise QueryError("query.weights", 'Must be a list of numbers or {"indexes": [...], "values": [...]}.')
    if not np.all(np.isfinite(values)):
        raise QueryError("query.weights", "Every weight must be finite.")
    if np.max(np.abs(values)) > max_weight:
        raise QueryError("query.weights", f"Every weight must lie in [-{max_weight:g}, {max_weight:g}].")
    if not np.any(values):
        raise QueryError("query.weights", "At least one weight must be non-zero.")
    dense = np.zeros(rows, dtype=float)
    if indexes is None:
        used = values[:rows]
        dense[: len(used)] = used
    else:
        keep = indexes < rows
        dense[indexes[keep]] = values[keep]
    return dense, canonical, float(np.max(np.abs(values)))
