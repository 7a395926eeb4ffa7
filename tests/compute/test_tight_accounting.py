"""The ledger under the accountant (docs/PRIVACY.md): a purchase of (10, 1e-5) takes counts at epsilon
0.1 well past the 100 that basic composition allows, refuses the first that no longer fits with a 409
saying what remains, and no receipt ever states a cumulative guarantee over the cap."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from dp_accounting.pld import privacy_loss_distribution as pld

from compute import services
from compute.engines import accounting
from marketplace.models import Dataset, LedgerEntry, Purchase
from marketplace.services import purchase_create

pytestmark = pytest.mark.django_db

CAP_EPSILON, CAP_DELTA = 10.0, 1e-5


def count_above(i: int) -> dict:
    # A different filter each time: the same question twice is a free repeat, not a second release.
    return {"aggregate": "count", "filters": [{"column": "age", "op": "range", "low": i / 100}]}


def submit(api, purchase, query, epsilon="0.1"):
    return api.post(
        "/api/v1/jobs/",
        {"purchase": purchase.pk, "kind": "query", "query": query, "epsilon": epsilon, "delta": "0"},
        format="json",
    )


def test_counts_at_a_tenth_keep_being_released_far_past_basic_composition(buyer, api, dp_dataset):
    purchase = purchase_create(buyer=buyer, dataset_id=dp_dataset.pk, epsilon=Decimal("10"))
    assert (purchase.epsilon, purchase.delta) == (Decimal("10"), Decimal("0.00001"))

    receipts = []
    refused = None
    for i in range(1000):
        response = submit(api, purchase, count_above(i))
        if response.status_code == 409:
            refused = response.json()["error"]
            break
        assert response.status_code == 202, response.content
        job = response.json()
        assert services.job_run(job_id=job["id"]) == "released"
        receipts.append(api.get(f"/api/v1/jobs/{job['id']}/").json()["receipt"])

    released = len(receipts)
    # Basic composition stops at 100; zCDP at (10, 1e-5) fits a little over 350 counts at 0.1.
    assert released >= 300
    assert released == accounting.releases_that_fit(accounting.pure(0.1), CAP_EPSILON, CAP_DELTA)

    # The first refusal says why and what remains, and changes nothing.
    assert refused is not None and refused["code"] == "insufficient_budget"
    assert "would no longer fit" in refused["message"]
    left = Decimal(refused["epsilon_remaining"])
    assert Decimal(0) < left < Decimal("0.1")
    assert refused["share_used"] <= 1.0
    assert LedgerEntry.objects.filter(purchase=purchase, kind="reserve").count() == released
    # ... and a job of what remains is still accepted.
    last = submit(api, purchase, count_above(10_000), epsilon=f"{left:f}")
    assert last.status_code == 202, last.content

    # Every receipt: the release's own loss, and a cumulative guarantee within the cap, which an
    # independent computation confirms.
    for k, receipt in enumerate(receipts, start=1):
        assert (receipt["epsilon_charged"], receipt["rho_charged"]) == ("0.100000", "0.005000000000")
        after = receipt["purchase_after"]
        assert after["epsilon"] <= CAP_EPSILON and after["delta"] <= CAP_DELTA
        assert after["share_used"] <= 1.0
        rho = 0.005 * k
        # Independently: rho-zCDP implies (rho + 2 sqrt(rho ln(1/delta)), delta)-DP (Bun and Steinke,
        # Proposition 1.3), a looser conversion than the library's, and basic composition gives k / 10.
        loose = rho + 2 * math.sqrt(rho * math.log(1 / CAP_DELTA))
        assert after["epsilon"] <= min(loose, k * 0.1) + 1e-6
        assert after["composition"] == (
            "basic composition" if k * 0.1 <= accounting.zcdp_epsilon(rho, CAP_DELTA) else "zCDP"
        )
        assert receipt["dataset_after"]["epsilon"] <= float(dp_dataset.epsilon_cap)
    # And never below what the mechanism really leaks: the optimistic privacy-loss distribution of the
    # geometric mechanism, composed as many times.
    leak = (
        pld.from_discrete_laplace_mechanism(0.1, pessimistic_estimate=False, value_discretization_interval=1e-3)
        .self_compose(released)
        .get_epsilon_for_delta(CAP_DELTA)
    )
    assert leak <= receipts[-1]["purchase_after"]["epsilon"] <= CAP_EPSILON

    # The purchase's sums are the ledger's, and the database's check constraint agrees.
    purchase.refresh_from_db()
    reserves = LedgerEntry.objects.filter(purchase=purchase, kind="reserve")
    assert purchase.rho_used == sum((e.rho for e in reserves), Decimal(0)) <= purchase.rho_cap
    assert purchase.epsilon_used > purchase.epsilon  # far past basic composition's cap


def test_the_purchase_api_reports_the_accountants_figures(buyer, api, dp_dataset):
    purchase = purchase_create(buyer=buyer, dataset_id=dp_dataset.pk, epsilon=Decimal("10"))
    for i in range(150):
        job = submit(api, purchase, count_above(i)).json()
        services.job_run(job_id=job["id"])
    ledger = api.get(f"/api/v1/purchases/{purchase.pk}/ledger/").json()
    assert ledger["epsilon_committed"] == "15.000000"  # the epsilons added up, as the ledger rows say
    assert ledger["rho_committed"] == "0.750000000000"
    assert ledger["composition"] == "zCDP"
    assert float(ledger["epsilon_spent"]) == pytest.approx(accounting.zcdp_epsilon(0.75, CAP_DELTA), abs=1e-6)
    assert float(ledger["epsilon_spent"]) < 10
    share = 0.75 / accounting.rho_cap(CAP_EPSILON, CAP_DELTA)
    assert ledger["share_used"] == pytest.approx(share, abs=1e-6)
    assert ledger["entries"][0]["rho"] == "0.005000000000"

    listed = api.get("/api/v1/purchases/").json()["results"][0]
    assert listed["epsilon_spent"] == ledger["epsilon_spent"]
    assert listed["share_used"] == ledger["share_used"]
    assert Decimal(listed["epsilon_remaining"]) == Decimal(ledger["epsilon_remaining"]) > Decimal("1")


def test_a_dataset_refuses_what_its_buyers_together_cannot_have(buyer, outsider, api, dp_dataset):
    """Across buyers: a job that fits its purchase is still refused when the dataset's own budget,
    with it, fits none of the three bounds (possible only if allotments were sold past the cap)."""
    mine = purchase_create(buyer=buyer, dataset_id=dp_dataset.pk, epsilon=Decimal("5"))
    purchase_create(buyer=outsider, dataset_id=dp_dataset.pk, epsilon=Decimal("5"))
    # The owner's cap lowered under what was sold (the constraint forbids it; bypass it for the test).
    Dataset.objects.filter(pk=dp_dataset.pk).update(epsilon_sold=Decimal("1"))
    Dataset.objects.filter(pk=dp_dataset.pk).update(epsilon_cap=Decimal("1"), epsilon_sold=Decimal("1"))
    dp_dataset.refresh_from_db()
    dp_dataset.save()  # recomputes rho_cap for the lowered cap
    assert submit(api, mine, count_above(0), epsilon="0.9").status_code == 202
    refused = submit(api, mine, count_above(1), epsilon="0.9")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "dataset_budget_exhausted"
    mine.refresh_from_db()
    assert mine.epsilon_used == Decimal("0.9")  # nothing written for the refused one
    assert Purchase.objects.get(pk=mine.pk).rho_used == Decimal("0.405")
