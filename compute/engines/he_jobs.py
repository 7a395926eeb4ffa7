"""HE jobs on the server: what a planned query's answer reads, its accuracy and its CKKS error.

The planning itself (aggregates, components, sensitivities, epsilons, grids) is
:mod:`cloakroom_client.protocol.he_plan`, which the owner's key agent runs too, so that it can refuse
a plan the server altered. This module adds what only the server needs:

* the CKKS error bound of each component, from the bundle's parameters and the **public** row count
  (``chunks * slots`` when the owner keeps the count private: every figure a buyer sees then depends
  only on what the bundle's size reveals anyway), and a refusal of queries whose values could
  overflow the CKKS scale;
* :meth:`Plan.check_values`: the key holder's noisy values, each on its grid and within what the
  declared bounds allow;
* :meth:`Plan.finish`, which turns the noisy components into the buyer's answer (post-processing
  only) with a 95% interval widened by the CKKS error bound.

Privacy (docs/PRIVACY.md): in HE mode neighbouring datasets differ by one row replaced in place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cloakroom_client.protocol import he_plan as protocol
from cloakroom_client.protocol.errors import QueryError
from cloakroom_client.protocol.he_plan import AGGREGATES, MAX_REGRESSION_COLUMNS, Aggregate, HeColumn, manifest_columns
from compute.engines import dp
from compute.engines.he import ckks_error_bound

__all__ = ["AGGREGATES", "MAX_REGRESSION_COLUMNS", "Aggregate", "HeColumn", "manifest_columns", "plan", "Plan"]
# A key holder's value further than this many noise scales from what the bounds allow is refused:
# honest noise lands there with probability below exp(-40).
PLAUSIBLE_SCALES = 40.0


@dataclass(frozen=True)
class Component:
    """A value the key holder releases with noise: ``offset + sum(coef * aggregate) + noise``."""

    name: str
    label: str
    terms: tuple[tuple[str, float], ...]
    offset: float
    noise: dp.Additive
    ckks_error: float  # bound on the CKKS error in the un-noised value
    budget: str = ""
    value_range: tuple[float, float] = (-math.inf, math.inf)  # of the un-noised value, from the bounds

    @property
    def halfwidth(self) -> float:
        """The 95% half-width of this component: its noise's, widened by the CKKS error bound."""
        return self.noise.halfwidth() + self.ckks_error

    def for_key_holder(self) -> dict[str, Any]:
        return protocol.key_component(self.name, self.terms, self.offset, self.budget or self.name, self.noise)

    def plausible(self, value: float) -> bool:
        slack = PLAUSIBLE_SCALES * self.noise.scale + self.noise.granularity + self.ckks_error
        lo, hi = self.value_range
        return lo - slack <= value <= hi + slack


@dataclass(frozen=True)
class Plan:
    query: dict[str, Any]  # canonical
    aggregate: str
    epsilon: float
    rows: int
    params: dict[str, Any]
    aggregates: tuple[Aggregate, ...]
    components: tuple[Component, ...]
    mechanism: str
    weights: np.ndarray | None = field(default=None, compare=False)
    slots: int = 0
    # How finish() reads the components; set by the planner.
    layout: dict[str, Any] = field(default_factory=dict)

    @property
    def depth(self) -> int:
        return max(len(a.factors) - 1 + int(a.weighted) for a in self.aggregates) if self.aggregates else 0

    @property
    def main(self) -> Component:
        """The component whose noise scale is quoted for the whole answer."""
        name = self.layout.get("main", self.components[0].name)
        return next(c for c in self.components if c.name == name)

    @property
    def noise_scale(self) -> float:
        return self.main.noise.scale

    def _parts(self) -> _Parts:
        return _Parts({c.name: c.noise for c in self.components})

    def estimate_halfwidth(self, rows: float | None) -> float | None:
        """The answer's 95% half-width before it runs, or None where it depends on a row count not given.

        Sums, counts and regression statistics: the main component's noise plus the CKKS bound. Means and
        variances: the DP engine's bounds for ``rows`` rows (a worst case over the declared bounds).
        """
        kind = self.layout["kind"]
        if kind in ("sum", "counts", "regression"):
            return self.main.halfwidth
        if rows is None:
            return None
        radius = (self.layout["upper"] - self.layout["lower"]) / 2.0
        if kind == "mean":
            return dp.mean_halfwidth(self._parts(), float(rows), 0.0)
        return dp.variance_halfwidth(self._parts(), float(rows), radius)

    def key_plan(self) -> list[dict[str, Any]]:
        return [c.for_key_holder() for c in self.components]

    def ckks_summary(self) -> dict[str, Any]:
        return {
            "poly_modulus_degree": self.params["poly_modulus_degree"],
            "coeff_mod_bit_sizes": list(self.params["coeff_mod_bit_sizes"]),
            "global_scale_bits": self.params["global_scale_bits"],
            "multiplicative_depth": self.depth,
            "scale_corrected": True,
        }

    def check_values(self, values: Any) -> dict[str, float]:
        """The key holder's noisy values, checked: exactly the components, finite numbers."""
        if not isinstance(values, dict):
            raise QueryError("values", "Must be an object mapping each component's name to its noisy value.")
        names = [c.name for c in self.components]
        for key in values:
            if key not in names:
                raise QueryError(f"values.{key}", f"Not a component of this job; expected {', '.join(names)}.")
        out: dict[str, float] = {}
        for comp in self.components:
            value = values.get(comp.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise QueryError(f"values.{comp.name}", "Must be a finite number.")
            if not comp.noise.on_grid(float(value)):
                raise QueryError(
                    f"values.{comp.name}",
                    f"Must be an exact multiple of the component's granularity {comp.noise.granularity:g}.",
                )
            if not comp.plausible(float(value)):
                lo, hi = comp.value_range
                raise QueryError(
                    f"values.{comp.name}",
                    f"{float(value):g} is outside what the declared bounds allow ({lo:g} to {hi:g}, plus the noise).",
                )
            out[comp.name] = float(value)
        return out

    def finish(self, noisy: Mapping[str, float]) -> dict[str, Any]:
        """The buyer's answer from the noisy components (post-processing; reads nothing else)."""
        kind = self.layout["kind"]
        comps = {c.name: c for c in self.components}
        groups: list[dict[str, Any]] = []
        note = "95% interval of the added noise, widened by the CKKS error bound"
        extra: dict[str, Any] = {}
        if kind == "counts":
            for name, key in self.layout["groups"]:
                value = max(0, int(round(noisy[name])))
                h = comps[name].halfwidth
                groups.append({"key": key, "value": value, "ci95": [max(0.0, value - h), value + h]})
        elif kind == "sum":
            value = noisy[self.main.name]
            h = self.main.halfwidth
            groups.append({"key": {}, "value": value, "ci95": [value - h, value + h]})
        elif kind in ("mean", "variance"):
            lower, upper = self.layout["lower"], self.layout["upper"]
            mid, radius = (lower + upper) / 2.0, (upper - lower) / 2.0
            holder = self._parts()
            count = max(noisy["count"], 1.0)
            m = float(np.clip(noisy["sum"] / count, -radius, radius))
            ckks_sum = comps["sum"].ckks_error + abs(m) * comps["count"].ckks_error
            if kind == "mean":
                note = "approximate 95% interval from the noise scales and the noisy count, widened by the CKKS error"
                h = dp.mean_halfwidth(holder, count, m) + ckks_sum / count
                groups.append({"key": {}, "value": mid + m, "ci95": [max(lower, mid + m - h), min(upper, mid + m + h)]})
            else:
                note = "stated bound: each noisy part within its 98.3% interval, widened by the CKKS error"
                var = float(np.clip(noisy["sumsq"] / count - m * m, 0.0, radius**2))
                h = dp.variance_halfwidth(holder, count, radius)
                h += (comps["sumsq"].ckks_error + 2 * radius * ckks_sum) / count
                groups.append({"key": {}, "value": var, "ci95": [max(0.0, var - h), min(radius**2, var + h)]})
        elif kind == "regression":
            extra["regression"] = _regression(self.layout, noisy)
            for c in self.components:
                value = noisy[c.name]
                groups.append(
                    {"key": {"statistic": c.label}, "value": value, "ci95": [value - c.halfwidth, value + c.halfwidth]}
                )
            note = "each statistic: 95% interval of its own noise, widened by the CKKS error"
        else:  # pragma: no cover - the planner sets one of the kinds above
            raise ValueError(kind)
        return {
            "aggregate": self.aggregate,
            "groups": groups,
            "mechanism": self.mechanism,
            "noise_scale": self.noise_scale,
            "epsilon": self.epsilon,
            "delta": 0.0,
            "interval_note": note,
            "ckks": {**self.ckks_summary(), "error_bound": max(c.ckks_error for c in self.components)},
            "neighbouring": protocol.NEIGHBOURING,
            "granularity": {c.name: c.noise.granularity for c in self.components},
            "measurements": {c.name: noisy[c.name] for c in self.components},
            **extra,
        }


@dataclass(frozen=True)
class _Parts:
    """What dp.mean_halfwidth / variance_halfwidth read from a DP plan: its noisy parts."""

    parts: dict[str, dp.Additive]


def _regression(layout: Mapping[str, Any], noisy: Mapping[str, float]) -> dict[str, Any]:
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


# ---------------------------------------------------------------------------------------------
# CKKS error bounds and planning


def _bound(
    factors: Sequence[HeColumn],
    rows: int,
    params: Mapping[str, Any],
    weight_bound: float = 0.0,
    field_name: str = "query",
) -> float:
    """The CKKS error bound of one aggregate, or a QueryError when its values could overflow."""
    common = dict(
        poly_modulus_degree=params["poly_modulus_degree"],
        global_scale_bits=params["global_scale_bits"],
        coeff_mod_bit_sizes=params["coeff_mod_bit_sizes"],
    )
    a = factors[0]
    try:
        if weight_bound:
            return ckks_error_bound("dot", rows, lower=a.lower, upper=a.upper, weight_bound=weight_bound, **common)
        if len(factors) == 1:
            return ckks_error_bound("sum", rows, lower=a.lower, upper=a.upper, **common)
        b = factors[1]
        if len(factors) == 2:
            if a.name == b.name:
                return ckks_error_bound("sum_of_squares", rows, lower=a.lower, upper=a.upper, **common)
            return ckks_error_bound(
                "products", rows, lower=a.lower, upper=a.upper, lower_b=b.lower, upper_b=b.upper, **common
            )
        c = factors[2]
        return ckks_error_bound(
            "triple_products",
            rows,
            lower=a.lower,
            upper=a.upper,
            lower_b=b.lower,
            upper_b=b.upper,
            lower_c=c.lower,
            upper_c=c.upper,
            **common,
        )
    except ValueError as exc:
        raise QueryError(field_name, f"{exc}.") from None


def plan(
    query: Any,
    manifest: Mapping[str, Any],
    epsilon: float,
    *,
    max_weights: int = 250_000,
    max_weight: float = 1000.0,
    public_rows: bool = False,
) -> Plan:
    """Plan an HE query (the shared planner) and add the CKKS error bounds. Raises QueryError.

    ``public_rows``: whether the owner made the row count public. When it is not, the CKKS bounds use
    ``chunks * slots`` rows, which the bundle's size reveals anyway, so that no estimate, interval or
    receipt depends on the private count.
    """
    p = protocol.plan(query, manifest, epsilon, max_weights=max_weights, max_weight=max_weight)
    columns = manifest_columns(manifest)
    bound_rows = p.rows if public_rows else math.ceil(p.rows / p.slots) * p.slots
    errors: dict[str, float] = {}
    for a in p.aggregates:
        field_name = "query.weights" if a.weighted else "query.column"
        weight_bound = p.weight_bound if a.weighted else 0.0
        errors[a.name] = _bound([columns[f] for f in a.factors], bound_rows, p.params, weight_bound, field_name)
    comps = tuple(
        Component(
            c.name,
            c.label,
            c.terms,
            c.offset,
            c.noise,
            sum(abs(coef) * errors[a] for a, coef in c.terms),
            c.budget,
            p.value_range(c),
        )
        for c in p.components
    )
    return Plan(
        query=p.query,
        aggregate=p.aggregate,
        epsilon=p.epsilon,
        rows=p.rows,
        params=p.params,
        aggregates=p.aggregates,
        components=comps,
        mechanism=p.mechanism,
        weights=p.weights,
        slots=p.slots,
        layout=p.layout,
    )
