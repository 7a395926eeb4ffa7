"""The noisy sufficient statistics every model here is built from, drawn on a grid.

Each row becomes a vector ``a`` of coordinates, every one within [-1, 1] by the declaration alone: a
constant 1, each numeric feature clipped to its declared bounds and scaled to [-1, 1], one 0/1
column per declared category of a categorical feature, one 0/1 column per boolean feature, and the
target (a numeric label clipped and scaled the same way, or one 0/1 column per declared class; for
k-means, one 0/1 column per cluster, the row's cluster in a round). A *statistic* is the sum over
rows of a product of coordinates: ``sum a_j a_k`` (X^T X, X^T y; PCA uses the same without a
target) or, for naive Bayes and each round of k-means, ``sum [class c] a_j`` and
``sum [class c] a_j**2``. A random forest's statistics are counts of rows of each class in each leaf
of a tree (forest.py); each tree is a part of sensitivity 1 and they are whole numbers, noised on the
grid 1. Logistic regression measures no statistic: its one part is the solver's weights (logistic.py).

Sensitivity (neighbours add or remove one row), from the declaration alone. Coordinates are grouped:
a categorical feature's columns, and the class columns, are one group each (at most one of them is
non-zero in a row); every other coordinate is its own group. Statistics whose coordinates come from
the same groups (the same *signature*) have at most one non-zero term per row, and every term is at
most 1 in absolute value. So one row moves a part's statistics by at most ``S`` in L1 norm and
``sqrt(S)`` in L2 norm, changing at most ``S`` of them, where ``S`` is the number of signatures in
the part. Statistics that the declaration fixes (two categories of one feature never meet; a 0/1
column's square is the column) are not measured: they follow from the others.

Noise (cloakroom_client.protocol.noise): each statistic is rounded to the grid ``2**-10`` and exact
integer noise is added in grid steps. A row moves each statistic by at most 1024 steps plus 1 for
the rounding, so a part's integer sensitivity is ``1025 S`` (L1) or ``ceil(1025 sqrt(S))`` (L2).

* delta = 0: discrete Laplace on every statistic with scale ``1025 S_total / epsilon`` steps; part
  ``p`` spends ``epsilon * S_p / S_total`` (the parts' epsilons add up to at most epsilon). The job
  is pure epsilon-DP and is charged ``rho = epsilon**2 / 2``.
* delta > 0: the discrete Gaussian with one sigma for every statistic, calibrated so that the parts'
  rhos add up to ``gaussian_rho(epsilon, delta)``, which implies (epsilon, delta)-DP; each part is
  ``rho_p = steps_p**2 / (2 sigma**2)``-zCDP for its L2 sensitivity (Canonne, Kamath and Steinke,
  2020, for the multivariate discrete Gaussian) and the job is charged the parts' rhos added up.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from cloakroom_client.protocol.noise import Mechanism, make_rng
from compute.engines.models.logistic import mechanisms as logistic_mechanisms
from compute.engines.models.logistic import n_weights
from compute.engines.models.shares import budget_share
from compute.engines.models.spec import ModelSpec

GRID = 2.0**-10
STEPS_PER_UNIT = 1025

Stat = tuple[int, ...]


@dataclass(frozen=True)
class Layout:
    """The coordinates of a row's vector: names, groups, and which are 0/1 indicators."""

    names: tuple[str, ...]
    groups: tuple[int, ...]
    indicator: tuple[bool, ...]
    n_features: int  # columns 0..n_features are the constant and the encoded features
    targets: tuple[int, ...]  # the target coordinates (a numeric label, or one per class)


def _target_names(spec: ModelSpec) -> list[str]:
    """The target coordinates: a regression's label, one 0/1 column per class, or per k-means cluster
    (the row's cluster in a round); none for pca and random forests (whose counts are not sums)."""
    if spec.type == "kmeans":
        return [f"cluster={i}" for i in range(spec.params["k"])]
    if spec.label is None or spec.type == "random_forest":
        return []
    if spec.type == "linear_regression":
        return [spec.label.name]
    return [f"{spec.label.name}={c}" for c in spec.classes]


def layout(spec: ModelSpec) -> Layout:
    names, groups, indicator = ["1"], [0], [False]
    for feature in spec.features:
        group = max(groups) + 1
        for i, column in enumerate(feature.columns):
            names.append(column)
            groups.append(group if feature.kind == "categorical" else group + i)
            indicator.append(feature.kind != "numeric")
    n_features = len(names) - 1
    group = max(groups) + 1
    target_names = _target_names(spec)
    first = len(names)
    names += target_names
    groups += [group] * len(target_names)
    indicator += [spec.type != "linear_regression"] * len(target_names)
    return Layout(tuple(names), tuple(groups), tuple(indicator), n_features, tuple(range(first, len(names))))


def _fixed(lay: Layout, j: int, k: int) -> bool:
    """Whether the declaration alone fixes ``sum a_j a_k``: two columns of one group never meet, and a
    0/1 column's square is the column."""
    if j == k:
        return lay.indicator[j]
    return lay.groups[j] == lay.groups[k]


def parts(spec: ModelSpec) -> dict[str, list[Stat]]:
    """The statistics a model type measures, by part, as tuples of coordinates."""
    lay = layout(spec)
    features = range(1, lay.n_features + 1)
    if spec.type in ("random_forest", "logistic_regression"):
        return {}  # a tree's leaf counts (forest.py) or a solver's noisy weights (logistic.py), not sums
    if spec.type == "kmeans":
        out: dict[str, list[Stat]] = {}
        for r in range(1, spec.params["iterations"] + 1):
            out[f"round_{r}_counts"] = [(c, 0) for c in lay.targets]
            out[f"round_{r}_sums"] = [(c, j) for c in lay.targets for j in features]
        return out
    if spec.type == "naive_bayes":
        return {
            "class_counts": [(c, 0) for c in lay.targets],
            "class_sums": [(c, j) for c in lay.targets for j in features],
            "class_sums_of_squares": [(c, j, j) for c in lay.targets for j in features if not lay.indicator[j]],
        }
    targets = lay.targets
    return {
        "count": [(0, 0)],
        "sums": [(0, j) for j in features],
        "cross": [(j, k) for j in features for k in features if j <= k and not _fixed(lay, j, k)],
        "targets": [(j, t) for t in targets for j in [0, *features]],
    }


def signatures(spec: ModelSpec, stats: list[Stat]) -> int:
    """``S`` of a part: how many group signatures its statistics have (its L1 sensitivity)."""
    groups = layout(spec).groups
    return len({tuple(sorted(groups[c] for c in stat)) for stat in stats})


def sizes(spec: ModelSpec) -> dict[str, tuple[int, int]]:
    """Each part's number of statistics and ``S`` (its L1 sensitivity), from the declaration alone. A
    random forest's part is one tree: its leaves' class counts, of which one row moves one by 1."""
    if spec.type == "random_forest":
        leaves = 2 ** spec.params["max_depth"] * len(spec.classes)
        return {f"tree_{t}": (leaves, 1) for t in range(1, spec.params["n_trees"] + 1)}
    if spec.type == "logistic_regression":
        return {name: (n_weights(spec) if name == "weights" else 1, 1) for name in logistic_mechanisms(spec, 1.0, 0.0)}
    return {name: (len(stats), signatures(spec, stats)) for name, stats in parts(spec).items() if stats}


def _mechanism(epsilon: float, delta: float, size: int, total: int, integer: bool) -> Mechanism:
    """Part ``size`` of ``total``'s mechanism: a share of epsilon (delta 0) or of the Gaussian's rho."""
    grid, unit = (1.0, 1) if integer else (GRID, STEPS_PER_UNIT)
    if delta <= 0:
        kind = "geometric" if integer else "laplace"
        return Mechanism(kind, budget_share(epsilon, 0.0, size, total)[0], 0.0, float(size), grid, unit * size, integer)
    eps, _ = budget_share(epsilon, delta, size, total)
    return Mechanism("gaussian", eps, delta, math.sqrt(size), grid, math.ceil(unit * math.sqrt(size)), integer)


def plan(spec: ModelSpec, epsilon: float, delta: float) -> dict[str, Mechanism]:
    """Each part's grid mechanism, from the declaration and the budget alone. Counts of rows (a
    forest's leaves) are whole numbers: grid 1, nothing rounded."""
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise ValueError("epsilon must be a finite number > 0")
    if spec.type == "logistic_regression":
        return logistic_mechanisms(spec, epsilon, delta)
    signature = {name: size for name, (_, size) in sizes(spec).items()}
    total = sum(signature.values())
    integer = spec.type == "random_forest"
    return {name: _mechanism(epsilon, delta, size, total, integer) for name, size in signature.items()}


def plan_rho(mechanisms: Mapping[str, Mechanism], epsilon: float, delta: float) -> float:
    """The job's zCDP cost: epsilon**2 / 2 when pure, else the parts' rhos added up."""
    if delta <= 0:
        return float(Fraction(repr(epsilon)) ** 2 / 2)
    return sum(m.rho for m in mechanisms.values())


# -- the data side -----------------------------------------------------------------------------------


def _codes(values: Any, categories: list[Any]) -> np.ndarray:
    """Each row's index among the declared categories (-1 for none)."""
    index = {c: i for i, c in enumerate(categories)}
    return np.array([index.get(v, -1) for v in np.asarray(values, dtype=object)], dtype=int)


def _indicators(values: Any, categories: list[Any]) -> np.ndarray:
    codes = _codes(values, categories)
    out = np.zeros((len(codes), len(categories)))
    rows = np.flatnonzero(codes >= 0)
    out[rows, codes[rows]] = 1.0
    return out


def _scaled(values: Any, lower: float, upper: float) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    mid, half = (lower + upper) / 2.0, (upper - lower) / 2.0
    z = (np.clip(x, lower, upper) - mid) / half
    return np.where(np.isfinite(z), z, 0.0)  # a missing value counts as the middle of the bounds


def rows(data: Mapping[str, Any], spec: ModelSpec) -> np.ndarray:
    """Every row's vector ``a`` (one row per table row), each coordinate in [-1, 1] by construction."""
    return np.clip(np.hstack([features(data, spec), targets(data, spec)]), -1.0, 1.0)


def features(data: Mapping[str, Any], spec: ModelSpec) -> np.ndarray:
    """The constant and the encoded features of every row, each coordinate in [-1, 1]."""
    n = len(data[spec.features[0].name])
    blocks = [np.ones((n, 1))]
    for f in spec.features:
        if f.kind == "numeric":
            assert f.lower is not None and f.upper is not None
            blocks.append(_scaled(data[f.name], f.lower, f.upper)[:, None])
        elif f.kind == "categorical":
            blocks.append(_indicators(data[f.name], list(f.categories)))
        else:
            blocks.append(np.asarray(data[f.name], dtype=bool).astype(float)[:, None])
    return np.clip(np.hstack(blocks), -1.0, 1.0)


def targets(data: Mapping[str, Any], spec: ModelSpec) -> np.ndarray:
    """The label's coordinates of every row: the scaled label, or one 0/1 column per declared class
    (a row whose label is no declared class is in none); no column without a label."""
    label = spec.label
    n = len(data[spec.features[0].name])
    if label is None:
        return np.zeros((n, 0))
    if spec.type == "linear_regression":
        assert label.lower is not None and label.upper is not None
        return _scaled(data[label.name], label.lower, label.upper)[:, None]
    if label.kind == "boolean":
        return _indicators(np.asarray(data[label.name], dtype=bool), [False, True])
    return _indicators(data[label.name], list(label.categories))


def units(spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per encoded column, the middle and half-width that map the scaled units back to the declared
    ones (``x = mid + half * a``; 0 and 1 for the 0/1 columns)."""
    mid: list[float] = []
    half: list[float] = []
    for f in spec.features:
        for _ in f.columns:
            numeric = f.kind == "numeric"
            mid.append(f.mid if numeric else 0.0)
            half.append(f.half if numeric else 1.0)
    return np.array(mid), np.array(half)


def indicators(codes: np.ndarray, k: int) -> np.ndarray:
    """One 0/1 column per index 0..k-1 (a row of code -1 in none)."""
    out = np.zeros((len(codes), k))
    rows_ = np.flatnonzero(codes >= 0)
    out[rows_, codes[rows_]] = 1.0
    return out


def measure(a: np.ndarray, stats: list[Stat]) -> np.ndarray:
    """The exact statistics (never released as they are)."""
    gram = a.T @ a
    out = np.empty(len(stats))
    for i, stat in enumerate(stats):
        out[i] = gram[stat] if len(stat) == 2 else float(np.prod(a[:, list(stat)], axis=1).sum())
    return out


def release(
    data: Mapping[str, Any], spec: ModelSpec, mechanisms: Mapping[str, Mechanism], rng: Any = None
) -> dict[str, np.ndarray]:
    """Every part's statistics, rounded to the grid with its noise added: exact multiples of GRID."""
    source = make_rng(rng)
    a = rows(data, spec)
    out: dict[str, np.ndarray] = {}
    for name, stats in parts(spec).items():
        if not stats:
            out[name] = np.empty(0)
            continue
        mech = mechanisms[name]
        out[name] = np.array([mech.release(v, source) for v in measure(a, stats)])
    return out
