"""A dummy table: fake rows made from a dataset's declared schema alone, for trying queries for free.

A buyer learns the query language on it before spending any budget (Lomas and PySyft offer the
same). Nothing here reads the owner's data, its file or its private row count: every value comes
from the declaration and a seed, so the table says nothing about the real data, and the same
dataset at the same version always gives the same table.

* numeric columns: uniform within the declared bounds, rounded to a few significant digits of the
  bounds' width (and still inside them);
* categorical columns: uniform over the declared categories;
* boolean columns: a fair coin.

The row count is :data:`DEFAULT_ROWS`, or the row count the owner made public (at most
:data:`MAX_ROWS`); a private row count is never used, as it would leak through the fake table.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from compute.engines.dp.query import ColumnMeta

DEFAULT_ROWS = 1_000
MAX_ROWS = 100_000
NOTE = "fake data generated from the declared schema; says nothing about the real data"
ROWS_PUBLIC = "the public row count"
ROWS_DEFAULT = f"a fixed {DEFAULT_ROWS:,} rows: the real row count is private"
ROWS_CAPPED = f"the public row count, capped at {MAX_ROWS:,} rows for the fake table"


@dataclass(frozen=True)
class DummyTable:
    """Fake column arrays in the engine's form (floats, bools, Categoricals of the declared keys)."""

    columns: dict[str, Any]
    rows: int
    rows_basis: str


def dummy_rows(*, row_count_public: bool, row_count: int) -> tuple[int, str]:
    """How many fake rows to make, and why: the public row count (capped), else the default.

    ``row_count`` is read only when ``row_count_public`` is true.
    """
    if not row_count_public or row_count < 1:
        return DEFAULT_ROWS, ROWS_DEFAULT
    if row_count > MAX_ROWS:
        return MAX_ROWS, ROWS_CAPPED
    return int(row_count), ROWS_PUBLIC


def column_seed(dataset_id: int, version: int, column: str) -> int:
    """A column's own seed: a hash of the dataset's id, its version and the column's name, so each
    column is reproducible and independent of the columns declared beside it."""
    digest = hashlib.sha256(f"cloakroom-dummy\0{dataset_id}\0{version}\0{column}".encode()).digest()
    return int.from_bytes(digest[:16], "big")


def decimals_for(lower: float, upper: float) -> int:
    """Digits after the point that show about four significant digits of the bounds' width."""
    width = upper - lower
    if width <= 0 or not math.isfinite(width):
        return 2
    return int(min(max(3 - math.floor(math.log10(width)), 0), 12))


def fake_column(meta: ColumnMeta, rows: int, rng: Any) -> Any:  # rng: a numpy Generator
    """One column of fake values, within what ``meta`` declares. Numbers are uniform over a decimal grid
    of the bounds (about four significant digits of their width), drawn as whole steps."""
    if meta.kind == "numeric":
        lower, upper = meta.bounds()
        decimals = decimals_for(lower, upper)
        steps = max(int(round((upper - lower) * 10**decimals)), 1)
        values = np.round(lower + rng.integers(0, steps + 1, rows) * ((upper - lower) / steps), decimals)
        return np.clip(values, lower, upper)
    if meta.kind == "boolean":
        return rng.integers(0, 2, rows).astype(bool)
    categories = list(meta.categories)
    if not categories:
        raise ValueError(f"column {meta.name!r} declares no categories")
    codes = rng.integers(0, len(categories), rows)
    return pd.Categorical.from_codes(codes, categories=categories)


def dummy_table(
    schema: Mapping[str, ColumnMeta], *, dataset_id: int, version: int, rows: int, basis: str
) -> DummyTable:
    """The fake table of a dataset at a version: the same ``(dataset_id, version)`` gives the same rows."""
    if not 0 <= rows <= MAX_ROWS:
        raise ValueError(f"a dummy table has 0 to {MAX_ROWS} rows")
    columns = {
        name: fake_column(meta, rows, np.random.default_rng(column_seed(dataset_id, version, name)))
        for name, meta in schema.items()
    }
    return DummyTable(columns=columns, rows=rows, rows_basis=basis)


def cell_text(meta: ColumnMeta, value: Any) -> str:
    """A fake value as text: ``true``/``false``, a number with the column's decimals, or the category."""
    if meta.kind == "boolean":
        return "true" if value else "false"
    if meta.kind == "numeric":
        return f"{float(value):.{decimals_for(*meta.bounds())}f}"
    return str(value)


def table_lines(schema: Mapping[str, ColumnMeta], table: DummyTable) -> Iterator[list[str]]:
    """The fake table as text rows: the header (the declared column order), then one row per fake row."""
    yield list(schema)
    columns = [(schema[name], np.asarray(table.columns[name])) for name in schema]
    for i in range(table.rows):
        yield [cell_text(meta, values[i]) for meta, values in columns]
