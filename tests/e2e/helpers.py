"""What the browser tests share: the browser's settings, the live site, API calls that set the
scene (through the same gunicorn the browser uses), and a few page actions."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.integration.live import REPO_ROOT, ProcessPool

# Every browser test module sets `pytestmark = E2E`: real processes, and committed rows emptied after each test.
E2E = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-background-networking"]
DESKTOP = (1280, 800)
PHONE = (375, 740)
# The journeys' screenshots, for a person to look at, go to var/screenshots (ignored by git). The
# README's go to var/screenshots/readme unless CLOAKROOM_SCREENSHOT_DIR says otherwise: `make
# screenshots` sets it to docs/screenshots, and only the demo tour (test_demo_screenshots.py, on
# seed_demo's data) writes there, so the README never shows a test's made-up data.
SCREENSHOTS = REPO_ROOT / "var" / "screenshots"
README_SCREENSHOTS = Path(os.environ.get("CLOAKROOM_SCREENSHOT_DIR") or SCREENSHOTS / "readme")
PASSWORD = "a long and unguessable passphrase 1842"
HTTP_TIMEOUT = 30


@dataclass
class LiveSite:
    url: str
    pool: ProcessPool
    # The web server's environment (database, storage, secrets), for a management command that
    # must act on the same site, such as seed_demo.
    env: dict[str, str] = field(default_factory=dict)

    def api(self, path: str) -> str:
        return f"{self.url}/api/v1/{path.lstrip('/')}"


def screenshot(page, name: str, element: str | None = None, folder: Path = SCREENSHOTS) -> Path:
    """Save a screenshot of the visible page, or of one element of it, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if element:
        page.locator(element).screenshot(path=str(path))
    else:
        page.screenshot(path=str(path))
    return path


# ---------------------------------------------------------------------------------------------
# The API, for the other side of a journey


def api_signup(site: LiveSite, username: str, roles: list[str]) -> None:
    response = requests.post(
        site.api("auth/signup/"),
        json={"username": username, "email": f"{username}@example.org", "password": PASSWORD, "roles": roles},
        timeout=HTTP_TIMEOUT,
    )
    assert response.status_code == 201, response.text


def api_headers(site: LiveSite, username: str) -> dict[str, str]:
    response = requests.post(site.api("api-keys/"), json={"name": "e2e"}, auth=(username, PASSWORD), timeout=30)
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['key']}"}


def api_publish_dataset(site: LiveSite, headers: dict[str, str], metadata: dict, csv_text: str) -> dict:
    created = requests.post(
        site.api("datasets/"),
        headers=headers,
        data={"metadata": json.dumps(metadata)},
        files={"file": ("data.csv", csv_text.encode(), "text/csv")},
        timeout=HTTP_TIMEOUT,
    )
    assert created.status_code == 201, created.text
    published = requests.post(site.api(f"datasets/{created.json()['id']}/publish/"), headers=headers, timeout=30)
    assert published.status_code == 200, published.text
    return published.json()


def api_buy(site: LiveSite, headers: dict[str, str], dataset_id: int, epsilon: str) -> dict:
    response = requests.post(
        site.api("purchases/"), headers=headers, json={"dataset": dataset_id, "epsilon": epsilon}, timeout=30
    )
    assert response.status_code == 201, response.text
    return response.json()


def api_run_job(
    site: LiveSite, headers: dict[str, str], purchase_id: int, query: dict, epsilon: str, kind: str = "query"
) -> dict:
    """Submit a job (``kind`` "train": ``query`` is the model) and wait for the worker to release it;
    return the released job."""
    body = {"purchase": purchase_id, "kind": kind, "model" if kind == "train" else "query": query, "epsilon": epsilon}
    response = requests.post(site.api("jobs/"), headers=headers, json=body, timeout=HTTP_TIMEOUT)
    assert response.status_code in (200, 201, 202), response.text
    job_id = response.json()["id"]

    def released() -> bool:
        job = requests.get(site.api(f"jobs/{job_id}/"), headers=headers, timeout=HTTP_TIMEOUT).json()
        assert job["status"] not in ("failed", "cancelled"), job
        return job["status"] == "released"

    site.pool.wait_until(f"job {job_id} to be released", released, timeout=90, interval=0.5)
    return requests.get(site.api(f"jobs/{job_id}/"), headers=headers, timeout=HTTP_TIMEOUT).json()


# ---------------------------------------------------------------------------------------------
# Pages


def log_in(page, username: str, password: str = PASSWORD) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/")
    assert page.locator(".username").inner_text() == username


def sign_up(page, username: str, roles: list[str]) -> None:
    """Sign up through the page; ``roles`` are the role checkboxes' values (owner, buyer)."""
    page.goto("/accounts/signup/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Email").fill(f"{username}@example.org")
    page.locator("#id_password1").fill(PASSWORD)
    page.locator("#id_password2").fill(PASSWORD)
    for role in roles:
        page.locator(f"input[name=roles][value={role}]").check()
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url("**/")
    assert f"Welcome to Cloakroom, {username}." in page.locator(".messages").inner_text()


def mark_page(page) -> None:
    """Tag the current document, so that a later check can tell it was not reloaded."""
    page.evaluate("window.__e2e_same_document = true")


def same_document(page) -> bool:
    return bool(page.evaluate("window.__e2e_same_document === true"))


def wait_for_text(page, selector: str, text: str, timeout: float = 30) -> None:
    """Wait until ``selector``'s text contains ``text`` (htmx swaps replace the element)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        locator = page.locator(selector)
        if locator.count():
            last = locator.first.inner_text()
            if text in last:
                return
        page.wait_for_timeout(200)
    raise AssertionError(f"{selector!r} never showed {text!r}; last seen: {last!r}")
