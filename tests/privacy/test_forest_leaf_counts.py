"""A statistical audit of a random forest's noisy leaf counts (compute/engines/models/forest.py): whole
numbers noised on the grid 1, one tree a part of sensitivity 1. On neighbouring datasets, D and D with
one row added, the added row moves one count of each tree by 1; the lower confidence bound on epsilon
from that count's releases (tests/privacy/audit.py) must stay within the tree's claimed epsilon. The
tolerance is the audit's alpha, not a tuned margin; a tree noised as if its leaves did not share the
row (or a count released without noise) drives the bound far past the claim."""

from __future__ import annotations

import random

import numpy as np

from compute.engines import models
from compute.engines.dp.query import ColumnMeta
from compute.engines.models import forest, stats
from tests.privacy.audit import empirical_epsilon

SCHEMA = {
    "x": ColumnMeta("x", "numeric", 0.0, 10.0),
    "kind": ColumnMeta("kind", "categorical", categories=("a", "b")),
}
SPEC = models.parse_model(
    {"type": "random_forest", "features": ["x"], "label": "kind", "params": {"n_trees": 2, "max_depth": 2}}, SCHEMA
)
DRAWS = 12_000


def counts(data: dict) -> np.ndarray:
    """The exact class counts of the first tree's leaves."""
    mid, half = stats.units(SPEC)
    x = mid + half * stats.features(data, SPEC)[:, 1:]
    columns, thresholds = forest.shapes(SPEC)[0]
    out = np.zeros((4, 2))
    np.add.at(out, forest.leaves(x, columns, thresholds), stats.targets(data, SPEC))
    return out.ravel()


def test_a_trees_leaf_counts_tell_neighbours_apart_no_more_than_its_epsilon():
    mech = models.plan(SPEC, 1.0).mechanisms["tree_1"]
    assert (mech.kind, mech.granularity, mech.steps, mech.epsilon) == ("geometric", 1.0, 1, 0.5)
    rs = np.random.RandomState(4)
    base = {"x": rs.uniform(0, 10, 40), "kind": rs.choice(["a", "b"], 40).astype(object)}
    neighbour = {"x": np.append(base["x"], 10.0), "kind": np.append(base["kind"], "b")}
    moved = counts(neighbour) - counts(base)
    assert np.abs(moved).sum() == 1  # one count of the tree, by 1
    cell = int(np.flatnonzero(moved)[0])
    values = [counts(base)[cell], counts(neighbour)[cell]]
    rng = random.Random(2025)
    draws = [np.array([mech.release(v, rng) for _ in range(DRAWS)]) for v in values]
    assert all(float(d).is_integer() for d in draws[0][:100])
    centre = values[0]
    events = [centre + k for k in (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0)]
    found = empirical_epsilon(draws[0], draws[1], events, alpha=0.05)
    assert found <= mech.epsilon, (found, mech.epsilon)
    # ... and the audit has power: the neighbours are told apart by a good share of the claim.
    assert found > 0.3 * mech.epsilon, (found, mech.epsilon)
