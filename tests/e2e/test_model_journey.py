"""The model journey in a real browser: a buyer trains a model through the form on a DP dataset's page
(the form redraws for another model type, the estimate follows epsilon), the real Celery worker
trains it, the job's page shows the released model and its receipt, the buyer publishes it for
encrypted inference, and it is in the model catalogue and on the trainer's models page.

The owner's dataset and the buyer's purchase are set up through the API of the same gunicorn.
"""

from __future__ import annotations

from tests.e2e.helpers import (
    E2E,
    api_buy,
    api_headers,
    api_publish_dataset,
    api_signup,
    log_in,
    mark_page,
    same_document,
    screenshot,
    wait_for_text,
)
from tests.e2e.test_buyer_journey import clinic_csv, metadata

pytestmark = E2E


def redraw(page, action) -> None:
    """Do ``action``, which makes htmx fetch the training form again, and wait until the new form is in."""
    with page.expect_response(lambda r: r.url.endswith("/train/form/") and r.request.method == "POST"):
        action()
    page.wait_for_function("() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')")


def test_a_buyer_trains_a_model_sees_it_publishes_it_and_finds_it_in_the_catalogue(live_site, new_page):
    api_signup(live_site, "olga", ["owner"])
    owner = api_headers(live_site, "olga")
    dataset = api_publish_dataset(live_site, owner, metadata("Clinic visits", "8.00", "10", "Visits."), clinic_csv())
    api_signup(live_site, "bram", ["buyer"])
    api_buy(live_site, api_headers(live_site, "bram"), dataset["id"], "3")

    page = new_page()
    log_in(page, "bram")
    page.goto(f"/datasets/{dataset['id']}/")
    mark_page(page)
    form = page.locator("#train-form")
    panel = page.locator("#train-estimate-panel")
    # It starts on a model the declaration can train: the first category column as the label.
    assert form.get_by_label("Label (the target)").input_value() == "region"
    assert "10.00 credits" not in panel.inner_text() and "8.00 credits" in panel.inner_text()

    # Another type shows its own controls: k-means takes no label and needs k.
    redraw(page, lambda: form.get_by_label("Model type").select_option("kmeans"))
    assert form.get_by_label("Label (the target)").count() == 0
    assert form.get_by_label("Clusters (k)").input_value() == "3"
    redraw(page, lambda: form.get_by_label("Model type").select_option("logistic_regression"))

    # Smoker as the label: it cannot also be a feature, and the estimate says so.
    form.get_by_label("Label (the target)").select_option("smoker")
    wait_for_text(page, "#train-estimate-panel", "is also a feature")
    form.get_by_label("smoker (boolean)").uncheck()
    form.get_by_label("region (categorical)").check()
    form.get_by_label("Epsilon (ε) to spend").fill("2")
    wait_for_text(page, "#train-estimate-panel .price", "16.00 credits")
    assert "ρ 2 by zCDP" in panel.locator(".share").inner_text()
    assert same_document(page), "the estimate must update in place, without reloading the page"
    screenshot(page, "train-form.png", element="#train")

    # Train: the job is queued, the worker releases it, and its page shows the model by itself.
    form.get_by_role("button", name="Train the model").click()
    page.wait_for_url("**/jobs/*/")
    job_id = int(page.url.rstrip("/").rsplit("/", 1)[-1])
    assert f"Job {job_id} is queued: ε 2 is reserved to train the model." in page.locator(".messages").inner_text()
    assert "Logistic regression of smoker on age, region, visits" in page.locator(".job-query").inner_text()
    wait_for_text(page, "#status-heading", "released", timeout=60)
    model = page.locator(".released-model")
    coefficients = model.locator("table.model-table").first
    assert coefficients.locator("thead th").all_inner_texts() == ["Column", "score of true"]
    assert coefficients.locator("tbody th").all_inner_texts() == [
        "age",
        "region=north",
        "region=south",
        "region=east",
        "region=west",
        "visits",
        "intercept",
    ]
    receipt = page.locator(".training-parts")
    assert "laplace" in receipt.inner_text() and "0 to 120" in receipt.inner_text()
    with page.expect_download() as download:
        page.locator(".model-download").click()
    assert download.value.suggested_filename == f"cloakroom-model-{job_id}.json"
    screenshot(page, "released-model.png")

    # Publish it for encrypted inference.
    publish = page.locator(".publish-model-form")
    publish.get_by_label("Title").fill("Smoker from visits")
    publish.get_by_label("Price per prediction (credits)").fill("0.02")
    publish.get_by_role("button", name="Publish for encrypted inference").click()
    page.wait_for_url("**/models/*/")
    assert "“Smoker from visits” is in the model catalogue." in page.locator(".messages").inner_text()
    model_id = int(page.url.rstrip("/").rsplit("/", 1)[-1])
    assert f"cloakroom predict {model_id} rows.csv --out scores.csv" in page.locator(".predict-command").inner_text()
    assert "Only DP-trained models are served." in page.locator(".privacy-note").inner_text()

    # The catalogue, from the navigation, lists it with its price; the trainer's page has it too.
    page.locator("nav").get_by_role("link", name="Models", exact=True).click()
    page.wait_for_url("**/models/")
    row = page.locator("table.model-catalogue tbody tr").first
    assert row.locator("th").inner_text() == "Smoker from visits"
    assert row.locator("td").all_inner_texts() == [
        "logistic regression",
        "age, region, visits",
        "false, true",
        "0.02 credits",
        "bram",
    ]
    page.locator("nav").get_by_role("link", name="My models").click()
    page.wait_for_url("**/models/mine/")
    assert "Smoker from visits" in page.locator("table.my-models tbody tr").first.inner_text()
