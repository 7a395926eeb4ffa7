"""The query pages: the query form and its live estimate on the dataset page, the jobs list, a
job's page with its answer, receipt and downloads, and cancelling. Real PostgreSQL, the Django
test client, a real encrypted dataset file, and Celery tasks run eagerly on commit."""

from __future__ import annotations

import math
import re
from decimal import Decimal
from html.parser import HTMLParser

import pytest
from django.test import Client
from django.urls import reverse

from compute import lifecycle, presentation
from compute.models import Job
from marketplace.models import LedgerEntry, Purchase

pytestmark = pytest.mark.django_db


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


class _Finder(HTMLParser):
    """Collects the outer HTML of every element the predicate picks (nesting handled)."""

    VOID = {"input", "br", "img", "meta", "link", "hr", "source", "col", "area", "base", "wbr"}

    def __init__(self, predicate) -> None:
        super().__init__(convert_charrefs=False)
        self.predicate = predicate
        self.found: list[str] = []
        self._open: list[list] = []  # [depth, start offset in raw text]
        self._depth = 0
        self._raw: list[str] = []

    def handle_starttag(self, tag, attrs):
        self._raw.append(self.get_starttag_text())
        if tag in self.VOID:
            return
        self._depth += 1
        if self.predicate(tag, dict(attrs)):
            self._open.append([self._depth, len(self._raw) - 1])

    def handle_startendtag(self, tag, attrs):
        self._raw.append(self.get_starttag_text())

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        self._raw.append(f"</{tag}>")
        if self._open and self._open[-1][0] == self._depth:
            _, start = self._open.pop()
            self.found.append("".join(self._raw[start:]))
        self._depth -= 1

    def handle_data(self, data):
        self._raw.append(data)

    def handle_entityref(self, name):
        self._raw.append(f"&{name};")

    def handle_charref(self, name):
        self._raw.append(f"&#{name};")


def find_all(html: str, predicate) -> list[str]:
    finder = _Finder(predicate)
    finder.feed(html)
    return finder.found


def by_id(html: str, element_id: str) -> str:
    found = find_all(html, lambda tag, attrs: attrs.get("id") == element_id)
    assert found, f"no element with id {element_id!r}"
    return found[0]


def field_block(html: str, name: str) -> str:
    """The field wrapper (label, control, error) holding the control named ``name``."""
    blocks = [
        b
        for b in find_all(html, lambda tag, attrs: tag == "div" and "field" in (attrs.get("class") or "").split())
        if f'name="{name}"' in b
    ]
    assert blocks, f"no field with a control named {name!r}"
    return blocks[0]


def options(select_html: str) -> list[str]:
    return re.findall(r'<option value="([^"]*)"', select_html)


def query_post(purchase, **fields) -> dict:
    data = {
        "purchase": str(purchase.pk),
        "aggregate": "count",
        "epsilon": "0.5",
        "delta": "0",
        "filter_count": "1",
        "form_token": "test-token",
    }
    data.update({k.replace("__", "-"): v for k, v in fields.items()})
    return data


def submit(client, dataset, purchase, **fields):
    return client.post(reverse("job-submit", args=[dataset.pk]), query_post(purchase, **fields))


# The query form on the dataset page


def test_dataset_page_shows_the_query_form_to_a_buyer_holding_a_purchase(buyer, dp_dataset, purchase):
    page = logged_in(buyer).get(reverse("dataset-detail", args=[dp_dataset.pk])).content.decode()

    form = by_id(page, "query-form")
    assert f'action="{reverse("job-submit", args=[dp_dataset.pk])}"' in page
    assert 'name="aggregate"' in form and 'name="epsilon"' in form and 'name="filters-0-column"' in form
    # The live estimate is drawn from the start, and the form asks htmx for a new one on input.
    assert 'hx-trigger="input delay:400ms"' in page
    assert "noise-scale" in by_id(page, "estimate-panel")


def test_dataset_page_hides_the_query_form_from_a_buyer_without_a_purchase(outsider, dp_dataset, purchase):
    page = logged_in(outsider).get(reverse("dataset-detail", args=[dp_dataset.pk])).content.decode()
    anonymous = Client().get(reverse("dataset-detail", args=[dp_dataset.pk])).content.decode()

    assert 'id="query-form"' not in page
    assert 'id="query-form"' not in anonymous


def test_every_form_control_has_a_label(buyer, dp_dataset, purchase):
    client = logged_in(buyer)
    page = client.post(
        reverse("job-query-form", args=[dp_dataset.pk]),
        query_post(purchase, aggregate="histogram", column="age", filters__0__column="region", group_by="member"),
    ).content.decode()

    ids = re.findall(r'<(?:input|select|textarea)[^>]*\bid="([^"]+)"', page)
    hidden = set(re.findall(r'<input type="hidden"[^>]*\bid="([^"]+)"', page))
    assert ids
    for control in set(ids) - hidden:
        assert f'for="{control}"' in page, f"control {control} has no label"


def test_a_sum_offers_only_the_declared_numeric_columns(buyer, dp_dataset, purchase):
    page = (
        logged_in(buyer)
        .post(reverse("job-query-form", args=[dp_dataset.pk]), query_post(purchase, aggregate="sum"))
        .content.decode()
    )

    assert options(field_block(page, "column")) == ["", "age", "income"]


def test_a_histogram_offers_every_declared_column_and_a_count_none(buyer, dp_dataset, purchase):
    client = logged_in(buyer)
    url = reverse("job-query-form", args=[dp_dataset.pk])
    histogram = client.post(url, query_post(purchase, aggregate="histogram")).content.decode()
    count = client.post(url, query_post(purchase, aggregate="count")).content.decode()

    assert options(field_block(histogram, "column")) == ["", "age", "income", "region", "member"]
    assert 'name="column"' not in count


def test_group_by_offers_only_the_categorical_and_boolean_columns(buyer, dp_dataset, purchase):
    page = logged_in(buyer).get(reverse("dataset-detail", args=[dp_dataset.pk])).content.decode()

    offered = re.findall(r'name="group_by" value="([^"]+)"', field_block(page, "group_by"))
    assert offered == ["region", "member"]


def test_a_filter_on_a_categorical_column_offers_its_declared_categories(buyer, dp_dataset, purchase):
    page = (
        logged_in(buyer)
        .post(
            reverse("job-query-form", args=[dp_dataset.pk]),
            query_post(purchase, filters__0__column="region", filters__0__op="eq"),
        )
        .content.decode()
    )

    row = by_id(page, "filter-row-0")
    assert options(field_block(row, "filters-0-value")) == ["", "north", "south", "east"]
    assert options(field_block(row, "filters-0-op")) == ["eq", "in"]


def test_a_filter_on_a_numeric_column_asks_for_a_range(buyer, dp_dataset, purchase):
    page = (
        logged_in(buyer)
        .post(reverse("job-query-form", args=[dp_dataset.pk]), query_post(purchase, filters__0__column="age"))
        .content.decode()
    )

    row = by_id(page, "filter-row-0")
    assert options(field_block(row, "filters-0-op")) == ["range"]
    assert 'name="filters-0-low"' in row and 'name="filters-0-high"' in row
    assert 'name="filters-0-value"' not in row


def test_add_a_filter_draws_one_more_filter_row(buyer, dp_dataset, purchase):
    page = (
        logged_in(buyer)
        .post(reverse("job-query-form", args=[dp_dataset.pk]), {**query_post(purchase), "add_filter": "1"})
        .content.decode()
    )

    assert 'id="filter-row-1"' in page
    assert 'name="filter_count" value="2"' in page


def test_choosing_a_histogram_redraws_the_form_with_default_bins_and_an_estimate_that_agrees(
    buyer, dp_dataset, purchase
):
    data = query_post(purchase, aggregate="histogram", column="age")
    page = logged_in(buyer).post(reverse("job-query-form", args=[dp_dataset.pk]), data).content.decode()

    assert 'value="10"' in field_block(page, "bins")
    panel = by_id(page, "estimate-panel")
    assert "two-sided geometric" in panel and "estimate-errors" not in panel


# The live estimate


def number_in(panel: str, css_class: str) -> float:
    match = re.search(rf'class="{css_class}"[^>]*data-value="([^"]+)"', panel)
    assert match, f"no {css_class} value in the panel"
    return float(match.group(1))


def test_the_estimate_for_a_sum_gives_the_laplace_scale_its_halfwidth_and_the_price(buyer, dp_dataset, purchase):
    response = logged_in(buyer).post(
        reverse("job-estimate", args=[dp_dataset.pk]), query_post(purchase, aggregate="sum", column="income")
    )
    panel = response.content.decode()

    # income is declared in [0, 200000]: sensitivity max(|0|, |200000|), epsilon 0.5, released on a
    # grid that costs at most 1/1024 more noise.
    scale = 200000 / 0.5
    assert response.status_code == 200
    assert scale <= number_in(panel, "noise-scale") <= scale * (1 + 1 / 1024)
    assert number_in(panel, "halfwidth") == pytest.approx(scale * math.log(20), rel=2e-3)
    assert Decimal(re.search(r'class="price" data-value="([^"]+)"', panel).group(1)) == Decimal("5.00")
    assert "Laplace" in panel
    assert 'class="epsilon-remaining">2</span> <small>' in panel
    assert 'class="share" data-value="0.25"' in panel  # epsilon 0.5 of 2, by basic composition


def test_the_estimate_spends_nothing(buyer, dp_dataset, purchase):
    logged_in(buyer).post(
        reverse("job-estimate", args=[dp_dataset.pk]), query_post(purchase, aggregate="sum", column="income")
    )

    purchase.refresh_from_db()
    assert purchase.epsilon_used == 0
    assert not LedgerEntry.objects.filter(purchase=purchase).exists()


def test_the_estimate_says_when_the_purchase_cannot_afford_the_epsilon(buyer, dp_dataset, purchase):
    panel = (
        logged_in(buyer)
        .post(reverse("job-estimate", args=[dp_dataset.pk]), query_post(purchase, epsilon="3"))
        .content.decode()
    )

    affordable = find_all(panel, lambda tag, attrs: attrs.get("class") == "affordable")[0]
    assert "no:" in affordable and "3" in affordable


def test_the_estimate_asks_for_rows_to_bound_a_mean(buyer, dp_dataset, purchase):
    client = logged_in(buyer)
    url = reverse("job-estimate", args=[dp_dataset.pk])
    without = client.post(url, query_post(purchase, aggregate="mean", column="age")).content.decode()
    with_rows = client.post(url, query_post(purchase, aggregate="mean", column="age", rows="400")).content.decode()

    assert "give rows to bound it" in without
    assert number_in(with_rows, "halfwidth") > 0


def test_the_estimate_lists_a_bad_query_with_the_control_it_concerns(buyer, dp_dataset, purchase):
    panel = (
        logged_in(buyer)
        .post(reverse("job-estimate", args=[dp_dataset.pk]), query_post(purchase, aggregate="sum", column="region"))
        .content.decode()
    )

    assert "<strong>Column:</strong>" in panel
    assert "needs a numeric column" in panel


# Submitting


def test_a_sum_of_a_categorical_column_is_refused_beside_the_column_and_keeps_what_was_typed(
    buyer, dp_dataset, purchase
):
    response = submit(logged_in(buyer), dp_dataset, purchase, aggregate="sum", column="region", epsilon="0.75")
    page = response.content.decode()

    assert response.status_code == 400
    column = field_block(page, "column")
    assert "has-error" in column and "needs a numeric column" in column
    assert '<option value="region" selected>' in column
    assert 'value="0.75"' in field_block(by_id(page, "query-form"), "epsilon")
    assert not Job.objects.exists()
    assert not LedgerEntry.objects.exists()


def test_a_filter_on_an_undeclared_category_is_refused_beside_the_filter_value(buyer, dp_dataset, purchase):
    response = submit(
        logged_in(buyer),
        dp_dataset,
        purchase,
        filters__0__column="region",
        filters__0__op="eq",
        filters__0__value="west",
    )
    page = response.content.decode()

    assert response.status_code == 400
    value = field_block(by_id(page, "filter-row-0"), "filters-0-value")
    assert "not a declared category" in value
    assert '<option value="west" selected>' in value
    assert not Job.objects.exists()


def test_epsilon_zero_is_refused_beside_epsilon(buyer, dp_dataset, purchase):
    response = submit(logged_in(buyer), dp_dataset, purchase, epsilon="0")
    page = response.content.decode()

    assert response.status_code == 400
    epsilon = field_block(by_id(page, "query-form"), "epsilon")
    assert "greater than 0" in epsilon and 'value="0"' in epsilon
    assert not Job.objects.exists()


def test_more_epsilon_than_is_left_is_refused_beside_epsilon_saying_what_remains(buyer, dp_dataset, purchase):
    response = submit(logged_in(buyer), dp_dataset, purchase, epsilon="2.5")

    assert response.status_code == 409
    epsilon = field_block(by_id(response.content.decode(), "query-form"), "epsilon")
    assert "Not enough budget" in epsilon and "epsilon 2 " in epsilon
    assert not LedgerEntry.objects.exists()


def test_submitting_a_query_creates_a_job_and_redirects_to_it(
    buyer, dp_dataset, purchase, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        response = submit(
            logged_in(buyer),
            dp_dataset,
            purchase,
            aggregate="mean",
            column="age",
            filters__0__column="member",
            filters__0__op="eq",
            filters__0__value="true",
            group_by="region",
        )

    job = Job.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("job-detail", args=[job.pk])
    assert job.status == Job.Status.QUEUED and job.epsilon == Decimal("0.5")
    assert job.spec["filters"] == [{"column": "member", "op": "eq", "value": True}]
    assert job.spec["group_by"] == ["region"]
    assert LedgerEntry.objects.get(job_id=job.pk).kind == LedgerEntry.Kind.RESERVE


def test_a_double_submitted_form_makes_one_job(buyer, dp_dataset, purchase, django_capture_on_commit_callbacks):
    client = logged_in(buyer)
    with django_capture_on_commit_callbacks(execute=False):
        first = submit(client, dp_dataset, purchase)
        second = submit(client, dp_dataset, purchase)

    assert first["Location"] == second["Location"]
    assert Job.objects.count() == 1


def test_after_the_task_runs_the_job_page_shows_the_released_answer_its_interval_receipt_and_downloads(
    buyer, dp_dataset, purchase, eager_tasks, django_capture_on_commit_callbacks
):
    client = logged_in(buyer)
    with django_capture_on_commit_callbacks(execute=True):
        response = submit(client, dp_dataset, purchase, aggregate="sum", column="age")
    job = Job.objects.get()
    page = client.get(response["Location"]).content.decode()

    assert job.status == Job.Status.RELEASED
    group = job.result["groups"][0]
    assert "released" in by_id(page, "status-heading")
    # The page prints the value as presentation.fmt does: a noisy sum that lands on a whole number is
    # printed with thousands separators and no decimals ("26,726").
    shown = (
        f"{group['value']:.4f}".rstrip("0").rstrip("."),
        f"{group['value']:,.2f}",
        presentation.fmt(group["value"]),
    )
    assert any(text in page for text in shown)
    svg = find_all(page, lambda tag, attrs: tag == "svg")[0]
    assert "<circle" in svg and 'class="chart-interval"' in svg
    receipt = find_all(page, lambda tag, attrs: "receipt" in (attrs.get("class") or "").split())[0]
    assert "Laplace" in receipt and 'class="epsilon-charged">0.5' in receipt
    assert f"/api/v1/jobs/{job.pk}/download/?format=csv" in page
    assert f"/api/v1/jobs/{job.pk}/download/?format=json" in page
    assert 'hx-trigger="every 2s"' not in page


def test_the_download_links_work_with_the_page_session(
    buyer, dp_dataset, purchase, eager_tasks, django_capture_on_commit_callbacks
):
    client = logged_in(buyer)
    with django_capture_on_commit_callbacks(execute=True):
        submit(client, dp_dataset, purchase)
    job = Job.objects.get()

    csv = client.get(f"/api/v1/jobs/{job.pk}/download/?format=csv")
    assert csv.status_code == 200
    assert csv.content.decode().splitlines()[0] == "value,ci95_low,ci95_high"


def test_a_histogram_is_drawn_as_bars_with_interval_whiskers(
    buyer, dp_dataset, purchase, eager_tasks, django_capture_on_commit_callbacks
):
    client = logged_in(buyer)
    with django_capture_on_commit_callbacks(execute=True):
        response = submit(client, dp_dataset, purchase, aggregate="histogram", column="age", bins="4")
    page = client.get(response["Location"]).content.decode()

    svg = find_all(page, lambda tag, attrs: tag == "svg")[0]
    assert svg.count('class="chart-bar"') == 4
    assert svg.count('class="chart-interval"') == 4 * 3  # a whisker and its two caps per bar


def test_quantiles_are_drawn_as_a_dot_per_quantile(
    buyer, dp_dataset, purchase, eager_tasks, django_capture_on_commit_callbacks
):
    client = logged_in(buyer)
    with django_capture_on_commit_callbacks(execute=True):
        response = submit(client, dp_dataset, purchase, aggregate="quantile", column="age", quantiles="0.25, 0.5, 0.75")
    job = Job.objects.get()
    page = client.get(response["Location"]).content.decode()

    assert job.spec["quantiles"] == [0.25, 0.5, 0.75]
    svg = find_all(page, lambda tag, attrs: tag == "svg")[0]
    assert svg.count("<circle") == 3


def test_a_grouped_answer_has_a_row_per_declared_key(
    buyer, dp_dataset, purchase, eager_tasks, django_capture_on_commit_callbacks
):
    client = logged_in(buyer)
    with django_capture_on_commit_callbacks(execute=True):
        response = submit(client, dp_dataset, purchase, group_by="region")
    page = client.get(response["Location"]).content.decode()

    svg = find_all(page, lambda tag, attrs: tag == "svg")[0]
    assert svg.count("<circle") == 3
    # "east" has no rows in the data, yet it is declared, so it appears, noised.
    for key in ("region = north", "region = south", "region = east"):
        assert key in svg


def test_repeating_a_released_query_returns_the_stored_answer_at_no_cost(
    buyer, dp_dataset, purchase, eager_tasks, django_capture_on_commit_callbacks
):
    client = logged_in(buyer)
    with django_capture_on_commit_callbacks(execute=True):
        first = submit(client, dp_dataset, purchase)
    again = client.post(
        reverse("job-submit", args=[dp_dataset.pk]), {**query_post(purchase), "form_token": "another-form"}, follow=True
    )

    assert again.redirect_chain[-1][0] == first["Location"]
    assert "at no new cost" in again.content.decode()
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.COMMIT).count() == 1


# The jobs list


def test_the_jobs_table_polls_while_a_job_is_queued(buyer, dp_dataset, purchase, django_capture_on_commit_callbacks):
    client = logged_in(buyer)
    with django_capture_on_commit_callbacks(execute=False):
        submit(client, dp_dataset, purchase)

    page = client.get(reverse("my-jobs")).content.decode()
    table = client.get(reverse("my-jobs-table")).content.decode()

    assert 'hx-trigger="every 2s"' in by_id(page, "jobs-table")
    assert f'hx-get="{reverse("my-jobs-table")}"' in table and 'hx-trigger="every 2s"' in table
    assert "queued" in table and "People" in table


def test_the_jobs_table_stops_polling_when_every_job_is_done(
    buyer, dp_dataset, purchase, eager_tasks, django_capture_on_commit_callbacks
):
    client = logged_in(buyer)
    with django_capture_on_commit_callbacks(execute=True):
        submit(client, dp_dataset, purchase)

    table = client.get(reverse("my-jobs-table")).content.decode()

    assert "released" in table
    assert "hx-trigger" not in table


def test_the_jobs_list_shows_only_the_buyers_own_jobs(
    buyer, outsider, dp_dataset, purchase, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        submit(logged_in(buyer), dp_dataset, purchase)

    table = logged_in(outsider).get(reverse("my-jobs-table")).content.decode()

    assert "People" not in table and "You have not asked anything yet" in table


def test_the_nav_links_to_my_jobs(buyer):
    page = logged_in(buyer).get(reverse("catalogue")).content.decode()

    assert f'href="{reverse("my-jobs")}"' in page


# A job's page


def test_an_open_job_page_refreshes_itself_and_offers_cancel(
    buyer, dp_dataset, purchase, django_capture_on_commit_callbacks
):
    client = logged_in(buyer)
    with django_capture_on_commit_callbacks(execute=False):
        response = submit(client, dp_dataset, purchase)
    job = Job.objects.get()
    page = client.get(response["Location"]).content.decode()

    body = by_id(page, "job-body")
    assert f'hx-get="{reverse("job-body", args=[job.pk])}"' in body and 'hx-trigger="every 2s"' in body
    assert f'action="{reverse("job-cancel", args=[job.pk])}"' in body


def test_cancelling_a_job_refunds_its_reservation(buyer, dp_dataset, purchase, django_capture_on_commit_callbacks):
    client = logged_in(buyer)
    with django_capture_on_commit_callbacks(execute=False):
        submit(client, dp_dataset, purchase)
    job = Job.objects.get()

    response = client.post(reverse("job-cancel", args=[job.pk]), follow=True)

    job.refresh_from_db()
    purchase.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    refund = LedgerEntry.objects.get(job_id=job.pk, kind=LedgerEntry.Kind.REFUND)
    assert refund.epsilon == Decimal("0.5")
    assert purchase.epsilon_used == 0
    assert "refunded" in response.content.decode()
    assert 'action="' + reverse("job-cancel", args=[job.pk]) not in response.content.decode()


def test_a_failed_job_shows_its_reason(buyer, dp_dataset, purchase, django_capture_on_commit_callbacks):
    client = logged_in(buyer)
    with django_capture_on_commit_callbacks(execute=False):
        submit(client, dp_dataset, purchase)
    job = Job.objects.get()
    lifecycle.job_fail(job_id=job.pk, reason="The worker ran out of patience; your budget was refunded.")

    page = client.get(reverse("job-detail", args=[job.pk])).content.decode()

    assert "failed" in by_id(page, "status-heading")
    assert "ran out of patience" in page


def test_another_users_job_is_a_404(buyer, outsider, dp_dataset, purchase, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        submit(logged_in(buyer), dp_dataset, purchase)
    job = Job.objects.get()
    other = logged_in(outsider)

    assert other.get(reverse("job-detail", args=[job.pk])).status_code == 404
    assert other.get(reverse("job-body", args=[job.pk])).status_code == 404
    assert other.post(reverse("job-cancel", args=[job.pk])).status_code == 404
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED


def test_another_users_purchase_cannot_pay_for_a_query(
    buyer, outsider, dp_dataset, purchase, django_capture_on_commit_callbacks
):
    from marketplace.services import purchase_create

    purchase_create(buyer=outsider, dataset_id=dp_dataset.pk, epsilon=Decimal("1"))
    with django_capture_on_commit_callbacks(execute=False):
        response = submit(logged_in(outsider), dp_dataset, purchase)

    assert response.status_code == 400
    assert not Job.objects.exists()
    assert Purchase.objects.get(pk=purchase.pk).epsilon_used == 0


def test_no_page_shows_the_datasets_stored_file_path(
    buyer, dp_dataset, purchase, eager_tasks, django_capture_on_commit_callbacks
):
    client = logged_in(buyer)
    with django_capture_on_commit_callbacks(execute=True):
        response = submit(client, dp_dataset, purchase, aggregate="sum", column="age")
    job = Job.objects.get()
    assert dp_dataset.file_path

    pages = [
        client.get(reverse("dataset-detail", args=[dp_dataset.pk])),
        client.get(response["Location"]),
        client.get(reverse("job-body", args=[job.pk])),
        client.get(reverse("my-jobs")),
        client.post(reverse("job-estimate", args=[dp_dataset.pk]), query_post(purchase)),
        client.post(reverse("job-query-form", args=[dp_dataset.pk]), query_post(purchase)),
    ]
    for page in pages:
        assert page.status_code == 200
        assert dp_dataset.file_path not in page.content.decode()
