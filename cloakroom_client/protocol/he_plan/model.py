"""What a plan is made of: the encrypted aggregates the server computes, the noisy components the
key holder releases, and the plan that holds both with the job's query, epsilon and parameters."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cloakroom_client.protocol.noise import Mechanism


@dataclass(frozen=True)
class Aggregate:
    """An encrypted aggregate: the sum over all rows of the product of ``factors`` (times weights)."""

    name: str
    factors: tuple[str, ...]
    weighted: bool = False
    # The range of one row's term: the product of the factors' declared bounds (times the weights).
    term_range: tuple[float, float] = (0.0, 0.0)

    def spec(self) -> tuple[str, tuple[str, ...], bool]:
        return (self.name, self.factors, self.weighted)


@dataclass(frozen=True)
class Component:
    """A value the key holder releases on its grid: ``offset + sum(coef * aggregate)`` plus noise.

    Components with the same ``budget`` name are one vector measurement (the counts of a column's
    categories): their noise is calibrated to the vector's joint sensitivity, and they spend their
    epsilon once between them.
    """

    name: str
    label: str
    terms: tuple[tuple[str, float], ...]
    offset: float
    noise: Mechanism
    budget: str

    def for_key_holder(self) -> dict[str, Any]:
        return key_component(self.name, self.terms, self.offset, self.budget, self.noise)


def key_component(
    name: str, terms: Sequence[tuple[str, float]], offset: float, budget: str, noise: Mechanism
) -> dict[str, Any]:
    """A component as the release spec sends it to the key holder (and the key holder compares it)."""
    return {"name": name, "terms": [[a, c] for a, c in terms], "offset": offset, "budget": budget, **noise.describe()}


@dataclass(frozen=True)
class Plan:
    query: dict[str, Any]  # canonical
    aggregate: str
    epsilon: float
    rows: int
    slots: int
    params: dict[str, Any]
    aggregates: tuple[Aggregate, ...]
    components: tuple[Component, ...]
    mechanism: str
    weights: np.ndarray | None = field(default=None, compare=False)
    weight_bound: float = 0.0
    # How the server reads the components back into an answer; set by the planner.
    layout: dict[str, Any] = field(default_factory=dict)

    @property
    def depth(self) -> int:
        return max(len(a.factors) - 1 + int(a.weighted) for a in self.aggregates) if self.aggregates else 0

    @property
    def length(self) -> int:
        """The slots of each aggregate the key holder adds: the rows of one chunk."""
        return min(self.rows, self.slots)

    def epsilon_spent(self) -> float:
        """The components' epsilons composed (basic composition; one per budget group)."""
        spent: dict[str, float] = {}
        for c in self.components:
            spent[c.budget] = max(spent.get(c.budget, 0.0), c.noise.epsilon)
        return math.fsum(spent.values())

    def aggregate_range(self, aggregate: Aggregate) -> tuple[float, float]:
        """Where an aggregate can lie: ``rows`` terms each in its declared range (padding adds zeros)."""
        lo, hi = aggregate.term_range
        return self.rows * min(lo, 0.0), self.rows * max(hi, 0.0)

    def value_range(self, component: Component) -> tuple[float, float]:
        """Where a component's un-noised value can lie, from the declared bounds alone."""
        ranges = {a.name: self.aggregate_range(a) for a in self.aggregates}
        lo = hi = component.offset
        for name, coef in component.terms:
            x, y = ranges[name]
            lo += min(coef * x, coef * y)
            hi += max(coef * x, coef * y)
        return lo, hi

    @staticmethod
    def aggregate_depth(aggregate: Aggregate) -> int:
        """The multiplications (and so the rescales) an honest server's ciphertext went through."""
        return len(aggregate.factors) - 1 + int(aggregate.weighted)

    def key_aggregates(self) -> list[dict[str, Any]]:
        """The aggregates as the release spec lists them for the key holder."""
        return [{"name": a.name, "length": self.length} for a in self.aggregates]

    def key_components(self) -> list[dict[str, Any]]:
        """The components as the release spec lists them for the key holder."""
        return [c.for_key_holder() for c in self.components]
