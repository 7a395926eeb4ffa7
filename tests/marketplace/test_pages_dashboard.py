"""The owner dashboard and the catalogue's filters, through the Django test client on PostgreSQL.

The dashboard's numbers come from purchases, the privacy ledger and jobs; the rows here are made
the way the services make them (purchases through the service, ledger rows appended), and the
browser tests in tests/e2e check the same page after real jobs on a real worker.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from compute.models import Job
from marketplace import charts
from marketplace.models import Dataset, LedgerEntry
from marketplace.services import purchase_create
from tests.factories import DatasetFactory

pytestmark = pytest.mark.django_db


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def job(purchase, status: str, epsilon: str, result=None) -> Job:
    return Job.objects.create(
        buyer=purchase.buyer,
        dataset=purchase.dataset,
        purchase=purchase,
        spec={"aggregate": "count", "filters": [], "group_by": []},
        spec_hash=f"{status}-{epsilon}-{Job.objects.count()}",
        epsilon=Decimal(epsilon),
        dataset_version=1,
        status=status,
        result=result,
    )


def ledger(purchase, job_row: Job, kind: str, epsilon: str) -> LedgerEntry:
    # A pure release's row carries its rho, epsilon**2 / 2, as compute.budget.ledger_row writes it.
    return LedgerEntry.objects.create(
        dataset=purchase.dataset,
        purchase=purchase,
        job_id=job_row.pk,
        kind=kind,
        epsilon=Decimal(epsilon),
        rho=Decimal(epsilon) ** 2 / 2,
    )


def article(page: str, dataset: Dataset) -> str:
    match = re.search(rf'<article class="dataset-activity" id="dataset-{dataset.pk}".*?</article>', page, re.S)
    assert match, f"no dashboard card for {dataset.title}"
    return match.group(0)


def text_of(html: str, css_class: str) -> str:
    match = re.search(rf'class="[^"]*\b{css_class}\b[^"]*"[^>]*>(.*?)<', html, re.S)
    assert match, css_class
    return match.group(1).strip()


@pytest.fixture
def sold(owner, buyer, outsider):
    """A dataset two buyers bought (three purchases) with released, failed and running jobs."""
    dataset = DatasetFactory(owner=owner, title="Heart study", epsilon_cap=Decimal("10"), price_per_epsilon="8.00")
    first = purchase_create(buyer=buyer, dataset_id=dataset.pk, epsilon=Decimal("2"))
    purchase_create(buyer=buyer, dataset_id=dataset.pk, epsilon=Decimal("1"))
    other = purchase_create(buyer=outsider, dataset_id=dataset.pk, epsilon=Decimal("0.5"))
    released = job(first, "released", "0.5", result={"aggregate": "count", "groups": [{"value": 123.456789}]})
    ledger(first, released, "reserve", "0.5")
    ledger(first, released, "commit", "0.5")
    second = job(other, "released", "0.25", result={"aggregate": "count", "groups": [{"value": 98.7654321}]})
    ledger(other, second, "reserve", "0.25")
    ledger(other, second, "commit", "0.25")
    failed = job(first, "failed", "0.3")
    ledger(first, failed, "reserve", "0.3")
    ledger(first, failed, "refund", "0.3")
    running = job(first, "running", "0.1")
    ledger(first, running, "reserve", "0.1")
    dataset.refresh_from_db()
    return dataset


def test_dashboard_shows_earnings_buyers_budget_and_jobs_by_status(owner, sold):
    page = logged_in(owner).get(reverse("owner-dashboard")).content.decode()
    card = article(page, sold)

    assert text_of(card, "earnings") == "28.00 credits"  # 16 + 8 + 4
    assert text_of(card, "buyers") == "2"
    assert text_of(card, "purchases") == "3"
    assert text_of(card, "epsilon-sold") == "3.5 of 10"
    assert text_of(card, "epsilon-committed") == "0.75"
    assert text_of(card, "epsilon-held") == "0.1"
    counts = dict(re.findall(r'job-count-(\w+)">.*?<span class="count">(\d+)</span>', card, re.S))
    assert counts == {
        "queued": "0",
        "running": "1",
        "awaiting_key": "0",
        "released": "2",
        "failed": "1",
        "cancelled": "0",
    }
    assert text_of(card, "jobs-total") == "4"
    assert text_of(page, "total-earnings") == "28.00 credits"
    assert text_of(page, "total-buyers") == "2"


def test_dashboard_chart_draws_one_point_per_commit_and_says_it_counts_commits(owner, sold):
    page = logged_in(owner).get(reverse("owner-dashboard")).content.decode()
    card = article(page, sold)

    assert card.count('class="chart-value burn-point"') == 2
    assert "ε 0.5 spent, 9.5 left" in card and "ε 0.75 spent, 9.25 left" in card
    caption = re.search(r'<figcaption class="burn-caption">(.*?)</figcaption>', card, re.S).group(1)
    assert "<strong>committed</strong>" in caption and "commit rows of the privacy ledger" in caption
    assert "Reservations of jobs still running" in caption
    assert text_of(caption, "burn-left") == "9.25"
    # The table behind the chart lists the commits, newest first.
    rows = re.findall(r'<td class="num">([\d.]+)</td><td class="num">([\d.]+)</td>', card)
    assert rows == [("0.75", "9.25"), ("0.5", "9.5")]


def test_dashboard_never_shows_released_values(owner, sold):
    page = logged_in(owner).get(reverse("owner-dashboard")).content.decode()

    for value in ("123.45", "123.46", "98.76", "98.77"):
        assert value not in page


def test_dashboard_shows_only_the_owners_datasets(owner, outsider, sold):
    DatasetFactory(owner=outsider, title="Someone else's data")

    page = logged_in(owner).get(reverse("owner-dashboard")).content.decode()

    assert "Heart study" in page
    assert "Someone else" not in page
    assert text_of(page, "total-datasets") == "1"


def test_dashboard_for_an_he_dataset_shows_its_bundle_and_jobs_waiting_for_the_key(owner, buyer):
    dataset = DatasetFactory(
        owner=owner,
        title="Encrypted wards",
        mode=Dataset.Mode.HE,
        bundle_status=Dataset.BundleStatus.READY,
        key_custody=Dataset.KeyCustody.OWNER,
    )
    purchase = purchase_create(buyer=buyer, dataset_id=dataset.pk, epsilon=Decimal("1"))
    for _ in range(2):
        ledger(purchase, job(purchase, "awaiting_key", "0.2"), "reserve", "0.2")

    card = article(logged_in(owner).get(reverse("owner-dashboard")).content.decode(), dataset)

    assert text_of(card, "bundle-status") == "ready"
    assert text_of(card, "awaiting-key") == "2 jobs"
    assert "2 jobs wait for your key." in card
    assert "held by the owner" in card


def test_a_dataset_with_no_sales_says_nothing_was_spent(owner):
    dataset = DatasetFactory(owner=owner, title="Fresh data", status=Dataset.Status.DRAFT)

    card = article(logged_in(owner).get(reverse("owner-dashboard")).content.decode(), dataset)

    assert text_of(card, "earnings") == "0.00 credits"
    assert "No budget has been spent yet." in card
    assert 'class="chart-value burn-point"' not in card
    assert f'action="{reverse("dataset-publish", args=[dataset.pk])}"' in card


def test_dashboard_needs_a_login_and_the_nav_links_it_for_owners(owner, buyer):
    response = Client().get(reverse("owner-dashboard"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))

    assert f'href="{reverse("owner-dashboard")}"' in logged_in(owner).get(reverse("catalogue")).content.decode()
    buyer_view = logged_in(buyer).get(reverse("owner-dashboard"))
    assert buyer_view.status_code == 200
    assert "does not have the owner role" in buyer_view.content.decode()
    assert f'href="{reverse("owner-dashboard")}"' not in logged_in(buyer).get(reverse("catalogue")).content.decode()


def test_burn_down_geometry_steps_down_at_each_commit():
    start = timezone.now() - timedelta(hours=10)
    commits = [(start + timedelta(hours=5), Decimal("2.5")), (start + timedelta(hours=10), Decimal("5"))]

    chart = charts.burn_down(
        cap=Decimal("10"), sold=Decimal("6"), start=start, now=start + timedelta(hours=10), commits=commits
    )

    assert [p.x for p in chart.points] == [50.0, 97.0]
    # Zero is at BOTTOM and the cap at TOP: 7.5 left is three quarters of the way up.
    assert chart.points[0].y == pytest.approx(charts.BOTTOM - 0.75 * (charts.BOTTOM - charts.TOP))
    assert chart.points[1].y == pytest.approx(charts.BOTTOM - 0.5 * (charts.BOTTOM - charts.TOP))
    assert chart.sold_y == pytest.approx(charts.BOTTOM - 0.4 * (charts.BOTTOM - charts.TOP))
    assert chart.left == Decimal("5")
    # Flat, drop, flat, drop, flat to the right edge.
    assert len(chart.segments) == 5 and chart.segments[-1].x2 == charts.RIGHT


def test_burn_down_thins_many_commits_to_a_bounded_number_of_points():
    start = timezone.now() - timedelta(days=1)
    commits = [(start + timedelta(seconds=i * 10), Decimal("0.001") * (i + 1)) for i in range(5000)]

    chart = charts.burn_down(
        cap=Decimal("10"), sold=Decimal("10"), start=start, now=start + timedelta(days=1), commits=commits
    )

    assert len(chart.points) <= charts.MAX_POINTS
    assert chart.points[-1].committed == Decimal("5.000")  # the last state is always kept


# Catalogue filters


@pytest.fixture
def shelf(owner):
    DatasetFactory(owner=owner, title="Cheap clinic", price_per_epsilon="5.00", epsilon_cap=Decimal("2"))
    DatasetFactory(owner=owner, title="Mid clinic", price_per_epsilon="15.00", epsilon_cap=Decimal("20"))
    DatasetFactory(owner=owner, title="Dear clinic", price_per_epsilon="50.00", epsilon_cap=Decimal("8"))
    DatasetFactory(owner=owner, title="Encrypted clinic", price_per_epsilon="12.00", mode=Dataset.Mode.HE)


def titles(response) -> list[str]:
    return re.findall(r'<h3><a href="[^"]+">([^<]+)</a></h3>', response.content.decode())


def test_catalogue_filters_by_price_range(shelf):
    response = Client().get(reverse("catalogue"), {"min_price": "10", "max_price": "20"})

    assert response.status_code == 200
    assert sorted(titles(response)) == ["Encrypted clinic", "Mid clinic"]
    assert "with these filters" in response.content.decode()


def test_catalogue_filters_by_budget_left_and_mode_and_sorts_by_price(shelf, buyer):
    mid = Dataset.objects.get(title="Mid clinic")
    purchase_create(buyer=buyer, dataset_id=mid.pk, epsilon=Decimal("15"))  # 5 left

    left = Client().get(reverse("catalogue"), {"min_available": "6", "mode": "dp", "order": "price"})
    assert titles(left) == ["Dear clinic"]

    by_price = Client().get(reverse("catalogue"), {"order": "price"})
    assert titles(by_price) == ["Cheap clinic", "Encrypted clinic", "Mid clinic", "Dear clinic"]
    most_left = Client().get(reverse("catalogue"), {"order": "-available"})
    assert titles(most_left)[0] == "Encrypted clinic"  # 10 left, more than Dear clinic's 8


def test_catalogue_bad_filter_is_a_400_with_the_error_beside_the_field_and_the_input_kept(shelf):
    response = Client().get(reverse("catalogue"), {"max_price": "cheap", "search": "clinic", "min_price": "30"})
    page = response.content.decode()

    assert response.status_code == 400
    assert re.search(r'id="id_max_price_error">Enter a number.</small>', page)
    assert 'value="cheap"' in page and 'value="clinic"' in page
    # The filters that did parse still apply.
    assert titles(response) == ["Dear clinic"]


def test_catalogue_price_range_upside_down_names_the_field(shelf):
    response = Client().get(reverse("catalogue"), {"min_price": "30", "max_price": "10"})

    assert response.status_code == 400
    assert re.search(
        r'id="id_max_price_error">Must be at least the lowest price \(30\).</small>', response.content.decode()
    )


def test_catalogue_pages_keep_the_filters_in_their_links(owner):
    for i in range(14):
        DatasetFactory(owner=owner, title=f"Survey {i}", price_per_epsilon="9.00")

    first = Client().get(reverse("catalogue"), {"max_price": "10", "order": "price"}).content.decode()

    assert "max_price=10&amp;order=price&amp;page=2" in first


def test_purchases_page_shows_what_is_left_of_each_allotment(buyer, sold):
    page = logged_in(buyer).get(reverse("my-purchases")).content.decode()

    # bob's purchases: 2 (0.5 spent, 0.1 held by the running job) and 1 (untouched).
    rows = re.findall(r'<td class="num">([\d.]+)</td>\s*<td class="num">([\d.]+)</td>\s*<td><time', page)
    assert sorted(rows) == [("0", "1"), ("0.5", "1.4")]
    assert "ε remaining" in page


def test_the_owner_suspends_and_republishes_from_the_dataset_page(client, owner, dataset):
    dataset.status = "published"
    dataset.save()
    client.force_login(owner)
    page = client.get(f"/datasets/{dataset.pk}/").content.decode()
    assert f'action="/datasets/{dataset.pk}/suspend/"' in page
    response = client.post(f"/datasets/{dataset.pk}/suspend/", follow=True)
    assert "is suspended" in response.content.decode() and "Publish again" in response.content.decode()
    dataset.refresh_from_db()
    assert dataset.status == "suspended" and dataset.suspended_by_owner
    response = client.post(f"/datasets/{dataset.pk}/publish/", follow=True)
    dataset.refresh_from_db()
    assert dataset.status == "published" and not dataset.suspended_by_owner
