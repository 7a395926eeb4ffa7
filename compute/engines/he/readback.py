"""The buyer's answer read back from the key holder's noisy components: post-processing only.

Nothing here reads the data or a ciphertext: the groups, values and intervals are functions of the
noisy components, the plan's layout (public: it follows from the query and the declared bounds) and
the CKKS error bounds, so they spend no privacy beyond what the components spent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from compute.engines.dp.accuracy import NoisyParts, mean_halfwidth, variance_halfwidth
from compute.engines.he.components import Component

NOISE_NOTE = "95% interval of the added noise, widened by the CKKS error bound"
MEAN_NOTE = "approximate 95% interval from the noise scales and the noisy count, widened by the CKKS error"
VARIANCE_NOTE = "stated bound: each noisy part within its 98.3% interval, widened by the CKKS error"
REGRESSION_NOTE = "each statistic: 95% interval of its own noise, widened by the CKKS error"


def answer(
    layout: Mapping[str, Any],
    components: Sequence[Component],
    main: Component,
    parts: NoisyParts,
    noisy: Mapping[str, float],
) -> tuple[list[dict[str, Any]], str, dict[str, Any]]:
    """The groups of the answer, the note on their intervals, and any extra fields of the release.

    ``layout`` says how the components are read (its ``kind``: counts, sum, mean, variance or
    regression), ``main`` is the component a sum is read from, ``parts`` the noisy parts the DP
    interval bounds read.
    """
    kind = layout["kind"]
    comps = {c.name: c for c in components}
    if kind == "counts":
        return count_groups(layout, comps, noisy), NOISE_NOTE, {}
    if kind == "sum":
        value = noisy[main.name]
        h = main.halfwidth
        return [{"key": {}, "value": value, "ci95": [value - h, value + h]}], NOISE_NOTE, {}
    if kind == "mean":
        return [mean_group(layout, comps, parts, noisy)], MEAN_NOTE, {}
    if kind == "variance":
        return [variance_group(layout, comps, parts, noisy)], VARIANCE_NOTE, {}
    if kind == "regression":
        groups = []
        for c in components:
            value = noisy[c.name]
            groups.append(
                {"key": {"statistic": c.label}, "value": value, "ci95": [value - c.halfwidth, value + c.halfwidth]}
            )
        return groups, REGRESSION_NOTE, {"regression": regression(layout, noisy)}
    raise ValueError(kind)  # pragma: no cover - the planner sets one of the kinds above


def count_groups(
    layout: Mapping[str, Any], comps: Mapping[str, Component], noisy: Mapping[str, float]
) -> list[dict[str, Any]]:
    groups = []
    for name, key in layout["groups"]:
        value = max(0, int(round(noisy[name])))
        h = comps[name].halfwidth
        groups.append({"key": key, "value": value, "ci95": [max(0.0, value - h), value + h]})
    return groups


def _centred(
    layout: Mapping[str, Any], comps: Mapping[str, Component], noisy: Mapping[str, float]
) -> tuple[float, float, float, float, float]:
    """The bounds' middle and radius, the noisy count (at least 1), the centred mean and the CKKS
    error of the centred sum that a mean and a variance both read."""
    lower, upper = layout["lower"], layout["upper"]
    mid, radius = (lower + upper) / 2.0, (upper - lower) / 2.0
    count = max(noisy["count"], 1.0)
    m = float(np.clip(noisy["sum"] / count, -radius, radius))
    ckks_sum = comps["sum"].ckks_error + abs(m) * comps["count"].ckks_error
    return mid, radius, count, m, ckks_sum


def mean_group(
    layout: Mapping[str, Any], comps: Mapping[str, Component], parts: NoisyParts, noisy: Mapping[str, float]
) -> dict[str, Any]:
    lower, upper = layout["lower"], layout["upper"]
    mid, _radius, count, m, ckks_sum = _centred(layout, comps, noisy)
    h = mean_halfwidth(parts, count, m) + ckks_sum / count
    return {"key": {}, "value": mid + m, "ci95": [max(lower, mid + m - h), min(upper, mid + m + h)]}


def variance_group(
    layout: Mapping[str, Any], comps: Mapping[str, Component], parts: NoisyParts, noisy: Mapping[str, float]
) -> dict[str, Any]:
    _mid, radius, count, m, ckks_sum = _centred(layout, comps, noisy)
    var = float(np.clip(noisy["sumsq"] / count - m * m, 0.0, radius**2))
    h = variance_halfwidth(parts, count, radius)
    h += (comps["sumsq"].ckks_error + 2 * radius * ckks_sum) / count
    return {"key": {}, "value": var, "ci95": [max(0.0, var - h), min(radius**2, var + h)]}


def regression(layout: Mapping[str, Any], noisy: Mapping[str, float]) -> dict[str, Any]:
    """X^T X and X^T y (intercept first) from the noisy statistics, and least-squares coefficients
    when the noisy X^T X is well enough conditioned to invert (post-processing)."""
    names = ["intercept", *layout["columns"]]
    k = len(names)
    xtx = np.zeros((k, k))
    for (i, j), comp in layout["xtx"].items():
        xtx[i, j] = xtx[j, i] = noisy[comp]
    xty = np.array([noisy[comp] for comp in layout["xty"]])
    coefficients = None
    try:
        if np.linalg.cond(xtx) < 1e12:
            beta = np.linalg.solve(xtx, xty)
            coefficients = {n: float(b) for n, b in zip(names, beta)}
    except np.linalg.LinAlgError:
        coefficients = None
    return {
        "columns": names,
        "target": layout["target"],
        "xtx": xtx.tolist(),
        "xty": xty.tolist(),
        "coefficients": coefficients,
    }
