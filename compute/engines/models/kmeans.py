"""k-means as a few rounds of DP Lloyd (Blum, Dwork, McSherry and Nissim, "Practical privacy: the
SuLQ framework", PODS 2005; Su, Cao, Li, Bertino and Jha, "Differentially private k-means
clustering", CODASPY 2016), on the grid.

The initial centres come from a public rule: ``numpy.random.default_rng(seed)`` draws each numeric
coordinate uniformly within its declared bounds and each 0/1 column uniformly in [0, 1]. No row is
ever a centre. Each round then assigns every row to its nearest centre, in the declared units as
scikit-learn's ``KMeans.predict`` does, and measures per cluster the count and the sum of each
coordinate (the scaled coordinates of stats.py, within [-1, 1]); those are the parts
``round_r_counts`` and ``round_r_sums`` of stats.parts, noised like naive Bayes's per-class
statistics (a row is in one cluster: the cluster columns are one group). The new centres are the
noisy sums over the noisy counts, kept within the declared domain; a cluster whose noisy count is
under 1 keeps its centre. The rounds compose (each adaptively on the last's noisy centres):
epsilon, or the Gaussian's rho, is split equally between them by stats.plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from cloakroom_client.protocol.noise import Mechanism, make_rng
from compute.engines.models.forest import public_grid
from compute.engines.models.spec import ModelSpec
from compute.engines.models.stats import indicators, layout, measure, parts, units

_MIN_COUNT = 1.0


def _low(spec: ModelSpec) -> np.ndarray:
    """Each encoded column's lowest scaled value: -1, or 0 for a 0/1 column."""
    lay = layout(spec)
    return np.array([0.0 if lay.indicator[j] else -1.0 for j in range(1, lay.n_features + 1)])


def initial_centres(spec: ModelSpec) -> np.ndarray:
    """The public starting centres, in the scaled units: from the seed and the declaration alone."""
    low = _low(spec)
    generator = np.random.default_rng(spec.params["seed"])
    return public_grid(generator, low, np.ones_like(low), (spec.params["k"], len(low)))


def assign(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Each row's nearest centre (the first on ties), both in the same units; n x k numbers at a time."""
    distance = (centres**2).sum(axis=1)[None, :] - 2.0 * x @ centres.T
    return distance.argmin(axis=1)


def fit(a: np.ndarray, spec: ModelSpec, mechanisms: Mapping[str, Mechanism], rng: Any = None) -> dict[str, Any]:
    """The rounds of DP Lloyd on the rows' feature coordinates ``a`` (stats.features: the constant
    first). Returns the released parameters."""
    source = make_rng(rng)
    k, rounds = spec.params["k"], spec.params["iterations"]
    mid, half = units(spec)
    x_declared = mid + half * a[:, 1:]
    centres = initial_centres(spec)
    by_part = parts(spec)
    counts = np.zeros(k)
    for r in range(1, rounds + 1):
        cluster = assign(x_declared, mid + half * centres)
        full = np.hstack([a, indicators(cluster, k)])
        count_part, sum_part = f"round_{r}_counts", f"round_{r}_sums"
        counts = np.array([mechanisms[count_part].release(v, source) for v in measure(full, by_part[count_part])])
        sums = np.array([mechanisms[sum_part].release(v, source) for v in measure(full, by_part[sum_part])])
        sums = sums.reshape(k, -1)
        kept = counts < _MIN_COUNT
        moved = np.clip(sums / np.maximum(counts, _MIN_COUNT)[:, None], _low(spec), 1.0)
        centres = np.where(kept[:, None], centres, moved)
    return {
        "centres": (mid + half * centres).tolist(),
        "cluster_count": counts.tolist(),
        "k": k,
        "iterations": rounds,
        "seed": spec.params["seed"],
    }
