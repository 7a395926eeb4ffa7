"""Logistic regression by output perturbation (compute/engines/models/logistic.py): rows within the unit
ball by the declaration, the minimiser's sensitivity on neighbouring tables, a solver that stops only at
its tolerance, weights on the grid with the noise's law, and scikit-learn's model when the noise vanishes."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pandas as pd
import pytest

from cloakroom_client.models import design_matrix
from cloakroom_client.protocol.noise import gaussian_rho
from compute.engines import accounting, models
from compute.engines.dp.query import ColumnMeta
from compute.engines.models import logistic, stats

SCHEMA = {
    "x": ColumnMeta("x", "numeric", 0.0, 10.0),
    "w": ColumnMeta("w", "numeric", -5.0, 5.0),
    "colour": ColumnMeta("colour", "categorical", categories=("red", "green", "blue")),
    "flag": ColumnMeta("flag", "boolean"),
    "kind": ColumnMeta("kind", "categorical", categories=("a", "b", "c")),
    "member": ColumnMeta("member", "boolean"),
}
FEATURES = ["x", "w", "colour", "flag"]


def spec(label: str, **params) -> models.ModelSpec:
    body = {"type": "logistic_regression", "features": FEATURES, "label": label, "params": params}
    return models.parse_model(body, SCHEMA)


def random_table(n: int, seed: int) -> dict:
    rs = np.random.RandomState(seed)
    x, w = rs.uniform(0, 10, n), rs.uniform(-5, 5, n)
    colour = rs.choice(["red", "green", "blue"], n).astype(object)
    score = 0.6 * (x - 5) - 0.8 * w + 1.5 * (colour == "red") + rs.logistic(size=n)
    kind = np.where(score > 1, "a", np.where(score < -1, "c", "b")).astype(object)
    return {"x": x, "w": w, "colour": colour, "flag": rs.rand(n) < 0.3, "kind": kind, "member": score > 0}


def corners() -> list[dict]:
    return [
        {"x": x, "w": w, "colour": c, "flag": f, "kind": k, "member": not f}
        for x, w, c, f, k in itertools.product(
            (0.0, 10.0, 40.0), (-5.0, 5.0), ("red", "blue", "mauve"), (False, True), ("a", "c")
        )
    ]


def append(table: dict, row: dict) -> dict:
    return {k: np.append(v, row[k]).astype(v.dtype) for k, v in table.items()}


def scaled(table: dict, s: models.ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    a, t = stats.features(table, s), stats.targets(table, s)
    keep = t.sum(axis=1) > 0
    return a[keep] / logistic.radius(s), t[keep].argmax(axis=1)


def exact_weights(table: dict, s: models.ModelSpec, lam: float) -> np.ndarray:
    z, codes = scaled(table, s)
    if len(s.classes) == 2:
        return logistic._binary(z, np.where(codes == 1, 1.0, -1.0), lam)
    return logistic._softmax(z, codes, lam, len(s.classes)).ravel()


def test_every_row_of_the_declared_domain_lies_in_the_unit_ball():
    s = spec("kind")
    for row in corners():
        z, _ = scaled({k: np.array([v], dtype=object if k in ("colour", "kind") else float) for k, v in row.items()}, s)
        assert np.linalg.norm(z) <= 1.0 + 1e-12
    assert logistic.radius(s) == math.sqrt(5)  # the constant and four features


@pytest.mark.parametrize("label", ["member", "kind"])
def test_one_row_moves_the_minimiser_by_at_most_the_declared_sensitivity(label):
    # Chaudhuri et al.: F is lambda-strongly convex and one row's loss is L-Lipschitz, so the minimiser
    # moves by at most L / lambda. Checked on every corner row added to two tables, at two ridges.
    s = spec(label)
    worst = 0.0
    for lam in (0.5, 5.0):
        bound = (logistic.lipschitz(s) + 2 * logistic.TOLERANCE) / lam
        for seed in (0, 1):
            base = random_table(40, seed)
            w = exact_weights(base, s, lam)
            for row in corners()[::3]:
                moved = float(np.linalg.norm(exact_weights(append(base, row), s, lam) - w))
                assert moved <= bound, (lam, seed, row)
                worst = max(worst, moved * lam / logistic.lipschitz(s))
    assert worst > 0.2  # the bound is not vacuous: some row moves the weights by a good share of it


@pytest.mark.parametrize("label", ["member", "kind"])
def test_the_solver_stops_only_within_its_tolerance(label):
    s = spec(label)
    z, codes = scaled(random_table(300, 3), s)
    lam = 0.01  # a weak ridge: the hardest case for the solver
    if label == "member":
        y = np.where(codes == 1, 1.0, -1.0)
        w = logistic._binary(z, y, lam)
        grad = logistic._binary_parts(z, y, w, lam)[1]
    else:
        w = logistic._softmax(z, codes, lam, 3).ravel()
        grad = logistic._softmax_parts(z, codes, w, lam, 3)[1]
    assert np.linalg.norm(grad) <= logistic.TOLERANCE


@pytest.mark.parametrize("delta", [0.0, 1e-6])
def test_the_weights_are_released_on_the_grid_with_the_noise_of_their_mechanism(delta):
    s = spec("member")
    table = random_table(200, 5)
    plan = models.plan(s, 1.0, delta)
    count, mech = plan.mechanisms["count"], plan.mechanisms["weights"]
    # lambda W moves by at most L + 2 tolerance: the mechanism needs no lambda.
    assert mech.sensitivity == pytest.approx((1 + 2 * logistic.TOLERANCE) * (1 if delta else math.sqrt(7)))
    assert (count.sensitivity, count.granularity, count.integer) == (1.0, 1.0, True)
    if delta == 0:
        assert count.epsilon + mech.epsilon <= 1.0 and count.epsilon == pytest.approx(0.05)
        assert plan.rho == accounting.pure_rho(1.0)
    else:
        assert count.rho + mech.rho <= gaussian_rho(1.0, delta) and plan.rho == pytest.approx(count.rho + mech.rho)
    rng = random.Random(11)
    a, t = stats.features(table, s), stats.targets(table, s)
    noise, counts = [], []
    for _ in range(400):
        noisy, extra = logistic.fit(a, t, s, plan.mechanisms, rng)
        lam = extra["lambda"]
        # lambda comes from the noisy count alone: NOISE_ROWS / sqrt(count) of noise on each weight.
        assert lam == logistic.regularisation(s, mech, extra["noisy_rows"])
        assert mech.scale / lam == pytest.approx(logistic.NOISE_ROWS / math.sqrt(max(extra["noisy_rows"], 1)))
        released = noisy[0] * extra["radius"] * lam  # lambda W, in the grid's units
        steps = released / mech.granularity
        assert np.allclose(steps, np.round(steps), atol=1e-6)
        noise.append(released - lam * exact_weights(table, s, lam))
        counts.append(extra["noisy_rows"])
    noise = np.concatenate(noise)
    # 2,800 draws: the sample standard deviation within 8% of the mechanism's (about 5 standard errors
    # for the Laplace's kurtosis), and centred.
    assert noise.std() == pytest.approx(mech.std, rel=0.08)
    assert abs(noise.mean()) < 5 * mech.std / math.sqrt(noise.size)
    assert np.mean(counts) == pytest.approx(200, abs=5 * count.std / math.sqrt(len(counts)))


@pytest.mark.parametrize("label", ["member", "kind"])
def test_with_little_noise_the_model_is_scikit_learns(label):
    from sklearn.linear_model import LogisticRegression

    s = spec(label, C=2.0)
    table = random_table(500, 7)
    model = models.train(table, s, 1e9, rng=random.Random(1))["model"]
    assert model["C"] == 2.0 and model["lambda"] == 0.5 and "noisy_rows" not in model
    assert list(models.plan(s, 1.0).mechanisms) == ["weights"]  # C given: no count
    z, codes = scaled(table, s)
    plain = LogisticRegression(C=2.0, fit_intercept=False, tol=1e-10, max_iter=10_000).fit(z, codes)
    declared = design_matrix({"model": model}, pd.DataFrame(table)).to_numpy(dtype=float)  # the declared units
    ours = declared @ np.array(model["coefficients"]).T + np.array(model["intercept"])
    theirs = plain.decision_function(z)
    # lambda W is rounded to the grid: a score moves by at most half a step over lambda per weight (||z|| <= 1).
    g = models.plan(s, 1e9).mechanisms["weights"].granularity
    atol = g / 2 / model["lambda"] * math.sqrt(logistic.n_weights(s)) + 1e-6
    if label == "member":
        np.testing.assert_allclose(ours[:, 0], theirs, atol=atol)
    else:  # softmax scores are defined up to a constant per row
        np.testing.assert_allclose(
            ours - ours.mean(axis=1, keepdims=True), theirs - theirs.mean(axis=1, keepdims=True), atol=2 * atol
        )
    assert (ours.argmax(axis=1) if label == "kind" else ours[:, 0] > 0).tolist() == (
        plain.predict(z) if label == "kind" else plain.predict(z) == 1
    ).tolist()


def test_a_solver_that_cannot_converge_releases_nothing(monkeypatch):
    monkeypatch.setattr(logistic, "_MAX_ITERATIONS", 1)
    s = spec("member")
    with pytest.raises(logistic.ConvergenceError):
        models.train(random_table(100, 2), s, 1.0, rng=random.Random(0))
