"""docs/PRIVACY.md quotes the accountant's figures; these recompute every one of them, so the page
cannot drift from the code (compute/engines/accounting.py)."""

from __future__ import annotations

from pathlib import Path

from cloakroom_client.protocol.noise import mechanism
from compute.engines import accounting

# Whitespace folded, so that where a sentence wraps does not matter.
PAGE = " ".join((Path(__file__).resolve().parent.parent / "docs" / "PRIVACY.md").read_text(encoding="utf-8").split())
CAP = (10.0, 1e-5)


def counts(k: int) -> accounting.Loss:
    return accounting.compose([accounting.pure(0.1)] * k)


def test_the_rho_cap_of_a_ten_epsilon_purchase():
    assert f"up to {accounting.rho_cap(*CAP):.3f}" in PAGE


def test_how_many_counts_fit():
    n = accounting.releases_that_fit(accounting.pure(0.1), *CAP)
    assert f"| counts at epsilon 0.1 | 100 answers | {n} answers |" in PAGE


def test_the_hundred_gaussian_answers():
    noise = mechanism(1.0, 1e-6, 1.0, integer=True)
    total = accounting.compose([accounting.Loss(1.0, 1e-6, noise.rho)] * 100)
    at_1e4 = accounting.guarantee(total, 1e-4)
    at_1e5 = accounting.guarantee(total, 1e-5)
    assert f"epsilon {at_1e4.epsilon:.2f} at delta 0.0001 ({at_1e5.epsilon:.2f} at 0.00001)" in PAGE


def test_where_zcdp_overtakes_basic_composition():
    first = next(k for k in range(1, 100) if accounting.guarantee(counts(k), CAP[1]).method == accounting.ZCDP)
    assert f"From the {first}th count at 0.1 on, zCDP is tighter" in PAGE
    fifty, two_hundred = accounting.guarantee(counts(50), CAP[1]), accounting.guarantee(counts(200), CAP[1])
    assert f"50 of them are worth epsilon {fifty.epsilon:.2f}" in PAGE
    assert f"200 are worth {two_hundred.epsilon:.2f}" in PAGE


def test_the_estimates_share_and_epsilon_left():
    share = accounting.share(accounting.pure(0.1), *CAP)
    assert f'("uses {share:.2%} of your allotment")' in PAGE
    left = accounting.epsilon_left(counts(200), *CAP)
    assert f"after 200 counts at 0.1 it is {left:.2f}, not 10 - 20" in PAGE
