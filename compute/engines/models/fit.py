"""Models built from the noisy statistics alone (post-processing: no row is read here, but in logistic.py).

* Linear regression: ridge regression on the noisy X^T X and X^T y, in the scaled units, turned
  back into the declared units.
* Logistic regression is the exception: output perturbation (logistic.py), whose solver reads the
  rows; only its noisy weights are turned into coefficients here.
* Gaussian naive Bayes: per class, the noisy count, sums and sums of squares give the class prior,
  the means and the variances.
* PCA: the noisy count, sums and X^T X give the mean and the covariance of the encoded columns,
  turned into the declared units; its eigendecomposition gives the components.

The noisy X^T X is first projected on the positive semi-definite matrices (its negative eigenvalues
set to 0), and a ridge ``alpha`` is added to every coefficient but the intercept: by default
the noise's standard deviation times sqrt(columns + 1), which depends on the mechanism only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from cloakroom_client.protocol.noise import Mechanism
from compute.engines.models.logistic import fit as fit_logistic
from compute.engines.models.spec import ModelSpec
from compute.engines.models.stats import layout, parts, units


def _gram(spec: ModelSpec, noisy: Mapping[str, np.ndarray]) -> np.ndarray:
    """The noisy X^T X (constant first), with what the declaration fixes filled in."""
    lay = layout(spec)
    p = lay.n_features + 1
    gram = np.zeros((p, p))
    gram[0, 0] = noisy["count"][0]
    gram[0, 1:] = gram[1:, 0] = noisy["sums"]
    for (j, k), value in zip(parts(spec)["cross"], noisy["cross"]):
        gram[j, k] = gram[k, j] = value
    for j in range(1, p):
        if lay.indicator[j]:
            gram[j, j] = gram[0, j]  # a 0/1 column's square is the column
    return gram


def _psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (vectors * np.clip(values, 0.0, None)) @ vectors.T


def default_alpha(spec: ModelSpec, mechanisms: Mapping[str, Mechanism]) -> float:
    """The ridge that keeps the noise from dominating the solve, from the mechanism alone."""
    p = len(spec.columns) + 1
    return mechanisms["cross" if "cross" in mechanisms else "sums"].std * float(np.sqrt(p))


def _solve(matrix: np.ndarray, ridge: float, rhs: np.ndarray) -> np.ndarray:
    penalty = np.eye(len(matrix)) * ridge
    penalty[0, 0] = 0.0  # the intercept is not penalised
    solution, *_ = np.linalg.lstsq(matrix + penalty, rhs, rcond=None)
    return solution


def _unscale(spec: ModelSpec, w: np.ndarray) -> tuple[np.ndarray, float]:
    """Coefficients on the scaled columns (intercept first) as coefficients on the declared units."""
    coef, intercept = [], float(w[0])
    i = 1
    for f in spec.features:
        for _ in f.columns:
            if f.kind == "numeric":
                coef.append(w[i] / f.half)
                intercept -= w[i] * f.mid / f.half
            else:
                coef.append(w[i])
            i += 1
    return np.array(coef, dtype=float), intercept


def linear_regression(
    spec: ModelSpec, noisy: Mapping[str, np.ndarray], mechanisms: Mapping[str, Mechanism]
) -> dict[str, Any]:
    alpha = spec.params.get("alpha", default_alpha(spec, mechanisms))
    w = _solve(_psd(_gram(spec, noisy)), alpha, noisy["targets"])
    coef, intercept = _unscale(spec, w)
    label = spec.label
    assert label is not None  # a regression has a numeric label (spec.parse_model)
    return {
        "coefficients": (coef * label.half).tolist(),
        "intercept": label.mid + label.half * intercept,
        "alpha": alpha,
    }


def logistic_regression(
    spec: ModelSpec, a: np.ndarray, targets: np.ndarray, mechanisms: Mapping[str, Mechanism], rng: Any
) -> dict[str, Any]:
    """Output perturbation (logistic.py): the solver reads the rows, only its noisy weights leave."""
    weights, extra = fit_logistic(a, targets, spec, mechanisms, rng)
    coefs, intercepts = [], []
    for w in weights:
        coef, intercept = _unscale(spec, w)
        coefs.append(coef.tolist())
        intercepts.append(intercept)
    return {"coefficients": coefs, "intercept": intercepts, "C": 1.0 / extra["lambda"], **extra}


def naive_bayes(spec: ModelSpec, noisy: Mapping[str, np.ndarray]) -> dict[str, Any]:
    lay = layout(spec)
    k, d = len(spec.classes), lay.n_features
    counts = noisy["class_counts"]
    safe = np.maximum(counts, 1.0)
    sums = noisy["class_sums"].reshape(k, d)
    means = np.empty((k, d))
    variances = np.empty((k, d))
    squares = iter(noisy["class_sums_of_squares"].reshape(k, -1).T) if len(noisy["class_sums_of_squares"]) else None
    floor = spec.params["var_floor"]
    for j in range(d):
        if lay.indicator[j + 1]:
            means[:, j] = np.clip(sums[:, j] / safe, 0.0, 1.0)
            variances[:, j] = means[:, j] * (1.0 - means[:, j])
        else:
            assert squares is not None
            means[:, j] = np.clip(sums[:, j] / safe, -1.0, 1.0)
            variances[:, j] = np.clip(next(squares) / safe - means[:, j] ** 2, 0.0, 1.0)
    variances = np.maximum(variances, floor)
    theta, var = means.copy(), variances.copy()
    j = 0
    for f in spec.features:
        for _ in f.columns:
            if f.kind == "numeric":
                theta[:, j] = f.mid + f.half * means[:, j]
                var[:, j] = f.half**2 * variances[:, j]
            j += 1
    prior = safe / safe.sum()
    return {
        "class_count": counts.tolist(),
        "class_prior": prior.tolist(),
        "theta": theta.tolist(),
        "var": var.tolist(),
        "var_floor": floor,
    }


def pca(spec: ModelSpec, noisy: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The principal components of the noisy covariance, in the declared units (the covariance that
    scikit-learn's PCA would decompose on the encoded columns, from the noisy statistics alone)."""
    gram = _gram(spec, noisy)
    n = max(float(gram[0, 0]), 1.0)
    mean = gram[0, 1:] / n
    covariance = gram[1:, 1:] / n - np.outer(mean, mean)
    mid, half = units(spec)
    covariance = _psd(covariance * np.outer(half, half))
    values, vectors = np.linalg.eigh(covariance)
    order = np.argsort(values)[::-1]
    values, vectors = np.clip(values[order], 0.0, None), vectors[:, order].T
    # A component's sign is arbitrary: its largest coordinate (in absolute value) is made positive.
    signs = np.sign(vectors[np.arange(len(vectors)), np.abs(vectors).argmax(axis=1)])
    vectors *= np.where(signs == 0, 1.0, signs)[:, None]
    m = spec.params["n_components"]
    total = float(values.sum())
    return {
        "components": vectors[:m].tolist(),
        "mean": (mid + half * mean).tolist(),
        "explained_variance": values[:m].tolist(),
        "explained_variance_ratio": (values[:m] / total if total > 0 else np.zeros(m)).tolist(),
        "noise_variance": float(values[m:].mean()) if m < len(values) else 0.0,
        "n_components": m,
    }
