"""DP model training: models built from noisy sufficient statistics drawn on a grid (docs/MODELS.md).

Pure functions, no Django. :func:`parse_model` checks a request against the declared schema,
:func:`plan` splits the budget between the noisy statistics before any data is read, and
:func:`train` measures the statistics (:mod:`.stats`), adds the grid noise, and builds the model from
the noisy statistics alone (:mod:`.fit`; k-means's rounds in :mod:`.kmeans`, a random forest's noisy
leaf counts in :mod:`.forest`). Nothing is read off the data: bounds, categories, classes, initial
centres and trees all come from the declaration (and a public seed), and no evaluation on the private rows is computed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cloakroom_client.protocol.errors import QueryError
from cloakroom_client.protocol.noise import Mechanism, make_rng
from compute.engines.models import fit, forest, kmeans, logistic, stats
from compute.engines.models.spec import (
    CLASSIFIERS,
    MAX_CLASSES,
    MAX_COLUMNS,
    TYPES,
    UNSUPERVISED,
    Feature,
    ModelSpec,
    parse_model,
)

__all__ = [
    "CLASSIFIERS",
    "MAX_CLASSES",
    "MAX_COLUMNS",
    "TYPES",
    "UNSUPERVISED",
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
    "logistic_regression": "the weights of a ridge-penalised logistic (two classes) or softmax regression, "
    "by output perturbation",
    "naive_bayes": "noisy per-class counts, sums and sums of squares, then Gaussian naive Bayes",
    "pca": "noisy count, sums and X^T X, then the noisy covariance's eigendecomposition",
    "kmeans": "noisy per-cluster counts and sums, in rounds of Lloyd's algorithm from public initial centres",
    "random_forest": "noisy class counts in the leaves of random trees grown from the declaration alone",
}
_COMPOSITION = {
    "kmeans": "the rounds compose sequentially (each assigns the rows to the last round's noisy centres) and "
    "share the budget equally; within a round a row is in one cluster",
    "random_forest": "the trees compose sequentially and share the budget equally; within a tree a row is in "
    "one leaf (parallel composition across the leaves), so one row moves one count of a tree by 1",
    "logistic_regression": f"a noisy count of the rows ({logistic.COUNT_SHARE} of the budget, unless C is given) "
    "sets the ridge lambda, then the weights: the penalised loss is lambda-strongly convex and one row's loss "
    "L-Lipschitz on rows scaled into the unit ball, so one row moves lambda times the minimiser by at most L (L2); "
    f"the solver stops within gradient norm {logistic.TOLERANCE:g}, which adds 2 x {logistic.TOLERANCE:g}; the L1 "
    "bound is sqrt(weights) times the L2; the parts compose sequentially",
}
# What is chosen without the data, from the seed and the declaration.
_PUBLIC = {
    "kmeans": "the initial centres: numpy.random.default_rng(seed), uniform within the declared bounds (0/1 "
    "columns within [0, 1]); no row is a centre",
    "random_forest": "every tree's split columns and thresholds: numpy.random.default_rng(seed), uniform within "
    "the declared bounds (0.5 for a 0/1 column); no row is looked at to grow a tree",
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
        for name, (count, _) in stats.sizes(self.spec).items():
            mech = self.mechanisms[name]
            out.append({"part": name, "statistics": count, **mech.describe(), "rho": mech.rho})
        return out

    def split(self) -> str:
        if self.spec.type == "logistic_regression":
            return _COMPOSITION[self.spec.type]
        if self.delta > 0:
            split = (
                "one discrete Gaussian sigma for every statistic; the parts' rhos (in proportion to their "
                "signatures) add up to the rho that implies the job's (epsilon, delta)"
            )
        else:
            split = "epsilon split between the parts in proportion to their L1 sensitivity (one noise scale for all)"
        extra = _COMPOSITION.get(self.spec.type)
        return f"{split}; {extra}" if extra else split


def plan(spec: ModelSpec, epsilon: float, delta: float = 0.0) -> TrainPlan:
    """The parts' mechanisms for a request at (epsilon, delta), from the declaration alone."""
    return TrainPlan(spec, float(epsilon), float(delta), stats.plan(spec, float(epsilon), float(delta)))


def model_parameters(spec: ModelSpec, data: Mapping[str, Any], mechanisms: Mapping[str, Mechanism], rng: Any) -> dict:
    """Measure the noisy statistics of ``spec`` on ``data`` and build the model from them alone."""
    if spec.type == "kmeans":
        return kmeans.fit(stats.features(data, spec), spec, mechanisms, rng)
    if spec.type == "random_forest":
        mid, half = stats.units(spec)
        x = mid + half * stats.features(data, spec)[:, 1:]
        return forest.fit(x, stats.targets(data, spec), spec, mechanisms, rng)
    if spec.type == "logistic_regression":
        return fit.logistic_regression(spec, stats.features(data, spec), stats.targets(data, spec), mechanisms, rng)
    noisy = stats.release(data, spec, mechanisms, rng)
    if spec.type == "linear_regression":
        return fit.linear_regression(spec, noisy, mechanisms)
    if spec.type == "pca":
        return fit.pca(spec, noisy)
    return fit.naive_bayes(spec, noisy)


def train(data: Mapping[str, Any], spec: ModelSpec, epsilon: float, delta: float = 0.0, rng: Any = None) -> dict:
    """Train ``spec`` on the columns ``data`` at (epsilon, delta): ``{"model", "training", ...}``, the
    released parameters and what the receipt says of how they were drawn."""
    p = plan(spec, epsilon, delta)
    model = {
        "type": spec.type,
        "features": [f.name for f in spec.features],
        "label": spec.label.name if spec.label is not None else None,
        "classes": spec.classes if spec.type in CLASSIFIERS else None,
        "columns": spec.columns,
        "encoding": [f.describe() for f in spec.features],
        "params": dict(spec.params),
        **model_parameters(spec, data, p.mechanisms, make_rng(rng)),
    }
    bounds = [f.describe() for f in spec.features]
    if spec.label is not None:
        bounds.append({**spec.label.describe(), "label": True})
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
            **({"public": _PUBLIC[spec.type]} if spec.type in _PUBLIC else {}),
        },
    }
