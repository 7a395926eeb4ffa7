"""The buyer's pages under the accountant (issue 14): My purchases and a purchase's page show the share
of the allotment used beside what was spent and what remains, and say what "remaining" means."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from compute.engines import accounting
from marketplace import charts
from marketplace.models import LedgerEntry
from marketplace.services import purchase_create
from tests.factories import DatasetFactory

pytestmark = pytest.mark.django_db


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def counted(owner, buyer):
    """A (10, 1e-5) purchase of a whole (10, 1e-5) dataset with 150 counts at 0.1 released on it, as
    the ledger records them (a reserve and a commit each, rho 0.1**2 / 2), and one still running."""
    dataset = DatasetFactory(owner=owner, title="Counted", epsilon_cap=Decimal("10"), delta_cap=Decimal("0.00001"))
    purchase = purchase_create(buyer=buyer, dataset_id=dataset.pk, epsilon=Decimal("10"))
    row = {"dataset": dataset, "purchase": purchase, "epsilon": Decimal("0.1"), "rho": Decimal("0.005")}
    LedgerEntry.objects.bulk_create(
        [
            LedgerEntry(kind=kind, **row)
            for _ in range(150)
            for kind in (LedgerEntry.Kind.RESERVE, LedgerEntry.Kind.COMMIT)
        ]
        + [LedgerEntry(kind=LedgerEntry.Kind.RESERVE, **row)]
    )
    return purchase


def test_my_purchases_shows_the_share_of_the_allotment_used_by_the_accountant(buyer, counted):
    page = logged_in(buyer).get(reverse("my-purchases")).content.decode()

    # 151 counts hold rho 0.755: that share of the cap's rho, where adding epsilons up would be 151%.
    share = 0.755 / accounting.rho_cap(10.0, 1e-5)
    cell = re.search(r'<td class="num share-used" data-value="([^"]+)">([^<]+)</td>', page)
    assert float(cell.group(1)) == pytest.approx(share, abs=1e-9)
    assert cell.group(2) == charts.percent(share) == "42.4%"
    spent, remaining = re.findall(r'<td class="num">([\d.]+)</td>', page)[-2:]
    # Spent: the guarantee of the 150 released answers, zCDP at the purchase's delta, rounded up.
    assert 0 <= float(spent) - accounting.zcdp_epsilon(0.75, 1e-5) <= 1e-6
    assert Decimal("1") < Decimal(remaining) < Decimal("10")
    assert "Share of the allotment used" in page
    assert "is the largest epsilon one more job could ask for now" in page


def test_a_purchase_page_states_the_guarantee_the_share_and_what_remaining_means(buyer, counted):
    page = logged_in(buyer).get(reverse("purchase-detail", args=[counted.pk])).content.decode()

    share = 0.755 / accounting.rho_cap(10.0, 1e-5)
    used = re.search(r'<dd class="share-used" data-value="([^"]+)">([^<]+)<small>', page)
    assert float(used.group(1)) == pytest.approx(share, abs=1e-9)
    assert used.group(2).strip() == "42.4%"
    assert re.search(r'<span class="spent">5\.9\d+</span> <small>at δ 0.00001, by zCDP: the guarantee', page)
    assert "the largest epsilon one more job could ask for now (at δ 0)" in page
    assert "is not ε bought minus ε spent" in page
    # The ledger shows each row's rho.
    assert "ρ (zCDP)" in page and '<td class="num">0.005</td>' in page


def test_an_untouched_purchase_has_used_nothing(buyer, owner):
    dataset = DatasetFactory(owner=owner)
    purchase = purchase_create(buyer=buyer, dataset_id=dataset.pk, epsilon=Decimal("2"))

    page = logged_in(buyer).get(reverse("purchase-detail", args=[purchase.pk])).content.decode()

    assert re.search(r'<dd class="share-used" data-value="0.0">0% <small>', page)
    assert re.search(r'<span class="remaining">2</span>', page)
