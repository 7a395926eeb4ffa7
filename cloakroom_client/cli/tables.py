"""Plain-text tables for the terminal, and the short labels the commands print for a query.

Numbers are right-aligned and shown to four decimals (or four significant digits below 1), so a column
of results lines up; everything else is left-aligned and printed as it came.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from typing import Any


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def format_cell(value: Any) -> str:
    """One cell as text: None empty, booleans and integers as they are, other numbers shortened."""
    if value is None:
        return ""
    if isinstance(value, bool | int):
        return str(value)
    text = str(value)
    number = value if isinstance(value, float) else _number(text)
    if number is None or (isinstance(value, str) and text.lstrip("+-").isdigit()):
        return text
    if number == int(number) and abs(number) < 1e15:
        return str(int(number))
    return f"{number:.4f}" if abs(number) >= 1 else f"{number:.4g}"


def _is_numeric(text: str) -> bool:
    return text != "" and _number(text) is not None


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """The rows under their header, columns padded to their widest cell, with a rule under the header."""
    cells = [[format_cell(v) for v in row] for row in rows]
    widths = [len(str(h)) for h in header]
    for row in cells:
        for i, cell in enumerate(row[: len(widths)]):
            widths[i] = max(widths[i], len(cell))
    numeric = [bool(cells) and all(_is_numeric(r[i]) or r[i] == "" for r in cells) for i in range(len(widths))]

    def line(values: Sequence[str]) -> str:
        padded = [v.rjust(w) if numeric[i] else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths))]
        return "  ".join(padded).rstrip()

    out = [line([str(h) for h in header]), "  ".join("-" * w for w in widths)]
    out.extend(line(row) for row in cells)
    return "\n".join(out)


def csv_table(text: str) -> str:
    """A result downloaded as CSV (``GET /jobs/{id}/download/?format=csv``), as a table."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return "(no rows)"
    return format_table(rows[0], rows[1:])


def key_value_table(pairs: Sequence[tuple[str, Any]]) -> str:
    """Two columns, name and value, without a header: for one object such as an estimate."""
    width = max((len(name) for name, _ in pairs), default=0)
    return "\n".join(f"{name.ljust(width)}  {format_cell(value)}" for name, value in pairs)


def _describe_filters(query: dict) -> str:
    flt = query.get("filter")
    if isinstance(flt, dict) and flt.get("column") is not None:
        return f" where {flt.get('column')}" + (f"={flt['category']}" if flt.get("category") is not None else "")
    filters = query.get("filters")
    if isinstance(filters, list) and filters:
        names = [str(f.get("column")) for f in filters if isinstance(f, dict)]
        return " where " + ", ".join(names)
    return ""


def describe_query(query: Any) -> str:
    """A short label for a query, e.g. "mean of bmi by sex" (never the buyer's weights)."""
    if not isinstance(query, dict):
        return "query"
    label = str(query.get("aggregate", "query"))
    if label == "regression":
        columns = query.get("columns") if isinstance(query.get("columns"), list) else []
        label += f" of {query.get('target')} on {', '.join(map(str, columns))}"
    elif query.get("column") is not None:
        label += f" of {query.get('column')}"
        if query.get("category") is not None:
            label += f"={query.get('category')}"
    group_by = query.get("group_by")
    if isinstance(group_by, list) and group_by:
        label += " by " + ", ".join(map(str, group_by))
    return label + _describe_filters(query)


def result_table(result: dict, query: Any) -> str:
    """A result as the API returns it (``{"aggregate", "groups"}``), as a table: one row per group,
    and per bin or quantile, as ``cloakroom result`` shows a downloaded one."""
    groups = result.get("groups") or []
    keys = list((groups[0].get("key") or {}).keys()) if groups else []
    aggregate = result.get("aggregate")
    rows: list[list[Any]] = []
    if aggregate == "histogram":
        header = [*keys, "bin", "count", "ci95_low", "ci95_high"]
        for g in groups:
            for b in g["value"]:
                label = f"[{b['bin'][0]}, {b['bin'][1]})" if isinstance(b["bin"], list) else b["bin"]
                rows.append([*(g["key"] or {}).values(), label, b["count"], *b["ci95"]])
    elif aggregate == "quantile":
        header = [*keys, "quantile", "value"]
        quantiles = query.get("quantiles", []) if isinstance(query, dict) else []
        for g in groups:
            rows.extend([*(g["key"] or {}).values(), q, v] for q, v in zip(quantiles, g["value"]))
    else:
        header = [*keys, "value", "ci95_low", "ci95_high"]
        for g in groups:
            rows.append([*(g["key"] or {}).values(), g["value"], *(g.get("ci95") or [None, None])])
    return format_table(header, rows)
