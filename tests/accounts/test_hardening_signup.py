"""Issue 11, defect 9: sign-up is no cheap oracle for which usernames exist.

Usernames are public handles (the catalogue names owners), so a complete, valid sign-up for a name
already taken must be refused, saying so. But (accounts/services.py, beside USERNAME_UNAVAILABLE):
a request with any other error answers the same whether its name is taken or not; a taken name and
a reserved one get the same answer; and an email address is never said to be registered.
"""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from accounts import services
from accounts.models import User
from accounts.services import USERNAME_UNAVAILABLE

pytestmark = pytest.mark.django_db

API = "/api/v1/auth/signup/"
PASSWORD = "a long and unusual passphrase 93"
FRESH = "dora"


def api_body(username: str, **overrides) -> dict:
    body = {"username": username, "email": "someone@example.org", "password": PASSWORD, "roles": ["buyer"]}
    body.update(overrides)
    return body


def web_body(username: str, **overrides) -> dict:
    body = {
        "username": username,
        "email": "someone@example.org",
        "password1": PASSWORD,
        "password2": PASSWORD,
        "roles": ["buyer"],
    }
    body.update(overrides)
    return body


# Requests with something else wrong: none may say anything about the name.
INVALID = {
    "weak-password": {"password": "password123"},
    "numeric-password": {"password": "12345678901234"},
    "no-role": {"roles": []},
    "unknown-role": {"roles": ["admin"]},
    "bad-email": {"email": "not-an-address"},
    "no-email": {"email": ""},
}
WEB_INVALID = {
    "weak-password": {"password1": "password123", "password2": "password123"},
    "passwords-differ": {"password2": "another long passphrase 77"},
    "no-role": {"roles": []},
    "bad-email": {"email": "not-an-address"},
}


@pytest.mark.parametrize("overrides", list(INVALID.values()), ids=list(INVALID))
def test_an_invalid_api_signup_answers_the_same_for_a_taken_and_a_fresh_username(anon, buyer, overrides):
    taken = anon.post(API, api_body(buyer.username, **overrides), format="json")
    fresh = anon.post(API, api_body(FRESH, **overrides), format="json")
    assert taken.status_code == fresh.status_code == 400
    assert taken.json() == fresh.json()
    assert "username" not in taken.json()["error"]["fields"]
    assert not User.objects.filter(username=FRESH).exists()


def _errors(page: bytes) -> list[str]:
    return re.findall(r'<small class="field-error" id="(\w+)">(.*?)</small>', page.decode(), re.S)


@pytest.mark.parametrize("overrides", list(WEB_INVALID.values()), ids=list(WEB_INVALID))
def test_an_invalid_web_signup_answers_the_same_for_a_taken_and_a_fresh_username(buyer, overrides):
    taken = Client().post(reverse("signup"), web_body(buyer.username, **overrides))
    fresh = Client().post(reverse("signup"), web_body(FRESH, **overrides))
    assert taken.status_code == fresh.status_code == 400
    assert _errors(taken.content) == _errors(fresh.content) != []
    assert "id_username_error" not in taken.content.decode()


@pytest.mark.parametrize("username", ["bob", "BOB", "Bob"])
def test_a_complete_api_signup_for_a_taken_name_in_any_case_is_refused_as_unavailable(anon, buyer, username):
    response = anon.post(API, api_body(username), format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error == {"code": "invalid", "message": USERNAME_UNAVAILABLE, "fields": {"username": [USERNAME_UNAVAILABLE]}}
    assert "exist" not in response.content.decode()
    assert User.objects.filter(username__iexact="bob").count() == 1


@pytest.mark.parametrize("username", ["admin", "Administrator", "ROOT", "support", "cloakroom"])
def test_a_reserved_name_gets_the_very_answer_a_taken_one_gets(anon, buyer, username):
    reserved = anon.post(API, api_body(username), format="json")
    taken = anon.post(API, api_body(buyer.username), format="json")
    assert reserved.status_code == taken.status_code == 400
    assert reserved.json() == taken.json()
    assert not User.objects.filter(username__iexact=username).exists()


def test_a_name_taken_between_the_check_and_the_insert_gets_the_same_answer(anon, buyer, monkeypatch):
    monkeypatch.setattr(services, "username_available", lambda username: True)
    response = anon.post(API, api_body(buyer.username), format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"username": [USERNAME_UNAVAILABLE]}


def test_the_web_form_shows_the_same_sentence_beside_the_username_for_taken_and_reserved(buyer):
    for username in (buyer.username.upper(), "Admin"):
        response = Client().post(reverse("signup"), web_body(username))
        assert response.status_code == 400
        assert _errors(response.content) == [("id_username_error", USERNAME_UNAVAILABLE)]
        assert "exists" not in response.content.decode()


def test_an_email_address_already_in_use_is_never_reported(anon, buyer):
    response = anon.post(API, api_body(FRESH, email=buyer.email), format="json")
    assert response.status_code == 201, response.content
    web = Client().post(reverse("signup"), web_body("edgar", email=buyer.email))
    assert web.status_code == 302


def test_the_sign_up_page_says_usernames_are_public():
    page = Client().get(reverse("signup")).content.decode()
    assert 'id="id_username_helptext"' in page and "Other users see it" in page


def test_the_api_documents_the_approach():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    description = schema["paths"]["/api/v1/auth/signup/"]["post"]["description"]
    assert "taken or reserved" in description and "every other field is valid" in description
