"""The declared schema of an HE dataset, a CSV checked against it, and its columns as the bundle
encodes them (numeric columns clipped to their bounds, one 0/1 indicator per category).

This module knows nothing of the server: it checks the CSV with its own small copy of the server's
rules (missing columns, unparseable numbers, undeclared categories, missing values). pandas is
imported inside :func:`read_checked_csv` only, so that the ``cloakroom`` command starts without
loading it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cloakroom_client.protocol.errors import HEError

if TYPE_CHECKING:
    import pandas as pd

MAX_ROWS_LISTED = 5
TRUE_WORDS = {"true", "t", "yes", "y", "1"}
FALSE_WORDS = {"false", "f", "no", "n", "0"}


class SchemaMismatch(HEError):
    """The CSV does not fit the declared schema (or the schema itself is malformed)."""


@dataclass(frozen=True)
class ColumnDecl:
    name: str
    kind: str  # numeric | categorical | boolean
    lower: float | int | None = None
    upper: float | int | None = None
    categories: tuple[str, ...] = ()


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return value if math.isfinite(value) else None
    try:
        number = float(str(value))
    except ValueError:
        return None
    if not math.isfinite(number):
        return None
    return int(number) if number.is_integer() and "." not in str(value) else number


def _declared(name: str, kind: Any, item: Mapping, label: str) -> ColumnDecl | str:
    """One declared column, or the sentence saying what is wrong with it."""
    if kind == "numeric":
        lower, upper = _number(item.get("lower")), _number(item.get("upper"))
        if lower is None or upper is None:
            return f"{label}: a numeric column needs finite numbers 'lower' and 'upper'"
        if lower >= upper:
            return f"{label}: 'upper' must be greater than 'lower'"
        return ColumnDecl(name, kind, lower, upper)
    if kind == "categorical":
        cats = [str(c).strip() for c in (item.get("categories") or [])]
        if not cats:
            return f"{label}: a categorical column needs its list of categories declared"
        if len(set(cats)) != len(cats):
            return f"{label}: categories must be unique"
        if any(not c for c in cats):
            return f"{label}: categories may not be blank"
        return ColumnDecl(name, kind, categories=tuple(cats))
    if kind == "boolean":
        return ColumnDecl(name, kind)
    return f"{label}: kind must be numeric, categorical or boolean, not {kind!r}"


def parse_schema(schema: Any) -> list[ColumnDecl]:
    """The declared columns, checked as the API checks them. Accepts the list of columns, or a
    dataset metadata object with a ``columns`` list."""
    if isinstance(schema, Mapping) and "columns" in schema:
        schema = schema["columns"]
    if not isinstance(schema, list) or not schema:
        raise SchemaMismatch("the schema must be a non-empty list of columns {name, kind, lower, upper, categories}")
    problems: list[str] = []
    columns: list[ColumnDecl] = []
    seen: set[str] = set()
    for i, item in enumerate(schema):
        if not isinstance(item, Mapping):
            problems.append(f"schema entry {i}: must be an object")
            continue
        name = str(item.get("name") or "").strip()
        label = f"schema column {name!r}" if name else f"schema entry {i}"
        if not name:
            problems.append(f"{label}: a name is required")
            continue
        if name in seen:
            problems.append(f"{label}: declared twice")
            continue
        seen.add(name)
        declared = _declared(name, item.get("kind"), item, label)
        if isinstance(declared, str):
            problems.append(declared)
        else:
            columns.append(declared)
    if problems:
        raise SchemaMismatch(problems)
    return columns


def _describe(name: str, one: str, many: str, mask: np.ndarray, values: pd.Series) -> str:
    # Row numbers are 1-based data rows (the first line after the header is row 1), as the server says.
    rows = [int(i) + 1 for i in np.flatnonzero(mask)[:MAX_ROWS_LISTED]]
    count = int(mask.sum())
    more = ", …" if count > MAX_ROWS_LISTED else ""
    first = str(values[mask].iloc[0])[:40]
    what = one if count == 1 else many
    return (
        f"column {name!r}: {count} value{'s' if count != 1 else ''} {what} "
        f"(row{'s' if count != 1 else ''} {', '.join(map(str, rows))}{more}; first: {first!r})"
    )


def _typed_column(column: ColumnDecl, text: pd.Series) -> tuple[pd.Series | None, str | None, int]:
    """A column's stripped text as its declared type: the values (numeric ones clipped), or the
    sentence naming its first offending rows; and how many values were clipped."""
    import pandas as pd  # lazily: see the module's docstring

    empty = text.eq("").to_numpy()
    if empty.any():
        return None, _describe(column.name, "is missing", "are missing", empty, text), 0
    if column.kind == "numeric":
        values = pd.to_numeric(text, errors="coerce").astype(float)
        bad = ~np.isfinite(values.to_numpy())
        if bad.any():
            return None, _describe(column.name, "is not a finite number", "are not finite numbers", bad, text), 0
        outside = ((values < column.lower) | (values > column.upper)).to_numpy()
        return values.clip(lower=column.lower, upper=column.upper), None, int(outside.sum())
    if column.kind == "categorical":
        unknown = ~text.isin(set(column.categories)).to_numpy()
        if unknown.any():
            words = ("is not among the declared categories", "are not among the declared categories")
            return None, _describe(column.name, *words, unknown, text), 0
        return text, None, 0
    lowered = text.str.lower()
    is_true = lowered.isin(TRUE_WORDS).to_numpy()
    bad = ~(is_true | lowered.isin(FALSE_WORDS).to_numpy())
    if bad.any():
        words = (
            "is not a boolean (use true/false, yes/no or 1/0)",
            "are not booleans (use true/false, yes/no or 1/0)",
        )
        return None, _describe(column.name, *words, bad, text), 0
    return pd.Series(is_true, dtype=bool), None, 0


def read_checked_csv(csv_path: str | os.PathLike, columns: list[ColumnDecl]) -> tuple[dict[str, pd.Series], int, dict]:
    """Read the CSV (as text, so the schema decides every type) and check it against the schema.

    Returns the typed declared columns (numeric ones clipped to their bounds), the row count, and
    how many values were clipped per column. Raises SchemaMismatch naming each offending column and
    its first offending rows; undeclared columns are ignored and never encrypted.
    """
    import pandas as pd  # lazily: see the module's docstring

    try:
        frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig")
    except FileNotFoundError:
        raise HEError(f"{csv_path}: no such file")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise SchemaMismatch(f"{csv_path}: the CSV could not be parsed: {exc}")
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c.name for c in columns if c.name not in frame.columns]
    if missing:
        found = ", ".join(repr(c) for c in list(frame.columns)[:20]) or "none"
        raise SchemaMismatch(
            f"declared column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} not found "
            f"in the file (columns found: {found})"
        )
    if len(frame) == 0:
        raise SchemaMismatch("the file has a header but no data rows")

    problems: list[str] = []
    typed: dict[str, pd.Series] = {}
    clipped: dict[str, int] = {}
    for column in columns:
        raw = frame[column.name]
        if isinstance(raw, pd.DataFrame):
            problems.append(f"column {column.name!r} appears more than once in the file")
            continue
        values, problem, count = _typed_column(column, raw.reset_index(drop=True).astype(str).str.strip())
        if problem is not None:
            problems.append(problem)
            continue
        typed[column.name] = values
        if count:
            clipped[column.name] = count
    if problems:
        raise SchemaMismatch(problems)
    return typed, len(frame), clipped


def encoded_columns(columns: list[ColumnDecl], typed: dict[str, pd.Series]) -> Iterator[tuple[dict, np.ndarray]]:
    """Each column the bundle holds, with its float values, one at a time so that at most one
    expanded indicator column is in memory."""
    for column in columns:
        series = typed[column.name]
        if column.kind == "numeric":
            entry = {"name": column.name, "source": column.name, "kind": "numeric"}
            entry.update(lower=column.lower, upper=column.upper)
            yield entry, series.to_numpy(dtype=float)
        elif column.kind == "categorical":
            for category in column.categories:
                entry = {
                    "name": f"{column.name}={category}",
                    "source": column.name,
                    "kind": "indicator",
                    "category": category,
                    "lower": 0,
                    "upper": 1,
                }
                yield entry, series.eq(category).to_numpy(dtype=float)
        else:
            entry = {"name": column.name, "source": column.name, "kind": "boolean", "lower": 0, "upper": 1}
            yield entry, series.to_numpy(dtype=float)


def encoded_count(columns: list[ColumnDecl]) -> int:
    """How many encrypted columns the declared ones expand to (one per category of a categorical)."""
    return sum(len(c.categories) if c.kind == "categorical" else 1 for c in columns)
