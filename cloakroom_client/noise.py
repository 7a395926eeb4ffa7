"""The noise the key holder adds before anything leaves their machine.

Two additive mechanisms, each drawn from a numpy ``Generator``:

* :func:`laplace`: Laplace(0, b), density ``exp(-|x| / b) / (2 b)``; for real-valued components;
* :func:`two_sided_geometric`: the discrete Laplace on the integers, ``P(G = k) ∝ p**|k|`` with
  ``p = exp(-epsilon / sensitivity)``; for integer components (counts), drawn as the difference of two
  independent geometric variables (failures before the first success, success probability ``1 - p``),
  whose difference has exactly that law.

:func:`default_rng` seeds a generator from the operating system's CSPRNG (128 bits from
:mod:`secrets`), so the noise cannot be predicted from the time or the process id. Tests pass a
generator with a fixed seed instead.
"""

from __future__ import annotations

import math
import secrets

import numpy as np


def default_rng() -> np.random.Generator:
    """A generator seeded with 128 bits from the operating system's CSPRNG."""
    return np.random.default_rng(secrets.randbits(128))


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"{name} must be a finite number > 0")
    return value


def laplace(rng: np.random.Generator, scale: float, size: int | None = None) -> float | np.ndarray:
    """Laplace(0, ``scale``) noise: one float, or an array of ``size`` draws."""
    scale = _positive("scale", scale)
    draws = rng.laplace(0.0, scale, size)
    return float(draws) if size is None else draws


def geometric_p(epsilon: float, sensitivity: float) -> float:
    """``p = exp(-epsilon / sensitivity)``, the ratio of consecutive probabilities of the two-sided geometric."""
    return math.exp(-_positive("epsilon", epsilon) / _positive("sensitivity", sensitivity))


def two_sided_geometric(
    rng: np.random.Generator, epsilon: float, sensitivity: float, size: int | None = None
) -> int | np.ndarray:
    """Two-sided geometric noise, ``P(G = k) = (1 - p) / (1 + p) * p**|k|``, ``p = exp(-epsilon / sensitivity)``.

    One Python int, or an int64 array of ``size`` draws.
    """
    ratio = _positive("epsilon", epsilon) / _positive("sensitivity", sensitivity)
    # 1 - p computed without cancellation, so a tiny epsilon / sensitivity keeps its precision.
    success = -math.expm1(-ratio)
    if success >= 1.0:  # p underflows to 0: the distribution is the point mass at 0
        return 0 if size is None else np.zeros(size, dtype=np.int64)
    # numpy's geometric counts trials up to and including the first success (support 1, 2, ...);
    # the difference of two such draws equals the difference of the failure counts.
    draws = rng.geometric(success, size) - rng.geometric(success, size)
    return int(draws) if size is None else draws.astype(np.int64)
