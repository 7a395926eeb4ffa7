"""DP model training: models built from noisy sufficient statistics drawn on a grid (docs/MODELS.md).

Pure functions, no Django. :func:`parse_model` checks a request against the declared schema,
:func:`plan` splits the budget between the noisy statistics before any data is read, and
:func:`train` measures the statistics (:mod:`.stats`), adds the grid noise, and builds the model from
the noisy statistics alone (:mod:`.fit`). Nothing is read off the data: bounds, categories and
classes all come from the declaration, and no evaluation on the private rows is computed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cloakroom_client.protocol.errors import QueryError
from cloakroom_client.protocol.noise import Mechanism
from compute.engines.models import fit, stats
from compute.engines.models.spec import CLASSIFIERS, MAX_CLASSES, MAX_COLUMNS, TYPES, Feature, ModelSpec, parse_model

__all__ = [
    "CLASSIFIERS",
    "MAX_CLASSES",
    "MAX_COLUMNS",
    "TYPES",
    "Feature",
    "ModelSpec",
    "QueryError",
    "TrainPlan",
    "parse_model",
    "plan",
    "train",
]

_WHAT = {
    "linear_regression": "noisy X^T X and X^T y, then ridge regression",
    "logistic_regression": "noisy X^T X and X^T y, then the functional mechanism's logistic regression",
    "naive_bayes": "noisy per-class counts, sums and sums of squares, then Gaussian naive Bayes",
}


@dataclass(frozen=True)
class TrainPlan:
    spec: ModelSpec
    epsilon: float
    delta: float
    mechanisms: dict[str, Mechanism]

    @property
    def rho(self) -> float:
        """The job's zCDP cost (epsilon**2 / 2 when pure; the parts' rhos added up with delta)."""
        return stats.plan_rho(self.mechanisms, self.epsilon, self.delta)

    @property
    def mechanism(self) -> str:
        noise = "discrete Gaussian" if self.delta > 0 else "discrete Laplace"
        return f"{noise} on {_WHAT[self.spec.type]}"

    @property
    def noise_scale(self) -> float:
        """The noise's scale on every statistic, in the scaled units (Laplace b or Gaussian sigma)."""
        return max(m.scale for m in self.mechanisms.values())

    def parts(self) -> list[dict[str, Any]]:
        """Each noisy part as the receipt states it: how many statistics, its mechanism and its share."""
        out = []
        for name, stats_ in stats.parts(self.spec).items():
            if not stats_:
                continue
            mech = self.mechanisms[name]
            out.append({"part": name, "statistics": len(stats_), **mech.describe(), "rho": mech.rho})
        return out

    def split(self) -> str:
        if self.delta > 0:
            return (
                "one discrete Gaussian sigma for every statistic; the parts' rhos (in proportion to their "
                "signatures) add up to the rho that implies the job's (epsilon, delta)"
            )
        return "epsilon split between the parts in proportion to their L1 sensitivity (one noise scale for all)"


def plan(spec: ModelSpec, epsilon: float, delta: float = 0.0) -> TrainPlan:
    """The parts' mechanisms for a request at (epsilon, delta), from the declaration alone."""
    return TrainPlan(spec, float(epsilon), float(delta), stats.plan(spec, float(epsilon), float(delta)))


def model_parameters(spec: ModelSpec, noisy: Mapping[str, Any], mechanisms: Mapping[str, Mechanism]) -> dict:
    if spec.type == "linear_regression":
        return fit.linear_regression(spec, noisy, mechanisms)
    if spec.type == "logistic_regression":
        return fit.logistic_regression(spec, noisy, mechanisms)
    return fit.naive_bayes(spec, noisy)


def train(data: Mapping[str, Any], spec: ModelSpec, epsilon: float, delta: float = 0.0, rng: Any = None) -> dict:
    """Train ``spec`` on the columns ``data`` at (epsilon, delta): ``{"model", "training", ...}``, the
    released parameters and what the receipt says of how they were drawn."""
    p = plan(spec, epsilon, delta)
    noisy = stats.release(data, spec, p.mechanisms, rng)
    model = {
        "type": spec.type,
        "features": [f.name for f in spec.features],
        "label": spec.label.name,
        "classes": spec.classes if spec.type in CLASSIFIERS else None,
        "columns": spec.columns,
        "encoding": [f.describe() for f in spec.features],
        "params": dict(spec.params),
        **model_parameters(spec, noisy, p.mechanisms),
    }
    bounds = [f.describe() for f in spec.features] + [{**spec.label.describe(), "label": True}]
    return {
        "model": model,
        "mechanism": p.mechanism,
        "noise_scale": p.noise_scale,
        "granularity": {name: m.granularity for name, m in p.mechanisms.items()},
        "training": {
            "parts": p.parts(),
            "split": p.split(),
            "bounds": bounds,
            "scaling": "numeric values clipped to their declared bounds and scaled to [-1, 1]; categories one-hot "
            "from the declared list",
            "evaluation": "none: no accuracy or loss on the private rows is computed or released",
        },
    }
