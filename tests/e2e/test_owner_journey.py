"""The owner's journey in a real browser: sign up as an owner, declare a schema column by column,
choose a CSV (its undeclared column is offered), see errors beside the fields and the column that
caused them (with everything typed and the file kept), fix them, publish, and then see a buyer's spending, made by the real worker, appear on the dashboard: its
chart, earnings, buyers and job counts, and never the values the buyer was given.
"""

from __future__ import annotations

from tests.e2e.helpers import (
    E2E,
    api_buy,
    api_headers,
    api_run_job,
    api_signup,
    mark_page,
    same_document,
    screenshot,
    sign_up,
)
from tests.e2e.test_buyer_journey import clinic_csv

pytestmark = E2E


def fill_column(page, index: int, name: str, kind: str, lower: str = "", upper: str = "", categories: str = ""):
    row = page.locator(f"#column-row-{index}")
    row.get_by_label("Name").fill(name)
    row.get_by_label("Kind").select_option(kind)
    if lower:
        row.get_by_label("Lower bound").fill(lower)
    if upper:
        row.get_by_label("Upper bound").fill(upper)
    if categories:
        row.get_by_label("Categories").fill(categories)


def field_error(page, name: str) -> str:
    """The error shown inside the field's own box, beside its control."""
    return page.locator(f".field-{name}.has-error .field-error").inner_text()


def test_an_owner_declares_uploads_fixes_publishes_and_sees_a_buyers_spend(live_site, new_page, tmp_path):
    csv_path = tmp_path / "clinic-visits.csv"
    csv_path.write_text(clinic_csv(rows=400))
    page = new_page()
    sign_up(page, "olga", ["owner"])

    # 1. The new-dataset page: metadata, then the schema column by column.
    page.locator("nav").get_by_role("link", name="New dataset").click()
    assert page.locator("h1").inner_text() == "New dataset"
    page.get_by_label("Title").fill("Clinic visits 2026")
    page.get_by_label("Description").fill("Visits per patient in one year, by region.")
    page.get_by_label("Epsilon cap").fill("-1")  # a mistake
    page.get_by_label("Price per epsilon (credits)").fill("8")
    page.get_by_label("Show the row count to buyers").check()
    assert page.locator(".column-row").count() == 3
    fill_column(page, 0, "age", "numeric", "0", "120")
    fill_column(page, 1, "region", "categorical", categories="north, south, east, west")
    fill_column(page, 2, "smoker", "boolean")
    mark_page(page)
    # Choosing the file reads its header in place: the rows typed stay, the one column not declared
    # yet ("visits") is offered after them, and the file is kept for the submit.
    page.get_by_label("Data file (CSV or Parquet)").set_input_files(csv_path)
    page.locator("#offered-note").wait_for()
    assert page.locator("#id_columns-3-name").input_value() == "visits"
    assert page.locator("#id_columns-0-upper").input_value() == "120"
    page.get_by_role("button", name="Add column").click()
    page.locator("#column-row-4").wait_for()
    assert same_document(page), "reading the header and adding a column must not reload the page"
    assert page.locator("#id_columns-TOTAL_FORMS").input_value() == "5"
    assert page.evaluate("document.activeElement.id") == "id_columns-4-name"  # the keyboard goes on there
    assert page.locator("#kept-file .kept-name").inner_text() == "clinic-visits.csv"
    fill_column(page, 3, "visits", "numeric", "0", "3")  # a second mistake: the data go up to 20

    # 2. A bad epsilon cap: the error is beside that field and everything typed is kept.
    page.get_by_role("button", name="Check and create draft").click()
    page.locator(".field-epsilon_cap.has-error").wait_for()
    assert (
        "greater than" in field_error(page, "epsilon_cap").lower()
        or "positive" in field_error(page, "epsilon_cap").lower()
    ), field_error(page, "epsilon_cap")
    assert page.get_by_label("Epsilon cap").get_attribute("aria-invalid") == "true"
    assert page.get_by_label("Title").input_value() == "Clinic visits 2026"
    assert page.get_by_label("Epsilon cap").input_value() == "-1"
    assert page.locator("#id_columns-1-categories").input_value() == "north, south, east, west"
    assert page.locator("#id_columns-3-name").input_value() == "visits"
    assert page.locator("#id_columns-3-upper").input_value() == "3"
    assert page.get_by_label("Show the row count to buyers").is_checked()

    # 3. Fixed; now the kept file is checked against the schema and refused, beside the column's bound.
    page.get_by_label("Epsilon cap").fill("5")
    page.get_by_role("button", name="Check and create draft").click()
    page.locator("#column-row-3 .field-upper.has-error").wait_for()
    assert page.locator(".field-epsilon_cap.has-error").count() == 0
    column_error = page.locator("#column-row-3 .field-upper .field-error").inner_text()
    assert "column 'visits'" in column_error and "outside the declared bounds [0, 3]" in column_error, column_error
    assert "see the errors beside them" in field_error(page, "file")
    assert page.locator("#id_columns-3-upper").input_value() == "3"
    assert page.get_by_label("Epsilon cap").input_value() == "5"

    # 4. Widen the bounds, without choosing the file again, and the draft is created.
    page.locator("#id_columns-3-upper").fill("52")
    page.get_by_role("button", name="Check and create draft").click()
    page.wait_for_url("**/datasets/*/")
    dataset_id = int(page.url.rstrip("/").rsplit("/", 1)[-1])
    assert "was checked and stored as a draft with 400 rows" in page.locator(".messages").inner_text()
    assert page.locator("hgroup .badge-draft").inner_text() == "draft"
    schema_rows = page.locator(".schema-table tbody tr").all_inner_texts()
    assert [r.split("\t")[0] for r in schema_rows] == ["age", "region", "smoker", "visits"]
    assert "0.0 to 52.0" in schema_rows[3]

    # 5. Publish.
    page.get_by_role("button", name="Publish").click()
    assert "is published: buyers can now find it in the catalogue." in page.locator(".messages").inner_text()
    assert page.locator("hgroup .badge-published").inner_text() == "published"

    # 6. The dashboard before any sale.
    page.locator("nav").get_by_role("link", name="Dashboard").click()
    card = page.locator(f"#dataset-{dataset_id}")
    assert card.locator(".earnings").inner_text() == "0.00 credits"
    assert card.locator(".buyers").inner_text() == "0"
    assert "No budget has been spent yet." in card.locator(".burn-caption").inner_text()
    assert card.locator(".burn-point").count() == 0

    # 7. A buyer, through the API, buys epsilon 2 and spends 0.75 of it in two jobs on the real worker.
    api_signup(live_site, "bram", ["buyer"])
    buyer = api_headers(live_site, "bram")
    purchase = api_buy(live_site, buyer, dataset_id, "2")
    assert purchase["price"] == "16.00"
    released = [
        api_run_job(live_site, buyer, purchase["id"], {"aggregate": "mean", "column": "visits"}, "0.5"),
        api_run_job(live_site, buyer, purchase["id"], {"aggregate": "count", "group_by": ["region"]}, "0.25"),
    ]

    # 8. The owner sees it: earnings, the buyer, the spend on the chart, the jobs; no released value.
    page.reload()
    card = page.locator(f"#dataset-{dataset_id}")
    assert card.locator(".earnings").inner_text() == "16.00 credits"
    assert card.locator(".buyers").inner_text() == "1"
    assert card.locator(".epsilon-sold").inner_text() == "2 of 5"
    assert card.locator(".epsilon-committed").inner_text() == "0.75"
    assert card.locator(".job-count-released .count").inner_text() == "2"
    assert card.locator(".jobs-total").inner_text() == "2"
    assert card.locator(".burn-point").count() == 2
    caption = card.locator(".burn-caption").inner_text()
    assert "commit rows of the privacy ledger" in caption and "under the accountant" in caption
    # Pure releases at 0.5 and 0.25 of a cap of 5: adding them up is the tightest, 15% of the budget.
    assert [p.get_attribute("data-share") for p in card.locator(".burn-point").all()] == ["0.1", "0.15"]
    assert card.locator(".burn-share").inner_text() == "15%"
    assert card.locator(".burn-spent").inner_text() == "0.75"
    assert card.locator(".share-used").inner_text() == "15% of the budget used (ε 0.75 at δ 0, by basic composition)"
    assert "Share of the dataset's privacy budget used" in card.locator(".burn-down-chart").text_content()
    assert page.locator(".total-earnings").inner_text() == "16.00 credits"
    # The chart's table, newest commit first, with the share of the budget used after each commit.
    card.locator(".commit-table summary").click()
    rows = card.locator(".commit-table tbody tr").all_inner_texts()
    assert [r.split("\t")[1:] for r in rows] == [
        ["15%", "ε 0.75 at δ 0, by basic composition", "0.75"],
        ["10%", "ε 0.5 at δ 0, by basic composition", "0.5"],
    ]
    text = page.locator("main").inner_text()
    values = [g["value"] for job in released for g in job["result"]["groups"]]
    assert len(values) == 5  # one mean, four noisy counts
    for value in values:
        if float(value).is_integer():
            continue  # a whole number (a noisy count) could match anything, such as a date
        for shown in (f"{value:.2f}", f"{value:.4f}", str(value)):
            assert shown not in text, f"the dashboard shows a released value ({shown})"
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "owner-dashboard.png")
