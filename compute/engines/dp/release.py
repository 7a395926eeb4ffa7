"""Running a query: the noisy measurements of each group and the answer post-processed from them.

Every measurement is drawn by its part's grid mechanism from the query's plan (:mod:`.budget`);
everything after the draw (rounding a count, dividing a noisy sum by a noisy count, clipping to the
bounds, the intervals) is post-processing and spends nothing more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cloakroom_client.protocol.noise import make_rng
from compute.engines.dp.accuracy import mean_halfwidth, variance_halfwidth
from compute.engines.dp.budget import Plan, plan
from compute.engines.dp.quantile import dp_quantile, quantile_granularity
from compute.engines.dp.query import ColumnMeta, Query
from compute.engines.dp.select import Selection, key_codes, select

NOISE_NOTE = "95% interval of the added noise"
MEAN_NOTE = "approximate 95% interval from the noise scales and the noisy count (post-processing)"
VARIANCE_NOTE = "stated bound: each noisy part within its 98.3% interval, from the noisy count"
QUANTILE_NOTE = "no value interval: the exponential mechanism's accuracy is stated in ranks"


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


def run(
    data: dict[str, Any],
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
    rng = make_rng(random_state)
    p = plan(schema, query, epsilon, delta)
    groups, note = measure(data, schema, query, p, rng)
    if query.aggregate == "quantile":
        granularity = {"quantile": quantile_granularity(*schema[str(query.column)].bounds())}
    else:
        granularity = {name: part.granularity for name, part in p.parts.items()}
    return Release(query.aggregate, groups, p.mechanism, p.noise_scale, epsilon, delta, note, granularity)


def measure(
    data: dict[str, Any], schema: dict[str, ColumnMeta], query: Query, p: Plan, rng: Any
) -> tuple[list[GroupResult], str]:
    """Every group's answer to ``query`` under plan ``p``, and the note that says what its interval is."""
    rows = select(data, schema, query)
    agg = query.aggregate
    if agg == "count":
        return count_groups(rows, p, rng), NOISE_NOTE
    meta = schema[str(query.column)]
    column = data[meta.name][rows.keep]
    if agg == "histogram":
        return histogram_groups(rows, column, meta, query, p, rng), NOISE_NOTE
    lower, upper = (float(b) for b in meta.bounds())
    values = np.clip(column.astype(float), lower, upper)
    if agg == "sum":
        return sum_groups(rows, values, p, rng), NOISE_NOTE
    if agg == "mean":
        return mean_groups(rows, values, lower, upper, p, rng), MEAN_NOTE
    if agg in ("variance", "std"):
        return variance_groups(rows, values, lower, upper, p, rng, std=agg == "std"), VARIANCE_NOTE
    return quantile_groups(rows, values, lower, upper, query.quantiles, p.quantile_epsilon, rng), QUANTILE_NOTE


# ---------------------------------------------------------------------------------------------
# One function per aggregate: the measurements of every group, then their post-processing


def count_groups(rows: Selection, p: Plan, rng: Any) -> list[GroupResult]:
    counts = rows.sums()
    part = p.parts["count"]
    h = part.halfwidth()
    results = []
    for g, label in enumerate(rows.labels):
        noisy = max(0, int(round(part.release(int(counts[g]), rng))))
        results.append(GroupResult(label, noisy, [max(0.0, noisy - h), noisy + h]))
    return results


def histogram_groups(
    rows: Selection, column: np.ndarray, meta: ColumnMeta, query: Query, p: Plan, rng: Any
) -> list[GroupResult]:
    """One noisy count per bin (declared edges, or declared categories) in every group."""
    part = p.parts["count"]
    h = part.halfwidth()
    if meta.kind == "numeric":
        values = np.clip(column.astype(float), meta.lower, meta.upper)
        edges = np.array(query.bins)
        b = np.searchsorted(edges, values, side="right") - 1
        b = np.where(values == edges[-1], len(edges) - 2, b)
        inside = (b >= 0) & (b < len(edges) - 1)
        bin_labels: list[Any] = [[float(edges[i]), float(edges[i + 1])] for i in range(len(edges) - 1)]
    else:
        b = key_codes(column, meta)
        inside = b >= 0
        bin_labels = list(meta.keys)
    nb = len(bin_labels)
    flat = np.bincount(rows.groups[inside] * nb + b[inside], minlength=rows.n_groups * nb)
    flat = flat.reshape(rows.n_groups, nb)
    results = []
    for g, label in enumerate(rows.labels):
        counts = []
        for j in range(nb):
            noisy = max(0, int(round(part.release(int(flat[g, j]), rng))))
            counts.append({"bin": bin_labels[j], "count": noisy, "ci95": [max(0.0, noisy - h), noisy + h]})
        results.append(GroupResult(label, counts, None))
    return results


def sum_groups(rows: Selection, values: np.ndarray, p: Plan, rng: Any) -> list[GroupResult]:
    part = p.parts["sum"]
    sums = rows.sums(values)
    h = part.halfwidth()
    results = []
    for g, label in enumerate(rows.labels):
        noisy = part.release(float(sums[g]), rng)
        results.append(GroupResult(label, noisy, [noisy - h, noisy + h]))
    return results


def mean_groups(
    rows: Selection, values: np.ndarray, lower: float, upper: float, p: Plan, rng: Any
) -> list[GroupResult]:
    """mid + noisy centred sum / noisy count, clipped to the bounds: it never divides by the true size."""
    mid, radius = (lower + upper) / 2.0, (upper - lower) / 2.0
    counts = rows.sums()
    centred = rows.sums(values - mid)
    results = []
    for g, label in enumerate(rows.labels):
        c = p.parts["count"].release(float(counts[g]), rng)
        s = p.parts["sum"].release(float(centred[g]), rng)
        c_used = max(c, 1.0)
        m = float(np.clip(s / c_used, -radius, radius))
        h = mean_halfwidth(p, c_used, m)
        ci = [max(lower, mid + m - h), min(upper, mid + m + h)]
        results.append(GroupResult(label, mid + m, ci, {"count": c, "sum": s}))
    return results


def variance_groups(
    rows: Selection, values: np.ndarray, lower: float, upper: float, p: Plan, rng: Any, *, std: bool
) -> list[GroupResult]:
    """The variance (or its square root) from a noisy count, centred sum and centred sum of squares."""
    mid, radius = (lower + upper) / 2.0, (upper - lower) / 2.0
    counts = rows.sums()
    c1 = rows.sums(values - mid)
    c2 = rows.sums((values - mid) ** 2)
    results = []
    for g, label in enumerate(rows.labels):
        raw_count = p.parts["count"].release(float(counts[g]), rng)
        s1 = p.parts["sum"].release(float(c1[g]), rng)
        s2 = p.parts["sumsq"].release(float(c2[g]), rng)
        c = max(raw_count, 1.0)
        m = float(np.clip(s1 / c, -radius, radius))
        var = float(np.clip(s2 / c - m * m, 0.0, radius**2))
        h = variance_halfwidth(p, c, radius)
        if std:
            value = math.sqrt(var)
            ci = [math.sqrt(max(0.0, var - h)), min(radius, math.sqrt(var + h))]
        else:
            value = var
            ci = [max(0.0, var - h), min(radius**2, var + h)]
        results.append(GroupResult(label, value, ci, {"count": raw_count, "sum": s1, "sumsq": s2}))
    return results


def quantile_groups(
    rows: Selection,
    values: np.ndarray,
    lower: float,
    upper: float,
    quantiles: tuple[float, ...],
    epsilon_each: float,
    rng: Any,
) -> list[GroupResult]:
    """Each group's quantiles by the exponential mechanism, released in the order asked."""
    if rows.n_groups > 1:
        order = np.argsort(rows.groups, kind="stable")
        grouped_rows, grouped_vals = rows.groups[order], values[order]
        bounds = np.searchsorted(grouped_rows, np.arange(rows.n_groups + 1))
        per_group = [grouped_vals[bounds[g] : bounds[g + 1]] for g in range(rows.n_groups)]
    else:
        per_group = [values]
    results = []
    for label, vals in zip(rows.labels, per_group):
        ordered = np.sort(vals, kind="quicksort")
        answer = [dp_quantile(ordered, lower, upper, q, epsilon_each, rng) for q in quantiles]
        # Quantiles are released in the order asked; sorting them is post-processing.
        results.append(GroupResult(label, answer, None))
    return results
