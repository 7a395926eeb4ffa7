"""DP logistic regression by output perturbation on a grid (Chaudhuri, Monteleoni and Sarwate, "Differentially
Private Empirical Risk Minimization", JMLR 2011, section 4).

Each row's vector ``a`` (the constant 1 and the encoded features, every coordinate in [-1, 1]) is divided
by ``R = sqrt(1 + features)``: a numeric feature contributes at most 1 to ``||a||**2``, a categorical
feature's one-hot columns at most 1 together, a boolean at most 1, so ``||z|| <= 1`` by the declaration
alone. The model minimises the summed loss plus a ridge on every weight (the intercept included):

    F(W) = sum_i loss(W z_i, y_i) + (lambda / 2) ||W||**2

with the logistic loss (two classes, one weight vector) or the softmax loss (several classes, one row
per class). The loss's gradient in W is at most ``L`` in norm (1 for the logistic loss, sqrt(2) for the
softmax's ``(p - e_y) z^T``), and F is lambda-strongly convex, so adding or removing one row moves the
minimiser by at most ``L / lambda`` in L2 norm. The solver stops only where ``||grad F|| <= TOLERANCE``,
which puts it within ``TOLERANCE / lambda`` of the exact minimiser. What is noised is ``lambda W``, whose
sensitivity is therefore ``L + 2 TOLERANCE`` (L2), and ``sqrt(P)`` times that in L1 for ``P`` weights,
whatever lambda is; the released weights are the noisy ``lambda W`` over lambda (post-processing).

Noise: ``lambda W`` is rounded to a power-of-two grid ``g`` and exact integer noise is added in steps
(cloakroom_client.protocol.noise). Rounding moves each weight by at most half a step, so the rounded
values' sensitivity is ``ceil(D1 / g) + P`` steps in L1 (discrete Laplace, delta 0, epsilon-DP) or
``ceil(D2 / g + sqrt(P))`` in L2 (the discrete Gaussian, rho-zCDP, delta > 0). ``g`` is fine enough that the
rounding adds at most about 0.1 %.

lambda is never read off the rows. ``params.C`` sets ``lambda = 1 / C`` (scikit-learn's inverse
regularisation, on the scaled rows) and the whole budget goes to the weights. Otherwise COUNT_SHARE of it
buys a noisy count of the rows (sensitivity 1, on the grid 1) and lambda is chosen from that release, so
that the noise on each weight is ``NOISE_ROWS / sqrt(count)``: the two parts compose sequentially (the
second chosen from the first's release). More rows mean a weaker ridge relative to the loss and less
noise: the model improves with the table's size at a fixed epsilon.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import numpy as np
from scipy import optimize

from cloakroom_client.protocol.noise import GRID_STEPS, Mechanism
from compute.engines.models.shares import budget_share
from compute.engines.models.spec import ModelSpec

# The solver's stopping rule: the gradient's norm at the released point, before the noise.
TOLERANCE = 1e-6
# The default ridge: the noise on each weight (in the units of z) is NOISE_ROWS / sqrt(rows), from a
# noisy count of the rows. Chosen on UCI Adult (32,561 rows: 0.15) and the demo's breast-cancer table
# (569 rows: 1.1) at epsilon 0.1 to 10, never on the rows being trained on.
NOISE_ROWS = 27.0
# The noisy count's share of the budget (of epsilon, or of the Gaussian's rho), when C is not given.
COUNT_SHARE = Fraction(1, 20)
_MAX_ITERATIONS = 500


class ConvergenceError(RuntimeError):
    """The solver did not reach TOLERANCE: nothing is released (the job fails and is refunded)."""


def n_weights(spec: ModelSpec) -> int:
    """P: (encoded features + 1) weights per class, one class's for two classes."""
    per_class = len(spec.columns) + 1
    k = len(spec.classes)
    return per_class * (1 if k == 2 else k)


def radius(spec: ModelSpec) -> float:
    """R: the largest norm of a row's vector, from the declaration (the constant and one per feature)."""
    return math.sqrt(1 + len(spec.features))


def lipschitz(spec: ModelSpec) -> float:
    return 1.0 if len(spec.classes) == 2 else math.sqrt(2.0)


def _granularity(target: float) -> float:
    g = 2.0 ** math.floor(math.log2(target))
    while g > target:
        g /= 2.0
    return g


def _weights_mechanism(spec: ModelSpec, epsilon: float, delta: float) -> Mechanism:
    """The noise on ``lambda * W``, whose sensitivity is ``L + 2 TOLERANCE`` whatever lambda is: the
    mechanism is fixed before the count that sets lambda is drawn."""
    p = n_weights(spec)
    l2 = lipschitz(spec) + 2.0 * TOLERANCE
    g = _granularity(l2 / (GRID_STEPS * math.sqrt(p)))  # rounding adds about 0.1 % at most
    if delta > 0:
        return Mechanism("gaussian", epsilon, delta, l2, g, math.ceil(l2 / g + math.sqrt(p)))
    return Mechanism("laplace", epsilon, 0.0, math.sqrt(p) * l2, g, math.ceil(math.sqrt(p) * l2 / g) + p)


def mechanisms(spec: ModelSpec, epsilon: float, delta: float) -> dict[str, Mechanism]:
    """The parts' grid mechanisms at (epsilon, delta), from the declaration and the budget alone: the
    rows' noisy count (unless C is given) and the weights."""
    if spec.params.get("C") is not None:
        return {"weights": _weights_mechanism(spec, epsilon, delta)}
    part, total = COUNT_SHARE.numerator, COUNT_SHARE.denominator
    count_eps, _ = budget_share(epsilon, delta, part, total)
    weights_eps, _ = budget_share(epsilon, delta, total - part, total)
    if delta > 0:
        count = Mechanism("gaussian", count_eps, delta, 1.0, 1.0, 1, True)
    else:
        count = Mechanism("geometric", count_eps, 0.0, 1.0, 1.0, 1, True)
    return {"count": count, "weights": _weights_mechanism(spec, weights_eps, delta)}


def regularisation(spec: ModelSpec, weights: Mechanism, noisy_rows: float | None) -> float:
    """lambda: 1 / C when C is given, else the ridge that puts noise NOISE_ROWS / sqrt(rows) on each
    weight, from the noisy count of the rows (at least 1)."""
    if spec.params.get("C") is not None:
        return 1.0 / float(spec.params["C"])
    rows = max(float(noisy_rows or 0.0), 1.0)
    return weights.scale * math.sqrt(rows) / NOISE_ROWS


# -- the solver ----------------------------------------------------------------------------------------


def _binary(z: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """Newton's method on the logistic loss (y in {-1, +1}) with the ridge, to TOLERANCE."""
    w = np.zeros(z.shape[1])
    value, grad, p = _binary_parts(z, y, w, lam)
    for _ in range(_MAX_ITERATIONS):
        norm = float(np.linalg.norm(grad))
        if norm <= TOLERANCE:
            return w
        hess = (z.T * (p * (1.0 - p))) @ z + lam * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while True:
            trial = w - t * step
            new_value, new_grad, new_p = _binary_parts(z, y, trial, lam)
            # Armijo on the loss; near the optimum, where the loss's decrease is below its rounding,
            # a step that shrinks the gradient is taken instead.
            if new_value <= value - 0.25 * t * float(grad @ step) or np.linalg.norm(new_grad) < norm:
                break
            t /= 2.0
            if t < 1e-12:
                raise ConvergenceError("the logistic regression's line search failed")
        w, value, grad, p = trial, new_value, new_grad, new_p
    raise ConvergenceError("the logistic regression did not converge")


def _binary_parts(z: np.ndarray, y: np.ndarray, w: np.ndarray, lam: float) -> tuple[float, np.ndarray, np.ndarray]:
    """The loss, its gradient and sigmoid(-margin) per row."""
    margin = y * (z @ w)
    p = 0.5 * (1.0 - np.tanh(margin / 2.0))  # sigmoid(-margin), stable
    value = float(np.logaddexp(0.0, -margin).sum() + 0.5 * lam * w @ w)
    return value, -(z.T @ (y * p)) + lam * w, p


def _softmax_parts(z: np.ndarray, codes: np.ndarray, flat: np.ndarray, lam: float, k: int):
    w = flat.reshape(k, -1)
    scores = z @ w.T
    scores -= scores.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(scores).sum(axis=1))
    p = np.exp(scores - log_norm[:, None])
    rows = np.arange(len(z))
    value = float((log_norm - scores[rows, codes]).sum() + 0.5 * lam * flat @ flat)
    p[rows, codes] -= 1.0
    grad = (p.T @ z).ravel() + lam * flat
    return value, grad


def _softmax(z: np.ndarray, codes: np.ndarray, lam: float, k: int) -> np.ndarray:
    """The softmax loss with the ridge: quasi-Newton, then Newton-CG until TOLERANCE."""

    def fun(flat: np.ndarray) -> tuple[float, np.ndarray]:
        return _softmax_parts(z, codes, flat, lam, k)

    def hessp(flat: np.ndarray, vector: np.ndarray) -> np.ndarray:
        w, v = flat.reshape(k, -1), vector.reshape(k, -1)
        scores = z @ w.T
        p = np.exp(scores - scores.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        zv = z @ v.T
        r = p * (zv - (p * zv).sum(axis=1, keepdims=True))
        return (r.T @ z).ravel() + lam * vector

    flat = np.zeros(k * z.shape[1])
    flat = optimize.minimize(fun, flat, jac=True, method="L-BFGS-B", options={"maxiter": 2000, "gtol": 1e-9}).x
    for _ in range(20):
        if np.linalg.norm(fun(flat)[1]) <= TOLERANCE:
            return flat.reshape(k, -1)
        flat = optimize.minimize(
            fun, flat, jac=True, hessp=hessp, method="Newton-CG", options={"xtol": 1e-14, "maxiter": 200}
        ).x
    raise ConvergenceError("the softmax regression did not converge")


def solve(a: np.ndarray, targets: np.ndarray, spec: ModelSpec, lam: float) -> np.ndarray:
    """The exact minimiser (rows of classes, in the units of ``z = a / R``), to TOLERANCE. Never released:
    :func:`perturb` adds the noise. ``targets`` holds one 0/1 column per declared class; a row in no
    class is left out."""
    keep = targets.sum(axis=1) > 0
    z = a[keep] / radius(spec)
    codes = targets[keep].argmax(axis=1)
    k = targets.shape[1]
    if k == 2:
        return _binary(z, np.where(codes == 1, 1.0, -1.0), lam)[None, :]
    return _softmax(z, codes, lam, k)


def perturb(exact: np.ndarray, mech: Mechanism, rng: Any) -> np.ndarray:
    """Every weight rounded to the grid with its noise added (exact multiples of the granularity)."""
    return np.array([mech.release(v, rng) for v in exact.ravel()]).reshape(exact.shape)


def fit(
    a: np.ndarray, targets: np.ndarray, spec: ModelSpec, parts: Mapping[str, Mechanism], rng: Any
) -> tuple[np.ndarray, dict[str, Any]]:
    """The noisy weights turned back into the units of ``a`` (divided by R), and what the model states:
    lambda, R and the noisy count it came from."""
    extra: dict[str, Any] = {}
    if "count" in parts:
        rows = int((targets.sum(axis=1) > 0).sum())
        extra["noisy_rows"] = parts["count"].release(rows, rng)
    lam = regularisation(spec, parts["weights"], extra.get("noisy_rows"))
    noisy = perturb(lam * solve(a, targets, spec, lam), parts["weights"], rng) / lam
    return noisy / radius(spec), {"lambda": lam, "radius": radius(spec), **extra}
