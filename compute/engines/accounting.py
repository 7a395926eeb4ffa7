"""The privacy accountant: what a set of releases costs together, tighter than adding epsilons up.

Every release states its privacy loss in two forms (:class:`Loss`):

* its own ``(epsilon, delta)``, which add up under *basic composition*; and
* its zero-concentrated DP parameter ``rho``, which adds up under zCDP (Bun and Steinke, 2016). A
  pure epsilon-DP mechanism (discrete Laplace, geometric, the exponential mechanism) is charged
  ``rho = epsilon**2 / 2``; the discrete Gaussian is charged its own ``rho = steps**2 / (2 sigma**2)``
  (Canonne, Kamath and Steinke, 2020).

A set of releases meets a cap ``(epsilon, delta)`` when either composition does, and the guarantee
reported is the better of the two valid bounds, so it is never weaker than basic composition. The
conversion from rho to ``(epsilon, delta)`` is Google's dp-accounting (its RDP accountant on a
``ZCDpEvent``, converted at its fixed orders): no conversion formula is written here.

Sums are exact decimals in the ledger; this module gets them as floats and answers with floats.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from fractions import Fraction
from functools import lru_cache

from dp_accounting import dp_event
from dp_accounting.rdp import RdpAccountant

from cloakroom_client.protocol.noise import gaussian_rho

BASIC = "basic composition"
ZCDP = "zCDP"
# Bisection steps for the largest rho (or epsilon) that fits: 2**-60 of the range is below any
# decimal the ledger stores.
_STEPS = 60


@dataclass(frozen=True)
class Loss:
    """A release's privacy loss, or the sum of several (each field adds up)."""

    epsilon: float
    delta: float
    rho: float

    def __add__(self, other: Loss) -> Loss:
        return Loss(self.epsilon + other.epsilon, self.delta + other.delta, self.rho + other.rho)

    def __sub__(self, other: Loss) -> Loss:
        return Loss(
            max(self.epsilon - other.epsilon, 0.0), max(self.delta - other.delta, 0.0), max(self.rho - other.rho, 0.0)
        )


NONE = Loss(0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Bound:
    """An ``(epsilon, delta)`` guarantee and the composition that gives it."""

    epsilon: float
    delta: float
    method: str


def pure_rho(epsilon: float) -> float:
    """The zCDP parameter of a pure epsilon-DP release: epsilon-DP implies (epsilon**2 / 2)-zCDP.

    Squared exactly (0.1 is one tenth), then rounded once: 0.1 gives 0.005, not 0.005000000000000001."""
    return float(Fraction(repr(float(epsilon))) ** 2 / 2)


def pure(epsilon: float) -> Loss:
    """The loss of a pure epsilon-DP release."""
    return Loss(epsilon, 0.0, pure_rho(epsilon))


def compose(losses: Iterable[Loss]) -> Loss:
    """The sum of several releases' losses: what basic composition and zCDP both add up."""
    total = NONE
    for loss in losses:
        total = total + loss
    return total


@lru_cache(maxsize=4096)
def zcdp_epsilon(rho: float, delta: float) -> float:
    """The epsilon at ``delta`` that rho-zCDP implies, from dp-accounting's RDP accountant."""
    if rho <= 0.0:
        return 0.0
    if delta <= 0.0:
        return math.inf
    accountant = RdpAccountant()
    accountant.compose(dp_event.ZCDpEvent(rho))
    return float(accountant.get_epsilon(delta))


@lru_cache(maxsize=1024)
def rho_cap(epsilon: float, delta: float) -> float:
    """The largest rho whose zCDP guarantee at ``delta`` is within ``epsilon`` (0 when delta is 0).

    Bisection on the library's conversion, which grows with rho; the answer is the lower end, so it
    always fits."""
    if delta <= 0.0 or epsilon <= 0.0:
        return 0.0
    lo, hi = 0.0, max(epsilon, 1.0)
    while zcdp_epsilon(hi, delta) <= epsilon:
        lo, hi = hi, hi * 2.0
    for _ in range(_STEPS):
        mid = (lo + hi) / 2.0
        if zcdp_epsilon(mid, delta) <= epsilon:
            lo = mid
        else:
            hi = mid
    return lo


def _basic_share(total: Loss, epsilon: float, delta: float) -> float:
    share = total.epsilon / epsilon
    if total.delta > 0.0:
        share = max(share, total.delta / delta if delta > 0.0 else math.inf)
    return share


def share(total: Loss, epsilon: float, delta: float) -> float:
    """How much of an ``(epsilon, delta)`` cap a set of releases uses: the smaller of basic
    composition's share (``max(sum eps / epsilon, sum delta / delta)``) and zCDP's (``rho / rho_cap``).
    At most 1 exactly when the releases fit the cap."""
    basic = _basic_share(total, epsilon, delta)
    cap = rho_cap(epsilon, delta)
    if cap <= 0.0:
        return basic
    return min(basic, total.rho / cap)


def fits(total: Loss, epsilon: float, delta: float) -> bool:
    """Whether a set of releases is within the cap under basic composition or under zCDP."""
    return share(total, epsilon, delta) <= 1.0


def guarantee(total: Loss, delta: float) -> Bound:
    """The tighter of the valid ``(epsilon, delta)`` bounds for a set of releases, for a budget whose
    delta is ``delta``: basic composition (its own delta, if within ``delta``) or zCDP at ``delta``."""
    bounds = []
    if total.delta <= delta:
        bounds.append(Bound(total.epsilon, total.delta, BASIC))
    if delta > 0.0:
        bounds.append(Bound(zcdp_epsilon(total.rho, delta), delta, ZCDP))
    if not bounds:  # over the delta and no zCDP: basic composition is all there is
        return Bound(total.epsilon, total.delta, BASIC)
    return min(bounds, key=lambda b: (b.epsilon, b.delta))


def epsilon_left(total: Loss, epsilon: float, delta: float) -> float:
    """The largest epsilon of one more pure epsilon-DP release that would still fit the cap."""
    if not fits(total, epsilon, delta):
        return 0.0
    lo, hi = 0.0, epsilon
    if fits(total + pure(hi), epsilon, delta):
        return hi
    for _ in range(_STEPS):
        mid = (lo + hi) / 2.0
        if fits(total + pure(mid), epsilon, delta):
            lo = mid
        else:
            hi = mid
    return lo


def releases_that_fit(loss: Loss, epsilon: float, delta: float, *, limit: int = 1_000_000) -> int:
    """How many copies of one release fit an ``(epsilon, delta)`` cap (for estimates and benchmarks)."""
    by_basic = math.floor(min(epsilon / loss.epsilon, delta / loss.delta if loss.delta > 0 else math.inf) + 1e-9)
    cap = rho_cap(epsilon, delta)
    by_zcdp = math.floor(cap / loss.rho * (1 + 1e-12)) if loss.rho > 0 and cap > 0 else 0
    n = max(by_basic, by_zcdp, 0)
    while n > 0 and not fits(_times(loss, n), epsilon, delta):
        n -= 1
    return min(n, limit)


def _times(loss: Loss, n: int) -> Loss:
    return Loss(loss.epsilon * n, loss.delta * n, loss.rho * n)


def upper_bound_rho(epsilon: float, delta: float) -> float:
    """A rho no smaller than that of any release Cloakroom made at ``(epsilon, delta)`` before releases
    recorded their own (the ledger rows that migration marketplace 0005 converts).

    Pure releases (delta 0) are ``epsilon**2 / 2``, however the epsilon was split between noisy parts
    (a sum of squares is at most the square of the sum). Releases with delta > 0 used the discrete
    Gaussian calibrated to the rho of :func:`cloakroom_client.protocol.noise.gaussian_rho` on each part's
    share, and the parts' rhos add up to at most that of the whole (tests/compute/engines)."""
    if delta <= 0.0:
        return pure_rho(epsilon)
    return gaussian_rho(epsilon, delta)


# -- the ledger's decimals ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Position:
    """Where a budget stands: what its jobs hold or spent, the guarantee that gives, how much of the cap
    it uses, and the largest pure epsilon one more job could still ask for."""

    cap_epsilon: Decimal
    cap_delta: Decimal
    used: Loss
    bound: Bound
    share: float
    epsilon_left: Decimal

    @property
    def fits(self) -> bool:
        return self.share <= 1.0


def position(*, cap_epsilon: Decimal, cap_delta: Decimal, used: Loss) -> Position:
    """A budget's position from its cap and its sums (floats for the accountant, exact caps)."""
    e, d = float(cap_epsilon), float(cap_delta)
    left = Decimal(repr(epsilon_left(used, e, d))).quantize(_EPSILON_QUANTUM, rounding=ROUND_FLOOR)
    return Position(
        cap_epsilon=cap_epsilon,
        cap_delta=cap_delta,
        used=used,
        bound=guarantee(used, d),
        share=share(used, e, d),
        epsilon_left=min(left, cap_epsilon),
    )


RHO_QUANTUM = Decimal("0.000000000001")
_EPSILON_QUANTUM = Decimal("0.000001")


def rho_charge(rho: float) -> Decimal:
    """A release's rho as the ledger stores it: rounded up to the ledger's 12 places (never less)."""
    return Decimal(repr(float(rho))).quantize(RHO_QUANTUM, rounding=ROUND_CEILING)


def rho_allowance(epsilon: Decimal, delta: Decimal) -> Decimal:
    """A cap's largest rho as the ledger stores it: rounded down to 12 places (never more)."""
    return Decimal(repr(rho_cap(float(epsilon), float(delta)))).quantize(RHO_QUANTUM, rounding=ROUND_FLOOR)
