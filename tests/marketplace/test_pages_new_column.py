"""The new-dataset page's "Add column" without a reload (htmx): one blank row, numbered after the
rows the form has, and the formset's row count swapped into the management form."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_new_row_is_numbered_after_the_existing_ones_and_raises_the_row_count(owner):
    response = logged_in(owner).get(reverse("dataset-new-column"), {"columns-TOTAL_FORMS": "3"})
    page = response.content.decode()

    assert response.status_code == 200
    assert '<fieldset class="column-row" id="column-row-3">' in page
    assert "<legend>Column 4</legend>" in page
    for name in ("name", "kind", "lower", "upper", "categories", "is_label"):
        assert f'name="columns-3-{name}"' in page
        assert f'<label for="id_columns-3-{name}"' in page
    assert 'name="columns-3-name"' in page and "autofocus" in page
    assert (
        '<input type="hidden" name="columns-TOTAL_FORMS" value="4" id="id_columns-TOTAL_FORMS" hx-swap-oob="true">'
        in page
    )


@pytest.mark.parametrize("total", ["", "three", "-1", "500"])
def test_a_bad_row_count_is_a_400_naming_the_field(owner, total):
    response = logged_in(owner).get(reverse("dataset-new-column"), {"columns-TOTAL_FORMS": total})

    assert response.status_code == 400
    assert response.content.decode().startswith("columns-TOTAL_FORMS: ")


def test_only_owners_may_add_columns(buyer):
    assert logged_in(buyer).get(reverse("dataset-new-column"), {"columns-TOTAL_FORMS": "3"}).status_code == 403
    anonymous = Client().get(reverse("dataset-new-column"), {"columns-TOTAL_FORMS": "3"})
    assert anonymous.status_code == 302


def test_the_page_wires_the_add_button_to_the_fragment_and_keeps_the_no_script_post(owner):
    page = logged_in(owner).get(reverse("dataset-new")).content.decode()

    assert '<div id="column-rows">' in page
    assert f'hx-get="{reverse("dataset-new-column")}"' in page
    assert 'hx-include="#id_columns-TOTAL_FORMS"' in page
    assert 'name="add_column" value="1"' in page  # without JavaScript the button posts the form
    assert page.count('class="column-row"') == 3
