"""A component of a server plan: the protocol's component with the CKKS error the server adds to it.

The key holder releases each component with noise; the server widens the component's interval by
the CKKS error bound and refuses a released value that is off the component's grid or further from
what the declared bounds allow than honest noise could carry it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from cloakroom_client.protocol import he_plan as protocol
from cloakroom_client.protocol.errors import QueryError
from cloakroom_client.protocol.noise import Mechanism

# A key holder's value further than this many noise scales from what the bounds allow is refused:
# honest noise lands there with probability below exp(-40).
PLAUSIBLE_SCALES = 40.0


@dataclass(frozen=True)
class Component:
    """A component of the protocol plan, with the bound on the CKKS error in its un-noised value and
    the range that value can take under the declared bounds."""

    planned: protocol.Component
    ckks_error: float
    value_range: tuple[float, float] = (-math.inf, math.inf)

    @property
    def name(self) -> str:
        return self.planned.name

    @property
    def label(self) -> str:
        return self.planned.label

    @property
    def terms(self) -> tuple[tuple[str, float], ...]:
        return self.planned.terms

    @property
    def offset(self) -> float:
        return self.planned.offset

    @property
    def noise(self) -> Mechanism:
        return self.planned.noise

    @property
    def budget(self) -> str:
        return self.planned.budget

    @property
    def halfwidth(self) -> float:
        """The 95% half-width of this component: its noise's, widened by the CKKS error bound."""
        return self.noise.halfwidth() + self.ckks_error

    def for_key_holder(self) -> dict[str, Any]:
        return self.planned.for_key_holder()

    def plausible(self, value: float) -> bool:
        slack = PLAUSIBLE_SCALES * self.noise.scale + self.noise.granularity + self.ckks_error
        lo, hi = self.value_range
        return lo - slack <= value <= hi + slack


def checked_value(comp: Component, value: Any) -> float:
    """One noisy value from the key holder: a finite number on the component's grid, plausible."""
    field_name = f"values.{comp.name}"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise QueryError(field_name, "Must be a finite number.")
    if not comp.noise.on_grid(float(value)):
        raise QueryError(
            field_name, f"Must be an exact multiple of the component's granularity {comp.noise.granularity:g}."
        )
    if not comp.plausible(float(value)):
        lo, hi = comp.value_range
        raise QueryError(
            field_name,
            f"{float(value):g} is outside what the declared bounds allow ({lo:g} to {hi:g}, plus the noise).",
        )
    return float(value)
