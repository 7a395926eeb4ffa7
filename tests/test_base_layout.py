"""The layout every page shares: a site icon that exists (no 404 for a favicon on every page, the
admin's included), and the administration linked from the header for staff, not only the footer."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from django.contrib.staticfiles import finders
from django.template.loader import get_template
from django.test import Client

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

ICON = re.compile(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">')


def icon_href(html: str) -> str:
    found = ICON.findall(html)
    assert len(found) == 1, "a page must link exactly one site icon"
    return found[0]


def header(html: str) -> str:
    return html.split('<header class="site-header">', 1)[1].split("</header>", 1)[0]


@pytest.mark.parametrize("path", ["/", "/accounts/login/", "/privacy/", "/no-such-page/"])
def test_every_page_links_the_site_icon_and_the_file_is_an_svg(path):
    response = Client().get(path)
    assert response.status_code in (200, 404)
    href = icon_href(response.content.decode())
    assert href == "/static/img/favicon.svg"
    path_on_disk = finders.find("img/favicon.svg")
    assert path_on_disk, "static/img/favicon.svg is missing"
    assert ET.parse(path_on_disk).getroot().tag == "{http://www.w3.org/2000/svg}svg"


def test_the_admin_pages_link_the_same_icon():
    response = Client().get("/admin/login/")
    assert response.status_code == 200
    html = response.content.decode()
    assert icon_href(html) == "/static/img/favicon.svg"
    # Django's own admin layout is kept: its branding and stylesheet are still there.
    assert "admin/css/base.css" in html and 'id="site-name"' in html


def test_the_static_server_error_page_links_the_icon_by_its_plain_path():
    source = get_template("500.html").template.source
    assert "{%" not in source, "500.html must render even when the template machinery is what broke"
    assert icon_href(source) == "/static/img/favicon.svg"


def test_staff_see_the_administration_in_the_header():
    staff = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(staff)
    nav = header(client.get("/").content.decode())
    assert '<a href="/admin/" class="nav-admin">Admin</a>' in nav


@pytest.mark.parametrize("roles", [{"is_buyer": True}, {"is_owner": True}])
def test_other_accounts_and_visitors_see_no_admin_link_in_the_header(roles):
    client = Client()
    assert "/admin/" not in header(client.get("/").content.decode())
    client.force_login(UserFactory(**roles))
    assert "/admin/" not in header(client.get("/").content.decode())
