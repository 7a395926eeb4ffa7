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

from compute.engines import accounting
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
    """A row of a pure epsilon-DP job, with its zCDP rho (epsilon**2 / 2) as the services write it."""
    return LedgerEntry.objects.create(
        dataset=purchase.dataset,
        purchase=purchase,
        job_id=job_row.pk,
        kind=kind,
        epsilon=Decimal(epsilon),
        rho=Decimal(repr(accounting.pure_rho(float(epsilon)))),
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


def test_dashboard_chart_draws_the_share_used_after_each_commit_in_words(owner, sold):
    page = logged_in(owner).get(reverse("owner-dashboard")).content.decode()
    card = article(page, sold)

    # Two commits, of pure releases at 0.5 and 0.25 on a (10, 1e-5) dataset: basic composition is the
    # tightest (zCDP would be rho 0.125 + 0.03125 over the cap's 1.78), so 5% and then 7.5%.
    assert re.findall(r'class="chart-value burn-point" data-share="([^"]+)"', card) == ["0.05", "0.075"]
    assert "5% of the budget used (ε 0.5 at δ 0, by basic composition); ε 0.5 released in all" in card
    assert "7.5% of the budget used (ε 0.75 at δ 0, by basic composition); ε 0.75 released in all" in card
    assert "Share of the dataset's privacy budget used" in card  # the axis, in words
    assert "100%: the cap, ε 10 at δ 0.00001" in card
    assert "35% sold: the most buyers can use" in card  # 3.5 of 10 sold
    assert re.search(r'<desc id="burn-desc-\d+">A step line of the share', card)
    caption = re.search(r'<figcaption class="burn-caption">(.*?)</figcaption>', card, re.S).group(1)
    assert "<strong>commit</strong> rows of the privacy ledger" in caption and "under the accountant" in caption
    assert "Reservations of jobs still running" in caption
    assert text_of(caption, "burn-share") == "7.5%"
    assert text_of(caption, "burn-spent") == "0.75"
    assert text_of(card, "share-used") == "7.5% of the budget used (ε 0.75 at δ 0, by basic composition)"
    # With the running job's reservation (0.1; the failed one's was refunded): 0.85 of 10.
    assert text_of(card, "share-reserved") == "8.5%"
    # The table behind the chart lists the commits, newest first, with the share after each.
    rows = re.findall(
        r'<td class="num share">([^<]+)</td><td class="guarantee">([^<]+)</td><td class="num committed">([^<]+)</td>',
        card,
    )
    assert rows == [
        ("7.5%", "ε 0.75 at δ 0, by basic composition", "0.75"),
        ("5%", "ε 0.5 at δ 0, by basic composition", "0.5"),
    ]


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


def step(when, share: float, committed: str) -> charts.Step:
    return charts.Step(
        when=when,
        committed=Decimal(committed),
        usage=charts.Usage(share, accounting.Bound(float(committed), 0.0, accounting.BASIC)),
    )


def test_burn_down_geometry_rises_to_the_share_used_at_each_commit():
    start = timezone.now() - timedelta(hours=10)
    steps = [step(start + timedelta(hours=5), 0.25, "2.5"), step(start + timedelta(hours=10), 0.5, "5")]

    chart = charts.burn_down(
        cap_epsilon=Decimal("10"),
        cap_delta=Decimal("0.00001"),
        sold=Decimal("6"),
        start=start,
        end=start + timedelta(hours=10),
        steps=steps,
        commits=2,
        usage=steps[-1].usage,
    )

    assert [p.x for p in chart.points] == [50.0, 97.0]
    # 0% is at BOTTOM and the cap, 100%, at TOP: a quarter used is a quarter of the way up.
    assert chart.points[0].y == pytest.approx(charts.BOTTOM - 0.25 * (charts.BOTTOM - charts.TOP))
    assert chart.points[1].y == pytest.approx(charts.BOTTOM - 0.5 * (charts.BOTTOM - charts.TOP))
    assert chart.half_y == chart.points[1].y
    assert (chart.cap_y, chart.zero_y) == (charts.TOP, charts.BOTTOM)
    assert chart.sold_y == pytest.approx(charts.BOTTOM - 0.6 * (charts.BOTTOM - charts.TOP))
    assert chart.sold_text == "60%"
    # Flat, rise, flat, rise, flat to the right edge.
    assert len(chart.segments) == 5 and chart.segments[-1].x2 == charts.RIGHT
    assert chart.segments[1].y2 < chart.segments[1].y1  # up the screen


def test_thin_keeps_a_bounded_number_of_commits_and_always_the_last():
    start = timezone.now() - timedelta(days=1)
    times = [start + timedelta(seconds=i * 10) for i in range(5000)]

    kept = charts.thin(times, start, start + timedelta(days=1))

    assert len(kept) <= charts.MAX_POINTS
    assert kept == sorted(kept) and kept[-1] == 4999
    assert charts.thin(times[:10], start, start + timedelta(days=1)) == list(range(10))


@pytest.mark.parametrize(
    ("share", "text"),
    [(0.0, "0%"), (0.00001, "under 0.01%"), (0.0028, "0.28%"), (0.125, "12.5%"), (0.4207, "42.1%"), (1.0, "100%")],
)
def test_percent_reads_a_share_and_never_rounds_something_to_nothing(share, text):
    assert charts.percent(share) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.75, "0.75"), (0.30000000000000004, "0.3"), (5.979007864599009, "5.98"), (1e-05, "0.00001"), (12.3001, "12.4")],
)
def test_guarantees_are_shown_rounded_up_never_tighter_than_computed(value, text):
    assert charts.rounded_up(value) == text


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
    rows = re.findall(
        r'<td class="num">([\d.]+)</td>\s*<td class="num">([\d.]+)</td>\s*<td class="num share-used"[^>]*>([^<]+)</td>',
        page,
    )
    assert sorted(rows) == [("0", "1", "0%"), ("0.5", "1.4", "30%")]  # 0.6 of 2 by basic composition
    assert "ε remaining" in page and "Share of the allotment used" in page
    assert "the largest epsilon one more job could ask for" in page


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
