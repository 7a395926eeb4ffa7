"""The PATE journey in a real browser: three owners' ensemble (set up through the API of the same
gunicorn), a buyer finds it from the navigation, reads its members and schema, fills the job form (the
estimate follows the values in place, without the file), uploads an unlabelled CSV, the real Celery
worker on the ``ml`` queue labels it, and the job's page shows the labels, the counts and every member
charged the same epsilon."""

from __future__ import annotations

import json

import requests

from tests.e2e.helpers import (
    E2E,
    HTTP_TIMEOUT,
    LiveSite,
    api_headers,
    api_signup,
    log_in,
    mark_page,
    same_document,
    screenshot,
    wait_for_text,
)
from tests.fixtures.pate import PATE_COLUMNS, pate_rows

pytestmark = E2E


def api_pate_ensemble(site: LiveSite, owners: tuple[str, ...] = ("clinic_a", "clinic_b", "clinic_c")) -> dict:
    """Three owners each publish a labelled DP dataset of the same declared schema; the first creates an
    ensemble from theirs at 0.10 credits a label and the others add theirs. Returns the ensemble."""
    ids = []
    headers = []
    for i, name in enumerate(owners):
        api_signup(site, name, ["owner"])
        headers.append(api_headers(site, name))
        text, _ = pate_rows(300, seed=20 + i)
        meta = {
            "title": f"Outcomes at clinic {'ABC'[i]}",
            "epsilon_cap": "10",
            "delta_cap": "0.00001",
            "price_per_epsilon": "10",
            "columns": PATE_COLUMNS,
        }
        created = requests.post(
            site.api("datasets/"),
            headers=headers[i],
            data={"metadata": json.dumps(meta)},
            files={"file": ("rows.csv", text.encode(), "text/csv")},
            timeout=HTTP_TIMEOUT,
        )
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
        published = requests.post(site.api(f"datasets/{ids[-1]}/publish/"), headers=headers[i], timeout=HTTP_TIMEOUT)
        assert published.status_code == 200, published.text
    body = {
        "title": "Three clinics' outcomes",
        "description": "Low or high.",
        "dataset": ids[0],
        "price_per_label": "0.10",
    }
    created = requests.post(site.api("ensembles/"), headers=headers[0], json=body, timeout=HTTP_TIMEOUT)
    assert created.status_code == 201, created.text
    ensemble = created.json()
    for h, dataset_id in zip(headers[1:], ids[1:], strict=True):
        joined = requests.post(
            site.api(f"ensembles/{ensemble['id']}/members/"), headers=h, json={"dataset": dataset_id}, timeout=30
        )
        assert joined.status_code == 201, joined.text
    return {**ensemble, "dataset_ids": ids}


def api_run_pate(site: LiveSite, headers: dict[str, str], ensemble_id: int, csv_text: str, spec: dict) -> dict:
    """Submit a PATE job through the API and wait for the worker to release it; return the released job."""
    response = requests.post(
        site.api(f"ensembles/{ensemble_id}/jobs/"),
        headers=headers,
        data={"spec": json.dumps(spec)},
        files={"file": ("rows.csv", csv_text.encode(), "text/csv")},
        timeout=HTTP_TIMEOUT,
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]

    def released() -> bool:
        job = requests.get(site.api(f"jobs/{job_id}/"), headers=headers, timeout=HTTP_TIMEOUT).json()
        assert job["status"] not in ("failed", "cancelled"), job
        return job["status"] == "released"

    site.pool.wait_until(f"PATE job {job_id} to be released", released, timeout=120, interval=0.5)
    return requests.get(site.api(f"jobs/{job_id}/"), headers=headers, timeout=HTTP_TIMEOUT).json()


# A small run of the form's shape for the other browser tests' PATE job pages.
SMALL_SPEC = {"teachers": 15, "threshold": 8, "sigma1": 20, "sigma2": 10, "max_queries": 20}


def test_a_buyer_labels_an_unlabelled_table_with_three_owners_ensemble(live_site, new_page, tmp_path):
    ensemble = api_pate_ensemble(live_site)
    api_signup(live_site, "hana", ["buyer"])
    text, truth = pate_rows(60, seed=5, labelled=False)
    rows = tmp_path / "unlabelled.csv"
    rows.write_text(text)

    page = new_page()
    log_in(page, "hana")
    page.locator("nav").get_by_role("link", name="Ensembles", exact=True).click()
    page.wait_for_url("**/ensembles/")
    row = page.locator("table.ensemble-catalogue tbody tr").first
    assert row.locator("th").inner_text() == "Three clinics' outcomes"
    assert row.locator("td").all_inner_texts()[:1] == ["3"]
    row.get_by_role("link").click()
    page.wait_for_url(f"**/ensembles/{ensemble['id']}/")
    members = page.locator("table.ensemble-members tbody tr")
    assert members.count() == 3 and "clinic_b" in members.nth(1).inner_text()
    assert "low, high" in page.locator("table.ensemble-schema .classes").inner_text()

    # The estimate follows the values in place: 30 rows at 0.10 credits hold 3.00.
    mark_page(page)
    form = page.locator("#pate-form")
    panel = page.locator("#pate-estimate-panel")
    assert "100.00" in panel.locator(".credits-held").inner_text()  # the defaults: up to 1,000 rows
    form.get_by_label("Teachers").fill("30")
    form.get_by_label("Threshold (T_c)").fill("15")
    form.get_by_label("Sigma 1 (threshold noise)").fill("20")
    form.get_by_label("Sigma 2 (vote noise)").fill("10")
    form.get_by_label("Most rows asked (max_queries)").fill("50")
    wait_for_text(page, "#pate-estimate-panel .credits-held", "5.00")
    reserved = panel.locator(".epsilon-reserved").inner_text()
    assert same_document(page), "the estimate must update in place, without reloading the page"
    screenshot(page, "pate-form.png", element="#label")

    # Upload and submit: the job is queued on every member, the worker labels the rows.
    form.get_by_label("Unlabelled rows (CSV with a header row, or Parquet)").set_input_files(str(rows))
    form.get_by_role("button", name="Label the rows").click()
    page.wait_for_url("**/jobs/*/")
    job_id = int(page.url.rstrip("/").rsplit("/", 1)[-1])
    assert f"Job {job_id} is queued: ε {reserved} is reserved on each of the ensemble's 3 member datasets." in (
        page.locator(".messages").inner_text()
    )
    wait_for_text(page, "#status-heading", "released", timeout=90)
    counts = page.locator(".pate-counts")
    answered = int(counts.locator(".answered").inner_text())
    assert counts.locator(".asked").inner_text() == "50" and 0 < answered <= 50
    labels = page.locator("table.pate-label-table tbody tr")
    assert labels.count() == 50  # the first page of the 60 rows
    shown = [labels.nth(i).locator("td").inner_text() for i in range(50)]
    assert sum(label in ("low", "high") for label in shown) == answered
    # The teachers agree with the rule the owners' rows follow (high when age is over 50) where they answer.
    right = sum(label == truth[i] for i, label in enumerate(shown) if label in ("low", "high"))
    assert right >= 0.7 * answered
    charged = page.locator("table.pate-member-table tbody tr")
    assert charged.count() == 3
    epsilons = {charged.nth(i).locator(".member-epsilon").inner_text() for i in range(3)}
    assert len(epsilons) == 1  # every member charged the same epsilon
    assert page.locator(".csv-download").get_attribute("href") == f"/api/v1/jobs/{job_id}/download/?format=csv"
    screenshot(page, "pate-job.png")
