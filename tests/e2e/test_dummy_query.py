"""A visitor who has bought nothing (not even signed in) tries a query on a dataset's fake table, on a
phone: the form redraws for the aggregate chosen, the answer comes back in place marked FAKE DATA with
the query as JSON, the tables keep their words whole, and nothing was spent on the dataset."""

from __future__ import annotations

import requests

from tests.e2e.helpers import (
    E2E,
    HTTP_TIMEOUT,
    PHONE,
    api_headers,
    api_publish_dataset,
    api_signup,
    mark_page,
    same_document,
    wait_for_text,
)
from tests.e2e.phone import BROKEN_WORDS, SIDEWAYS
from tests.e2e.test_buyer_journey import clinic_csv, metadata

pytestmark = E2E


def test_a_visitor_tries_a_histogram_on_fake_data_at_phone_width(live_site, new_page):
    api_signup(live_site, "fiona", ["owner"])
    owner = api_headers(live_site, "fiona")
    dataset = api_publish_dataset(live_site, owner, metadata("Clinic visits", "8.00", "10", "Visits."), clinic_csv())

    page = new_page(*PHONE)
    page.goto(f"/datasets/{dataset['id']}/")
    section = page.locator("#dummy-section")
    assert "Try on fake data" in section.locator("h2").inner_text()
    mark_page(page)

    # Choosing a histogram redraws the form with its column and bins.
    section.get_by_label("Aggregate").select_option("histogram")
    page.locator("#dummy_bins").wait_for()
    # Choosing the column redraws the form again; wait for the new bins control before typing in it.
    page.evaluate("() => { document.querySelector('#dummy_bins').dataset.before = 'yes'; }")
    page.locator("#dummy_column").select_option("visits")
    page.wait_for_function("() => !document.querySelector('#dummy_bins').dataset.before")
    page.locator("#dummy_bins").fill("4")
    page.get_by_role("button", name="Try on fake data").click()
    wait_for_text(page, "#dummy-answer", "FAKE DATA")
    assert same_document(page), "the answer must come back in place (htmx), not by a reload"

    answer = page.locator("#dummy-answer")
    assert "says nothing about the real data" in answer.inner_text()
    assert "Nothing was charged" in answer.inner_text()
    assert answer.locator(".badge-fake").inner_text() == "FAKE DATA"
    counts = [int(c.replace(",", "")) for c in answer.locator(".result-value").all_inner_texts()]
    # The owner made the row count public (400), so the fake table has 400 rows, all in the 4 bins.
    assert len(counts) == 4 and 370 < sum(counts) < 430, counts
    answer.get_by_text("The query as JSON").click()
    assert '"aggregate": "histogram"' in answer.locator(".dummy-query-json").inner_text()

    measured = page.evaluate(BROKEN_WORDS)
    assert measured["tables"] >= 2 and measured["problems"] == [], measured
    sideways = page.evaluate(SIDEWAYS)
    assert sideways["width"] <= sideways["screen"], sideways

    # A refused query shows its reason beside the control, in place.
    section = page.locator("#dummy-section")
    section.get_by_label("Epsilon (ε) of the noise").fill("-1")
    page.get_by_role("button", name="Try on fake data").click()
    wait_for_text(page, "#dummy-section", "greater than 0")
    assert page.locator("#dummy-answer").count() == 0 and same_document(page)

    budget = requests.get(live_site.api(f"datasets/{dataset['id']}/"), timeout=HTTP_TIMEOUT).json()
    assert budget["epsilon_sold"] == "0.000000"
