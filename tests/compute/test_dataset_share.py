"""The owner's side of the accountant (issue 14): the dashboard's chart and card and the dataset's budget
API state the share of the dataset's budget used, with the meaning of compute/budget.pooled_position,
and agree with the receipts that the releasing transactions wrote."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from compute import activity, budget, services
from compute.engines import accounting
from marketplace import charts
from marketplace.models import Dataset, LedgerEntry, Purchase
from marketplace.services import purchase_create
from tests.conftest import client_for
from tests.factories import DatasetFactory, UserFactory

pytestmark = pytest.mark.django_db

CAP_EPSILON, CAP_DELTA = 10.0, 1e-5


def count_above(i: int) -> dict:
    # A different filter each time: the same question twice is a free repeat, not a second release.
    return {"aggregate": "count", "filters": [{"column": "age", "op": "range", "low": i / 100}]}


def run(api, purchase, query, epsilon: str) -> dict:
    response = api.post(
        "/api/v1/jobs/",
        {"purchase": purchase.pk, "kind": "query", "query": query, "epsilon": epsilon, "delta": "0"},
        format="json",
    )
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    assert services.job_run(job_id=job_id) == "released"
    return api.get(f"/api/v1/jobs/{job_id}/").json()["receipt"]


def card_of(page: str, dataset: Dataset) -> str:
    match = re.search(rf'<article class="dataset-activity" id="dataset-{dataset.pk}".*?</article>', page, re.S)
    assert match, "no dashboard card"
    return match.group(0)


def test_150_counts_at_a_tenth_use_rho_over_rho_cap_of_the_dataset_on_the_api_the_chart_and_the_card(
    owner, owner_client, buyer, api, dp_dataset
):
    purchase = purchase_create(buyer=buyer, dataset_id=dp_dataset.pk, epsilon=Decimal("10"))
    receipts = [run(api, purchase, count_above(i), "0.1") for i in range(150)]
    share = 0.75 / accounting.rho_cap(CAP_EPSILON, CAP_DELTA)  # 150 x 0.1**2 / 2, over the cap's rho
    assert 0.4 < share < 0.45  # basic composition would be at 150%

    # The owner's API.
    body = owner_client.get(f"/api/v1/datasets/{dp_dataset.pk}/budget/").json()
    assert body["share_used"] == pytest.approx(share, abs=1e-6)
    assert body["composition"] == "zCDP"
    assert float(body["epsilon_spent"]) == pytest.approx(accounting.zcdp_epsilon(0.75, CAP_DELTA), abs=1e-6)
    assert Decimal(body["epsilon_spent"]) < Decimal("10") < Decimal(body["epsilon_committed"]) == Decimal("15")
    assert body["delta_spent"] == "0.000010000000" and body["delta_cap"] == "0.000010000000"
    assert body["rho_committed"] == "0.750000000000"
    assert Decimal(body["rho_cap"]) == Dataset.objects.get(pk=dp_dataset.pk).rho_cap > Decimal("1.7")
    assert (body["epsilon_cap"], body["epsilon_sold"], body["epsilon_unsold"]) == ("10.000000", "10.000000", "0.000000")
    (bob,) = body["by_buyer"]
    assert bob["buyer"] == "bob" and bob["jobs_released"] == 150
    assert bob["epsilon_spent"] == body["epsilon_spent"] and bob["delta_spent"] == "0.000010000000"
    assert bob["epsilon_committed"] == "15.000000"
    assert bob["share_used"] == pytest.approx(share, abs=1e-6)  # the only buyer: the whole dataset's share
    # The buyer's purchase API says the same of the same answers.
    assert api.get(f"/api/v1/purchases/{purchase.pk}/ledger/").json()["epsilon_spent"] == body["epsilon_spent"]

    # The dashboard: one point per commit, each the share after it, as the releasing transaction's
    # receipt stated it; the card and the table in words.
    card = card_of(_page(owner), dp_dataset)
    points = [float(v) for v in re.findall(r'class="chart-value burn-point" data-share="([^"]+)"', card)]
    assert len(points) == 150
    assert points == pytest.approx([r["dataset_after"]["share_used"] for r in receipts], abs=1e-6)
    assert points == sorted(points) and points[-1] == pytest.approx(share, abs=1e-9)
    used = re.search(r'<strong class="share-used" data-value="([^"]+)">(.*?)</strong>', card)
    assert float(used.group(1)) == pytest.approx(share, abs=1e-9)
    epsilon = charts.rounded_up(accounting.zcdp_epsilon(0.75, CAP_DELTA))
    assert used.group(2) == f"{charts.percent(share)} of the budget used (ε {epsilon} at δ 0.00001, by zCDP)"
    assert "Share of the dataset's privacy budget used" in card  # the axis, in words
    assert re.search(r"<title [^>]*>Share of the privacy budget of .* used over time: ", card)
    assert f'<span class="burn-share">{charts.percent(share)}</span>' in card
    rows = re.findall(r'<td class="num share">([^<]+)</td><td class="guarantee">([^<]+)</td>', card)
    assert len(rows) == 10
    assert rows[0] == (charts.percent(share), f"ε {epsilon} at δ 0.00001, by zCDP")
    assert rows[-1][0] == charts.percent(receipts[140]["dataset_after"]["share_used"])


def min_id(dataset: Dataset) -> int:
    return LedgerEntry.objects.filter(dataset=dataset).order_by("id").values_list("id", flat=True)[0]


def _page(user) -> str:
    client = Client()
    client.force_login(user)
    return client.get(reverse("owner-dashboard")).content.decode()


def test_two_buyers_pooled_share_is_their_guarantees_added_up_when_that_is_tighter(
    owner, owner_client, buyer, outsider, dp_dataset
):
    """One buyer's single large release and another's many small ones: zCDP over all jobs is poor (the
    large one's rho), basic composition adds 5 + 4; each purchase's own guarantee, added up, wins."""
    big = purchase_create(buyer=buyer, dataset_id=dp_dataset.pk, epsilon=Decimal("5"))
    small = purchase_create(buyer=outsider, dataset_id=dp_dataset.pk, epsilon=Decimal("5"))
    run(client_for(buyer), big, count_above(0), "5")
    charlie = client_for(outsider)
    receipts = [run(charlie, small, count_above(i), "0.1") for i in range(40)]

    small_eps = accounting.zcdp_epsilon(40 * 0.005, 5e-6)
    assert small_eps < 4  # zCDP beats 40 x 0.1 on the small purchase
    expected = (5 + small_eps) / CAP_EPSILON
    body = owner_client.get(f"/api/v1/datasets/{dp_dataset.pk}/budget/").json()
    assert body["composition"] == budget.POOLED
    assert body["share_used"] == pytest.approx(expected, abs=1e-6)
    assert expected < 0.9  # basic composition: 9 of 10
    assert body["share_used"] == pytest.approx(receipts[-1]["dataset_after"]["share_used"], abs=1e-6)
    assert body["share_used"] <= float(Decimal(body["epsilon_sold"]) / Decimal(body["epsilon_cap"]))
    assert float(body["epsilon_spent"]) == pytest.approx(5 + small_eps, abs=1e-5)
    assert body["delta_spent"] == "0.000005000000"  # the small purchase's delta; the big one is pure
    rows = {row["buyer"]: row for row in body["by_buyer"]}
    assert rows["bob"]["epsilon_spent"] == "5.000000" and rows["bob"]["share_used"] == pytest.approx(0.5)
    assert float(rows["charlie"]["epsilon_spent"]) == pytest.approx(small_eps, abs=1e-5)
    assert rows["charlie"]["epsilon_committed"] == "4.000000"
    # A buyer's share is what their jobs alone use of the dataset's budget: rho 0.2 over the cap's.
    assert rows["charlie"]["share_used"] == pytest.approx(0.2 / accounting.rho_cap(CAP_EPSILON, CAP_DELTA), abs=1e-6)

    card = card_of(_page(owner), dp_dataset)
    last = re.findall(r'class="chart-value burn-point" data-share="([^"]+)"', card)[-1]
    assert float(last) == pytest.approx(expected, abs=1e-9)
    assert "by the purchases&#x27; guarantees added up)" in card


def test_an_open_job_counts_in_the_share_used_but_not_in_what_was_spent(owner, owner_client, buyer, api, dp_dataset):
    purchase = purchase_create(buyer=buyer, dataset_id=dp_dataset.pk, epsilon=Decimal("2"))
    run(api, purchase, count_above(0), "0.5")
    open_job = api.post(
        "/api/v1/jobs/",
        {"purchase": purchase.pk, "kind": "query", "query": count_above(1), "epsilon": "0.25", "delta": "0"},
        format="json",
    )
    assert open_job.status_code == 202

    body = owner_client.get(f"/api/v1/datasets/{dp_dataset.pk}/budget/").json()
    assert body["epsilon_spent"] == "0.500000" and body["composition"] == "basic composition"
    assert body["share_used"] == pytest.approx(0.075)  # 0.75 of 10, the running job's reservation with it
    assert body["by_buyer"][0]["share_used"] == pytest.approx(0.075)
    card = card_of(_page(owner), dp_dataset)
    assert re.search(r'<strong class="share-used" data-value="0.05">5% of the budget used \(ε 0.5 at δ 0, ', card)
    assert re.search(r'<span class="share-reserved" data-value="0.075">7.5%</span> with the reservations', card)


def test_the_dashboard_thins_thousands_of_commits_before_the_accountant_runs(owner, monkeypatch):
    dataset = DatasetFactory(owner=owner)
    buyers = [UserFactory(is_buyer=True, credits=Decimal("1000")) for _ in range(2)]
    purchases = [purchase_create(buyer=b, dataset_id=dataset.pk, epsilon=Decimal("5")) for b in buyers]
    rows = [
        LedgerEntry(
            dataset=dataset,
            purchase=purchases[i % 2],
            kind=LedgerEntry.Kind.COMMIT,
            epsilon=Decimal("0.001"),
            rho=Decimal("0.0000005"),
        )
        for i in range(3000)
    ]
    LedgerEntry.objects.bulk_create(rows)
    # A history spread over two days: the ledger refuses updates through the ORM, so the test moves
    # its own rows' times in SQL.
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE marketplace_ledgerentry SET created_at = %s + (id - %s) * interval '1 minute' WHERE dataset_id = %s",
            [timezone.now() - timedelta(days=3), min_id(dataset), dataset.pk],
        )
    calls = []
    original = activity.pooled_usage
    monkeypatch.setattr(activity, "pooled_usage", lambda **kw: calls.append(1) or original(**kw))

    card = card_of(_page(owner), dataset)

    assert len(re.findall(r'class="chart-value burn-point"', card)) <= charts.MAX_POINTS
    # The accountant ran for the chart's points, the table's rows and the card, not per commit.
    assert len(calls) <= charts.MAX_POINTS + 10 + 1
    # The last point is the state after all 3000 commits: rho 0.0015 over the cap's.
    last = float(re.findall(r'data-share="([^"]+)"', card)[-1])
    assert last == pytest.approx(0.0015 / accounting.rho_cap(CAP_EPSILON, CAP_DELTA), rel=1e-9)
    assert "After 3000 commits" in card


@pytest.mark.parametrize(
    ("losses", "deltas"),
    [
        ({}, {}),
        ({0: accounting.pure(0.5)}, {0: "0.000001"}),
        ({0: accounting.Loss(15.0, 0.0, 0.75)}, {0: "0.00001"}),
        ({0: accounting.pure(5.0), 1: accounting.Loss(4.0, 0.0, 0.2)}, {0: "0.000005", 1: "0.000005"}),
        ({0: accounting.Loss(1.0, 2e-6, 0.05), 1: accounting.Loss(0.2, 1e-6, 0.01)}, {0: "0.000004", 1: "0.000002"}),
    ],
)
def test_pooled_usage_says_what_pooled_position_says(owner, losses, deltas):
    dataset = DatasetFactory(owner=owner)
    by_purchase = {}
    for key, loss in losses.items():
        buyer = UserFactory(is_buyer=True, credits=Decimal("1000"))
        p = purchase_create(buyer=buyer, dataset_id=dataset.pk, epsilon=Decimal("4"))
        Purchase.objects.filter(pk=p.pk).update(delta=Decimal(deltas[key]))
        by_purchase[p.pk] = loss
    used = accounting.compose(by_purchase.values())
    pk_deltas = {pk: Decimal(deltas[k]) for pk, k in zip(by_purchase, losses)}

    mine = activity.pooled_usage(
        cap_epsilon=dataset.epsilon_cap,
        cap_delta=dataset.delta_cap,
        used=used,
        by_purchase=by_purchase,
        deltas=pk_deltas,
    )
    theirs = budget.pooled_position(dataset, used, by_purchase)

    assert mine.share == theirs.share
    assert mine.bound == theirs.bound
