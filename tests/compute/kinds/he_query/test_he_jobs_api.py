"""HE jobs through the API with Celery run eagerly: submit, aggregate under encryption in parts, wait for the
key, release from the key holder's noisy values, and the ledger that goes with it. The key holder's side
is the real client code (decryption with the secret context from the keystore). Live processes are
tested in tests/integration/test_he_end_to_end.py."""

from __future__ import annotations

import math
import random
from decimal import Decimal

import numpy as np
import pytest

from cloakroom_client import he as client_he
from cloakroom_client.protocol.release import noisy_values
from compute.models import Job, JobPart
from compute.services import jobs_sweep
from marketplace.models import Dataset, LedgerEntry
from tests.fixtures.he_jobs import ROWS, EncryptedTable, submit

pytestmark = pytest.mark.django_db


def key_holder_values(owner_client, plan: dict, table: EncryptedTable, rng) -> dict:
    """What the key agent does, with its own code: plan the job again from the local manifest, check
    the served plan against it, decrypt the aggregates, and release each component on its grid."""
    secret = client_he.load_secret_context(plan["bundle_id"], table.keystore)
    urls = {agg["name"]: agg["url"] for agg in plan["aggregates"]}

    def fetch(name: str) -> bytes:
        response = owner_client.get(urls[name])
        assert response.status_code == 200 and response["Content-Type"] == "application/octet-stream"
        return b"".join(response.streaming_content)

    return noisy_values(plan, fetch, secret, rng, manifest=table.manifest)


def test_an_he_sum_is_computed_under_encryption_waits_for_the_key_and_is_released_once(
    owner_client, buyer_client, he_purchase, table, eager_tasks, django_capture_on_commit_callbacks, private_storage
):
    response = submit(
        buyer_client, he_purchase, {"aggregate": "sum", "column": "age"}, "0.5", django_capture_on_commit_callbacks
    )
    assert response.status_code == 202, response.json()
    job = Job.objects.get(pk=response.json()["id"])
    assert job.status == Job.Status.AWAITING_KEY and job.computed_at is not None
    body = buyer_client.get(f"/api/v1/jobs/{job.pk}/").json()
    assert body["status"] == "awaiting_key" and body["result"] is None and body["progress"] == {"done": 2, "total": 2}
    # Reserved, not yet committed.
    kinds = list(LedgerEntry.objects.filter(job_id=job.pk).values_list("kind", flat=True))
    assert kinds == ["reserve"]

    awaiting = owner_client.get("/api/v1/he/jobs/awaiting/").json()
    assert awaiting["count"] == 1
    plan = awaiting["results"][0]
    assert plan["job"] == job.pk and plan["bundle_id"] == table.manifest["bundle_id"]
    # Age is declared in [0, 100]: a row replaced in place moves the sum by at most 100. The value
    # is released on a grid of 2^-4 (the largest power of two at most 100 / 1024), 1601 steps of
    # which cover the sensitivity and the rounding: the scale is 1601 / 16 / 0.5.
    assert plan["components"] == [
        {
            "name": "sum",
            "terms": [["a0", 1.0]],
            "offset": 0.0,
            "budget": "sum",
            "mechanism": "laplace",
            "epsilon": 0.5,
            "delta": 0.0,
            "sensitivity": 100.0,
            "granularity": 0.0625,
            "steps": 1601,
            "scale": 200.125,
        }
    ]
    assert plan["query"] == {"aggregate": "sum", "column": "age"} and plan["epsilon"] == "0.500000"
    # Only the owner sees the plan and the ciphertexts.
    assert buyer_client.get("/api/v1/he/jobs/awaiting/").json()["count"] == 0
    assert buyer_client.get(f"/api/v1/he/jobs/{job.pk}/").status_code == 404
    assert buyer_client.get(plan["aggregates"][0]["url"]).status_code == 404
    assert (
        buyer_client.post(f"/api/v1/he/jobs/{job.pk}/release/", {"values": {"sum": 1}}, format="json").status_code
        == 404
    )

    values = key_holder_values(owner_client, plan, table, 1)
    assert (values["sum"] / 0.0625).is_integer()  # on the grid
    released = owner_client.post(f"/api/v1/he/jobs/{job.pk}/release/", {"values": values}, format="json")
    assert released.status_code == 200, released.json()
    body = buyer_client.get(f"/api/v1/jobs/{job.pk}/").json()
    assert body["status"] == "released"
    group = body["result"]["groups"][0]
    assert group["value"] == pytest.approx(values["sum"])
    truth = table.frame["age"].sum()
    low, high = group["ci95"]
    # The discrete Laplace's 95% interval on its grid, plus a tiny CKKS bound.
    assert high - low == pytest.approx(2 * (200 * math.log(20)), rel=2e-3)
    assert body["receipt"]["granularity"] == {"sum": 0.0625} and body["result"]["measurements"] == values
    assert body["receipt"]["neighbouring"] == "replace one row in place"
    assert abs(group["value"] - truth) < 200 * math.log(1e6)  # within the noise's 1-in-a-million tail
    receipt = body["receipt"]
    assert receipt["mode"] == "he" and receipt["epsilon_charged"] == "0.500000"
    assert receipt["ckks"]["poly_modulus_degree"] == 8192 and receipt["ckks"]["coeff_mod_bit_sizes"] == [60, 40, 40, 60]
    assert 0 < receipt["ckks"]["error_bound"] < 1e-3
    kinds = list(LedgerEntry.objects.filter(job_id=job.pk).values_list("kind", flat=True))
    assert kinds == ["reserve", "commit"]
    assert not any((private_storage / "he").rglob("jobs/*/*.ct"))  # the aggregates are gone once released

    again = owner_client.post(f"/api/v1/he/jobs/{job.pk}/release/", {"values": values}, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_not_awaiting_key"
    assert LedgerEntry.objects.filter(job_id=job.pk, kind="commit").count() == 1


def test_parts_share_the_chunks_and_report_progress(
    buyer_client, he_purchase, eager_tasks, django_capture_on_commit_callbacks, settings
):
    settings.CLOAKROOM_HE_PART_CHUNKS = 1
    response = submit(
        buyer_client, he_purchase, {"aggregate": "variance", "column": "bmi"}, "1", django_capture_on_commit_callbacks
    )
    job = Job.objects.get(pk=response.json()["id"])
    parts = list(JobPart.objects.filter(job=job).values_list("chunk_start", "chunk_end"))
    assert parts == [(0, 1), (1, 2)]
    assert job.status == Job.Status.AWAITING_KEY and (job.progress_done, job.progress_total) == (2, 2)


def test_mean_variance_dot_and_regression_are_released_near_the_truth(
    owner_client, buyer_client, he_purchase, table, eager_tasks, django_capture_on_commit_callbacks
):
    frame = table.frame
    age, bmi = frame["age"].to_numpy(), frame["bmi"].to_numpy()
    weights = np.random.default_rng(3).uniform(0, 1, ROWS)
    cases = [
        ({"aggregate": "mean", "column": "bmi"}, bmi.mean()),
        ({"aggregate": "variance", "column": "age"}, age.var()),
        ({"aggregate": "dot", "column": "age", "weights": weights.round(3).tolist()}, float(weights.round(3) @ age)),
        ({"aggregate": "count", "column": "ward", "category": "B"}, float((frame["ward"] == "B").sum())),
    ]
    rng = random.Random(2)
    for query, truth in cases:
        response = submit(buyer_client, he_purchase, query, "0.5", django_capture_on_commit_callbacks)
        assert response.status_code == 202, response.json()
        plan = owner_client.get(f"/api/v1/he/jobs/{response.json()['id']}/").json()
        values = key_holder_values(owner_client, plan, table, rng)
        released = owner_client.post(f"/api/v1/he/jobs/{plan['job']}/release/", {"values": values}, format="json")
        assert released.status_code == 200, released.json()
        value = released.json()["result"]["groups"][0]["value"]
        low, high = released.json()["result"]["groups"][0]["ci95"]
        # Each value within the width of its own 95% interval of the truth (the seed is fixed).
        assert abs(value - truth) <= (high - low), (query["aggregate"], value, truth)

    response = submit(
        buyer_client,
        he_purchase,
        {"aggregate": "regression", "columns": ["age"], "target": "bmi"},
        "2",
        django_capture_on_commit_callbacks,
    )
    plan = owner_client.get(f"/api/v1/he/jobs/{response.json()['id']}/").json()
    released = owner_client.post(
        f"/api/v1/he/jobs/{plan['job']}/release/",
        {"values": key_holder_values(owner_client, plan, table, rng)},
        format="json",
    ).json()
    regression = released["result"]["regression"]
    assert regression["columns"] == ["intercept", "age"] and regression["target"] == "bmi"
    slope, intercept = np.polyfit(age, bmi, 1)
    assert regression["coefficients"]["age"] == pytest.approx(slope, abs=0.05)
    assert regression["coefficients"]["intercept"] == pytest.approx(intercept, abs=3)


def test_the_key_holders_values_are_checked_and_a_bad_post_changes_nothing(
    owner_client, buyer_client, he_purchase, eager_tasks, django_capture_on_commit_callbacks
):
    job_id = submit(
        buyer_client, he_purchase, {"aggregate": "mean", "column": "age"}, "1", django_capture_on_commit_callbacks
    ).json()["id"]
    url = f"/api/v1/he/jobs/{job_id}/release/"
    for values, field in (
        ({"count": ROWS}, "values.sum"),
        ({"count": ROWS, "sum": 2, "extra": 1}, "values.extra"),
        ({"count": ROWS, "sum": "NaN"}, "values.sum"),
        (None, "values"),
        # A raw float, as a continuous sampler gives, is not on the component's grid.
        ({"count": ROWS, "sum": 0.1}, "values.sum"),
        # The mean of age over ROWS rows of [0, 100]: a centred sum of 1.5e308 is impossible.
        ({"count": ROWS, "sum": 1.5e308}, "values.sum"),
    ):
        response = owner_client.post(url, {"values": values}, format="json")
        assert response.status_code == 400 and field in response.json()["error"]["fields"], response.json()
    assert Job.objects.get(pk=job_id).status == Job.Status.AWAITING_KEY
    assert LedgerEntry.objects.filter(job_id=job_id, kind="commit").count() == 0


def test_a_waiting_job_can_be_cancelled_and_refunded(
    owner_client, buyer_client, he_purchase, eager_tasks, django_capture_on_commit_callbacks, private_storage
):
    job_id = submit(
        buyer_client, he_purchase, {"aggregate": "sum", "column": "bmi"}, "1", django_capture_on_commit_callbacks
    ).json()["id"]
    assert any((private_storage / "he").rglob(f"jobs/{job_id}/*.ct"))
    with django_capture_on_commit_callbacks(execute=True):
        cancelled = buyer_client.post(f"/api/v1/jobs/{job_id}/cancel/")
    assert cancelled.json()["status"] == "cancelled"
    assert not any((private_storage / "he").rglob(f"jobs/{job_id}/*.ct"))
    assert owner_client.get(f"/api/v1/he/jobs/{job_id}/").status_code == 409
    kinds = list(LedgerEntry.objects.filter(job_id=job_id).values_list("kind", flat=True))
    assert kinds == ["reserve", "refund"]


def test_a_job_the_key_holder_never_releases_fails_and_is_refunded(
    buyer_client, he_purchase, eager_tasks, django_capture_on_commit_callbacks, settings
):
    job_id = submit(
        buyer_client, he_purchase, {"aggregate": "sum", "column": "age"}, "1", django_capture_on_commit_callbacks
    ).json()["id"]
    settings.CLOAKROOM_HE_KEY_WAIT_SECONDS = 0
    assert jobs_sweep()["key_wait_expired"] == 1
    job = Job.objects.get(pk=job_id)
    assert job.status == Job.Status.FAILED and "key holder" in job.error


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query": {"aggregate": "median", "column": "age"}}, "query.aggregate"),
        ({"query": {"aggregate": "sum", "column": "ward"}}, "query.column"),
        ({"query": {"aggregate": "sum", "column": "age"}, "delta": "0.001"}, "delta"),
        ({"query": {"aggregate": "dot", "column": "age", "weights": [5000]}}, "query.weights"),
    ],
)
def test_bad_he_queries_get_a_400_naming_the_field_and_reserve_nothing(buyer_client, he_purchase, body, field):
    response = buyer_client.post("/api/v1/jobs/", {"purchase": he_purchase, "epsilon": "1", **body}, format="json")
    assert response.status_code == 400 and field in response.json()["error"]["fields"], response.json()
    assert Job.objects.count() == 0 and LedgerEntry.objects.filter(kind="reserve").count() == 0


def test_the_estimate_states_the_noise_and_the_ckks_error_before_spending(buyer_client, he_purchase):
    response = buyer_client.post(
        "/api/v1/jobs/estimate/",
        {"purchase": he_purchase, "query": {"aggregate": "sum", "column": "age"}, "epsilon": "0.5"},
        format="json",
    )
    assert response.status_code == 200, response.json()
    est = response.json()
    assert 200.0 <= est["noise_scale"] <= 200.0 * (1 + 1 / 1024)  # the grid costs at most 1/1024
    assert est["ci95_halfwidth"] == pytest.approx(200 * math.log(20), rel=2e-3)
    assert est["price"] and est["affordable"] is True
    target = buyer_client.post(
        "/api/v1/jobs/estimate/",
        {"purchase": he_purchase, "query": {"aggregate": "sum", "column": "age"}, "ci95_halfwidth": 100},
        format="json",
    ).json()
    assert float(target["epsilon"]) == pytest.approx(100 * math.log(20) / 100, rel=2e-3)
    assert target["ci95_halfwidth"] <= 100
    assert Dataset.objects.get().epsilon_sold == Decimal("5")  # estimates spend nothing


def test_the_job_page_says_the_job_waits_for_the_key_then_shows_the_ckks_receipt(
    client, buyer, owner_client, buyer_client, he_purchase, table, eager_tasks, django_capture_on_commit_callbacks
):
    job_id = submit(
        buyer_client, he_purchase, {"aggregate": "sum", "column": "age"}, "1", django_capture_on_commit_callbacks
    ).json()["id"]
    client.force_login(buyer)
    page = client.get(f"/jobs/{job_id}/").content.decode()
    assert "awaiting key" in page and "waiting for the data owner's key holder" in page
    assert "every 2s" in page  # it keeps polling while it waits

    plan = owner_client.get(f"/api/v1/he/jobs/{job_id}/").json()
    values = key_holder_values(owner_client, plan, table, 9)
    owner_client.post(f"/api/v1/he/jobs/{job_id}/release/", {"values": values}, format="json")
    page = client.get(f"/jobs/{job_id}/body/").content.decode()
    assert "homomorphic encryption (CKKS)" in page and "N = 8192" in page and "60, 40, 40, 60 bits" in page
    assert "Precision lost to encryption" in page and "hx-trigger" not in page


def test_the_dataset_page_offers_hes_query_form_with_a_live_estimate_and_submits_jobs(
    client, buyer, he_purchase, eager_tasks, django_capture_on_commit_callbacks
):
    dataset = Dataset.objects.get(mode="he")
    client.force_login(buyer)
    page = client.get(f"/datasets/{dataset.pk}/").content.decode()
    assert 'id="he-query-form"' in page
    assert "age (numeric, 0 to 100)" in page and "ward (categories: A, B)" in page and "ward is B" in page
    # The opening estimate is for the mean of the first numeric column.
    assert "noisy count and noisy centred sum" in page

    estimate = client.post(
        f"/datasets/{dataset.pk}/he-query/estimate/",
        {"purchase": he_purchase, "aggregate": "count", "column": "ward", "epsilon": "0.5"},
    ).content.decode()
    assert "two-sided geometric" in estimate and "Price" in estimate

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/datasets/{dataset.pk}/he-query/",
            {"purchase": he_purchase, "aggregate": "sum", "column": "bmi", "filter": "ward=A", "epsilon": "0.5"},
        )
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    assert job.spec == {"aggregate": "sum", "column": "bmi", "filter": {"column": "ward=A"}}
    assert job.status == Job.Status.AWAITING_KEY


def test_a_bad_he_form_input_is_shown_beside_its_field_and_keeps_what_was_typed(client, buyer, he_purchase):
    dataset = Dataset.objects.get(mode="he")
    client.force_login(buyer)
    response = client.post(
        f"/datasets/{dataset.pk}/he-query/",
        {"purchase": he_purchase, "aggregate": "mean", "column": "ward", "epsilon": "-2"},
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert 'value="-2"' in page and 'value="ward" selected' in page  # what was typed is kept
    # The reason sits beside the epsilon field, in the element its aria-describedby points at.
    assert '<small class="field-error" id="he_query_epsilon_error">Must be a finite number greater than 0.' in page
    assert Job.objects.count() == 0


def test_an_accuracy_finer_than_the_ckks_error_is_refused_naming_the_field(buyer_client, he_purchase):
    response = buyer_client.post(
        "/api/v1/jobs/estimate/",
        {"purchase": he_purchase, "query": {"aggregate": "sum", "column": "age"}, "ci95_halfwidth": 1e-9},
        format="json",
    )
    assert response.status_code == 400, response.json()
    assert "No epsilon up to 10^6" in response.json()["error"]["fields"]["ci95_halfwidth"][0]
