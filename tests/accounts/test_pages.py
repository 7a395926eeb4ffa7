"""The account pages: sign-up, login and logout, API keys, wallet."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import ApiKey, CreditEntry, User, Wallet
from accounts.services import USERNAME_UNAVAILABLE, api_key_authenticate, api_key_create, hash_api_key
from marketplace.services import purchase_create
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "plum orchard lantern 93"


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def signup_data(**overrides) -> dict:
    data = {
        "username": "dora",
        "email": "dora@example.org",
        "password1": NEW_PASSWORD,
        "password2": NEW_PASSWORD,
        "roles": ["buyer"],
    }
    data.update(overrides)
    return data


def test_signup_via_the_web_creates_a_user_with_a_wallet_and_logs_in(settings):
    settings.CLOAKROOM_SIGNUP_CREDITS = Decimal("50.00")
    client = Client()

    response = client.post(reverse("signup"), signup_data(roles=["owner", "buyer"]))

    assert response.status_code == 302
    user = User.objects.get(username="dora")
    assert user.is_owner and user.is_buyer
    assert user.check_password(NEW_PASSWORD)
    assert Wallet.objects.get(user=user).balance == Decimal("50.00")
    assert CreditEntry.objects.filter(wallet__user=user, kind=CreditEntry.Kind.SIGNUP_GRANT).count() == 1
    assert int(client.session["_auth_user_id"]) == user.pk


def test_signup_with_two_different_passwords_shows_the_error_and_creates_nobody():
    response = Client().post(reverse("signup"), signup_data(password2="something else 11"))

    page = response.content.decode()
    assert response.status_code == 400
    assert 'id="id_password2_error"' in page
    assert "The two passwords differ." in page
    assert 'value="dora"' in page
    assert not User.objects.filter(username="dora").exists()


def test_signup_with_a_taken_username_shows_the_error_beside_the_username(buyer):
    response = Client().post(reverse("signup"), signup_data(username="BOB"))

    page = response.content.decode()
    assert response.status_code == 400
    assert USERNAME_UNAVAILABLE in page.split('id="id_username_error"', 1)[1]
    assert not User.objects.filter(username="BOB").exists()


def test_signup_with_a_weak_password_shows_the_validators_reason_beside_the_password():
    response = Client().post(reverse("signup"), signup_data(password1="12345678", password2="12345678"))

    page = response.content.decode()
    assert response.status_code == 400
    assert "This password is too common." in page.split('id="id_password1_error"', 1)[1]
    assert not User.objects.filter(username="dora").exists()


def test_signup_without_a_role_asks_for_one():
    response = Client().post(reverse("signup"), signup_data(roles=[]))

    assert response.status_code == 400
    assert "Choose at least one role." in response.content.decode()
    assert not User.objects.filter(username="dora").exists()


def test_signup_form_labels_every_control():
    page = Client().get(reverse("signup")).content.decode()

    for control in ("id_username", "id_email", "id_password1", "id_password2", "id_roles_0", "id_roles_1"):
        assert f'<label for="{control}">' in page, control


def test_login_page_logs_a_user_in(buyer):
    client = Client()

    response = client.post(reverse("login"), {"username": "bob", "password": PASSWORD})

    assert response.status_code == 302
    assert int(client.session["_auth_user_id"]) == buyer.pk


def test_login_with_a_wrong_password_stays_logged_out(buyer):
    client = Client()

    response = client.post(reverse("login"), {"username": "bob", "password": "wrong"})

    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


def test_logout_is_a_post_form_that_ends_the_session(buyer):
    client = logged_in(buyer)
    page = client.get(reverse("catalogue")).content.decode()
    assert f'action="{reverse("logout")}"' in page

    response = client.post(reverse("logout"))

    assert response.status_code == 302
    assert "_auth_user_id" not in client.session


def test_api_key_page_shows_the_key_once_and_stores_only_a_hash(buyer):
    client = logged_in(buyer)

    response = client.post(reverse("account-api-keys"), {"name": "laptop"})

    page = response.content.decode()
    assert response.status_code == 200
    key = re.search(r'id="new-key" class="new-key" type="text" value="([^"]+)"', page).group(1)
    assert "will not be shown again" in page
    row = ApiKey.objects.get(user=buyer, name="laptop")
    assert row.hashed_key == hash_api_key(key)
    assert key not in {row.prefix, row.hashed_key, row.name}
    assert api_key_authenticate(key=key) == buyer
    later = client.get(reverse("account-api-keys")).content.decode()
    assert key not in later
    assert row.hashed_key not in later
    assert f"ck_{row.prefix}" in later
    assert "no-store" in response["Cache-Control"]


def test_creating_a_key_without_a_name_names_the_field(buyer):
    response = logged_in(buyer).post(reverse("account-api-keys"), {"name": "  "})

    assert response.status_code == 400
    assert 'id="id_name_error"' in response.content.decode()
    assert not ApiKey.objects.exists()


def test_revoking_a_key_from_the_page_stops_it_working(buyer):
    row, key = api_key_create(user=buyer, name="old script")

    response = logged_in(buyer).post(reverse("account-api-key-revoke", args=[row.pk]))

    assert response.status_code == 302
    row.refresh_from_db()
    assert row.revoked_at is not None
    assert api_key_authenticate(key=key) is None


def test_revoking_another_users_key_is_404_and_leaves_it_active(buyer, outsider):
    row, key = api_key_create(user=outsider, name="theirs")

    response = logged_in(buyer).post(reverse("account-api-key-revoke", args=[row.pk]))

    assert response.status_code == 404
    row.refresh_from_db()
    assert row.revoked_at is None


def test_key_page_never_lists_another_users_keys(buyer, outsider):
    api_key_create(user=outsider, name="charlies-secret-box")

    page = logged_in(buyer).get(reverse("account-api-keys")).content.decode()

    assert "charlies-secret-box" not in page


def test_wallet_page_shows_the_balance_and_the_credit_history(buyer, dataset):
    purchase_create(buyer=buyer, dataset_id=dataset.pk, epsilon=Decimal("2"))

    page = logged_in(buyer).get(reverse("wallet")).content.decode()

    assert "980.00 credits" in page
    assert '<td class="num">-20.00</td>' in page
    assert '<td class="num">+1000.00</td>' in page
    assert dataset.title in page


def test_account_pages_need_a_login():
    for name in ("account-api-keys", "wallet"):
        response = Client().get(reverse(name))
        assert response.status_code == 302, name
        assert response["Location"].startswith(reverse("login")), name
