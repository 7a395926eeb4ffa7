"""Changing the password on its page: the old one is asked for, a mistake is shown beside its field,
and the new password works while the old one stops working."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a brand new passphrase 2027"


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_user_changes_their_password_and_stays_logged_in(buyer):
    client = logged_in(buyer)
    page = client.get(reverse("password-change")).content.decode()
    for field in ("old_password", "new_password1", "new_password2"):
        assert f'<label for="id_{field}">' in page

    response = client.post(
        reverse("password-change"),
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )

    assert response.status_code == 302 and response["Location"] == reverse("password-change-done")
    assert client.get(reverse("wallet")).status_code == 200  # still logged in here
    buyer.refresh_from_db()
    assert buyer.check_password(NEW_PASSWORD) and not buyer.check_password(PASSWORD)


def test_a_wrong_old_password_is_shown_beside_its_field(buyer):
    response = logged_in(buyer).post(
        reverse("password-change"),
        {"old_password": "not it", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    page = response.content.decode()

    assert response.status_code == 400
    assert 'id="id_old_password_error"' in page and "incorrectly" in page
    buyer.refresh_from_db()
    assert buyer.check_password(PASSWORD)


def test_the_password_page_needs_a_login_and_is_linked_for_users(buyer):
    response = Client().get(reverse("password-change"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert f'href="{reverse("password-change")}"' in logged_in(buyer).get(reverse("catalogue")).content.decode()
