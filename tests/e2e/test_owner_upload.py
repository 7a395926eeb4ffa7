"""The owner's upload of a real file, in a real browser (issue 13, item 8): choose a CSV and its header's
columns are offered (names and kinds; bounds and categories left for the owner to declare), submit with
a mistake and see the error beside the column that caused it, correct it without choosing the file
again, and publish.
"""

from __future__ import annotations

from pathlib import Path

from tests.e2e.helpers import E2E, mark_page, same_document, screenshot, sign_up
from tests.e2e.test_buyer_journey import clinic_csv

pytestmark = E2E


def row(page, index: int):
    return page.locator(f"#column-row-{index}")


def test_an_owner_picks_a_csv_sees_its_columns_fixes_a_column_without_choosing_the_file_again_and_publishes(
    live_site, new_page, tmp_path
):
    csv_path = tmp_path / "clinic-visits.csv"
    # The buyer journey's clinic file, with a free-text column the owner will not declare.
    lines = clinic_csv(rows=300).splitlines()
    csv_path.write_text(
        "\n".join([lines[0] + ",notes"] + [f"{line},note {i}" for i, line in enumerate(lines[1:])]) + "\n"
    )
    private_root = Path(live_site.env["CLOAKROOM_PRIVATE_ROOT"])
    page = new_page()
    sign_up(page, "uma", ["owner"])

    page.locator("nav").get_by_role("link", name="New dataset").click()
    page.get_by_label("Title").fill("Clinic visits, from the header")
    page.get_by_label("Epsilon cap").fill("4")
    page.get_by_label("Price per epsilon (credits)").fill("6")

    # 0. A file that is not a table is refused in place, beside the file field, and nothing is kept.
    mark_page(page)
    not_a_table = tmp_path / "scan.csv"
    not_a_table.write_bytes(b"\x00\x01\x02 not text")
    page.get_by_label("Data file (CSV or Parquet)").set_input_files(not_a_table)
    page.locator(".field-file.has-error").wait_for()
    assert "neither CSV text nor Parquet" in page.locator(".field-file .field-error").inner_text()
    assert page.locator("#kept-file").count() == 0
    assert page.get_by_label("Title").input_value() == "Clinic visits, from the header"

    # 1. Choosing the file offers its header's columns at once, in place.
    page.get_by_label("Data file (CSV or Parquet)").set_input_files(csv_path)
    page.locator("#offered-note").wait_for()
    assert same_document(page), "reading the header must not reload the page"
    assert "5 columns offered from the header of clinic-visits.csv" in page.locator("#offered-note").inner_text()
    assert page.locator("#kept-file .kept-name").inner_text() == "clinic-visits.csv"
    offered = [
        ("age", "numeric"),
        ("region", "categorical"),
        ("smoker", "boolean"),
        ("visits", "numeric"),
        ("notes", "categorical"),
    ]
    assert page.locator(".column-row").count() == len(offered)
    for i, (name, kind) in enumerate(offered):
        assert row(page, i).get_by_label("Name").input_value() == name
        assert row(page, i).get_by_label("Kind").input_value() == kind
        assert row(page, i).locator(".offered-badge").inner_text() == "from the file"
        # Declared, never read off the data: the page leaves them for the owner.
        assert row(page, i).get_by_label("Lower bound").input_value() == ""
        assert row(page, i).get_by_label("Upper bound").input_value() == ""
        assert row(page, i).get_by_label("Categories").input_value() == ""
    assert "never read off the data" in page.locator("#declared-note").inner_text()
    assert page.get_by_label("Title").input_value() == "Clinic visits, from the header"
    screenshot(page, "owner-upload-offered.png", element="#dataset-form")

    # 2. Declare what the header cannot say, with a mistake: the visits go up to 20, not 3.
    row(page, 0).get_by_label("Lower bound").fill("0")
    row(page, 0).get_by_label("Upper bound").fill("120")
    row(page, 1).get_by_label("Categories").fill("north, south, east, west")
    row(page, 3).get_by_label("Lower bound").fill("0")
    row(page, 3).get_by_label("Upper bound").fill("3")
    row(page, 4).get_by_label("Leave this column out").check()
    page.get_by_role("button", name="Check and create draft").click()

    # 3. The error is beside the column that caused it; the file is still there.
    page.locator("#column-row-3 .field-upper.has-error").wait_for()
    error = row(page, 3).locator(".field-upper .field-error").inner_text()
    assert "column 'visits'" in error and "outside the declared bounds [0, 3]" in error, error
    assert row(page, 3).get_by_label("Upper bound").get_attribute("aria-invalid") == "true"
    assert page.locator(".field-error").count() == 2  # that bound, and the pointer beside the file field
    assert "see the errors beside them" in page.locator(".field-file .field-error").inner_text()
    for other in (0, 1, 2, 4):
        assert row(page, other).locator(".field-error, .form-errors").count() == 0
    assert page.locator("#kept-file .kept-name").inner_text() == "clinic-visits.csv"
    assert page.get_by_label("Data file (CSV or Parquet)").evaluate("el => el.files.length") == 0
    assert row(page, 1).get_by_label("Categories").input_value() == "north, south, east, west"
    assert row(page, 4).get_by_label("Leave this column out").is_checked()
    screenshot(page, "owner-upload-column-error.png", element="#dataset-form")
    kept_files = list((private_root / "pending").glob("*"))
    assert len(kept_files) == 1 and b"note 1" not in kept_files[0].read_bytes()

    # 4. Widen the bound, without choosing the file again, and the draft is created from the kept file.
    row(page, 3).get_by_label("Upper bound").fill("20")
    page.get_by_role("button", name="Check and create draft").click()
    page.wait_for_url("**/datasets/*/")
    assert "was checked and stored as a draft with 300 rows" in page.locator(".messages").inner_text()
    schema_rows = page.locator(".schema-table tbody tr").all_inner_texts()
    assert [r.split("\t")[0] for r in schema_rows] == ["age", "region", "smoker", "visits"]  # notes left out
    assert "0.0 to 20.0" in schema_rows[3]
    assert list((private_root / "pending").glob("*")) == []

    # 5. Publish.
    page.get_by_role("button", name="Publish").click()
    assert "is published: buyers can now find it in the catalogue." in page.locator(".messages").inner_text()
    assert page.locator("hgroup .badge-published").inner_text() == "published"
