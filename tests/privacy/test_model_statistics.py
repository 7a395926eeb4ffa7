"""A statistical audit of the model engine's noisy statistics (compute/engines/models/stats.py) on
neighbouring datasets: D, and D with one row added at the corner of the declared domain, which moves
every statistic by the most one row can. The lower confidence bound on epsilon from the releases
(tests/privacy/audit.py) must stay within the part's claimed epsilon; the tolerance is the audit's
alpha, not a tuned margin. A part noised for too small a sensitivity (diffprivlib's issue #105 gave
zero) drives the bound far past its claim."""

from __future__ import annotations

import random

import numpy as np
import pytest

from compute.engines import models
from compute.engines.dp.query import ColumnMeta
from compute.engines.models import stats
from tests.privacy.audit import empirical_epsilon

SCHEMA = {
    "x": ColumnMeta("x", "numeric", 0.0, 10.0),
    "y": ColumnMeta("y", "numeric", 0.0, 10.0),
}
SPEC = models.parse_model({"type": "linear_regression", "features": ["x"], "label": "y"}, SCHEMA)
DRAWS = 12_000


def tables():
    rs = np.random.RandomState(4)
    base = {"x": rs.uniform(0, 10, 30), "y": rs.uniform(0, 10, 30)}
    neighbour = {k: np.append(v, 10.0) for k, v in base.items()}  # (10, 10) scales to (1, 1): every term is 1
    return base, neighbour


@pytest.mark.parametrize("part", ["count", "targets"])
def test_a_parts_release_tells_neighbours_apart_no_more_than_its_epsilon(part):
    mech = models.plan(SPEC, 1.0).mechanisms[part]
    base, neighbour = tables()
    part_stats = stats.parts(SPEC)[part]
    values = [stats.measure(stats.rows(t, SPEC), part_stats) for t in (base, neighbour)]
    assert np.all(values[1] - values[0] == 1.0)  # the worst neighbour: every statistic moves by 1
    rng = random.Random(2024)
    # One number per release: the sum of the part's statistics (a post-processing, so it is no more
    # private than the release; for this neighbour it carries the whole difference).
    draws = [np.array([sum(mech.release(v, rng) for v in vals) for _ in range(DRAWS)]) for vals in values]
    centre = float(values[0].sum())
    scale = mech.scale * len(part_stats)
    events = [centre + k * scale for k in (-1.0, -0.5, 0.0, 0.5, 1.0, 1.5)]
    found = empirical_epsilon(draws[0], draws[1], events, alpha=0.05)
    assert found <= mech.epsilon, (found, mech.epsilon)
    # ... and the audit has power: the neighbours are told apart by a good share of the claim.
    assert found > 0.3 * mech.epsilon, (found, mech.epsilon)


def test_logistic_regressions_noisy_weights_tell_neighbours_apart_no_more_than_their_epsilon():
    # Output perturbation (compute/engines/models/logistic.py): the exact minimisers on D and on D with
    # one row added that the model gets wrong, then the released weights drawn from each. The release
    # is projected on the direction the row moved the weights (a post-processing).
    from compute.engines.models import logistic

    schema = {"x": ColumnMeta("x", "numeric", 0.0, 10.0), "y": ColumnMeta("y", "boolean")}
    spec = models.parse_model(
        {"type": "logistic_regression", "features": ["x"], "label": "y", "params": {"C": 0.2}}, schema
    )
    base = {"x": np.array([0.0, 10.0, 5.0]), "y": np.array([False, True, True])}
    neighbour = {"x": np.append(base["x"], 10.0), "y": np.append(base["y"], False)}
    mech = models.plan(spec, 1.0).mechanisms["weights"]
    # C = 0.2: lambda is 5, and lambda W is what the noise is added to.
    exact = [
        5.0 * logistic.solve(stats.features(t, spec), stats.targets(t, spec), spec, 5.0) for t in (base, neighbour)
    ]
    direction = np.sign(exact[1] - exact[0]).ravel()
    assert np.abs(exact[1] - exact[0]).sum() > 0.4 * mech.sensitivity  # a neighbour that moves them far
    rng = random.Random(99)
    draws = [np.array([float(direction @ logistic.perturb(w, mech, rng).ravel()) for _ in range(DRAWS)]) for w in exact]
    centre = float(direction @ exact[0].ravel())
    scale = mech.scale * len(direction)
    events = [centre + k * scale for k in (-1.0, -0.5, 0.0, 0.5, 1.0, 1.5)]
    found = empirical_epsilon(draws[0], draws[1], events, alpha=0.05)
    assert found <= mech.epsilon, (found, mech.epsilon)
    # ... with power: this row moves the weights by about half the bound (0.25 of the claim was found).
    assert found > 0.15 * mech.epsilon, (found, mech.epsilon)
