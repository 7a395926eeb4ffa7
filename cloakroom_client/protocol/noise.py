"""Noise on a grid: every noisy measurement Cloakroom releases is an exact multiple of a published
granularity.

Why not ``value + numpy.laplace(...)``: the set of floating-point numbers that a float sum
``x + noise`` can produce depends on ``x``, so the low bits of a release tell neighbouring datasets
apart (Mironov, "On significance of the least significant bits for differential privacy", CCS 2012:
a row of 0 is told from a row of 1 in most single releases). Here a value is first rounded to a
multiple of a granularity ``g`` (a power of two), then an integer drawn from an exact discrete
distribution is added in units of ``g``: the release is ``k * g`` for a whole ``k``, and its low bits
carry nothing of the value.

Privacy of the grid. If ``|x - x'| <= sensitivity`` then ``|round(x/g) - round(x'/g)| <=
floor(sensitivity / g) + 1 =: steps``, so noise that is epsilon-DP for an integer sensitivity of
``steps`` keeps the claim for the real-valued one. The granularity is the largest power of two at most
``sensitivity / GRID_STEPS``: the rounding costs at most 1/1024 more noise. Integer measurements
(counts) use ``g = 1`` and ``steps = sensitivity``: there is nothing to round.

* Pure epsilon: the discrete Laplace (two-sided geometric) distribution,
  ``P(z) ∝ exp(-|z| * epsilon / steps)``.
* delta > 0: the discrete Gaussian, which is rho-zCDP for ``rho = steps**2 / (2 sigma**2)``
  (Canonne, Kamath and Steinke, "The Discrete Gaussian for Differential Privacy", 2020); sigma is
  chosen so that rho-zCDP implies (epsilon, delta)-DP through ``epsilon = rho + 2 sqrt(rho ln(1/delta))``.

The samplers are exact: integer and rational arithmetic only (Canonne, Kamath and Steinke's
algorithms for Bernoulli(exp(-gamma)), the discrete Laplace and the discrete Gaussian), fed with
uniform integers from a ``random.Random``: the operating system's CSPRNG (``secrets.SystemRandom``)
unless a test passes a seeded ``random.Random``.
"""

from __future__ import annotations

import math
import random
import secrets
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from statistics import NormalDist
from typing import Any

GRID_STEPS = 1024
CONFIDENCE = 0.95
KINDS = ("laplace", "geometric", "gaussian")
# k * g is exact in float64 while |k| < 2**53; a value that would need more steps cannot be released.
_MAX_STEPS = 2**53


class NoiseError(ValueError):
    """A mechanism that cannot be built or a value that cannot be released on its grid."""


def make_rng(seed: random.Random | int | None = None) -> random.Random:
    """The source of uniform integers: the OS CSPRNG by default, a seeded generator for tests."""
    if seed is None:
        return secrets.SystemRandom()
    if isinstance(seed, random.Random):
        return seed
    if isinstance(seed, int) and not isinstance(seed, bool):
        return random.Random(seed)
    raise TypeError("rng must be a random.Random, an integer seed or None")


def exact(number: Any) -> Fraction:
    """A finite number as a fraction: a float by its shortest decimal (0.1 is 1/10), else exactly."""
    if isinstance(number, float):  # numpy's float64 too, whose repr is not a plain decimal
        number = float(number)
        if not math.isfinite(number):
            raise NoiseError(f"not a finite number: {number!r}")
        return Fraction(repr(number))
    return Fraction(number)


# -- exact samplers --------------------------------------------------------------------------------


def _bernoulli(rng: random.Random, p: Fraction) -> bool:
    return rng.randrange(p.denominator) < p.numerator


def _rational(value: Any, name: str) -> Fraction:
    """A finite number as an exact fraction, or a NoiseError naming it."""
    try:
        number = value if isinstance(value, Fraction) else exact(float(value) if not isinstance(value, int) else value)
    except (TypeError, ValueError, OverflowError):
        raise NoiseError(f"{name} must be a finite number") from None
    return number


def bernoulli_exp(rng: random.Random, gamma: Fraction) -> bool:
    """True with probability exp(-gamma), gamma >= 0, exactly."""
    gamma = _rational(gamma, "gamma")
    if gamma < 0:
        raise NoiseError("gamma must be >= 0")
    while gamma > 1:
        if not bernoulli_exp(rng, Fraction(1)):
            return False
        gamma -= 1
    k = 1
    while _bernoulli(rng, gamma / k):
        k += 1
    return k % 2 == 1


def discrete_laplace(rng: random.Random, scale: Fraction) -> int:
    """A whole number z with P(z) = (1 - p) / (1 + p) * p**|z|, p = exp(-1 / scale), exactly."""
    scale = _rational(scale, "scale")
    if scale <= 0:
        raise NoiseError("scale must be > 0")
    t, s = scale.numerator, scale.denominator  # P(z) ∝ exp(-|z| s / t)
    one = Fraction(1)
    while True:
        u = rng.randrange(t)
        if not bernoulli_exp(rng, Fraction(u, t)):
            continue
        v = 0
        while bernoulli_exp(rng, one):
            v += 1
        y = (u + t * v) // s
        negative = rng.getrandbits(1) == 1
        if negative and y == 0:
            continue
        return -y if negative else y


def discrete_gaussian(rng: random.Random, sigma2: Fraction) -> int:
    """A whole number z with P(z) ∝ exp(-z**2 / (2 sigma2)), exactly."""
    sigma2 = _rational(sigma2, "sigma2")
    if sigma2 <= 0:
        raise NoiseError("sigma2 must be > 0")
    t = math.isqrt(sigma2.numerator // sigma2.denominator) + 1
    while True:
        y = discrete_laplace(rng, Fraction(t))
        gamma = (abs(y) - sigma2 / t) ** 2 / (2 * sigma2)
        if bernoulli_exp(rng, gamma):
            return y


# -- mechanisms -------------------------------------------------------------------------------------


def granularity_for(sensitivity: float) -> float:
    """The largest power of two at most ``sensitivity / GRID_STEPS``."""
    if not (math.isfinite(sensitivity) and sensitivity > 0):
        raise NoiseError("sensitivity must be a finite number > 0")
    g = 2.0 ** math.floor(math.log2(sensitivity / GRID_STEPS))
    while g * GRID_STEPS > sensitivity:  # guard against log2 rounding up
        g /= 2.0
    return g


def gaussian_rho(epsilon: float, delta: float) -> float:
    """The largest rho whose rho-zCDP implies (epsilon, delta)-DP by rho + 2 sqrt(rho ln(1/delta))."""
    log = math.log(1.0 / delta)
    return (math.sqrt(log + epsilon) - math.sqrt(log)) ** 2


@dataclass(frozen=True)
class Mechanism:
    """Additive noise on a grid. ``scale`` is in the value's units (Laplace b or Gaussian sigma)."""

    kind: str  # laplace (snapped to the grid) | geometric (integers, g = 1) | gaussian (discrete)
    epsilon: float
    delta: float
    sensitivity: float
    granularity: float
    steps: int  # the sensitivity in grid steps, rounding included
    integer: bool = False  # a whole-number measurement: nothing is rounded

    @cached_property
    def _eps(self) -> Fraction:
        return exact(self.epsilon)

    @cached_property
    def laplace_steps(self) -> Fraction:
        """The discrete Laplace scale in grid steps: steps / epsilon."""
        return Fraction(self.steps) / self._eps

    @cached_property
    def sigma2_steps(self) -> Fraction:
        """The discrete Gaussian's sigma**2 in grid steps (rounded up: more noise is always safe)."""
        sigma2 = self.steps**2 / (2.0 * gaussian_rho(self.epsilon, self.delta))
        return Fraction(sigma2 * (1.0 + 1e-12))

    @cached_property
    def scale(self) -> float:
        if self.kind == "gaussian":
            return math.sqrt(float(self.sigma2_steps)) * self.granularity
        return float(self.laplace_steps) * self.granularity

    @cached_property
    def rho(self) -> float:
        """The zCDP parameter of one release: ``steps**2 / (2 sigma**2)`` for the discrete Gaussian (in
        grid steps, as drawn), ``epsilon**2 / 2`` for a pure epsilon-DP mechanism."""
        if self.kind == "gaussian":
            return float(Fraction(self.steps**2) / (2 * self.sigma2_steps))
        return float(self._eps**2 / 2)

    @cached_property
    def _p(self) -> float:
        return math.exp(-float(self._eps) / self.steps)

    def halfwidth(self, confidence: float = CONFIDENCE) -> float:
        """Smallest t with P(|release - value| <= t) >= confidence: the noise's, plus half a grid step
        for the rounding (none for integer measurements). Gaussian: the normal approximation."""
        alpha = 1.0 - confidence
        rounding = 0.0 if self.integer else self.granularity / 2.0
        if self.kind == "gaussian":
            return self.scale * NormalDist().inv_cdf(1.0 - alpha / 2.0) + rounding
        # P(|Z| > k) = 2 p^(k+1) / (1 + p) for whole k >= 0.
        p = self._p
        if p <= 0.0:
            return rounding
        k = math.ceil(math.log(alpha * (1.0 + p) / 2.0) / math.log(p)) - 1
        return max(k, 0) * self.granularity + rounding

    def tail(self, t: float) -> float:
        """P(|noise| > t), the noise alone (without the rounding)."""
        if self.kind == "gaussian":
            return 2.0 * (1.0 - NormalDist().cdf(t / self.scale))
        p = self._p
        return 2.0 * p ** (math.floor(t / self.granularity) + 1) / (1.0 + p)

    @cached_property
    def std(self) -> float:
        if self.kind == "gaussian":
            return self.scale
        p = self._p
        return math.sqrt(2.0 * p) / (1.0 - p) * self.granularity

    def grid_index(self, value: float) -> int:
        """The value rounded to the grid, in grid steps (ties to even)."""
        value = float(value)
        if not math.isfinite(value):
            raise NoiseError("the value to release is not a finite number")
        k = round(Fraction(value) / Fraction(self.granularity))
        if abs(k) >= _MAX_STEPS:
            raise NoiseError("the value is too large for its grid")
        return k

    def noise_steps(self, rng: random.Random) -> int:
        if self.kind == "gaussian":
            return discrete_gaussian(rng, self.sigma2_steps)
        return discrete_laplace(rng, self.laplace_steps)

    def release(self, value: float, rng: random.Random) -> float:
        """``value`` rounded to the grid plus the noise: an exact multiple of the granularity."""
        k = self.grid_index(value) + self.noise_steps(rng)
        if abs(k) >= _MAX_STEPS:
            raise NoiseError("the noisy value is too large for its grid")
        return float(k) * self.granularity

    def on_grid(self, value: float) -> bool:
        """Whether ``value`` is an exact multiple of the granularity (as every release is)."""
        if not math.isfinite(value):
            return False
        ratio = Fraction(value) / Fraction(self.granularity)
        return ratio.denominator == 1

    def describe(self) -> dict[str, Any]:
        """What a plan and a receipt state about this noise."""
        return {
            "mechanism": self.kind,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "sensitivity": self.sensitivity,
            "granularity": self.granularity,
            "steps": self.steps,
            "scale": self.scale,
        }


def mechanism(epsilon: float, delta: float, sensitivity: float, *, integer: bool = False) -> Mechanism:
    """The grid mechanism for a measurement of this sensitivity at (epsilon, delta).

    ``integer``: the measurement is a whole number and the sensitivity whole (counts): g = 1.
    """
    epsilon, delta, sensitivity = float(epsilon), float(delta), float(sensitivity)
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise NoiseError("epsilon must be a finite number > 0")
    if not (math.isfinite(delta) and 0.0 <= delta < 1.0):
        raise NoiseError("delta must be in [0, 1)")
    if not math.isfinite(sensitivity) or sensitivity < 0:
        raise NoiseError("sensitivity must be a finite number >= 0")
    if sensitivity == 0:
        sensitivity = 1e-12  # bounds of zero width: the value is fixed, any tiny noise is enough
    whole = integer and sensitivity == int(sensitivity)
    if whole:
        granularity, steps, kind = 1.0, int(sensitivity), "geometric"
    else:
        granularity = granularity_for(sensitivity)
        steps = math.floor(Fraction(sensitivity) / Fraction(granularity)) + 1
        kind = "laplace"
    if delta > 0:
        kind = "gaussian"
    return Mechanism(kind, epsilon, delta, sensitivity, granularity, steps, whole)
