"""The README's screenshots, taken on the demo's own data: ``manage.py seed_demo`` seeds the live
site's database exactly as ``make demo`` does (its accounts, the two DP tables and the HE table),
and the tour of the README is followed in the browser as demo-buyer and then as demo-owner, saving
each picture the README shows. ``make screenshots`` writes them to docs/screenshots.
"""

from __future__ import annotations

import re

from tests.e2e.helpers import (
    DESKTOP,
    E2E,
    PHONE,
    README_SCREENSHOTS,
    REPO_ROOT,
    log_in,
    screenshot,
    wait_for_text,
)
from tests.integration.live import run_manage

pytestmark = E2E

# The pictures the README shows (its image lines name each of them) and the ones kept beside them
# (phone width, and a released answer); this module writes every one.
README_IMAGES = ("catalogue.png", "query-estimate.png", "owner-dashboard.png")
OTHER_IMAGES = ("dataset-phone.png", "owner-dashboard-phone.png", "job-result.png")
DIABETES = "Diabetes progression"


def seed_demo(site) -> dict[str, str]:
    """Run seed_demo on the live site and return the passwords it printed, by username."""
    result = run_manage(["seed_demo"], site.env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    passwords = dict(re.findall(r"^\s+(\S+)\s+.*password: (\S+)$", result.stdout, re.MULTILINE))
    assert {"demo-owner", "demo-buyer", "admin"} <= set(passwords), result.stdout
    return passwords


def shoot(page, name: str, element: str | None = None) -> None:
    screenshot(page, name, element, folder=README_SCREENSHOTS)


def test_the_readme_tour_on_the_demo_data_takes_the_readmes_screenshots(live_site, new_page):
    passwords = seed_demo(live_site)

    # The buyer: the catalogue with the demo's three datasets and the PATE ensemble's three clinics.
    page = new_page(*DESKTOP)
    log_in(page, "demo-buyer", passwords["demo-buyer"])
    titles = page.locator(".dataset-card h3").all_inner_texts()
    assert DIABETES in titles and len(titles) == 6, titles
    shoot(page, "catalogue.png")

    # Buy epsilon 1 of the diabetes table, as the tour says: 15 credits.
    page.locator(".dataset-card h3").get_by_role("link", name=DIABETES, exact=True).click()
    page.wait_for_url("**/datasets/*/")
    dataset_url = page.url
    page.get_by_label("Epsilon to buy").fill("1")
    page.get_by_role("button", name="Buy", exact=True).click()
    page.wait_for_url("**/purchases/")
    assert "for 15.00 credits" in page.locator(".messages").inner_text()

    # Ask a question: the mean body-mass index by sex, at epsilon 0.5, with its live estimate.
    page.goto(dataset_url)
    query = page.locator("#query-form")
    with page.expect_response(lambda r: r.url.endswith("/query/form/")):
        query.get_by_label("Aggregate").select_option("mean")
    page.wait_for_function("() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')")
    with page.expect_response(lambda r: r.url.endswith("/query/form/")):
        query.get_by_label("Column").select_option("bmi")
    page.wait_for_function("() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')")
    query.get_by_label("sex", exact=True).check()
    query.get_by_label("Epsilon (ε) to spend").fill("0.5")
    wait_for_text(page, "#estimate-panel", "7.50")  # 0.5 at 15 credits per epsilon
    shoot(page, "query-estimate.png", element="#query")

    # Run it; the owner's dashboard then shows the spend.
    query.get_by_role("button", name="Run the query").click()
    page.wait_for_url("**/jobs/*/")
    wait_for_text(page, "#status-heading", "released", timeout=90)
    assert page.locator("table.result-table tbody tr").count() == 2  # sex 1 and sex 2
    shoot(page, "job-result.png", element="section.answer")

    phone = new_page(*PHONE)
    log_in(phone, "demo-buyer", passwords["demo-buyer"])
    phone.goto(dataset_url)
    shoot(phone, "dataset-phone.png")

    owner = new_page(*DESKTOP)
    log_in(owner, "demo-owner", passwords["demo-owner"])
    owner.locator("nav").get_by_role("link", name="Dashboard").click()
    # The card of the dataset the buyer spent on (the newest, the HE table, comes first, unsold).
    card = f"#dataset-{dataset_url.rstrip('/').rsplit('/', 1)[-1]}"
    assert owner.locator(f"{card} .burn-point").count() == 1
    assert owner.locator(f"{card} .earnings").inner_text() == "15.00 credits"
    # With the 60 credits demo-modeller paid for epsilon 3 of the breast-cancer table (the demo's model).
    assert owner.locator(".total-earnings").inner_text() == "75.00 credits"
    owner.locator(card).evaluate("el => el.scrollIntoView({block: 'start'})")
    shoot(owner, "owner-dashboard.png")

    owner_phone = new_page(*PHONE)
    log_in(owner_phone, "demo-owner", passwords["demo-owner"])
    owner_phone.goto("/dashboard/")
    owner_phone.locator(card).evaluate("el => el.scrollIntoView({block: 'start'})")
    shoot(owner_phone, "owner-dashboard-phone.png")

    for name in README_IMAGES + OTHER_IMAGES:
        assert (README_SCREENSHOTS / name).stat().st_size > 10_000, name


def test_the_readme_shows_the_demo_tours_screenshots_and_no_other():
    shown = re.findall(r"!\[[^\]]*\]\(docs/screenshots/([^)\s]+)", (REPO_ROOT / "README.md").read_text())
    # Every picture the README shows is one the tour takes, on the demo's data; none is left over
    # from an older way of taking them.
    assert set(README_IMAGES) <= set(shown) <= set(README_IMAGES + OTHER_IMAGES), shown
    for name in README_IMAGES + OTHER_IMAGES:
        assert (REPO_ROOT / "docs" / "screenshots" / name).is_file(), name
