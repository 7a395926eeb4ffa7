"""Every page with a table, at phone width (375 px), as the buyer and as the owner, with data on
it: no table cell is narrower than its longest word (nothing wraps letter by letter), every table
scrolls sideways inside its own box, and the page itself never does. The result chart's interval
labels are checked there too: the table's numbers, inside the chart, clear of each other."""

from __future__ import annotations

from tests.e2e.helpers import (
    E2E,
    PHONE,
    REPO_ROOT,
    api_buy,
    api_headers,
    api_publish_dataset,
    api_run_job,
    api_signup,
    log_in,
)
from tests.e2e.phone import INTERVAL_LABELS, check_tables
from tests.e2e.test_accessibility import api_publish_model
from tests.e2e.test_buyer_journey import clinic_csv, metadata
from tests.e2e.test_pate_journey import SMALL_SPEC, api_pate_ensemble, api_run_pate
from tests.fixtures.pate import pate_rows

pytestmark = E2E

# Every template that draws a table, and the page of the test below that shows it.
TABLE_TEMPLATES = {
    "accounts/api_keys.html": "/accounts/keys/",
    "accounts/wallet.html": "/accounts/wallet/",
    "compute/_jobs_table.html": "/jobs/",
    "compute/_model_tables.html": "/jobs/<id>/ (a train job: its parameters, noisy parts and bounds)",
    "compute/_models_sold.html": "/models/mine/",
    "compute/_pate_result.html": "/jobs/<id>/ (a PATE job: its labels and the members charged)",
    "compute/model_catalogue.html": "/models/",
    "compute/model_detail.html": "/models/<id>/",
    "compute/_result.html": "/jobs/<id>/ (interval, histogram and quantile answers)",
    "marketplace/dashboard.html": "/dashboard/",
    "marketplace/dataset_detail.html": "/datasets/<id>/",
    "marketplace/ensembles/catalogue.html": "/ensembles/",
    "marketplace/ensembles/detail.html": "/ensembles/<id>/",
    "marketplace/my_datasets.html": "/datasets/mine/",
    "marketplace/my_purchases.html": "/purchases/",
    "marketplace/purchase_detail.html": "/purchases/<id>/",
}

QUERIES = {
    "interval": {"aggregate": "mean", "column": "age", "group_by": ["region", "smoker"]},
    "histogram": {"aggregate": "histogram", "column": "visits", "bins": [0, 5, 10, 15, 20]},
    "quantile": {"aggregate": "quantile", "column": "age", "quantiles": [0.25, 0.5, 0.75]},
}


def test_every_table_keeps_its_words_whole_at_phone_width(live_site, new_page):
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
    purchase = api_buy(live_site, buyer, dataset["id"], "3")
    jobs = {name: api_run_job(live_site, buyer, purchase["id"], q, "0.5") for name, q in QUERIES.items()}
    model = {"type": "logistic_regression", "features": ["age", "region", "visits"], "label": "smoker"}
    trained = api_run_job(live_site, buyer, purchase["id"], model, "1", kind="train")
    listed = api_publish_model(live_site, buyer, trained)
    ensemble = api_pate_ensemble(live_site)
    labelled = api_run_pate(live_site, buyer, ensemble["id"], pate_rows(30, seed=4, labelled=False)[0], SMALL_SPEC)

    page = new_page(*PHONE)
    log_in(page, "bram")
    check_tables(page, f"/datasets/{dataset['id']}/", tables=1)  # the schema
    check_tables(page, "/jobs/", tables=1)
    check_tables(page, "/purchases/", tables=1)
    check_tables(page, f"/purchases/{purchase['id']}/", tables=1)  # its privacy ledger
    check_tables(page, "/accounts/wallet/", tables=1)
    check_tables(page, "/accounts/keys/", tables=1)
    check_tables(page, f"/jobs/{jobs['histogram']['id']}/", tables=1)
    check_tables(page, f"/jobs/{jobs['quantile']['id']}/", tables=1)
    check_tables(page, f"/jobs/{trained['id']}/", tables=3)  # coefficients, noisy parts, declared bounds
    check_tables(page, "/models/", tables=1)
    check_tables(page, f"/models/{listed['id']}/", tables=1)  # the encoding
    check_tables(page, "/models/mine/", tables=1)
    check_tables(page, "/ensembles/", tables=1)
    check_tables(page, f"/ensembles/{ensemble['id']}/", tables=2)  # the members, the schema
    check_tables(page, f"/jobs/{labelled['id']}/", tables=2)  # the labels, the members charged
    check_tables(page, f"/jobs/{jobs['interval']['id']}/", tables=1)
    labels = page.evaluate(INTERVAL_LABELS)
    assert len(labels["low"]) == 8  # four regions by smoker or not
    assert (labels["low"], labels["high"]) == (labels["table_low"], labels["table_high"])
    assert labels["inside"] and not labels["overlaps"], labels

    owner_page = new_page(*PHONE)
    log_in(owner_page, "olga")
    check_tables(owner_page, "/dashboard/", tables=2)  # the burn-down chart as a table, the models sold
    check_tables(owner_page, "/datasets/mine/", tables=1)
    check_tables(owner_page, f"/datasets/{dataset['id']}/", tables=1)
    check_tables(owner_page, "/accounts/wallet/", tables=1)  # the sale's credit
    check_tables(owner_page, "/accounts/keys/", tables=1)


def test_every_template_with_a_table_is_visited_above():
    templates = REPO_ROOT / "templates"
    with_tables = {str(p.relative_to(templates)) for p in templates.rglob("*.html") if "<table" in p.read_text()}
    assert with_tables == set(TABLE_TEMPLATES), "add the new table's page to the phone test"
