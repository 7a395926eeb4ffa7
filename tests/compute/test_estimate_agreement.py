"""The dataset page's live estimate and the API's estimate endpoint answer one question the same way:
one service (compute.services.job_estimate) and one JobEstimate, whose numbers and sentences both show.

Each case asks the page fragment (the form's fields) and the API (the job body the form builds) the
same question, and compares the half-width, the price, the noise scale, what is left, and the words.
"""

from __future__ import annotations

import html
import re

import pytest
from django.test import Client
from django.urls import reverse

from marketplace.models import Dataset, Purchase
from tests.compute.views.test_pages import query_post

pytestmark = pytest.mark.django_db

# (the page's form fields, the API's query), for the DP fixture's table of 500 rows.
DP_CASES = {
    "a whole-table mean": ({"aggregate": "mean", "column": "age"}, {"aggregate": "mean", "column": "age"}),
    "a mean by group": (
        {"aggregate": "mean", "column": "age", "group_by": ["region"]},
        {"aggregate": "mean", "column": "age", "group_by": ["region"]},
    ),
    "a filtered mean": (
        {
            "aggregate": "mean",
            "column": "age",
            "filters-0-column": "member",
            "filters-0-op": "eq",
            "filters-0-value": "true",
        },
        {"aggregate": "mean", "column": "age", "filters": [{"column": "member", "op": "eq", "value": True}]},
    ),
    "a filtered mean with rows": (
        {
            "aggregate": "mean",
            "column": "age",
            "rows": "120",
            "filters-0-column": "age",
            "filters-0-op": "range",
            "filters-0-low": "30",
        },
        {"aggregate": "mean", "column": "age", "filters": [{"column": "age", "op": "range", "low": 30}]},
    ),
    "a quantile by group": (
        {"aggregate": "quantile", "column": "income", "quantiles": "0.5", "group_by": ["member"]},
        {"aggregate": "quantile", "column": "income", "quantiles": [0.5], "group_by": ["member"]},
    ),
    "a standard deviation": ({"aggregate": "std", "column": "age"}, {"aggregate": "std", "column": "age"}),
    "a sum": ({"aggregate": "sum", "column": "income"}, {"aggregate": "sum", "column": "income"}),
    "a count of two regions": (
        {
            "aggregate": "count",
            "filters-0-column": "region",
            "filters-0-op": "in",
            "filters-0-values": ["north", "east"],
        },
        {"aggregate": "count", "filters": [{"column": "region", "op": "in", "values": ["north", "east"]}]},
    ),
    "a histogram": (
        {"aggregate": "histogram", "column": "age", "bins": "10"},
        {"aggregate": "histogram", "column": "age", "bins": 10},
    ),
}


def page_numbers(panel: str) -> dict[str, object]:
    """What the estimate panel shows, read back from its data attributes and its sentences."""

    def attr(css_class: str) -> float | None:
        match = re.search(rf'class="{css_class}"(?: data-value="([^"]+)")?', panel)
        assert match, f"no {css_class} in the panel:\n{panel}"
        return None if match.group(1) is None else float(match.group(1))

    def text(css_class: str) -> str:
        match = re.search(rf'class="{css_class}">([^<]*)<', panel)
        assert match, f"no {css_class} in the panel:\n{panel}"
        return html.unescape(match.group(1)).strip()

    return {
        "ci95_halfwidth": attr("halfwidth"),
        "price": attr("price"),
        "noise_scale": attr("noise-scale"),
        "epsilon_remaining": float(text("epsilon-remaining")),
        "accuracy_in_words": text("accuracy-words"),
        "cost_in_words": text("cost-words"),
    }


def api_numbers(body: dict) -> dict[str, object]:
    return {
        "ci95_halfwidth": body["ci95_halfwidth"],
        "price": float(body["price"]),
        "noise_scale": body["noise_scale"],
        "epsilon_remaining": float(body["epsilon_remaining"]),
        "accuracy_in_words": body["accuracy_in_words"],
        "cost_in_words": body["cost_in_words"],
    }


def ask_both(buyer, api, purchase, dataset, form_fields, query, url_name="job-estimate"):
    client = Client()
    client.force_login(buyer)
    rows = form_fields.get("rows")
    page = client.post(reverse(url_name, args=[dataset.pk]), {**query_post(purchase), **form_fields})
    assert page.status_code == 200
    body = {"purchase": purchase.pk, "query": query, "epsilon": "0.5"}
    if rows:
        body["rows"] = int(rows)
    answer = api.post("/api/v1/jobs/estimate/", body, format="json")
    assert answer.status_code == 200, answer.json()
    return page_numbers(page.content.decode()), answer.json()


def public_row_count(dataset: Dataset, public: bool) -> None:
    Dataset.objects.filter(pk=dataset.pk).update(row_count_public=public)


@pytest.mark.parametrize("public", [True, False], ids=["public row count", "private row count"])
@pytest.mark.parametrize("case", list(DP_CASES))
def test_the_page_and_the_api_give_one_estimate_for_a_dp_query(buyer, api, dp_dataset, purchase, case, public):
    public_row_count(dp_dataset, public)
    form_fields, query = DP_CASES[case]

    page, body = ask_both(buyer, api, purchase, dp_dataset, form_fields, query)

    assert page == api_numbers(body)


def test_a_mean_by_group_on_a_public_row_count_assumes_an_even_split_and_says_so(buyer, api, dp_dataset, purchase):
    public_row_count(dp_dataset, True)
    _, body = ask_both(buyer, api, purchase, dp_dataset, *DP_CASES["a mean by group"])

    # region declares three categories: 500 public rows split evenly is 166 a group.
    assert body["rows_assumed"] == 166 and body["ci95_halfwidth"] is not None
    assert "split evenly over its 3 groups" in body["rows_basis"]
    assert body["accuracy_in_words"].startswith("± ") and "166 rows" in body["accuracy_in_words"]


def test_a_whole_table_mean_assumes_the_public_row_count(buyer, api, dp_dataset, purchase):
    public_row_count(dp_dataset, True)
    _, body = ask_both(buyer, api, purchase, dp_dataset, *DP_CASES["a whole-table mean"])

    assert body["rows_assumed"] == 500 and body["rows_basis"] == "the public row count"
    assert "(95%), for 500 rows (the public row count)" in body["accuracy_in_words"]


def test_a_filtered_mean_has_no_interval_without_rows_and_says_why(buyer, api, dp_dataset, purchase):
    public_row_count(dp_dataset, True)
    _, body = ask_both(buyer, api, purchase, dp_dataset, *DP_CASES["a filtered mean"])

    assert body["ci95_halfwidth"] is None and body["rows_assumed"] is None and body["rows_basis"] == ""
    assert body["accuracy_in_words"].startswith("Not known before the job runs:")
    assert "give rows" in body["accuracy_in_words"]


def test_the_cost_in_words_names_epsilon_credits_and_what_is_left(buyer, api, dp_dataset, purchase):
    _, body = ask_both(buyer, api, purchase, dp_dataset, *DP_CASES["a sum"])

    # Price 10 credits per epsilon; the purchase holds epsilon 2 (at delta 2e-6). One answer at 0.5 is
    # a quarter of it: for so few answers basic composition is the tighter bound.
    assert body["cost_in_words"] == (
        "Costs ε 0.5 = 5.00 credits (already paid with your purchase) and uses 25% of your allotment; after it "
        "25% is used and one more job of up to ε 1.5 would fit."
    )
    assert (body["share_of_allotment"], body["share_used"], body["share_used_after"]) == (0.25, 0.0, 0.25)
    assert (body["epsilon_remaining"], body["epsilon_left_after"]) == ("2.000000", "1.500000")
    assert body["rho"] == "0.125000000000"  # a pure 0.5 is charged 0.5**2 / 2
    assert body["accuracy_in_words"].endswith("(95%), whatever the data.")


def test_the_cost_in_words_says_when_the_purchase_cannot_afford_it(api, purchase):
    body = api.post(
        "/api/v1/jobs/estimate/",
        {"purchase": purchase.pk, "query": {"aggregate": "count"}, "epsilon": "3"},
        format="json",
    ).json()

    assert body["affordable"] is False
    assert body["cost_in_words"] == (
        "Costs ε 3 = 30.00 credits, but your purchase cannot take it: 0% of its allotment is used and one more "
        "job of at most ε 2 would fit. Spend less or buy more."
    )


HE_CASES = {
    "a mean": ({"aggregate": "mean", "column": "bmi"}, {"aggregate": "mean", "column": "bmi"}),
    "a filtered mean": (
        {"aggregate": "mean", "column": "bmi", "filter": "ward=A"},
        {"aggregate": "mean", "column": "bmi", "filter": {"column": "ward=A"}},
    ),
    "a sum": ({"aggregate": "sum", "column": "age"}, {"aggregate": "sum", "column": "age"}),
    "counts per ward": ({"aggregate": "count", "column": "ward"}, {"aggregate": "count", "column": "ward"}),
}


@pytest.mark.parametrize("case", list(HE_CASES))
def test_the_page_and_the_api_give_one_estimate_for_an_he_query(buyer, api, he_purchase, case):
    purchase = Purchase.objects.select_related("dataset").get(pk=he_purchase)
    form_fields, query = HE_CASES[case]

    page, body = ask_both(buyer, api, purchase, purchase.dataset, form_fields, query, url_name="he-job-estimate")

    assert page == api_numbers(body)
    if case == "a mean":
        assert body["rows_assumed"] == 5000 and body["ci95_halfwidth"] is not None
    if case == "a filtered mean":
        assert body["ci95_halfwidth"] is None and "how many rows the filter keeps" in body["accuracy_in_words"]
