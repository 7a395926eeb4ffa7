"""The estimate compares the two grid mechanisms at the same zCDP cost (issue 14, item 4): for the same
rho the discrete Gaussian's interval is narrower than the discrete Laplace's."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cloakroom_client.protocol.noise import mechanism
from compute.engines import accounting

pytestmark = pytest.mark.django_db


@pytest.fixture
def big(buyer, dp_dataset):
    """The whole (10, 1e-5) cap: zCDP is what binds many answers on it."""
    from marketplace.services import purchase_create

    return purchase_create(buyer=buyer, dataset_id=dp_dataset.pk, epsilon=Decimal("10"))


def estimate(api, purchase, query, epsilon, delta="0"):
    response = api.post(
        "/api/v1/jobs/estimate/",
        {"purchase": purchase.pk, "query": query, "epsilon": epsilon, "delta": delta},
        format="json",
    )
    assert response.status_code == 200, response.content
    return response.json()


def test_a_pure_sum_is_told_the_gaussian_would_be_tighter_for_the_same_rho(api, big):
    purchase = big
    body = estimate(api, purchase, {"aggregate": "sum", "column": "income"}, "0.5")
    alt = body["alternative"]
    assert alt["mechanism"] == "discrete Gaussian"
    assert Decimal(alt["delta"]) == purchase.delta > 0
    # The same share: the Gaussian at (alt epsilon, alt delta) costs no more rho than the Laplace at 0.5.
    gaussian = mechanism(float(alt["epsilon"]), float(alt["delta"]), 1.0)
    assert gaussian.rho <= accounting.pure_rho(0.5) * (1 + 1e-6)
    assert gaussian.rho >= accounting.pure_rho(0.5) * 0.999
    assert alt["ci95_halfwidth"] < body["ci95_halfwidth"]
    assert alt["share_of_allotment"] == pytest.approx(0.125 / float(purchase.rho_cap), rel=1e-4)
    advice = body["mechanism_advice"]
    assert advice.startswith("Tighter for the same zCDP cost: the discrete Gaussian (epsilon ")
    assert f"(epsilon {Decimal(alt['epsilon']).normalize():f}, delta 0.00001)" in advice


def test_a_gaussian_count_is_told_it_is_the_tighter_one(api, big):
    purchase = big
    body = estimate(api, purchase, {"aggregate": "count"}, "0.5", delta=f"{purchase.delta:f}")
    alt = body["alternative"]
    assert alt["mechanism"].startswith("discrete Laplace") and alt["delta"] == "0"
    # The Laplace at the same rho: epsilon**2 / 2 equals the Gaussian's rho.
    assert accounting.pure_rho(float(alt["epsilon"])) == pytest.approx(float(body["rho"]), rel=1e-5)
    assert alt["ci95_halfwidth"] > body["ci95_halfwidth"]
    assert body["mechanism_advice"].startswith("This is the tighter mechanism for its zCDP cost: the discrete Laplace")


def test_no_comparison_the_purchase_could_not_take(api, purchase):
    # epsilon 2 at delta 2e-6: a sum at 0.5 fits by basic composition only, and the Gaussian of the same
    # rho (an epsilon over 2) would fit neither account.
    body = estimate(api, purchase, {"aggregate": "sum", "column": "income"}, "0.5")
    assert body["affordable"] is True
    assert body["alternative"] is None and body["mechanism_advice"] == ""


def test_no_comparison_where_there_is_no_delta_to_spend_or_no_twin(api, big):
    purchase = big
    quantile = estimate(api, purchase, {"aggregate": "quantile", "column": "age", "quantiles": [0.5]}, "0.5")
    assert quantile["alternative"] is None and quantile["mechanism_advice"] == ""
    from marketplace.models import Purchase

    Purchase.objects.filter(pk=purchase.pk).update(delta=Decimal(0))
    purchase.refresh_from_db()
    pure_only = estimate(api, purchase, {"aggregate": "sum", "column": "income"}, "0.5")
    assert pure_only["alternative"] is None
