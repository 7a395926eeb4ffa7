"""marketplace/new_dataset.py, the New dataset page on real files: the header's columns offered (names and
kinds, never bounds or categories), an error beside the column it concerns, and the chosen file kept
across a failed submit. Real PostgreSQL, the Django test client, the private storage folder per test."""

from __future__ import annotations

import html
import io
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from marketplace import storage
from marketplace.models import Column, Dataset
from tests.marketplace.test_pages import dataset_files, new_dataset_post, stored_files

pytestmark = pytest.mark.django_db

URL = "/datasets/new/"
CSV = b"age,region,smoker,visits,notes\n34,north,yes,3,secret-note-1\n51,south,no,20,secret-note-2\n"
SCHEMA = [
    {"name": "age", "kind": "numeric", "lower": "0", "upper": "120"},
    {"name": "region", "kind": "categorical", "categories": "north, south"},
    {"name": "smoker", "kind": "boolean"},
    {"name": "visits", "kind": "numeric", "lower": "0", "upper": "3"},  # the data go up to 20
]


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def csv_file(data: bytes = CSV, name: str = "clinic.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="text/csv")


def pending_files(root) -> list:
    return [p for p in stored_files(root) if p.relative_to(root).parts[0] == "pending"]


def token_of(page: str) -> str:
    match = re.search(r'name="pending_upload" value="([^"]+)"', page)
    assert match, "the page carries no kept file"
    return match[1]


def field_error(page: str, field_id: str) -> str:
    assert f'id="{field_id}_error"' in page, f"no error beside {field_id}"
    return html.unescape(page.split(f'id="{field_id}_error"', 1)[1].split("</small>", 1)[0])


def inspect(client: Client, upload=None, columns: list[dict] | None = None, **overrides):
    data = new_dataset_post(columns or [], upload=upload, inspect="1", **overrides)
    return client.post(URL, data)


# 1. The header's columns offered


def test_choosing_a_file_offers_its_columns_with_kinds_and_leaves_bounds_and_categories_empty(owner, private_storage):
    response = inspect(logged_in(owner), csv_file())

    page = response.content.decode()
    assert response.status_code == 200
    assert 'name="columns-TOTAL_FORMS" value="5"' in page
    assert 'name="columns-INITIAL_FORMS" value="0"' in page
    expected = [("age", "numeric"), ("region", "categorical"), ("smoker", "boolean"), ("visits", "numeric")]
    for i, (name, kind) in enumerate([*expected, ("notes", "categorical")]):
        assert f'name="columns-{i}-name" value="{name}"' in page
        assert re.search(rf'name="columns-{i}-kind"[^>]*>.*?<option value="{kind}" selected>', page, re.S), name
        # Bounds and categories are declared by the owner, never read off the data.
        assert re.search(rf'<input type="number" name="columns-{i}-lower"(?![^>]*value=)', page), name
        assert re.search(rf'<input type="number" name="columns-{i}-upper"(?![^>]*value=)', page), name
        assert re.search(rf'<input type="text" name="columns-{i}-categories"(?![^>]*value=)', page), name
    assert page.count('class="offered-badge">from the file<') == 5
    assert "5 columns offered from the header of <strong>clinic.csv</strong>" in page
    assert "Bounds and categories are never read off the data" in page
    rows = page.split('id="column-rows"', 1)[1].split("</section>", 1)[0]
    for value in ("north", "south", "secret-note"):
        assert value not in rows, value


def test_the_header_step_stores_no_dataset_only_the_kept_upload(owner, private_storage):
    page = inspect(logged_in(owner), csv_file()).content.decode()

    assert not Dataset.objects.exists()
    assert dataset_files(private_storage) == []
    (kept,) = pending_files(private_storage)
    assert b"secret-note-1" not in kept.read_bytes()
    assert storage.decrypt_bytes(kept.read_bytes()) == CSV
    assert token_of(page)
    assert 'Kept for this form: <strong class="kept-name">clinic.csv</strong>' in page
    assert "until the dataset is created or for 60 minutes" in page
    assert str(kept.relative_to(private_storage)) not in page  # the storage path is never shown


def test_a_parquet_files_columns_are_offered_from_its_types(owner, private_storage):
    sink = io.BytesIO()
    pq.write_table(pa.table({"bmi": [22.5, 31.0], "smoker": [True, False], "ward": ["A", "B"]}), sink)
    upload = SimpleUploadedFile("clinic.parquet", sink.getvalue(), content_type="application/octet-stream")

    page = inspect(logged_in(owner), upload).content.decode()

    for i, (name, kind) in enumerate([("bmi", "numeric"), ("smoker", "boolean"), ("ward", "categorical")]):
        assert f'name="columns-{i}-name" value="{name}"' in page
        assert re.search(rf'name="columns-{i}-kind"[^>]*>.*?<option value="{kind}" selected>', page, re.S), name


def test_rows_already_declared_are_kept_as_typed_and_only_the_others_are_offered(owner, private_storage):
    typed = [{"name": "visits", "kind": "numeric", "lower": "0", "upper": "52"}]

    page = inspect(logged_in(owner), csv_file(), columns=typed, title="Typed title").content.decode()

    assert 'name="columns-0-name" value="visits"' in page
    assert 'name="columns-0-upper" value="52"' in page
    names = re.findall(r'name="columns-\d+-name"[^>]*value="([^"]+)"', page)
    assert names == ["visits", "age", "region", "smoker", "notes"]
    assert 'value="Typed title"' in page
    assert "field-error" not in page  # nothing is validated at this step


def test_names_too_long_for_a_column_are_not_offered_and_the_page_says_so(owner, private_storage):
    data = b"age," + b"x" * 101 + b"\n1,2\n"

    page = inspect(logged_in(owner), csv_file(data)).content.decode()

    assert re.findall(r'name="columns-\d+-name"[^>]*value="([^"]+)"', page) == ["age"]
    assert "Not offered: columns whose names are longer than 100 characters." in page


def test_a_file_that_is_not_a_table_is_refused_beside_the_file_field_and_not_kept(owner, private_storage):
    upload = SimpleUploadedFile("clinic.csv", b"\x00\x01\x02binary", content_type="text/csv")

    response = inspect(logged_in(owner), upload)

    assert response.status_code == 400
    assert "neither CSV text nor Parquet" in field_error(response.content.decode(), "id_file")
    assert stored_files(private_storage) == []
    assert 'name="pending_upload"' not in response.content.decode()


def test_reading_the_columns_without_a_file_says_to_choose_one(owner, private_storage):
    response = inspect(logged_in(owner))

    assert response.status_code == 400
    assert "Choose the data file" in field_error(response.content.decode(), "id_file")


def test_the_kept_file_can_be_read_again_without_choosing_it(owner, private_storage):
    client = logged_in(owner)
    token = token_of(inspect(client, csv_file()).content.decode())

    page = inspect(client, pending_upload=token).content.decode()

    assert 'name="columns-4-name" value="notes"' in page
    assert token_of(page) == token
    assert len(pending_files(private_storage)) == 1


def test_the_page_reads_the_header_as_soon_as_a_file_is_chosen(owner):
    page = logged_in(owner).get(URL).content.decode()

    file_input = re.search(r'<input type="file" name="file"[^>]*>', page)[0]
    assert f'hx-post="{URL}"' in file_input and 'hx-trigger="change"' in file_input
    assert 'hx-vals="{&quot;inspect&quot;: &quot;1&quot;}"' in file_input
    assert 'hx-select="#dataset-form"' in file_input
    assert '<form method="post" enctype="multipart/form-data"' in page and 'id="dataset-form"' in page
    assert 'name="inspect" value="1"' in page  # the same step without JavaScript


# 2. Errors beside the column


def test_a_value_over_a_columns_upper_bound_is_shown_beside_that_bound(owner, private_storage):
    response = logged_in(owner).post(URL, new_dataset_post(SCHEMA, upload=csv_file()))

    page = response.content.decode()
    assert response.status_code == 400
    error = field_error(page, "id_columns-3-upper")
    assert "column 'visits'" in error and "outside the declared bounds [0, 3]" in error
    assert 'id="id_columns-3-lower_error"' not in page
    assert re.search(r'<input[^>]*name="columns-3-upper"[^>]*aria-invalid="true"', page)
    assert "outside the declared bounds" not in field_error(page, "id_file")
    assert not re.search(r'id="id_columns-[012]-\w+_error"', page)  # the other columns are fine


def test_a_missing_column_is_shown_beside_its_name(owner, private_storage):
    schema = [*SCHEMA[:3], {"name": "weight", "kind": "numeric", "lower": "0", "upper": "300"}]

    page = logged_in(owner).post(URL, new_dataset_post(schema, upload=csv_file())).content.decode()

    assert "column 'weight' is not in the file" in field_error(page, "id_columns-3-name")


def test_an_undeclared_category_and_a_wrong_kind_are_each_beside_their_own_column(owner, private_storage):
    schema = [
        {"name": "age", "kind": "numeric", "lower": "0", "upper": "120"},
        {"name": "region", "kind": "categorical", "categories": "north"},
        {"name": "notes", "kind": "numeric", "lower": "0", "upper": "1"},
    ]

    page = logged_in(owner).post(URL, new_dataset_post(schema, upload=csv_file())).content.decode()

    assert "'south'" in field_error(page, "id_columns-1-categories")
    assert "not finite numbers" in field_error(page, "id_columns-2-kind")


def test_a_column_with_missing_cells_is_flagged_in_its_row(owner, private_storage):
    data = b"age,region\n34,north\n,south\n"
    schema = SCHEMA[:2]

    page = logged_in(owner).post(URL, new_dataset_post(schema, upload=csv_file(data))).content.decode()

    row = html.unescape(page.split('id="column-row-0"', 1)[1].split("</fieldset>", 1)[0])
    assert 'class="form-errors"' in row and "column 'age': 1 value is missing (row 2" in row


def test_rows_are_matched_to_columns_past_blank_and_left_out_rows(owner, private_storage):
    schema = [
        {"name": "age", "kind": "numeric", "lower": "0", "upper": "120"},
        {"name": "notes", "kind": "numeric", "lower": "nonsense", "leave_out": "on"},  # left out: not declared
        {"name": "visits", "kind": "numeric", "lower": "0", "upper": "3"},
    ]

    page = logged_in(owner).post(URL, new_dataset_post(schema, upload=csv_file())).content.decode()

    assert "column 'visits'" in field_error(page, "id_columns-2-upper")
    assert 'id="id_columns-1-lower_error"' not in page


# 3. The file kept across a failed submit


def test_a_failed_submit_keeps_the_file_and_the_next_one_creates_the_draft_without_it(owner, private_storage):
    client = logged_in(owner)
    first = client.post(URL, new_dataset_post(SCHEMA, upload=csv_file()))
    token = token_of(first.content.decode())
    assert len(pending_files(private_storage)) == 1
    assert not Dataset.objects.exists() and not Column.objects.exists()

    fixed = [*SCHEMA[:3], {**SCHEMA[3], "upper": "52"}]
    response = client.post(URL, new_dataset_post(fixed, pending_upload=token))

    dataset = Dataset.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("dataset-detail", args=[dataset.pk])
    assert dataset.row_count == 2 and dataset.file_format == "csv"
    assert [c.name for c in dataset.columns.order_by("position")] == ["age", "region", "smoker", "visits"]
    assert pending_files(private_storage) == []  # deleted on success
    (stored,) = dataset_files(private_storage)
    assert b"secret-note" not in storage.decrypt_bytes(stored.read_bytes())
    # The token is spent: posting it again finds no file.
    again = client.post(URL, new_dataset_post(fixed, title="Again", pending_upload=token))
    assert again.status_code == 400
    assert "no longer here" in field_error(again.content.decode(), "id_file")
    assert Dataset.objects.count() == 1


def test_a_metadata_mistake_keeps_the_file_too(owner, private_storage):
    client = logged_in(owner)
    response = client.post(URL, new_dataset_post(SCHEMA[:3], upload=csv_file(), epsilon_cap="-1"))

    page = response.content.decode()
    assert response.status_code == 400
    assert 'id="id_epsilon_cap_error"' in page
    token = token_of(page)
    assert "clinic.csv" in page

    created = client.post(URL, new_dataset_post(SCHEMA[:3], pending_upload=token))
    assert created.status_code == 302
    assert Dataset.objects.get().row_count == 2


def test_choosing_another_file_replaces_the_kept_one(owner, private_storage):
    client = logged_in(owner)
    token = token_of(client.post(URL, new_dataset_post(SCHEMA, upload=csv_file())).content.decode())
    other = b"age,region,smoker,visits\n40,north,no,1\n"

    response = client.post(URL, new_dataset_post(SCHEMA, upload=csv_file(other, "other.csv"), pending_upload=token))

    assert response.status_code == 302
    assert Dataset.objects.get().row_count == 1
    assert stored_files(private_storage) == dataset_files(private_storage)  # both kept copies are gone


def test_another_session_or_owner_cannot_use_the_token(owner, outsider, private_storage):
    token = token_of(logged_in(owner).post(URL, new_dataset_post(SCHEMA, upload=csv_file())).content.decode())
    fixed = [*SCHEMA[:3], {**SCHEMA[3], "upper": "52"}]

    for client in (logged_in(outsider), logged_in(owner)):  # a fresh session, even the owner's own
        response = client.post(URL, new_dataset_post(fixed, pending_upload=token))
        assert response.status_code == 400
        assert "no longer here" in field_error(response.content.decode(), "id_file")
    assert not Dataset.objects.exists()
    assert len(pending_files(private_storage)) == 1  # still there for the session that kept it


def test_an_expired_kept_file_is_deleted_and_the_page_asks_for_the_file(owner, private_storage, settings):
    client = logged_in(owner)
    token = token_of(client.post(URL, new_dataset_post(SCHEMA, upload=csv_file())).content.decode())
    settings.CLOAKROOM_PENDING_UPLOAD_SECONDS = -1

    response = client.post(URL, new_dataset_post(SCHEMA, pending_upload=token))

    assert response.status_code == 400
    assert "no longer here" in field_error(response.content.decode(), "id_file")
    assert stored_files(private_storage) == []


def test_an_unusable_file_is_not_kept(owner, private_storage):
    response = logged_in(owner).post(URL, new_dataset_post(SCHEMA, upload=csv_file(b"age,region,smoker,visits\n")))

    page = response.content.decode()
    assert response.status_code == 400
    assert "no data rows" in field_error(page, "id_file") and "Choose another file." in field_error(page, "id_file")
    assert 'name="pending_upload"' not in page
    assert stored_files(private_storage) == []


def test_a_file_over_the_size_limit_is_refused_and_not_kept(owner, private_storage, settings):
    settings.CLOAKROOM_MAX_UPLOAD_BYTES = 20

    response = logged_in(owner).post(URL, new_dataset_post(SCHEMA, upload=csv_file()))

    assert response.status_code == 400
    assert "limit" in field_error(response.content.decode(), "id_file")
    assert stored_files(private_storage) == []


def test_add_column_without_javascript_keeps_the_chosen_file(owner, private_storage):
    client = logged_in(owner)
    response = client.post(URL, new_dataset_post(SCHEMA, upload=csv_file(), add_column="1"))

    page = response.content.decode()
    assert response.status_code == 200
    assert 'name="columns-5-name"' in page
    token = token_of(page)
    fixed = [*SCHEMA[:3], {**SCHEMA[3], "upper": "52"}]
    # The blank rows drawn again are skipped like the page's own.
    assert client.post(URL, new_dataset_post(fixed, pending_upload=token)).status_code == 302


def test_a_left_out_row_is_not_declared(owner, private_storage):
    schema = [*SCHEMA[:3], {"name": "visits", "kind": "numeric", "leave_out": "on"}]

    response = logged_in(owner).post(URL, new_dataset_post(schema, upload=csv_file()))

    assert response.status_code == 302
    assert [c.name for c in Dataset.objects.get().columns.order_by("position")] == ["age", "region", "smoker"]
