"""The dataset page's "Try on fake data" panel: anyone may try, nothing is spent, the answer says FAKE DATA."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from compute.models import Job
from marketplace.models import Dataset, LedgerEntry

pytestmark = pytest.mark.django_db


def post(client, dataset, data, *, htmx=True, name="dummy-query"):
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    return client.post(reverse(name, args=[dataset.pk]), data, **headers)


def test_a_signed_out_visitor_sees_the_fake_data_form_on_a_dp_dataset(dp_dataset):
    page = Client().get(reverse("dataset-detail", args=[dp_dataset.pk])).content.decode()
    assert "Try on fake data" in page and 'id="dummy-form"' in page
    assert reverse("api-dataset-dummy-table", args=[dp_dataset.pk]) in page
    assert "Run the query" not in page  # the real form needs a purchase


def test_the_answer_is_drawn_marked_fake_and_nothing_is_spent(dp_dataset, purchase, buyer_client):
    data = {"aggregate": "mean", "column": "age", "group_by": ["region"], "epsilon": "1", "delta": "0"}
    purchase.refresh_from_db()
    before = (purchase.epsilon_used, LedgerEntry.objects.count())
    for client in (Client(), buyer_client):
        response = post(client, dp_dataset, data)
        assert response.status_code == 200
        html = response.content.decode()
        assert 'id="dummy-section"' in html and "FAKE DATA" in html
        assert "says nothing about the real data" in html and "Nothing was charged" in html
        assert html.count('class="num result-value"') == 3  # north, south, east
        assert "&quot;group_by&quot;: [&quot;region&quot;]" in html  # the query as JSON
    purchase.refresh_from_db()
    assert (purchase.epsilon_used, LedgerEntry.objects.count()) == before
    assert Job.objects.count() == 0


def test_a_bad_value_is_shown_beside_its_control_and_the_form_keeps_it(dp_dataset):
    data = {"aggregate": "quantile", "column": "age", "quantiles": "0.5, 2", "epsilon": "1"}
    html = post(Client(), dp_dataset, data).content.decode()
    assert "FAKE DATA" not in html
    assert "Quantile 2: Must be between 0 and 1." in html and 'value="0.5, 2"' in html
    without_js = post(Client(), dp_dataset, {**data, "epsilon": "-1"}, htmx=False)
    assert without_js.status_code == 400
    assert "<h1>People</h1>" in without_js.content.decode()


def test_changing_the_aggregate_redraws_the_form_with_its_controls(dp_dataset):
    html = post(Client(), dp_dataset, {"aggregate": "histogram", "column": "age"}, name="dummy-query-form").content
    assert b'id="dummy_bins"' in html and b"FAKE DATA" not in html
    more = post(Client(), dp_dataset, {"aggregate": "count", "add_filter": "1", "filter_count": "1"})
    assert b'id="dummy-filter-row-1"' in more.content


def test_an_he_dataset_page_has_no_fake_data_form_and_a_draft_is_404(dp_dataset):
    Dataset.objects.filter(pk=dp_dataset.pk).update(status=Dataset.Status.DRAFT)
    assert post(Client(), dp_dataset, {"aggregate": "count", "epsilon": "1"}).status_code == 404
    Dataset.objects.filter(pk=dp_dataset.pk).update(status=Dataset.Status.PUBLISHED, mode=Dataset.Mode.HE)
    assert post(Client(), dp_dataset, {"aggregate": "count", "epsilon": "1"}).status_code == 404
