"""Which rows a query reads and which declared group each falls in: public rules applied per row.

Filters, the dropping of missing values and the group keys are all per-row maps fixed by the query
and the declaration, so neighbouring datasets stay neighbours after them and they spend no privacy.
Every declared group appears, empty or not: the list of groups never depends on the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np
import pandas as pd

from compute.engines.dp.query import ColumnMeta, Filter, Query


@dataclass(frozen=True)
class Selection:
    """The rows a query reads: ``keep`` over every row, and the group number of each kept row."""

    keep: np.ndarray
    groups: np.ndarray
    labels: list[dict[str, Any] | None]

    @property
    def n_groups(self) -> int:
        return len(self.labels)

    def sums(self, weights: np.ndarray | None = None) -> np.ndarray:
        """Per-group sums of ``weights`` over the kept rows (counts when None); one sum when ungrouped."""
        if self.n_groups == 1:
            return np.array([float(len(self.groups)) if weights is None else float(weights.sum())])
        return np.bincount(self.groups, weights=weights, minlength=self.n_groups)


def select(data: dict[str, Any], schema: dict[str, ColumnMeta], query: Query) -> Selection:
    """The rows that pass the query's filters and have a value in every numeric column it reads."""
    n = len(next(iter(data.values()))) if data else 0
    mask = filter_mask(data, schema, query.filters, n)
    # Missing values are dropped explicitly: a row with no value in a numeric column the query
    # reads takes no part in the answer (a per-row rule, so neighbouring datasets stay neighbours).
    # Uploads refuse missing values, so this only guards data that reached the engine otherwise.
    read = {f.column for f in query.filters} | ({query.column} if query.column is not None else set())
    for name in read:
        if schema[name].kind == "numeric":
            mask &= ~np.isnan(np.asarray(data[name], dtype=float))
    index, labels = group_index(data, schema, query.group_by, n)
    index = np.where(mask, index, -1)
    keep = index >= 0
    return Selection(keep, index[keep], labels)


def filter_mask(data: dict[str, Any], schema: dict[str, ColumnMeta], filters: tuple[Filter, ...], n: int) -> np.ndarray:
    """Whether each row passes every filter (numeric values compared after clipping to the bounds)."""
    mask = np.ones(n, dtype=bool)
    for f in filters:
        col = data[f.column]
        meta = schema[f.column]
        if f.op == "range":
            values = np.clip(col.astype(float), meta.lower, meta.upper)
            if f.low is not None:
                mask &= values >= f.low
            if f.high is not None:
                mask &= values <= f.high
        elif meta.kind == "boolean":
            mask &= np.isin(np.asarray(col, dtype=bool), np.array(f.values, dtype=bool))
        else:
            keys = meta.keys
            mask &= np.isin(category_codes(col, keys), [keys.index(v) for v in f.values])
    return mask


def category_codes(column: Any, keys: tuple[Any, ...]) -> np.ndarray:
    """Category numbers of a column, -1 outside the declared keys.

    A pandas Categorical whose categories are exactly the declared ones is used as it is (the
    service loads stored columns that way); anything else is matched against the declaration.
    """
    if isinstance(column, pd.Categorical) and tuple(column.categories) == tuple(keys):
        return column.codes.astype(np.int64)
    return pd.Categorical(column, categories=list(keys)).codes.astype(np.int64)


def key_codes(column: Any, meta: ColumnMeta) -> np.ndarray:
    """Each row's position among a categorical or boolean column's declared keys (-1 outside them)."""
    if meta.kind == "boolean":
        return np.asarray(column).astype(bool).astype(np.int64)
    return category_codes(column, meta.keys)


def group_index(
    data: dict[str, Any], schema: dict[str, ColumnMeta], group_by: tuple[str, ...], n: int
) -> tuple[np.ndarray, list[dict[str, Any] | None]]:
    """Each row's group number, and the list of every declared group key (empty groups included)."""
    index = np.zeros(n, dtype=np.int64)
    radix = 1
    for name in reversed(group_by):
        meta = schema[name]
        codes = key_codes(data[name], meta)
        # Rows outside the declared keys cannot exist after the upload checks; drop them if they do.
        index = np.where(codes < 0, -1, np.where(index < 0, -1, index + codes * radix))
        radix *= len(meta.keys)
    if not group_by:
        return index, [None]
    labels: list[dict[str, Any] | None] = [
        dict(zip(group_by, combo)) for combo in product(*(schema[g].keys for g in group_by))
    ]
    return index, labels
