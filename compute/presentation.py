"""Turning a job's canonical query and its released result into what the pages show.

Pure functions on the stored JSON, no database access. Charts are returned as geometry in
percentages of the chart's width, so the template draws an inline SVG that stretches to any screen
width without distorting its dots or its text.
"""

from __future__ import annotations

import math
from typing import Any

AGGREGATE_NAMES = {
    "count": "Count",
    "sum": "Sum",
    "mean": "Mean",
    "variance": "Variance",
    "std": "Standard deviation",
    "quantile": "Quantiles",
    "histogram": "Histogram",
}
# Horizontal room kept free on both sides of a chart so that dots and whiskers at the ends show whole.
_LEFT, _RIGHT = 3.0, 97.0
# An interval chart draws its data in a narrower band: the labels of the whisker ends run outwards
# from them and need about 60 px (a number such as "12,345.67") on a 340 px phone screen.
_INTERVAL_LEFT, _INTERVAL_RIGHT = 18.0, 82.0
# The height of one group's row in an interval chart: its label, its whisker, the numbers of its ends.
_INTERVAL_ROW = 60


def fmt(value: Any) -> str:
    """A number for reading: integers as they are, others to a sensible precision."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or (math.isfinite(value) and float(value).is_integer() and abs(value) < 1e15):
        return f"{int(value):,}"
    if not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:,.2f}"
    if magnitude >= 1:
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return f"{value:.4g}"


def _key_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def group_label(key: dict[str, Any] | None) -> str:
    if not key:
        return "All rows"
    return ", ".join(f"{name} = {_key_text(value)}" for name, value in key.items())


def _filter_text(f: dict[str, Any]) -> str:
    if f.get("op") == "range":
        low, high = f.get("low"), f.get("high")
        if low is not None and high is not None:
            return f"{f['column']} between {fmt(low)} and {fmt(high)}"
        if low is not None:
            return f"{f['column']} ≥ {fmt(low)}"
        return f"{f['column']} ≤ {fmt(high)}"
    if f.get("op") == "in":
        return f"{f['column']} in {{{', '.join(_key_text(v) for v in f.get('values', []))}}}"
    return f"{f['column']} = {_key_text(f.get('value'))}"


def describe_query(spec: dict[str, Any]) -> str:
    """One line a person can read: "mean of age where region = north, grouped by member"."""
    aggregate = spec.get("aggregate", "")
    if aggregate == "count":
        text = "count of rows"
    elif aggregate == "quantile":
        text = f"quantiles {', '.join(fmt(q) for q in spec.get('quantiles', []))} of {spec.get('column')}"
    elif aggregate == "histogram":
        bins = spec.get("bins") or []
        text = f"histogram of {spec.get('column')}" + (f" in {len(bins) - 1} bins" if bins else "")
    else:
        text = f"{AGGREGATE_NAMES.get(aggregate, aggregate).lower()} of {spec.get('column')}"
    filters = spec.get("filters") or []
    if filters:
        text += " where " + " and ".join(_filter_text(f) for f in filters)
    if spec.get("group_by"):
        text += ", grouped by " + ", ".join(spec["group_by"])
    return text


def _scale(low: float, high: float, left: float = _LEFT, right: float = _RIGHT):
    """A map from the data range onto the chart's horizontal percentages, ``left`` to ``right``."""
    if not (math.isfinite(low) and math.isfinite(high)):
        low, high = 0.0, 1.0
    if high <= low:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    # A little room around the data, so that the ends of an interval stand clear of the axis ends.
    pad = (high - low) * 0.05
    low, high = low - pad, high + pad
    span = high - low

    def x(value: float) -> float:
        return round(left + (value - low) / span * (right - left), 3)

    return x, low, high


def result_view(result: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """Rows for the result table and geometry for its chart, per kind of aggregate."""
    aggregate = result.get("aggregate")
    groups = result.get("groups") or []
    if aggregate == "histogram":
        return {"kind": "histogram", "groups": [_histogram(g) for g in groups]}
    if aggregate == "quantile":
        return _quantiles(groups, spec)
    return _intervals(groups)


def _intervals(groups: list[dict[str, Any]]) -> dict[str, Any]:
    """One row per group: a line from the interval's low end to its high end, a dot at the value,
    and each end labelled with the interval's own number, the very string the table prints.

    There is no axis with ticks: ticks at the axis ends sat under the whisker ends and read as the
    interval although they were the padded range of the chart. The low end's label runs leftwards
    from its whisker and the high end's rightwards, so the two never overlap however narrow the
    interval; the data are drawn between _INTERVAL_LEFT and _INTERVAL_RIGHT to leave them room.
    """
    points = []
    for g in groups:
        points += [g["value"], *(g.get("ci95") or [])]
    x, _, _ = _scale(min(points, default=0.0), max(points, default=1.0), _INTERVAL_LEFT, _INTERVAL_RIGHT)
    rows = []
    for i, g in enumerate(groups):
        ci = g.get("ci95")
        ends = ci or [g["value"], g["value"]]
        top = i * _INTERVAL_ROW
        rows.append(
            {
                "label": group_label(g.get("key")),
                "value": fmt(g["value"]),
                "has_interval": bool(ci),
                "low": fmt(ci[0]) if ci else fmt(None),
                "high": fmt(ci[1]) if ci else fmt(None),
                "x_low": x(ends[0]),
                "x_high": x(ends[1]),
                "x_value": x(g["value"]),
                "y_label": top + 14,
                "y_line": top + 30,
                "y_ends": top + 50,
            }
        )
    return {"kind": "interval", "rows": rows, "height": len(rows) * _INTERVAL_ROW}


def _histogram(group: dict[str, Any]) -> dict[str, Any]:
    """Bars for the noisy counts, each with a whisker over its 95% interval, scaled to this group."""
    bins = group.get("value") or []
    top = max([b["ci95"][1] for b in bins] + [b["count"] for b in bins] + [1.0])
    height, base = 150.0, 160.0
    n = max(len(bins), 1)
    slot = (_RIGHT - _LEFT) / n
    bars = []
    for j, b in enumerate(bins):
        label = b["bin"]
        text = f"{fmt(label[0])} to {fmt(label[1])}" if isinstance(label, list) else _key_text(label)
        h = b["count"] / top * height
        bars.append(
            {
                "label": text,
                "count": fmt(b["count"]),
                "low": fmt(b["ci95"][0]),
                "high": fmt(b["ci95"][1]),
                "x": round(_LEFT + j * slot + slot * 0.1, 3),
                "width": round(slot * 0.8, 3),
                "x_mid": round(_LEFT + (j + 0.5) * slot, 3),
                "cap_left": round(_LEFT + (j + 0.5) * slot - slot * 0.15, 3),
                "cap_right": round(_LEFT + (j + 0.5) * slot + slot * 0.15, 3),
                "y": round(base - h, 2),
                "h": round(h, 2),
                "y_low": round(base - b["ci95"][0] / top * height, 2),
                "y_high": round(base - b["ci95"][1] / top * height, 2),
            }
        )
    numeric = bool(bins) and isinstance(bins[0]["bin"], list)
    return {
        "label": group_label(group.get("key")),
        "bars": bars,
        "top": fmt(top),
        "base": base,
        "numeric": numeric,
        "first_edge": fmt(bins[0]["bin"][0]) if numeric else "",
        "last_edge": fmt(bins[-1]["bin"][1]) if numeric else "",
        # Category names fit under their bars only when there are few of them.
        "show_bar_labels": not numeric and len(bins) <= 8,
    }


def _quantiles(groups: list[dict[str, Any]], spec: dict[str, Any]) -> dict[str, Any]:
    """One row per group with a dot per quantile, on an axis shared by the chart."""
    quantiles = spec.get("quantiles") or []
    values = [v for g in groups for v in (g.get("value") or [])]
    x, low, high = _scale(min(values, default=0.0), max(values, default=1.0))
    rows = []
    for i, g in enumerate(groups):
        rows.append(
            {
                "label": group_label(g.get("key")),
                "y_label": i * 44 + 14,
                "y_line": i * 44 + 30,
                "points": [{"q": fmt(q), "value": fmt(v), "x": x(v)} for q, v in zip(quantiles, g.get("value") or [])],
            }
        )
    return {
        "kind": "quantile",
        "rows": rows,
        "quantiles": [fmt(q) for q in quantiles],
        "height": len(rows) * 44 + 22,
        "axis_y": len(rows) * 44 + 4,
        "axis_text_y": len(rows) * 44 + 19,
        "axis_low": fmt(low),
        "axis_high": fmt(high),
    }


def cumulative_text(bound: dict[str, Any] | None, of: str) -> str:
    """A receipt's cumulative guarantee in words: "ε 3.21 at δ 1e-05 by zCDP: 12.3% of the allotment used"."""
    if not bound:
        return ""
    delta = bound.get("delta") or 0
    at = f" at δ {delta:g}" if delta else " (δ 0)"
    return (
        f"ε {fmt(float(bound['epsilon']))}{at} by {bound['composition']}: {float(bound['share_used']):.1%} of {of} used"
    )
