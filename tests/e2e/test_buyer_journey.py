"""The buyer's journey in a real browser: find a DP dataset in the catalogue with search and filters,
open it, buy budget, build a query and watch its estimate (interval, epsilon, price) change as the
query changes, submit it, watch the job's status change on the jobs page without a reload as the
real Celery worker runs it, read the answer with its interval and receipt, and download it.

Every step asserts what the page shows. The owner's side is set up through the API of the same
gunicorn; nothing is written to the database behind the server's back.
"""

from __future__ import annotations

import csv
import io
import json
import random

from tests.e2e.helpers import (
    E2E,
    api_headers,
    api_publish_dataset,
    api_signup,
    mark_page,
    same_document,
    screenshot,
    sign_up,
    wait_for_text,
)
from tests.e2e.phone import INTERVAL_LABELS

pytestmark = E2E

REGIONS = ["north", "south", "east", "west"]
COLUMNS = [
    {"name": "age", "kind": "numeric", "lower": 0, "upper": 120},
    {"name": "region", "kind": "categorical", "categories": REGIONS},
    {"name": "smoker", "kind": "boolean"},
    {"name": "visits", "kind": "numeric", "lower": 0, "upper": 52},
]


def clinic_csv(rows: int = 400, seed: int = 6) -> str:
    rng = random.Random(seed)
    lines = ["age,region,smoker,visits"]
    for _ in range(rows):
        lines.append(f"{rng.randint(18, 90)},{rng.choice(REGIONS)},{rng.choice(['yes', 'no'])},{rng.randint(0, 20)}")
    return "\n".join(lines) + "\n"


def metadata(title: str, price: str, cap: str, description: str) -> dict:
    return {
        "title": title,
        "description": description,
        "mode": "dp",
        "epsilon_cap": cap,
        "delta_cap": "0.00001",
        "price_per_epsilon": price,
        "row_count_public": True,
        "columns": COLUMNS,
    }


def number(text: str) -> float:
    """A number as the result table prints it (thousands separated by commas)."""
    return float(text.replace(",", ""))


def card_titles(page) -> list[str]:
    return page.locator(".dataset-card h3").all_inner_texts()


def estimate(page) -> dict[str, str]:
    panel = page.locator("#estimate-panel")
    return {
        "price": panel.locator(".price").get_attribute("data-value"),
        "price_text": panel.locator(".price").inner_text(),
        "halfwidth": panel.locator(".halfwidth").get_attribute("data-value"),
        "halfwidth_text": panel.locator(".halfwidth").inner_text(),
        "mechanism": panel.locator(".mechanism").inner_text(),
        "remaining": panel.locator(".epsilon-remaining").inner_text(),
    }


def redraw(page, action) -> None:
    """Do ``action``, which makes htmx fetch the query form again, and wait until the new form is in."""
    with page.expect_response(lambda r: r.url.endswith("/query/form/") and r.request.method == "POST"):
        action()
    page.wait_for_function("() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')")


def wait_for_estimate(page, price_text: str) -> dict[str, str]:
    wait_for_text(page, "#estimate-panel .price", price_text)
    return estimate(page)


def test_a_buyer_finds_buys_estimates_runs_and_downloads(live_site, new_page, tmp_path):
    # The owner's side, through the API: three clinic datasets and one that search leaves out.
    api_signup(live_site, "olga", ["owner"])
    owner = api_headers(live_site, "olga")
    visits = api_publish_dataset(
        live_site,
        owner,
        metadata("Clinic visits", "8.00", "10", "Visits per patient in one year, by region."),
        clinic_csv(),
    )
    api_publish_dataset(live_site, owner, metadata("Clinic costs", "40.00", "10", "Costs per visit."), clinic_csv())
    api_publish_dataset(live_site, owner, metadata("Clinic archive", "6.00", "1", "Old visits."), clinic_csv())
    api_publish_dataset(live_site, owner, metadata("Weather stations", "3.00", "10", "Rain."), clinic_csv())

    page = new_page()
    sign_up(page, "bram", ["buyer"])

    # 1. The catalogue lists every published dataset; search and filters narrow it down.
    page.locator("nav").get_by_role("link", name="Catalogue").click()
    assert page.locator("h1").inner_text() == "Catalogue"
    assert sorted(card_titles(page)) == ["Clinic archive", "Clinic costs", "Clinic visits", "Weather stations"]
    screenshot(page, "catalogue.png")

    page.get_by_role("searchbox", name="Search").fill("clinic")
    page.get_by_label("Mode").select_option("dp")
    page.get_by_label("Price per ε up to").fill("20")
    page.get_by_label("ε left for sale, at least").fill("2")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**/?search=clinic*")
    assert card_titles(page) == ["Clinic visits"]
    assert page.locator(".result-count").inner_text() == "1 dataset matching “clinic” with these filters."
    # The filters keep what was typed.
    assert page.get_by_label("Price per ε up to").input_value() == "20"
    assert page.get_by_role("searchbox", name="Search").input_value() == "clinic"

    # 2. The dataset page: schema, budget and price.
    page.get_by_role("link", name="Clinic visits").click()
    assert page.locator("h1").inner_text() == "Clinic visits"
    schema_rows = page.locator(".schema-table tbody tr").all_inner_texts()
    assert [row.split("\t")[0] for row in schema_rows] == ["age", "region", "smoker", "visits"]
    assert "0.0 to 52.0" in schema_rows[3]
    assert "north, south, east, west" in schema_rows[1]
    assert "ε sold: 0 of 10 (0%)" in page.locator("#budget-heading + label").inner_text()
    assert "8.00 credits" in page.locator(".card-facts").first.inner_text()
    assert "Your wallet holds 1000.00 credits." in page.locator(".buy-form").inner_text()

    # 3. Buy epsilon 2 for 16 credits; the purchases page shows the whole allotment left.
    page.get_by_label("Epsilon to buy").fill("2")
    page.get_by_role("button", name="Buy").click()
    page.wait_for_url("**/purchases/")
    assert "You bought epsilon 2 of “Clinic visits” for 16.00 credits." in page.locator(".messages").inner_text()
    row = page.locator("table.my-purchases tbody tr").first.locator("td").all_inner_texts()
    assert row[:4] == ["2", "16.00", "0", "2"]  # bought, price, spent, remaining

    # 4. Build a query: the mean of visits by region. The estimate updates as the form changes.
    page.goto(f"/datasets/{visits['id']}/")
    mark_page(page)
    query = page.locator("#query-form")
    first = estimate(page)
    assert first["price_text"].startswith("0.80 credits")  # the default: count at epsilon 0.1, 8 credits per ε
    # Choosing the aggregate and the column redraws the form with the controls that fit them.
    redraw(page, lambda: query.get_by_label("Aggregate").select_option("mean"))
    redraw(page, lambda: query.get_by_label("Column").select_option("visits"))
    assert query.get_by_label("Column").input_value() == "visits"
    assert query.get_by_label("Column").locator("option").all_inner_texts() == [
        "Choose a column",
        "age (numeric)",
        "visits (numeric)",
    ]
    query.get_by_label("region").check()
    query.get_by_label("Rows the answer covers (optional guess)").fill("400")
    query.get_by_label("Epsilon (ε) to spend").fill("0.5")
    at_half = wait_for_estimate(page, "4.00 credits")
    assert "Laplace" in at_half["mechanism"]
    assert at_half["halfwidth_text"].startswith("± ")
    assert at_half["remaining"] == "2"
    query.get_by_label("Epsilon (ε) to spend").fill("1")
    at_one = wait_for_estimate(page, "8.00 credits")
    # Twice the epsilon: half the noise, so a narrower interval.
    assert float(at_one["halfwidth"]) < float(at_half["halfwidth"])
    assert float(at_one["halfwidth"]) * 2 == float(at_half["halfwidth"]) or abs(
        float(at_one["halfwidth"]) * 2 - float(at_half["halfwidth"])
    ) < 1e-9 * float(at_half["halfwidth"])
    assert same_document(page), "the estimate must update in place, without reloading the page"
    # The whole question: the query as built, its budget, and the estimate above the button that runs it.
    screenshot(page, "query-estimate.png", element="#query")

    # 5. Submit: the job is queued and epsilon 1 reserved.
    query.get_by_role("button", name="Run the query").click()
    page.wait_for_url("**/jobs/*/")
    job_id = int(page.url.rstrip("/").rsplit("/", 1)[-1])
    assert f"Job {job_id} is queued: ε 1 is reserved." in page.locator(".messages").inner_text()
    assert page.locator("h1").inner_text() == f"Job {job_id}"
    assert "Mean of visits" in page.locator(".job-query").inner_text()

    # 6. The jobs page shows it open, then released, without being reloaded.
    page.locator("nav").get_by_role("link", name="My jobs").click()
    page.wait_for_url("**/jobs/")
    mark_page(page)
    row = page.locator("#jobs-table tbody tr").first
    assert row.locator("th").inner_text() == str(job_id)
    assert row.locator(".badge").inner_text() in ("queued", "running")
    wait_for_text(page, "#jobs-table tbody tr .badge", "released", timeout=60)
    assert same_document(page), "the jobs table must update in place, without reloading the page"
    assert page.locator("#jobs-table").get_attribute("hx-trigger") is None  # polling stopped

    # 7. The answer, with its interval drawn and the privacy receipt.
    page.get_by_role("link", name=str(job_id), exact=True).click()
    page.wait_for_url(f"**/jobs/{job_id}/")
    assert page.locator("#status-heading .badge").inner_text() == "released"
    table = page.locator(".result-table tbody tr")
    assert table.count() == 4
    shown = {}
    for i in range(4):
        label, value, low, high = table.nth(i).locator("th, td").all_inner_texts()
        assert label.startswith("region = ")
        shown[label.removeprefix("region = ")] = number(value)
        assert number(low) <= number(value) <= number(high)
    assert sorted(shown) == sorted(REGIONS)
    assert page.locator("svg.interval-chart circle.chart-value").count() == 4
    # Each whisker end is labelled with its interval's end, as the table prints it, inside the chart.
    labels = page.evaluate(INTERVAL_LABELS)
    assert (labels["low"], labels["high"]) == (labels["table_low"], labels["table_high"]) and len(labels["low"]) == 4
    assert labels["inside"] and not labels["overlaps"], labels
    receipt = page.locator(".receipt").inner_text()
    assert "ε charged\n1" in receipt.replace("\t", "\n")
    assert "Laplace" in receipt

    # 8. Download the answer as CSV and as JSON (with the receipt); both hold what the page shows.
    with page.expect_download() as download:
        page.get_by_role("button", name="CSV").click()
    csv_path = tmp_path / "result.csv"
    download.value.save_as(csv_path)
    records = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    assert len(records) == 4
    by_region = {r["region"]: float(r["value"]) for r in records}
    for region, value in shown.items():
        assert abs(by_region[region] - value) <= max(1e-3 * abs(value), 1e-3), (region, by_region, shown)

    with page.expect_download() as download:
        page.get_by_role("button", name="JSON (with the receipt)").click()
    payload = json.loads(download.value.path().read_text())
    assert payload["job"] == job_id
    assert payload["receipt"]["epsilon_charged"] == "1.000000"
    assert len(payload["result"]["groups"]) == 4

    # 9. What is left of the allotment (read once the page has loaded, not the job page's last frame).
    page.locator("nav").get_by_role("link", name="My purchases").click()
    page.wait_for_url("**/purchases/")
    page.locator("table.my-purchases tbody tr").first.wait_for()
    row = page.locator("table.my-purchases tbody tr").first.locator("td").all_inner_texts()
    assert row[:4] == ["2", "16.00", "1", "1"]
