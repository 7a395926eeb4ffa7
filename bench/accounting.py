"""Benchmark of the privacy accountant: how many answers one purchase's budget pays for.

For three workloads on a purchase of ``(--epsilon, --delta)`` (10, 1e-5 by default) it counts how
many answers fit, one after the other, as the ledger takes them:

1. **counts**: counts at epsilon 0.1, our two-sided geometric (discrete Laplace) mechanism
   ``cloakroom_client.protocol.noise.mechanism(0.1, 0, 1, integer=True)``;
2. **Gaussian sums**: sums of a column declared in [0, 100] at (1, 1e-7), our discrete Gaussian
   ``mechanism(1, 1e-7, 100)`` (grid 1/16, sensitivity 1601 grid steps);
3. **mixed**: a count at 0.1, a sum at (1, 1e-7) and a mean at (1, 1e-7) over the same column, in
   turn, each as the planner splits it (``compute.engines.dp.budget.plan``: a Gaussian mean is a noisy
   count and a noisy centred sum at (1/2, 5e-8) each) and charged its ``Plan.rho``.

The methods, measured on the same releases in the same run:

* **basic composition**: epsilons and deltas added up in exact decimals, what the ledger did before;
* **Cloakroom**: ``compute.engines.accounting.fits`` on the running total, one reservation at a time
  (the better of basic composition and zCDP); the ledger's own decimal rule (``rho_charge`` on each
  release against the purchase's ``rho_allowance``, or basic composition) is checked to admit the
  same number, and the benchmark exits 1 if it does not;
* **RDP accountant** (dp-accounting's ``RdpAccountant``): each Gaussian part as a ``GaussianDpEvent``
  with noise multiplier sigma / sensitivity in grid steps (the discrete Gaussian's Rényi divergences
  are at most the continuous one's: Canonne, Kamath and Steinke 2020); each pure part as a binary
  ``RandomizedResponseDpEvent`` at its epsilon, which bounds every pure epsilon-DP mechanism and is
  exact for a count's discrete Laplace (its privacy loss is +-epsilon with the same probabilities; the
  accountant takes that event under its REPLACE_ONE relation, which here only names the pair of output
  distributions compared). ``LaplaceDpEvent`` is the continuous Laplace, whose privacy loss is milder
  than the discrete one's: it would overstate what fits, so it is not used;
* **PLD accountant** (dp-accounting's privacy loss distributions, pessimistic estimate, default
  discretisation 1e-4): the real mechanisms, ``from_discrete_laplace_mechanism`` and
  ``from_discrete_gaussian_mechanism`` on grid steps, self-composed.

For the peers the count is the largest k whose composition is within the cap, by binary search on k.
It also reproduces the issue's example, 100 Gaussian queries each (1, 1e-6)-DP alone, with our discrete
Gaussian (calibrated by the simple zCDP conversion, so its sigma is larger than the analytic
Gaussian's) and, as the reference the issue's figures came from, the continuous Gaussian at the
analytic calibration (``dp_accounting.gaussian_mechanism.get_sigma_gaussian``), both at a total
delta of 1e-4 (basic composition's). Last, the cost of one reservation's check, beside the
plaintext baseline of adding decimals (median and 95th percentile of ``--repeats`` batches).

The 1-minute load average (``os.getloadavg``) is printed before and after.

    python bench/accounting.py [--epsilon 10] [--delta 1e-5] [--repeats 30]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from dp_accounting import dp_event  # noqa: E402
from dp_accounting.gaussian_mechanism import get_sigma_gaussian  # noqa: E402
from dp_accounting.pld import privacy_loss_distribution as pld  # noqa: E402
from dp_accounting.rdp import RdpAccountant  # noqa: E402
from dp_accounting.rdp.rdp_privacy_accountant import NeighborRel  # noqa: E402

from bench.timing import per_call  # noqa: E402
from cloakroom_client.protocol.noise import Mechanism, mechanism  # noqa: E402
from compute.engines import accounting, dp  # noqa: E402

COLUMN = dp.ColumnMeta("x", "numeric", 0.0, 100.0)
SCHEMA = {"x": COLUMN}
GAUSSIAN = (1.0, 1e-7)  # the Gaussian sums' and means' (epsilon, delta)
COUNT_EPSILON = 0.1


@dataclass(frozen=True)
class Release:
    """One answer: its loss as the ledger charges it and the noisy parts it is made of."""

    name: str
    loss: accounting.Loss
    parts: tuple[Mechanism, ...]


def from_mechanism(name: str, m: Mechanism) -> Release:
    return Release(name, accounting.Loss(m.epsilon, m.delta, m.rho), (m,))


def from_plan(name: str, raw: dict, epsilon: float, delta: float) -> Release:
    p = dp.plan(SCHEMA, dp.parse_query(raw, SCHEMA), epsilon, delta)
    return Release(name, accounting.Loss(p.epsilon, p.delta, p.rho), tuple(p.parts.values()))


def workloads() -> dict[str, list[Release]]:
    """Each workload as the cycle of answers it repeats."""
    count = from_mechanism("count", mechanism(COUNT_EPSILON, 0, 1, integer=True))
    gsum = from_mechanism("sum", mechanism(*GAUSSIAN, COLUMN.upper))
    return {
        "counts at epsilon 0.1 (geometric)": [count],
        "Gaussian sums at (1, 1e-7)": [gsum],
        "mixed: count 0.1, sum (1, 1e-7), mean (1, 1e-7) in turn": [
            from_plan("count", {"aggregate": "count"}, COUNT_EPSILON, 0.0),
            from_plan("sum", {"aggregate": "sum", "column": "x"}, *GAUSSIAN),
            from_plan("mean", {"aggregate": "mean", "column": "x"}, *GAUSSIAN),
        ],
    }


def prefix(cycle: Sequence[Release], n: int) -> list[tuple[Release, int]]:
    """How many of each release the first ``n`` answers of the repeated cycle hold."""
    return [(r, n // len(cycle) + (1 if i < n % len(cycle) else 0)) for i, r in enumerate(cycle)]


# -- basic composition and Cloakroom's accountant, one reservation at a time -----------------------


def _dec(x: float) -> Decimal:
    return Decimal(repr(float(x)))


def basic_answers(cycle: Sequence[Release], epsilon: float, delta: float, limit: int = 100_000) -> int:
    """Answers that fit by basic composition: epsilons and deltas added in exact decimals."""
    cap_e, cap_d = _dec(epsilon), _dec(delta)
    e = d = Decimal(0)
    for n in range(limit):
        r = cycle[n % len(cycle)]
        e, d = e + _dec(r.loss.epsilon), d + _dec(r.loss.delta)
        if e > cap_e or d > cap_d:
            return n
    return limit


def cloakroom_answers(cycle: Sequence[Release], epsilon: float, delta: float, limit: int = 100_000) -> int:
    """Answers that Cloakroom's accountant accepts, each checked with ``accounting.fits`` on the total."""
    total = accounting.NONE
    for n in range(limit):
        total = total + cycle[n % len(cycle)].loss
        if not accounting.fits(total, epsilon, delta):
            return n
    return limit


def ledger_answers(cycle: Sequence[Release], epsilon: float, delta: float, limit: int = 100_000) -> int:
    """Answers that the ledger's decimal rule accepts: basic composition, or the rhos (each rounded
    up by ``rho_charge``) within the purchase's ``rho_allowance`` (rounded down)."""
    cap_e, cap_d = _dec(epsilon), _dec(delta)
    allowance = accounting.rho_allowance(cap_e, cap_d)
    e = d = rho = Decimal(0)
    for n in range(limit):
        r = cycle[n % len(cycle)]
        e, d = e + _dec(r.loss.epsilon), d + _dec(r.loss.delta)
        rho += accounting.rho_charge(r.loss.rho)
        if not ((e <= cap_e and d <= cap_d) or rho <= allowance):
            return n
    return limit


# -- the peers: dp-accounting's RDP and PLD accountants on the real mechanisms --------------------


def _sigma_steps(m: Mechanism) -> float:
    return math.sqrt(float(m.sigma2_steps))


def rdp_event(m: Mechanism) -> dp_event.DpEvent:
    """A noisy part as an RDP event: Gaussian at sigma / steps, a pure part as binary randomized
    response at its epsilon (p = 2 / (1 + e^epsilon))."""
    if m.kind == "gaussian":
        return dp_event.GaussianDpEvent(_sigma_steps(m) / m.steps)
    return dp_event.RandomizedResponseDpEvent(2.0 / (1.0 + math.exp(m.epsilon)), 2)


def rdp_epsilon(counts: Sequence[tuple[Release, int]], delta: float) -> float:
    accountant = RdpAccountant(neighboring_relation=NeighborRel.REPLACE_ONE)
    for r, k in counts:
        for m in r.parts:
            if k:
                accountant.compose(rdp_event(m), k)
    return float(accountant.get_epsilon(delta))


@lru_cache(maxsize=64)
def part_pld(m: Mechanism) -> pld.PrivacyLossDistribution:
    """The PLD of one noisy part, on grid steps (pessimistic)."""
    if m.kind == "gaussian":
        return pld.from_discrete_gaussian_mechanism(_sigma_steps(m), sensitivity=m.steps, pessimistic_estimate=True)
    return pld.from_discrete_laplace_mechanism(m.epsilon / m.steps, sensitivity=m.steps, pessimistic_estimate=True)


def pld_epsilon(counts: Sequence[tuple[Release, int]], delta: float) -> float:
    total = None
    for r, k in counts:
        for m in r.parts:
            if k:
                composed = part_pld(m).self_compose(k)
                total = composed if total is None else total.compose(composed)
    return 0.0 if total is None else float(total.get_epsilon_for_delta(delta))


def largest_fitting(epsilon_of: Callable[[int], float], epsilon: float, start: int) -> int:
    """The largest k with ``epsilon_of(k) <= epsilon`` (growing in k), by doubling then bisection."""
    lo, hi = 0, max(start, 1)
    while epsilon_of(hi) <= epsilon:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if epsilon_of(mid) <= epsilon:
            lo = mid
        else:
            hi = mid
    return lo


def peer_answers(cycle: Sequence[Release], epsilon: float, delta: float, start: int) -> dict[str, int]:
    return {
        "rdp": largest_fitting(lambda n: rdp_epsilon(prefix(cycle, n), delta), epsilon, start),
        "pld": largest_fitting(lambda n: pld_epsilon(prefix(cycle, n), delta), epsilon, start),
    }


def answers(cycle: Sequence[Release], epsilon: float, delta: float) -> dict[str, int]:
    """How many answers of a workload fit the cap under each method."""
    ours = cloakroom_answers(cycle, epsilon, delta)
    return {
        "basic": basic_answers(cycle, epsilon, delta),
        "cloakroom": ours,
        "ledger": ledger_answers(cycle, epsilon, delta),
        **peer_answers(cycle, epsilon, delta, ours),
    }


# -- the example ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    mechanism: str
    sigma: float
    basic: tuple[float, float]
    cloakroom: accounting.Bound
    rdp: float
    pld: float


def hundred_gaussians(k: int = 100, epsilon: float = 1.0, delta: float = 1e-6) -> list[Example]:
    """k Gaussian queries each (epsilon, delta)-DP alone (sensitivity 1), composed, at a total delta
    of k * delta: ours (the discrete Gaussian), and the continuous Gaussian at the analytic calibration."""
    total_delta = k * delta
    ours = mechanism(epsilon, delta, 1, integer=True)
    sigma = _sigma_steps(ours)
    analytic = get_sigma_gaussian(epsilon, delta)
    rows = []
    for name, s, rho, single in (
        ("Cloakroom's discrete Gaussian (simple zCDP calibration)", sigma, ours.rho, part_pld(ours)),
        ("continuous Gaussian, analytic calibration (reference)", analytic, 1.0 / (2.0 * analytic**2), None),
    ):
        if single is None:
            single = pld.from_gaussian_mechanism(s, pessimistic_estimate=True)
        accountant = RdpAccountant()
        accountant.compose(dp_event.GaussianDpEvent(s), k)
        rows.append(
            Example(
                mechanism=name,
                sigma=s,
                basic=(k * epsilon, total_delta),
                cloakroom=accounting.guarantee(accounting.Loss(k * epsilon, total_delta, k * rho), total_delta),
                rdp=float(accountant.get_epsilon(total_delta)),
                pld=float(single.self_compose(k).get_epsilon_for_delta(total_delta)),
            )
        )
    return rows


# -- the cost of one reservation's check -----------------------------------------------------------


def check_costs(epsilon: float, delta: float, repeats: int) -> list[tuple[str, float, float]]:
    """What one reservation's check costs, on a purchase already holding ``n`` counts at 0.1."""
    count = workloads()["counts at epsilon 0.1 (geometric)"]
    n = cloakroom_answers(count, epsilon, delta) - 1
    used = accounting.Loss(n * COUNT_EPSILON, 0.0, n * count[0].loss.rho)
    one = count[0].loss
    cap_e, cap_d = _dec(epsilon), _dec(delta)
    used_e, used_d, job_e, job_d = _dec(used.epsilon), Decimal(0), _dec(one.epsilon), Decimal(0)
    allowance, used_rho, job_rho = (
        accounting.rho_allowance(cap_e, cap_d),
        accounting.rho_charge(used.rho),
        accounting.rho_charge(one.rho),
    )
    accounting.rho_cap(epsilon, delta)  # the cap's rho is computed once per cap and cached
    tiny = 1e-12

    def fresh(i: int) -> accounting.Loss:  # a new total each call: the zCDP conversion is not cached
        return accounting.Loss(used.epsilon + one.epsilon, 0.0, used.rho + one.rho + i * tiny)

    checks: list[tuple[str, Callable[[int], object], int]] = [
        # Both decimal checks evaluate every comparison (no short cut), as a purchase within basic
        # composition's cap would.
        (
            "plaintext baseline: basic composition on decimals",
            lambda i: (used_e + job_e <= cap_e) & (used_d + job_d <= cap_d),
            20_000,
        ),
        (
            "ledger's decimal rule (basic, or rho within the allowance)",
            lambda i: ((used_e + job_e <= cap_e) & (used_d + job_d <= cap_d)) | (used_rho + job_rho <= allowance),
            20_000,
        ),
        ("accounting.fits (share of the cap)", lambda i: accounting.fits(used + one, epsilon, delta), 20_000),
        ("accounting.guarantee (new rho: RDP conversion)", lambda i: accounting.guarantee(fresh(i), delta), 200),
        ("accounting.epsilon_left (the 409's remainder)", lambda i: accounting.epsilon_left(used, epsilon, delta), 200),
        ("peer: RDP accountant, compose n counts + epsilon", lambda i: rdp_epsilon([(count[0], n + 1)], delta), 50),
        ("peer: PLD accountant, self-compose n counts + epsilon", lambda i: pld_epsilon([(count[0], n + 1)], delta), 2),
    ]
    return [
        (f"{name} (n = {n})" if "peer" in name else name, *per_call(fn, number, repeats)) for name, fn, number in checks
    ]


# -- the report ------------------------------------------------------------------------------------


def describe(cycle: Sequence[Release]) -> str:
    out = []
    for r in cycle:
        parts = ", ".join(
            f"{m.kind} sigma {_sigma_steps(m):,.0f} steps / {m.steps:,}" if m.kind == "gaussian" else m.kind
            for m in r.parts
        )
        out.append(f"{r.name}: rho {r.loss.rho:.4g} ({parts})")
    return "; ".join(out)


def load1() -> float:
    return os.getloadavg()[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epsilon", type=float, default=10.0, help="the purchase's epsilon")
    parser.add_argument("--delta", type=float, default=1e-5, help="the purchase's delta")
    parser.add_argument("--repeats", type=int, default=30, help="timed batches per check")
    args = parser.parse_args()
    eps, delta = args.epsilon, args.delta
    print(f"load average (1 min) at the start: {load1():.2f}")
    print()
    print(f"Answers that fit a purchase of (epsilon {eps:g}, delta {delta:g}):")
    print()
    print(
        "| workload | basic composition | Cloakroom (zCDP or basic) | RDP accountant | PLD accountant (pessimistic) | Cloakroom / basic | Cloakroom / PLD |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    agree = True
    details = []
    for name, cycle in workloads().items():
        got = answers(cycle, eps, delta)
        agree = agree and got["ledger"] == got["cloakroom"]
        print(
            f"| {name} | {got['basic']:,} | {got['cloakroom']:,} | {got['rdp']:,} | {got['pld']:,} "
            f"| {got['cloakroom'] / max(got['basic'], 1):.1f}x | {got['cloakroom'] / max(got['pld'], 1):.2f} |"
        )
        details.append(f"- {name}: {describe(cycle)}")
    print()
    print("\n".join(details))
    print(f"- the ledger's decimal rule admits the same numbers as accounting.fits: {'yes' if agree else 'NO'}")
    print()
    print("100 Gaussian queries, each (1, 1e-6)-DP alone (sensitivity 1), at a total delta of 1e-4:")
    print()
    print(
        "| mechanism | sigma | basic composition | Cloakroom's accountant | RDP accountant | PLD accountant (pessimistic) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for ex in hundred_gaussians():
        print(
            f"| {ex.mechanism} | {ex.sigma:.3f} | ({ex.basic[0]:g}, {ex.basic[1]:g}) "
            f"| {ex.cloakroom.epsilon:.2f} ({ex.cloakroom.method}) | {ex.rdp:.2f} | {ex.pld:.2f} |"
        )
    print()
    print("The cost of one reservation's check (microseconds per call):")
    print()
    print("| check | median (µs) | p95 (µs) |")
    print("|---|---:|---:|")
    for name, med, p95 in check_costs(eps, delta, args.repeats):
        print(f"| {name} | {med:,.1f} | {p95:,.1f} |")
    print()
    print(f"load average (1 min) at the end: {load1():.2f}")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
