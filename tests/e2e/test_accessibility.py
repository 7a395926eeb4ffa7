"""Accessibility basics in a real browser: at phone width (375 px) the main pages (the model and
ensemble pages among them) fit the screen without scrolling sideways, every form control has a label, and a buyer can find and buy budget
with the keyboard alone."""

from __future__ import annotations

import requests

from tests.e2e.helpers import (
    DESKTOP,
    E2E,
    PHONE,
    api_buy,
    api_headers,
    api_publish_dataset,
    api_run_job,
    api_signup,
    log_in,
    screenshot,
)
from tests.e2e.test_buyer_journey import clinic_csv, metadata
from tests.e2e.test_pate_journey import SMALL_SPEC, api_pate_ensemble, api_run_pate
from tests.fixtures.pate import pate_rows

pytestmark = E2E

# Every input, select and textarea a person can use, without a label (a <label for>, a wrapping
# <label>, aria-label or aria-labelledby), described so that a failure says which one.
UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea')]
  .filter(el => el.type !== 'hidden')
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby'))
  .map(el => `${el.tagName.toLowerCase()}#${el.id || '?'}[name=${el.name || '?'}]`)"""
CONTROLS = "() => document.querySelectorAll('input:not([type=hidden]), select, textarea').length"
WIDEST = """() => [...document.querySelectorAll('body *')]
  .filter(el => el.getBoundingClientRect().right > document.documentElement.clientWidth + 0.5)
  .slice(0, 5).map(el => `${el.tagName.toLowerCase()}.${el.className} right=${el.getBoundingClientRect().right}`)"""


def check_page(page, path: str, *, min_controls: int) -> None:
    page.goto(path)
    width = page.evaluate("document.scrollingElement.scrollWidth")
    assert width <= PHONE[0], f"{path} scrolls sideways at {PHONE[0]} px ({width} px wide): {page.evaluate(WIDEST)}"
    assert page.evaluate(UNLABELLED) == [], f"{path} has controls without a label"
    assert page.evaluate(CONTROLS) >= min_controls, f"{path} lost its form controls"


def test_main_pages_fit_a_phone_and_label_every_control(live_site, new_page):
    api_signup(live_site, "olga", ["owner"])
    owner = api_headers(live_site, "olga")
    dataset = api_publish_dataset(
        live_site,
        owner,
        metadata("Clinic visits with a rather long title for a narrow screen", "8.00", "10", "Visits."),
        clinic_csv(),
    )
    api_signup(live_site, "bram", ["buyer"])
    buyer = api_headers(live_site, "bram")
    purchase = api_buy(live_site, buyer, dataset["id"], "2")
    job = api_run_job(
        live_site, buyer, purchase["id"], {"aggregate": "mean", "column": "age", "group_by": ["region"]}, "0.5"
    )

    model = {"type": "logistic_regression", "features": ["age", "region", "visits"], "label": "smoker"}
    trained = api_run_job(live_site, buyer, purchase["id"], model, "1", kind="train")
    listed = api_publish_model(live_site, buyer, api_run_job(live_site, buyer, purchase["id"], model, "0.5", "train"))
    ensemble = api_pate_ensemble(live_site)
    labelled = api_run_pate(live_site, buyer, ensemble["id"], pate_rows(30, seed=4, labelled=False)[0], SMALL_SPEC)

    page = new_page(*PHONE)
    log_in(page, "bram")
    check_page(page, "/", min_controls=6)  # the catalogue: search and five filters
    check_page(page, f"/datasets/{dataset['id']}/", min_controls=18)  # buy form, query builder and training form
    screenshot(page, "dataset-phone.png")
    check_page(page, "/jobs/", min_controls=0)
    check_page(page, f"/jobs/{job['id']}/", min_controls=0)
    check_page(page, f"/jobs/{trained['id']}/", min_controls=2)  # the model and the form that publishes it
    screenshot(page, "released-model-phone.png")
    check_page(page, "/models/", min_controls=0)
    check_page(page, f"/models/{listed['id']}/", min_controls=0)
    check_page(page, "/models/mine/", min_controls=0)
    check_page(page, "/ensembles/", min_controls=0)
    check_page(page, f"/ensembles/{ensemble['id']}/", min_controls=8)  # the file and the PATE spec's controls
    check_page(page, f"/jobs/{labelled['id']}/", min_controls=0)  # the labels and the members charged
    check_page(page, "/purchases/", min_controls=0)
    check_page(page, "/accounts/wallet/", min_controls=0)
    check_page(page, "/accounts/keys/", min_controls=1)
    check_page(page, "/accounts/password/", min_controls=3)

    owner_page = new_page(*PHONE)
    log_in(owner_page, "olga")
    check_page(owner_page, "/dashboard/", min_controls=0)
    assert owner_page.locator(".models-sold-table tbody tr").count() == 1
    assert owner_page.locator(".burn-point").count() == 3  # the query and the two models
    screenshot(owner_page, "owner-dashboard-phone.png")
    check_page(owner_page, "/datasets/new/", min_controls=20)  # metadata, file and three column rows
    check_page(owner_page, f"/datasets/{dataset['id']}/", min_controls=0)
    clinic = new_page(*PHONE)
    log_in(clinic, "clinic_a")
    # A member dataset's page: its ensemble, the form that creates another (title, price, label, description).
    check_page(clinic, f"/datasets/{ensemble['dataset_ids'][0]}/", min_controls=4)


def api_publish_model(site, headers: dict[str, str], job: dict) -> dict:
    body = {
        "job": job["id"],
        "title": "Smokers, a model with a long title for a narrow screen",
        "price_per_prediction": "0.01",
    }
    response = requests.post(site.api("models/"), headers=headers, json=body, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()


def tab_to(page, selector: str, limit: int = 60) -> None:
    """Press Tab until the element matching ``selector`` has the focus."""
    for _ in range(limit):
        if page.evaluate("sel => document.activeElement && document.activeElement.matches(sel)", selector):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {selector}")


def test_a_buyer_searches_opens_and_buys_with_the_keyboard_alone(live_site, new_page):
    api_signup(live_site, "olga", ["owner"])
    owner = api_headers(live_site, "olga")
    api_publish_dataset(live_site, owner, metadata("Clinic visits", "8.00", "10", "Visits."), clinic_csv())
    api_publish_dataset(live_site, owner, metadata("Weather stations", "3.00", "10", "Rain."), clinic_csv())
    api_signup(live_site, "bram", ["buyer"])

    page = new_page(*DESKTOP)
    log_in(page, "bram")
    tab_to(page, "#id_search")
    page.keyboard.type("clinic")
    page.keyboard.press("Enter")
    page.wait_for_url("**/?search=clinic*")
    assert page.locator(".dataset-card h3").all_inner_texts() == ["Clinic visits"]

    tab_to(page, ".dataset-card h3 a")
    page.keyboard.press("Enter")
    page.wait_for_url("**/datasets/*/")
    assert page.locator("h1").inner_text() == "Clinic visits"

    tab_to(page, "#id_epsilon")
    page.keyboard.type("1.5")
    page.keyboard.press("Enter")
    page.wait_for_url("**/purchases/")
    assert "You bought epsilon 1.5 of “Clinic visits” for 12.00 credits." in page.locator(".messages").inner_text()
