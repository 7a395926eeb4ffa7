"""The privacy page: public, plain, linked from every page's layout."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db


def text_of(html: str) -> str:
    """The page's words, tags removed and whitespace collapsed, for matching sentences across lines."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_privacy_page_is_at_slash_privacy():
    assert reverse("privacy") == "/privacy/"


def test_an_anonymous_visitor_reads_the_privacy_page():
    response = Client().get(reverse("privacy"))

    assert response.status_code == 200
    assert "privacy.html" in [t.name for t in response.templates]
    assert "base.html" in [t.name for t in response.templates]
    assert "<title>Privacy · Cloakroom</title>" in response.content.decode()


def test_the_page_states_both_neighbouring_relations():
    words = text_of(Client().get(reverse("privacy")).content.decode())

    assert "DP mode" in words and "adding or removing one row" in words
    assert "HE mode" in words and "one row replaced in place" in words
    assert "row count is private unless the owner marks it public" in words


def test_the_page_summarises_budget_and_encryption_and_points_at_the_full_text():
    words = text_of(Client().get(reverse("privacy")).content.decode())

    assert "all buyers together" in words
    assert "append-only ledger" in words
    assert "same stored answer at no cost" in words
    assert "never the secret key" in words
    assert "What it does not protect against" in words
    assert "docs/PRIVACY.md" in words


def test_the_page_is_headings_and_text_not_layout_tables():
    page = Client().get(reverse("privacy")).content.decode()

    assert page.count("<h1") == 1
    assert page.count("<h2") >= 4
    assert "<table" not in page


def test_the_privacy_page_marks_its_own_footer_link_as_current():
    page = Client().get(reverse("privacy")).content.decode()

    assert re.search(r'<a href="/privacy/"\s+aria-current="page">Privacy</a>', page)


@pytest.mark.parametrize("name", ["catalogue", "login", "signup"])
def test_the_layout_links_to_the_privacy_page_for_anonymous_visitors(name):
    page = Client().get(reverse(name)).content.decode()

    assert 'href="/privacy/"' in page


@pytest.mark.parametrize("name", ["catalogue", "my-purchases", "my-jobs", "wallet"])
def test_the_layout_links_to_the_privacy_page_for_a_signed_in_buyer(buyer, name):
    response = logged_in(buyer).get(reverse(name))

    assert response.status_code == 200
    assert 'href="/privacy/"' in response.content.decode()


def test_the_layout_links_to_the_privacy_page_for_an_owner(owner):
    response = logged_in(owner).get(reverse("owner-dashboard"))

    assert response.status_code == 200
    assert 'href="/privacy/"' in response.content.decode()


def test_the_privacy_page_only_answers_reads():
    assert Client().post(reverse("privacy")).status_code == 405
