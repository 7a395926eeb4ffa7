"""A random forest of random trees (Geurts, Ernst and Wehenkel's extremely randomised trees taken to
the limit, as in Fletcher and Islam's survey of DP decision forests, 2019) with noisy leaf counts.

Each tree's shape is public: ``numpy.random.default_rng(seed)`` picks, for every inner node of a
full tree of depth ``max_depth``, an encoded column and a threshold uniformly within that column's
declared bounds (0.5 for a 0/1 column). Nothing of the data is looked at to grow a tree. A row goes
left when its value is at most the threshold. The only measurement is, per tree, the number of rows
of each declared class in each leaf: a row is in one leaf of a tree and has at most one class, so
adding or removing it moves one of the tree's counts by 1 (parallel composition across the leaves).
The counts are whole numbers, noised on the grid 1 (the discrete Laplace or the discrete Gaussian,
cloakroom_client.protocol.noise) with epsilon, or the Gaussian's rho, split equally between the trees
(stats.plan: every tree is a part of sensitivity 1).

A forest predicts, for a row, the mean over trees of its leaf's class shares (the noisy counts
clipped at 0 over their sum; equal shares when nothing is left), and the class of the largest: the
SDK does it from the nested dicts (cloakroom_client.models.Forest); the server predicts nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from cloakroom_client.protocol.noise import Mechanism, make_rng
from compute.engines.models.spec import ModelSpec

# Public draws (thresholds, starting centres) are whole steps of this grid over the declared range.
PUBLIC_STEPS = 2**20


def public_grid(generator: Any, low: np.ndarray, high: np.ndarray, size: Any) -> np.ndarray:
    """Values uniform over a grid of PUBLIC_STEPS steps between ``low`` and ``high``, drawn as whole
    steps by a seeded generator. Public: from a seed and the declaration, never from a row."""
    return low + generator.integers(0, PUBLIC_STEPS + 1, size=size) * ((high - low) / PUBLIC_STEPS)


def shapes(spec: ModelSpec) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every tree's inner nodes (heap order, root 0): the encoded column each splits on and its
    threshold in the declared units. From the seed and the declaration alone."""
    generator = np.random.default_rng(spec.params["seed"])
    low: list[float] = []
    high: list[float] = []
    for f in spec.features:
        if f.kind == "numeric":
            assert f.lower is not None and f.upper is not None
            low.append(f.lower)
            high.append(f.upper)
        else:
            low += [0.5] * len(f.columns)
            high += [0.5] * len(f.columns)
    lows, highs = np.array(low, dtype=float), np.array(high, dtype=float)
    inner = 2 ** spec.params["max_depth"] - 1
    out = []
    for _ in range(spec.params["n_trees"]):
        columns = generator.integers(0, len(lows), size=inner)
        out.append((columns, public_grid(generator, lows[columns], highs[columns], inner)))
    return out


def leaves(x: np.ndarray, columns: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Each row's leaf (0 .. 2**depth - 1, left to right) in a full tree given in heap order."""
    node = np.zeros(len(x), dtype=int)
    inner = len(columns)
    for _ in range((inner + 1).bit_length() - 1):  # the depth: every leaf of a full tree is that deep
        right = x[np.arange(len(x)), columns[node]] > thresholds[node]
        node = 2 * node + 1 + right
    return node - inner


def nested(spec: ModelSpec, columns: np.ndarray, thresholds: np.ndarray, counts: np.ndarray, node: int = 0) -> dict:
    """One tree as nested dicts: ``{"column", "index", "threshold", "left", "right"}`` for an inner
    node (the encoded column's name and position; a row goes left when its value is at most the
    threshold), ``{"counts"}`` (the noisy count of each class) for a leaf."""
    inner = len(columns)
    if node >= inner:
        return {"counts": counts[node - inner].tolist()}
    names = spec.columns
    return {
        "column": names[int(columns[node])],
        "index": int(columns[node]),
        "threshold": float(thresholds[node]),
        "left": nested(spec, columns, thresholds, counts, 2 * node + 1),
        "right": nested(spec, columns, thresholds, counts, 2 * node + 2),
    }


def fit(
    x: np.ndarray, y: np.ndarray, spec: ModelSpec, mechanisms: Mapping[str, Mechanism], rng: Any = None
) -> dict[str, Any]:
    """The forest on ``x`` (the encoded columns in the declared units, clipped) and ``y`` (one 0/1
    column per declared class). Returns the released parameters."""
    source = make_rng(rng)
    n_leaves = 2 ** spec.params["max_depth"]
    trees = []
    for t, (columns, thresholds) in enumerate(shapes(spec), start=1):
        exact = np.zeros((n_leaves, y.shape[1]))
        np.add.at(exact, leaves(x, columns, thresholds), y)
        mech = mechanisms[f"tree_{t}"]
        noisy = np.array([mech.release(v, source) for v in exact.ravel()]).reshape(exact.shape)
        trees.append(nested(spec, columns, thresholds, noisy))
    return {
        "trees": trees,
        "n_trees": spec.params["n_trees"],
        "max_depth": spec.params["max_depth"],
        "seed": spec.params["seed"],
    }
