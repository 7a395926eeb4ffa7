"""HE jobs on the server: what a planned query's answer reads, its accuracy and its CKKS error.

The planning itself (aggregates, components, sensitivities, epsilons, grids) is
:mod:`cloakroom_client.protocol.he_plan`, which the owner's key agent runs too, so that it can refuse
a plan the server altered. The server's :class:`Plan` holds that protocol plan as it is and adds only
what the server needs:

* the CKKS error bound of each component, from the bundle's parameters and the **public** row count
  (``chunks * slots`` when the owner keeps the count private: every figure a buyer sees then depends
  only on what the bundle's size reveals anyway), and a refusal of queries whose values could
  overflow the CKKS scale;
* :meth:`Plan.check_values`: the key holder's noisy values, each on its grid and within what the
  declared bounds allow;
* :meth:`Plan.finish`, which reads the noisy components back into the buyer's answer
  (post-processing only, :mod:`compute.engines.he.readback`) with a 95% interval widened by the CKKS
  error bound.

Privacy (docs/PRIVACY.md): in HE mode neighbouring datasets differ by one row replaced in place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cloakroom_client.protocol import he_plan as protocol
from cloakroom_client.protocol.errors import QueryError
from cloakroom_client.protocol.he_plan import AGGREGATES, MAX_REGRESSION_COLUMNS, Aggregate, HeColumn, manifest_columns
from cloakroom_client.protocol.noise import Mechanism
from compute.engines.dp import mean_halfwidth, variance_halfwidth
from compute.engines.he.bounds import ckks_error_bound
from compute.engines.he.components import Component, checked_value
from compute.engines.he.readback import answer

__all__ = [
    "AGGREGATES",
    "MAX_REGRESSION_COLUMNS",
    "Aggregate",
    "Component",
    "HeColumn",
    "Plan",
    "manifest_columns",
    "plan",
]


@dataclass(frozen=True)
class Plan:
    """The shared planner's plan of a job (``planned``) and its components with their CKKS bounds."""

    planned: protocol.Plan
    components: tuple[Component, ...]

    # What the protocol plan says, under the names the server has always read.

    @property
    def query(self) -> dict[str, Any]:
        """The query in canonical form."""
        return self.planned.query

    @property
    def aggregate(self) -> str:
        return self.planned.aggregate

    @property
    def epsilon(self) -> float:
        return self.planned.epsilon

    @property
    def rows(self) -> int:
        return self.planned.rows

    @property
    def slots(self) -> int:
        return self.planned.slots

    @property
    def params(self) -> dict[str, Any]:
        return self.planned.params

    @property
    def aggregates(self) -> tuple[Aggregate, ...]:
        return self.planned.aggregates

    @property
    def mechanism(self) -> str:
        return self.planned.mechanism

    @property
    def weights(self) -> np.ndarray | None:
        return self.planned.weights

    @property
    def layout(self) -> dict[str, Any]:
        """How :meth:`finish` reads the components; set by the planner."""
        return self.planned.layout

    @property
    def depth(self) -> int:
        return self.planned.depth

    # What the server adds.

    @property
    def main(self) -> Component:
        """The component whose noise scale is quoted for the whole answer."""
        name = self.layout.get("main", self.components[0].name)
        return next(c for c in self.components if c.name == name)

    @property
    def noise_scale(self) -> float:
        return self.main.noise.scale

    @property
    def parts(self) -> dict[str, Mechanism]:
        """The noisy parts by name, as the DP engine's interval bounds read them."""
        return {c.name: c.noise for c in self.components}

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
            return mean_halfwidth(self, float(rows), 0.0)
        return variance_halfwidth(self, float(rows), radius)

    def release_spec_components(self) -> list[dict[str, Any]]:
        """The components as the key holder is sent them (and compares them with its own plan)."""
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
        return {comp.name: checked_value(comp, values.get(comp.name)) for comp in self.components}

    def finish(self, noisy: Mapping[str, float]) -> dict[str, Any]:
        """The buyer's answer from the noisy components (post-processing; reads nothing else)."""
        groups, note, extra = answer(self.layout, self.components, self.main, self, noisy)
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


# ---------------------------------------------------------------------------------------------
# CKKS error bounds and planning


def aggregate_bound(
    factors: Sequence[HeColumn],
    rows: int,
    params: Mapping[str, Any],
    weight_bound: float = 0.0,
    field_name: str = "query",
) -> float:
    """The CKKS error bound of one aggregate, or a QueryError when its values could overflow."""
    common: dict[str, Any] = dict(
        poly_modulus_degree=params["poly_modulus_degree"],
        global_scale_bits=params["global_scale_bits"],
        coeff_mod_bit_sizes=params["coeff_mod_bit_sizes"],
    )
    a = factors[0]
    if weight_bound:
        kind = "dot"
    elif len(factors) == 1:
        kind = "sum"
    elif len(factors) == 2:
        kind = "sum_of_squares" if a.name == factors[1].name else "products"
    else:
        kind = "triple_products"
    if kind in ("products", "triple_products"):
        common.update(lower_b=factors[1].lower, upper_b=factors[1].upper)
    if kind == "triple_products":
        common.update(lower_c=factors[2].lower, upper_c=factors[2].upper)
    try:
        return ckks_error_bound(kind, rows, lower=a.lower, upper=a.upper, weight_bound=weight_bound, **common)
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
    planned = protocol.plan(query, manifest, epsilon, max_weights=max_weights, max_weight=max_weight)
    columns = manifest_columns(manifest)
    bound_rows = planned.rows if public_rows else math.ceil(planned.rows / planned.slots) * planned.slots
    errors: dict[str, float] = {}
    for a in planned.aggregates:
        field_name = "query.weights" if a.weighted else "query.column"
        weight_bound = planned.weight_bound if a.weighted else 0.0
        errors[a.name] = aggregate_bound(
            [columns[f] for f in a.factors], bound_rows, planned.params, weight_bound, field_name
        )
    components = tuple(
        Component(c, sum(abs(coef) * errors[a] for a, coef in c.terms), planned.value_range(c))
        for c in planned.components
    )
    return Plan(planned, components)
