"""Issue 11, defect 9: the pages work in Chromium under the Content-Security-Policy, with no violation.

A live gunicorn (production settings, hashed static files) and Debian's Chromium: the public pages,
a buyer's dataset page whose estimate htmx redraws as the epsilon is typed, the owner's new-dataset
page whose "Add column" and choice of a file are htmx requests, the Swagger UI page (vendored drf-spectacular-sidecar
assets, an inline start-up script allowed by its hash), and Django admin. Violations are collected
from the ``securitypolicyviolation`` event (an init script, which CSP does not govern) and from the
console; a deliberately inline script proves the collector sees them.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import requests

from accounts.models import User
from tests.integration.live import ProcessPool, live_database_url, run_manage, site_env, start_web

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
CHROMIUM = "/usr/bin/chromium"
PASSWORD = "a long and unguessable passphrase 1842"
TIMEOUT = 30
WATCH = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} (${e.sourceFile}:${e.lineNumber})`);
});
"""


@pytest.fixture(scope="module")
def site(django_db_setup, django_db_blocker, tmp_path_factory):
    root = tmp_path_factory.mktemp("csp")
    with django_db_blocker.unblock():
        database_url = live_database_url()
    env = site_env(root, f"csp-{uuid.uuid4().hex[:8]}", DATABASE_URL=database_url, CLOAKROOM_CACHE_URL="locmem://")
    collected = run_manage(["collectstatic", "--noinput", "--verbosity", "0"], env)
    assert collected.returncode == 0, collected.stdout + collected.stderr
    pool = ProcessPool(log_dir=tmp_path_factory.mktemp("csp-logs"))
    try:
        yield start_web(pool, env)
    finally:
        pool.stop_all()
        print(pool.logs())


def _signup(url: str, username: str, roles: list[str]) -> dict[str, str]:
    body = {"username": username, "email": f"{username}@example.org", "password": PASSWORD, "roles": roles}
    assert requests.post(f"{url}/api/v1/auth/signup/", json=body, timeout=TIMEOUT).status_code == 201
    key = requests.post(f"{url}/api/v1/api-keys/", json={"name": "csp"}, auth=(username, PASSWORD), timeout=TIMEOUT)
    return {"Authorization": f"Bearer {key.json()['key']}"}


def _scene(url: str) -> int:
    """An owner's published dataset and a buyer's purchase of it, made through the API."""
    owner = _signup(url, "olga", ["owner"])
    buyer = _signup(url, "bram", ["buyer"])
    metadata = {
        "title": "Clinic visits",
        "epsilon_cap": "5",
        "price_per_epsilon": "8",
        "columns": [
            {"name": "age", "kind": "numeric", "lower": 0, "upper": 120},
            {"name": "region", "kind": "categorical", "categories": ["north", "south"]},
        ],
    }
    csv_text = "age,region\n" + "".join(f"{20 + i % 50},{'north' if i % 2 else 'south'}\n" for i in range(60))
    created = requests.post(
        f"{url}/api/v1/datasets/",
        headers=owner,
        data={"metadata": json.dumps(metadata)},
        files={"file": ("data.csv", csv_text.encode(), "text/csv")},
        timeout=TIMEOUT,
    )
    assert created.status_code == 201, created.text
    dataset_id = created.json()["id"]
    assert requests.post(f"{url}/api/v1/datasets/{dataset_id}/publish/", headers=owner, timeout=TIMEOUT).ok
    bought = requests.post(
        f"{url}/api/v1/purchases/", headers=buyer, json={"dataset": dataset_id, "epsilon": "2"}, timeout=TIMEOUT
    )
    assert bought.status_code == 201, bought.text
    return dataset_id


class Pages:
    """A Chromium context whose pages report every CSP violation they see."""

    def __init__(self, browser, url: str, shots: Path):
        self.context = browser.new_context(base_url=url, viewport={"width": 1280, "height": 800})
        self.context.set_default_timeout(15_000)
        self.context.add_init_script(WATCH)
        self.console: list[str] = []
        self.page = self.context.new_page()
        self.page.on(
            "console",
            lambda m: self.console.append(m.text) if "Content Security Policy" in m.text else None,
        )
        self.shots = shots

    def violations(self) -> list[str]:
        return self.page.evaluate("window.__csp") + self.console

    def visit(self, path: str) -> None:
        response = self.page.goto(path)
        assert response is not None and response.status < 400, (path, response and response.status)
        assert "Content-Security-Policy" in {k.title(): v for k, v in response.headers.items()}, path

    def log_in(self, path: str, username: str) -> None:
        self.visit(path)
        self.page.locator("input[name=username]").fill(username)
        self.page.locator("input[name=password]").fill(PASSWORD)
        self.page.locator("input[name=password]").press("Enter")
        self.page.wait_for_load_state("networkidle")


def test_the_pages_htmx_swagger_and_admin_run_under_the_policy_without_a_violation(site, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/ensure_browser.sh`.")
    dataset_id = _scene(site)
    User.objects.create_superuser(username="root-admin", email="root@example.org", password=PASSWORD)
    from playwright.sync_api import sync_playwright

    seen: dict[str, list[str]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-background-networking"]
        )
        try:
            # The collector works: an inline script added to a page is blocked and reported.
            probe = Pages(browser, site, tmp_path)
            probe.visit("/privacy/")
            probe.page.evaluate(
                "() => { const s = document.createElement('script'); s.textContent = 'window.ran = 1';"
                " document.body.appendChild(s); }"
            )
            probe.page.wait_for_timeout(300)
            assert probe.page.evaluate("window.ran") is None
            assert any("script-src" in v for v in probe.violations()), probe.violations()

            anon = Pages(browser, site, tmp_path)
            for path in ("/", "/accounts/login/", "/accounts/signup/", "/privacy/", f"/datasets/{dataset_id}/"):
                anon.visit(path)
                seen[path] = anon.violations()

            # Swagger UI: its vendored bundle renders the operations from the schema it fetches.
            anon.visit("/api/docs/")
            anon.page.locator(".swagger-ui .info .title").wait_for()
            assert "Cloakroom API" in anon.page.locator(".swagger-ui .info .title").inner_text()
            anon.page.locator(".swagger-ui .opblock").first.wait_for()
            assert anon.page.locator(".swagger-ui .opblock").count() > 10
            seen["/api/docs/"] = anon.violations()

            # The buyer's estimate is redrawn by htmx as the epsilon is typed.
            buyer = Pages(browser, site, tmp_path)
            buyer.log_in("/accounts/login/", "bram")
            buyer.visit(f"/datasets/{dataset_id}/")
            panel = buyer.page.locator("#estimate-panel")
            panel.locator(".price").wait_for()
            before = panel.inner_text()
            buyer.page.locator("#query-form").get_by_label("Epsilon (ε) to spend").fill("1")
            buyer.page.wait_for_function(
                "before => document.querySelector('#estimate-panel').innerText !== before", arg=before
            )
            assert "8.00 credits" in panel.inner_text()
            buyer.visit("/jobs/")
            seen["buyer pages"] = buyer.violations()

            # The owner's "Add column" is an htmx request that appends a row.
            owner = Pages(browser, site, tmp_path)
            owner.log_in("/accounts/login/", "olga")
            owner.visit("/datasets/new/")
            rows = owner.page.locator(".column-row").count()
            owner.page.get_by_role("button", name="Add column").click()
            owner.page.locator(f"#column-row-{rows}").wait_for()
            # Choosing a file is an htmx request that reads its header and redraws the form in place.
            csv_path = tmp_path / "clinic.csv"
            csv_path.write_text("age,region\n34,north\n")
            owner.page.get_by_label("Data file (CSV or Parquet)").set_input_files(csv_path)
            owner.page.locator("#offered-note").wait_for()
            assert owner.page.locator("#id_columns-0-name").input_value() == "age"
            seen["owner pages"] = owner.violations()

            admin = Pages(browser, site, tmp_path)
            admin.log_in("/admin/login/", "root-admin")
            for path in ("/admin/", "/admin/marketplace/dataset/", f"/admin/marketplace/dataset/{dataset_id}/change/"):
                admin.visit(path)
            admin.page.locator("#content").wait_for()
            seen["admin"] = admin.violations()
        finally:
            browser.close()
    assert {where: found for where, found in seen.items() if found} == {}
