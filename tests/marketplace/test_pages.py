"""The server-rendered marketplace pages: catalogue, dataset page, buying, new dataset, owner and
buyer lists. Real PostgreSQL, the Django test client, and the private storage folder per test."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.staticfiles import finders
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from accounts.models import CreditEntry, Wallet
from marketplace.models import Column, Dataset, LedgerEntry, Purchase
from marketplace.services import purchase_create
from tests.factories import DatasetFactory, UserFactory

pytestmark = pytest.mark.django_db

CSV = b"age,group,smoker,secret_notes\n34,a,yes,x\n51,b,no,y\n29,a,no,z\n"
CSV_UNDECLARED_CATEGORY = b"age,group,smoker\n34,a,yes\n51,zebra,no\n"


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def stored_files(root) -> list:
    return [p for p in root.rglob("*") if p.is_file()]


def new_dataset_post(columns: list[dict], *, title: str = "Clinic visits", upload=None, **overrides) -> dict:
    data = {
        "title": title,
        "description": "Visits to a small clinic.",
        "epsilon_cap": "5",
        "delta_cap": "0",
        "price_per_epsilon": "12.50",
        "columns-TOTAL_FORMS": str(len(columns) + 1),
        "columns-INITIAL_FORMS": "0",
        "columns-MIN_NUM_FORMS": "0",
        "columns-MAX_NUM_FORMS": "500",
    }
    for i, column in enumerate(columns):
        for key, value in column.items():
            data[f"columns-{i}-{key}"] = value
    # One untouched blank row, as the page renders, which must be skipped.
    data[f"columns-{len(columns)}-kind"] = "numeric"
    if upload is not None:
        data["file"] = upload
    data.update(overrides)
    return data


SCHEMA = [
    {"name": "age", "kind": "numeric", "lower": "0", "upper": "120"},
    {"name": "group", "kind": "categorical", "categories": "a, b"},
    {"name": "smoker", "kind": "boolean", "is_label": "on"},
]


# Catalogue


def test_catalogue_lists_published_datasets_and_hides_others_drafts(owner, buyer):
    DatasetFactory(owner=owner, title="Published heart data")
    DatasetFactory(owner=owner, title="Secret draft data", status=Dataset.Status.DRAFT)
    DatasetFactory(owner=owner, title="Suspended data", status=Dataset.Status.SUSPENDED)

    page = logged_in(buyer).get(reverse("catalogue")).content.decode()

    assert "Published heart data" in page
    assert "Secret draft data" not in page
    assert "Suspended data" not in page


def test_catalogue_shows_the_owner_their_own_draft(owner):
    DatasetFactory(owner=owner, title="My own draft", status=Dataset.Status.DRAFT)

    page = logged_in(owner).get(reverse("catalogue")).content.decode()

    assert "My own draft" in page


def test_catalogue_card_shows_mode_price_budget_and_column_count(owner):
    dataset = DatasetFactory(owner=owner, title="Card data", price_per_epsilon=Decimal("7.25"))
    Dataset.objects.filter(pk=dataset.pk).update(epsilon_sold=Decimal("2.5"))

    page = Client().get(reverse("catalogue")).content.decode()

    assert "Card data" in page
    assert "differential privacy" in page
    assert "7.25 credits" in page
    assert "7.5 of 10" in page  # epsilon available of the cap
    assert "<dt>Columns</dt><dd>2</dd>" in page


def test_catalogue_search_finds_only_matching_datasets(owner):
    DatasetFactory(owner=owner, title="Breast cancer diagnostics")
    DatasetFactory(owner=owner, title="Diabetes progression")

    page = Client().get(reverse("catalogue"), {"search": "cancer"}).content.decode()

    assert "Breast cancer diagnostics" in page
    assert "Diabetes progression" not in page
    assert 'value="cancer"' in page


def test_catalogue_mode_filter_keeps_only_that_mode(owner):
    DatasetFactory(owner=owner, title="Plain DP data", mode=Dataset.Mode.DP)
    DatasetFactory(owner=owner, title="Encrypted HE data", mode=Dataset.Mode.HE)

    page = Client().get(reverse("catalogue"), {"mode": "he"}).content.decode()

    assert "Encrypted HE data" in page
    assert "Plain DP data" not in page


def test_catalogue_paginates_and_keeps_the_search_in_page_links(owner):
    for n in range(15):
        DatasetFactory(owner=owner, title=f"Survey wave {n:02d}")

    first = Client().get(reverse("catalogue"), {"search": "survey"}).content.decode()
    second = Client().get(reverse("catalogue"), {"search": "survey", "page": "2"}).content.decode()

    assert "Page 1 of 2" in first
    assert "search=survey&amp;page=2" in first
    assert "Page 2 of 2" in second
    assert second.count('class="dataset-card"') == 3


def test_catalogue_with_a_junk_page_number_still_answers():
    response = Client().get(reverse("catalogue"), {"page": "not-a-number"})

    assert response.status_code == 200


def test_catalogue_with_an_unknown_mode_is_a_400_naming_the_field():
    response = Client().get(reverse("catalogue"), {"page": "not-a-number", "mode": "nonsense"})

    assert response.status_code == 400
    assert 'id="id_mode_error">Select a valid choice. nonsense is not one of the available choices.' in (
        response.content.decode()
    )


# Dataset page


def test_dataset_page_shows_schema_and_budget(owner, buyer):
    dataset = DatasetFactory(owner=owner, title="Schema data", epsilon_cap=Decimal("8"))
    Dataset.objects.filter(pk=dataset.pk).update(epsilon_sold=Decimal("2"))

    page = logged_in(buyer).get(reverse("dataset-detail", args=[dataset.pk])).content.decode()

    assert "Schema data" in page
    assert "alice" in page
    assert '<th scope="row">age</th>' in page
    assert "0.0 to 120.0" in page
    assert "a, b" in page
    assert "<dt>ε cap</dt><dd>8</dd>" in page
    assert "<dt>ε sold</dt><dd>2</dd>" in page
    assert "<dt>ε available</dt><dd>6</dd>" in page
    assert "<progress" in page
    assert "10.00 credits" in page
    assert 'name="epsilon"' in page


def test_dataset_page_hides_a_private_row_count_from_buyers(owner, buyer):
    dataset = DatasetFactory(owner=owner, row_count=4321, row_count_public=False)

    page = logged_in(buyer).get(reverse("dataset-detail", args=[dataset.pk])).content.decode()

    assert "4321" not in page
    assert "<dt>Rows</dt><dd>private</dd>" in page


def test_dataset_page_shows_a_public_row_count(owner, buyer):
    dataset = DatasetFactory(owner=owner, row_count=4321, row_count_public=True)

    page = logged_in(buyer).get(reverse("dataset-detail", args=[dataset.pk])).content.decode()

    assert "4321" in page


def test_dataset_page_says_in_words_which_neighbours_epsilon_protects(owner, buyer):
    private = DatasetFactory(owner=owner, row_count=4321, row_count_public=False)
    public = DatasetFactory(owner=owner, row_count=4321, row_count_public=True)

    private_page = logged_in(buyer).get(reverse("dataset-detail", args=[private.pk])).content.decode()
    public_page = logged_in(buyer).get(reverse("dataset-detail", args=[public.pk])).content.decode()

    assert "protects any one row being added or removed" in private_page
    assert "against one row replaced by another, the same answers are worth 2ε" in public_page
    assert reverse("privacy") in private_page and reverse("privacy") in public_page


def test_dataset_page_shows_the_owner_their_private_row_count(owner):
    dataset = DatasetFactory(owner=owner, row_count=4321, row_count_public=False)

    page = logged_in(owner).get(reverse("dataset-detail", args=[dataset.pk])).content.decode()

    assert "4321" in page


def test_another_users_draft_page_is_404(owner, outsider):
    draft = DatasetFactory(owner=owner, status=Dataset.Status.DRAFT)

    response = logged_in(outsider).get(reverse("dataset-detail", args=[draft.pk]))

    assert response.status_code == 404


def test_a_draft_page_is_404_for_anonymous_visitors(owner):
    draft = DatasetFactory(owner=owner, status=Dataset.Status.DRAFT)

    assert Client().get(reverse("dataset-detail", args=[draft.pk])).status_code == 404


def test_anonymous_visitor_sees_a_login_link_instead_of_the_buy_form(dataset):
    page = Client().get(reverse("dataset-detail", args=[dataset.pk])).content.decode()

    # The only epsilon on the page is the one of the fake-data form, which spends nothing.
    assert reverse("dataset-buy", args=[dataset.pk]) not in page and 'id="id_epsilon"' not in page
    assert reverse("login") in page


# Buying


def test_buying_through_the_page_creates_a_purchase_and_debits_the_wallet(owner, buyer, dataset):
    response = logged_in(buyer).post(reverse("dataset-buy", args=[dataset.pk]), {"epsilon": "1.5"})

    assert response.status_code == 302
    assert response["Location"] == reverse("my-purchases")
    purchase = Purchase.objects.get(buyer=buyer, dataset=dataset)
    assert purchase.epsilon == Decimal("1.5")
    assert purchase.price == Decimal("15.00")
    assert Wallet.objects.get(user=buyer).balance == Decimal("985.00")
    assert Wallet.objects.get(user=owner).balance == Decimal("15.00")
    dataset.refresh_from_db()
    assert dataset.epsilon_sold == Decimal("1.5")


def test_buying_more_epsilon_than_remains_shows_the_error_and_keeps_the_value(buyer, dataset):
    response = logged_in(buyer).post(reverse("dataset-buy", args=[dataset.pk]), {"epsilon": "11"})

    page = response.content.decode()
    assert response.status_code == 409
    assert "Not enough budget left on this dataset" in page
    assert 'id="id_epsilon_error"' in page
    assert 'value="11"' in page
    assert 'aria-invalid="true"' in page
    assert not Purchase.objects.exists()
    assert Wallet.objects.get(user=buyer).balance == Decimal("1000.00")


def test_buying_more_than_the_wallet_holds_shows_the_credit_error(buyer, dataset):
    Dataset.objects.filter(pk=dataset.pk).update(price_per_epsilon=Decimal("500"))

    response = logged_in(buyer).post(reverse("dataset-buy", args=[dataset.pk]), {"epsilon": "3"})

    page = response.content.decode()
    assert response.status_code == 409
    assert "Not enough credits" in page
    assert "1500.00 credits" in page  # the quote for what was typed
    assert not Purchase.objects.exists()


def test_buying_a_malformed_epsilon_names_the_field(buyer, dataset):
    response = logged_in(buyer).post(reverse("dataset-buy", args=[dataset.pk]), {"epsilon": "lots"})

    assert response.status_code == 400
    assert 'id="id_epsilon_error"' in response.content.decode()
    assert not Purchase.objects.exists()


def test_buying_needs_a_login(dataset):
    response = Client().post(reverse("dataset-buy", args=[dataset.pk]), {"epsilon": "1"})

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert not Purchase.objects.exists()


def test_buying_another_users_draft_is_404(owner, buyer):
    draft = DatasetFactory(owner=owner, status=Dataset.Status.DRAFT)

    response = logged_in(buyer).post(reverse("dataset-buy", args=[draft.pk]), {"epsilon": "1"})

    assert response.status_code == 404
    assert not Purchase.objects.exists()


# Publishing


def test_owner_publishes_a_draft_from_its_page(owner):
    draft = DatasetFactory(owner=owner, status=Dataset.Status.DRAFT)
    client = logged_in(owner)
    assert "Publish</button>" in client.get(reverse("dataset-detail", args=[draft.pk])).content.decode()

    response = client.post(reverse("dataset-publish", args=[draft.pk]))

    assert response.status_code == 302
    draft.refresh_from_db()
    assert draft.status == Dataset.Status.PUBLISHED


def test_outsider_cannot_publish_someone_elses_draft(owner, outsider):
    draft = DatasetFactory(owner=owner, status=Dataset.Status.DRAFT)

    response = logged_in(outsider).post(reverse("dataset-publish", args=[draft.pk]))

    assert response.status_code == 404
    draft.refresh_from_db()
    assert draft.status == Dataset.Status.DRAFT


# New dataset


def test_new_dataset_form_creates_a_draft_with_its_columns_from_a_csv(owner, private_storage):
    upload = SimpleUploadedFile("visits.csv", CSV, content_type="text/csv")

    response = logged_in(owner).post(reverse("dataset-new"), new_dataset_post(SCHEMA, upload=upload))

    dataset = Dataset.objects.get(title="Clinic visits")
    assert response.status_code == 302
    assert response["Location"] == reverse("dataset-detail", args=[dataset.pk])
    assert dataset.owner == owner
    assert dataset.status == Dataset.Status.DRAFT
    assert dataset.row_count == 3
    assert dataset.price_per_epsilon == Decimal("12.50")
    columns = list(dataset.columns.values("name", "kind", "lower", "upper", "categories", "is_label"))
    assert columns == [
        {"name": "age", "kind": "numeric", "lower": 0.0, "upper": 120.0, "categories": [], "is_label": False},
        {
            "name": "group",
            "kind": "categorical",
            "lower": None,
            "upper": None,
            "categories": ["a", "b"],
            "is_label": False,
        },
        {"name": "smoker", "kind": "boolean", "lower": None, "upper": None, "categories": [], "is_label": True},
    ]
    assert len(stored_files(private_storage)) == 1


def dataset_files(root) -> list:
    """Stored dataset files; a file the page keeps for the next try lives apart, under pending/."""
    return [p for p in stored_files(root) if p.relative_to(root).parts[0] != "pending"]


def test_a_bad_upload_shows_the_error_beside_the_column_and_creates_nothing(owner, private_storage):
    upload = SimpleUploadedFile("visits.csv", CSV_UNDECLARED_CATEGORY, content_type="text/csv")

    response = logged_in(owner).post(reverse("dataset-new"), new_dataset_post(SCHEMA, upload=upload))

    page = response.content.decode()
    assert response.status_code == 400
    column_error = page.split('id="id_columns-1-categories_error"', 1)[1].split("</small>", 1)[0]
    assert "not among the declared categories" in column_error
    assert "zebra" in column_error
    file_error = page.split('id="id_file_error"', 1)[1].split("</small>", 1)[0]
    assert "zebra" not in file_error and "see the errors beside them" in file_error
    assert 'value="Clinic visits"' in page  # what the user typed is kept
    assert 'value="a, b"' in page
    assert not Dataset.objects.exists()
    assert not Column.objects.exists()
    assert dataset_files(private_storage) == []


def test_a_numeric_column_without_bounds_is_rejected_by_the_api_rules_beside_that_row(owner, private_storage):
    schema = [{"name": "age", "kind": "numeric", "lower": "0"}]
    upload = SimpleUploadedFile("visits.csv", CSV, content_type="text/csv")

    response = logged_in(owner).post(reverse("dataset-new"), new_dataset_post(schema, upload=upload))

    page = response.content.decode()
    assert response.status_code == 400
    assert 'id="id_columns-0-upper_error"' in page
    assert "A numeric column needs declared bounds" in page
    assert not Dataset.objects.exists()
    assert dataset_files(private_storage) == []


def test_repeated_column_names_are_reported_for_the_column_list(owner):
    schema = [SCHEMA[0], {**SCHEMA[0]}]
    upload = SimpleUploadedFile("visits.csv", CSV, content_type="text/csv")

    response = logged_in(owner).post(reverse("dataset-new"), new_dataset_post(schema, upload=upload))

    assert response.status_code == 400
    assert "Column names must be unique; repeated: age." in response.content.decode()
    assert not Dataset.objects.exists()


def test_a_form_with_no_columns_says_the_list_is_empty(owner):
    upload = SimpleUploadedFile("visits.csv", CSV, content_type="text/csv")

    response = logged_in(owner).post(reverse("dataset-new"), new_dataset_post([], upload=upload))

    assert response.status_code == 400
    assert 'id="columns-errors"' in response.content.decode()
    assert not Dataset.objects.exists()


def test_submitting_without_a_file_names_the_file_field(owner):
    response = logged_in(owner).post(reverse("dataset-new"), new_dataset_post(SCHEMA))

    assert response.status_code == 400
    assert 'id="id_file_error"' in response.content.decode()
    assert not Dataset.objects.exists()


def test_add_column_re_renders_with_one_more_row_keeping_what_was_typed(owner):
    data = new_dataset_post(SCHEMA, add_column="1")

    response = logged_in(owner).post(reverse("dataset-new"), data)

    page = response.content.decode()
    assert response.status_code == 200
    assert 'name="columns-TOTAL_FORMS" value="5"' in page
    assert 'name="columns-4-name"' in page
    assert 'name="columns-0-name" value="age"' in page
    assert 'value="Clinic visits"' in page
    assert "field-error" not in page
    assert not Dataset.objects.exists()


def test_a_buyer_without_the_owner_role_cannot_open_the_new_dataset_form(buyer):
    assert logged_in(buyer).get(reverse("dataset-new")).status_code == 403


# Owner and buyer lists


def test_my_datasets_shows_status_budget_and_earnings(owner, buyer, outsider):
    mine = DatasetFactory(owner=owner, title="Earning data")
    DatasetFactory(owner=outsider, title="Not mine")
    purchase_create(buyer=buyer, dataset_id=mine.pk, epsilon=Decimal("2"))
    purchase_create(buyer=outsider, dataset_id=mine.pk, epsilon=Decimal("0.5"))

    page = logged_in(owner).get(reverse("my-datasets")).content.decode()

    assert "Earning data" in page
    assert "Not mine" not in page
    assert "25.00" in page  # 20.00 + 5.00 credits earned
    assert '<td class="num">2.5</td>' in page  # epsilon sold
    assert '<td class="num">7.5</td>' in page  # epsilon available


def test_my_purchases_shows_spent_and_remaining_from_the_ledger(buyer, dataset):
    purchase = purchase_create(buyer=buyer, dataset_id=dataset.pk, epsilon=Decimal("3"))
    # A pure release of 0.75: its rows carry its rho, 0.75**2 / 2, as compute.budget.ledger_row writes it.
    for kind in (LedgerEntry.Kind.RESERVE, LedgerEntry.Kind.COMMIT):
        LedgerEntry.objects.create(
            dataset=dataset, purchase=purchase, kind=kind, epsilon=Decimal("0.75"), rho=Decimal("0.28125")
        )

    page = logged_in(buyer).get(reverse("my-purchases")).content.decode()

    assert dataset.title in page
    assert '<td class="num">3</td>' in page
    assert '<td class="num">30.00</td>' in page
    assert '<td class="num">0.75</td>' in page  # spent
    assert '<td class="num">2.25</td>' in page  # remaining
    assert '<td class="num share-used" data-value="0.25">25%</td>' in page  # 0.75 of 3, by basic composition


def test_my_purchases_never_lists_another_buyers_purchase(buyer, outsider, dataset):
    purchase_create(buyer=outsider, dataset_id=dataset.pk, epsilon=Decimal("1"))

    page = logged_in(buyer).get(reverse("my-purchases")).content.decode()

    assert dataset.title not in page


def test_another_users_purchase_page_is_404(buyer, outsider, dataset):
    purchase = purchase_create(buyer=outsider, dataset_id=dataset.pk, epsilon=Decimal("1"))

    assert logged_in(buyer).get(reverse("purchase-detail", args=[purchase.pk])).status_code == 404
    assert logged_in(outsider).get(reverse("purchase-detail", args=[purchase.pk])).status_code == 200


def test_buyer_pages_need_a_login():
    for name in ("my-purchases", "my-datasets", "dataset-new"):
        response = Client().get(reverse(name))
        assert response.status_code == 302, name
        assert response["Location"].startswith(reverse("login")), name


# Privacy and assets


def test_no_page_contains_the_stored_file_path(owner, buyer, private_storage):
    upload = SimpleUploadedFile("visits.csv", CSV, content_type="text/csv")
    logged_in(owner).post(reverse("dataset-new"), new_dataset_post(SCHEMA, upload=upload))
    dataset = Dataset.objects.get()
    owner_client = logged_in(owner)
    owner_client.post(reverse("dataset-publish", args=[dataset.pk]))
    buyer_client = logged_in(buyer)
    buyer_client.post(reverse("dataset-buy", args=[dataset.pk]), {"epsilon": "1"})
    purchase = Purchase.objects.get()
    stored_name = dataset.file_path.rsplit("/", 1)[-1]
    assert stored_name

    pages = [
        owner_client.get(reverse("catalogue")),
        owner_client.get(reverse("dataset-detail", args=[dataset.pk])),
        owner_client.get(reverse("my-datasets")),
        buyer_client.get(reverse("dataset-detail", args=[dataset.pk])),
        buyer_client.get(reverse("my-purchases")),
        buyer_client.get(reverse("purchase-detail", args=[purchase.pk])),
        buyer_client.get(reverse("wallet")),
    ]
    for response in pages:
        assert response.status_code == 200
        body = response.content.decode()
        assert stored_name not in body
        assert dataset.file_sha256 not in body
        assert "secret_notes" not in body  # an undeclared column of the raw file


def test_pages_load_vendored_assets_and_no_cdn(dataset):
    page = Client().get(reverse("catalogue")).content.decode()

    assert "/static/vendor/pico/pico.min.css" in page
    assert "/static/vendor/htmx/htmx.min.js" in page
    assert "/static/css/cloakroom.css" in page
    assert "cdn" not in page.lower()
    assert 'name="viewport"' in page
    for asset in ("vendor/pico/pico.min.css", "vendor/htmx/htmx.min.js", "css/cloakroom.css"):
        assert finders.find(asset), asset


def test_every_catalogue_control_has_a_label():
    page = Client().get(reverse("catalogue")).content.decode()

    assert '<label for="id_search">' in page
    assert '<label for="id_mode">' in page


def test_buyer_credit_entries_record_the_purchase_made_on_the_page(buyer, dataset):
    logged_in(buyer).post(reverse("dataset-buy", args=[dataset.pk]), {"epsilon": "2"})

    entry = CreditEntry.objects.get(wallet__user=buyer, kind=CreditEntry.Kind.PURCHASE)
    assert entry.amount == Decimal("-20.00")
    assert entry.purchase == Purchase.objects.get()


def test_buying_without_the_buyer_role_explains_why(dataset):
    other_owner = UserFactory(username="olga", is_owner=True)

    response = logged_in(other_owner).post(reverse("dataset-buy", args=[dataset.pk]), {"epsilon": "1"})

    assert response.status_code == 403
    assert "Only accounts with the buyer role can buy budget." in response.content.decode()
    assert not Purchase.objects.exists()
