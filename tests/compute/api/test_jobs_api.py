"""The job API and services: validation, reservation, release, refunds, repeats, downloads."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from cloakroom_client.protocol.noise import mechanism
from compute import services
from compute.kinds.dp_query import DpQuery
from compute.models import Job
from marketplace.models import LedgerEntry, Purchase
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


def submit(api, purchase, query, epsilon="0.5", delta=None, **headers):
    body = {"purchase": purchase.pk, "kind": "query", "query": query, "epsilon": epsilon}
    if delta is not None:
        body["delta"] = delta
    return api.post("/api/v1/jobs/", body, format="json", **headers)


def ledger_sums(purchase):
    out = {k: Decimal(0) for k in ("reserve", "commit", "refund")}
    for e in LedgerEntry.objects.filter(purchase=purchase):
        out[e.kind] += e.epsilon
    return out


def test_a_job_is_queued_then_released_with_a_receipt_and_charged_once(
    api, purchase, eager_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = submit(api, purchase, {"aggregate": "mean", "column": "age", "group_by": ["region"]})
    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    job = api.get(f"/api/v1/jobs/{response.json()['id']}/").json()
    assert job["status"] == "released"
    keys = [g["key"]["region"] for g in job["result"]["groups"]]
    assert keys == ["north", "south", "east"]  # declared keys, the empty one included
    receipt = job["receipt"]
    assert receipt["epsilon_charged"] == "0.500000" and "Laplace" in receipt["mechanism"]
    assert receipt["dataset_version"] == 1 and receipt["released_at"]
    sums = ledger_sums(purchase)
    assert sums == {"reserve": Decimal("0.5"), "commit": Decimal("0.5"), "refund": Decimal(0)}
    purchase.refresh_from_db()
    assert purchase.epsilon_used == Decimal("0.5")
    ledger = api.get(f"/api/v1/purchases/{purchase.pk}/ledger/").json()
    assert ledger["epsilon_committed"] == "0.500000" and ledger["epsilon_remaining"] == "1.500000"


def test_the_receipt_states_the_neighbouring_relation_and_each_measurements_grid(
    api, purchase, dp_dataset, eager_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        job_id = submit(api, purchase, {"aggregate": "sum", "column": "age"}).json()["id"]
    job = api.get(f"/api/v1/jobs/{job_id}/").json()
    receipt = job["receipt"]
    assert receipt["neighbouring"] == "add or remove one row"
    assert "epsilon_replace_one" not in receipt  # the row count is private
    # The released sum is an exact multiple of the granularity the receipt states.
    g = receipt["granularity"]["sum"]
    assert g == mechanism(0.5, 0.0, 100.0).granularity
    value = job["result"]["groups"][0]["value"]
    assert (value / g).is_integer()

    dp_dataset.row_count_public = True
    dp_dataset.save(update_fields=["row_count_public"])
    with django_capture_on_commit_callbacks(execute=True):
        job_id = submit(api, purchase, {"aggregate": "count"}, epsilon="0.25").json()["id"]
    receipt = api.get(f"/api/v1/jobs/{job_id}/").json()["receipt"]
    # With the count public, replace-one neighbours are the meaningful ones: the same answer is 2 epsilon there.
    assert receipt["neighbouring"] == "add or remove one row" and receipt["epsilon_replace_one"] == 0.5
    assert receipt["granularity"] == {"count": 1.0}


def test_a_released_count_is_close_to_the_truth(
    api, purchase, dp_dataset, eager_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = submit(
            api,
            purchase,
            {"aggregate": "count", "filters": [{"column": "member", "op": "eq", "value": True}]},
            epsilon="1",
        )
    job = api.get(f"/api/v1/jobs/{response.json()['id']}/").json()
    truth = int(dp_dataset.truth["member"].sum())
    group = job["result"]["groups"][0]
    # Geometric noise at epsilon 1: |noise| > 20 has probability 2 e^-21 / (1 + e^-1) < 1e-9.
    assert abs(group["value"] - truth) <= 20
    assert group["ci95"][0] <= group["value"] <= group["ci95"][1]


@pytest.mark.parametrize(
    "query, epsilon, delta, field",
    [
        ({"aggregate": "sum", "column": "nope"}, "0.5", None, "query.column"),
        ({"aggregate": "sum", "column": "region"}, "0.5", None, "query.column"),
        (
            {"aggregate": "count", "filters": [{"column": "region", "op": "eq", "value": "west"}]},
            "0.5",
            None,
            "query.filters.0.value",
        ),
        ({"aggregate": "count"}, "0", None, "epsilon"),
        ({"aggregate": "count"}, "-1", None, "epsilon"),
        ({"aggregate": "count"}, "NaN", None, "epsilon"),
        ({"aggregate": "count"}, "Infinity", None, "epsilon"),
        ({"aggregate": "count"}, "abc", None, "epsilon"),
        ({"aggregate": "quantile", "column": "age", "quantiles": [0.5]}, "0.5", "0.000001", "delta"),
        ({"aggregate": "count"}, "0.5", "2", "delta"),
        ("not an object", "0.5", None, "query"),
    ],
)
def test_a_job_that_does_not_fit_the_schema_is_a_400_naming_the_field_and_reserves_nothing(
    api, purchase, query, epsilon, delta, field
):
    response = submit(api, purchase, query, epsilon=epsilon, delta=delta)
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]
    assert not Job.objects.exists() and not LedgerEntry.objects.exists()


def test_asking_for_more_than_the_allotment_is_a_409_saying_what_remains(api, purchase):
    response = submit(api, purchase, {"aggregate": "count"}, epsilon="2.5")
    assert response.status_code == 409
    assert "2" in response.json()["error"]["message"]
    assert response.json()["error"]["epsilon_remaining"] == "2.000000"
    assert not LedgerEntry.objects.exists()


def test_an_idempotency_key_returns_the_first_job(api, purchase):
    first = submit(api, purchase, {"aggregate": "count"}, HTTP_IDEMPOTENCY_KEY="abc-1")
    second = submit(api, purchase, {"aggregate": "count"}, HTTP_IDEMPOTENCY_KEY="abc-1")
    assert first.json()["id"] == second.json()["id"] and second.json()["reused"] is True
    assert ledger_sums(purchase)["reserve"] == Decimal("0.5")


def test_the_same_query_again_returns_the_stored_release_at_no_cost(
    api, purchase, eager_tasks, django_capture_on_commit_callbacks
):
    query = {
        "aggregate": "sum",
        "column": "income",
        "filters": [{"column": "region", "op": "in", "values": ["south", "north"]}],
    }
    with django_capture_on_commit_callbacks(execute=True):
        first = submit(api, purchase, query).json()
    # The same query in another order of filter values is the same query.
    again = submit(
        api, purchase, {**query, "filters": [{"column": "region", "op": "in", "values": ["north", "south"]}]}
    ).json()
    assert again["id"] == first["id"] and again["reused"] is True
    released = api.get(f"/api/v1/jobs/{first['id']}/").json()
    assert again["result"] == released["result"]
    assert ledger_sums(purchase)["commit"] == Decimal("0.5")
    # A different epsilon is a different query, and is charged.
    with django_capture_on_commit_callbacks(execute=True):
        other = submit(api, purchase, query, epsilon="0.25").json()
    assert other["id"] != first["id"]
    assert ledger_sums(purchase)["commit"] == Decimal("0.75")


def test_cancelling_a_queued_job_refunds_its_reservation(api, purchase):
    job = submit(api, purchase, {"aggregate": "count"}).json()  # on_commit not run: stays queued
    response = api.post(f"/api/v1/jobs/{job['id']}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert ledger_sums(purchase) == {"reserve": Decimal("0.5"), "commit": Decimal(0), "refund": Decimal("0.5")}
    purchase.refresh_from_db()
    assert purchase.epsilon_used == 0
    assert api.post(f"/api/v1/jobs/{job['id']}/cancel/").status_code == 409
    # A task that arrives after the cancellation does nothing.
    assert services.job_run(job_id=job["id"]) == "skipped"
    assert ledger_sums(purchase)["commit"] == 0


def test_a_task_delivered_twice_releases_and_charges_once(api, purchase):
    job = submit(api, purchase, {"aggregate": "count"}).json()
    assert services.job_run(job_id=job["id"]) == "released"
    assert services.job_run(job_id=job["id"]) == "skipped"
    assert ledger_sums(purchase) == {"reserve": Decimal("0.5"), "commit": Decimal("0.5"), "refund": Decimal(0)}


def test_a_job_that_fails_is_refunded_with_a_reason(api, purchase, dp_dataset, private_storage):
    job = submit(api, purchase, {"aggregate": "count"}).json()
    from marketplace.datafiles import clear_cache

    clear_cache()
    (private_storage / dp_dataset.file_path).unlink()  # the stored file has gone missing
    assert services.job_run(job_id=job["id"]) == "failed"
    body = api.get(f"/api/v1/jobs/{job['id']}/").json()
    assert body["status"] == "failed" and "refunded" in body["error"]
    assert ledger_sums(purchase) == {"reserve": Decimal("0.5"), "commit": Decimal(0), "refund": Decimal("0.5")}


def test_the_sweeper_requeues_a_job_whose_worker_died_and_fails_it_after_the_last_attempt(api, purchase, settings):
    job = submit(api, purchase, {"aggregate": "count"}).json()
    stale = timezone.now() - timedelta(seconds=settings.CLOAKROOM_JOB_LEASE_SECONDS + 5)
    Job.objects.filter(pk=job["id"]).update(status=Job.Status.RUNNING, started_at=stale, attempts=1, claim="dead")
    sent = []
    original = DpQuery.send
    DpQuery.send = lambda self, job_id: sent.append(job_id)
    try:
        assert services.jobs_sweep() == {"requeued": 1, "failed": 0, "key_wait_expired": 0}
        assert sent == [job["id"]]
        # A stale claim cannot release: the dead worker's token no longer matches once re-claimed.
        assert services.job_run(job_id=job["id"]) == "released"
        assert ledger_sums(purchase)["commit"] == Decimal("0.5")
        second = submit(api, purchase, {"aggregate": "sum", "column": "age"}).json()
        Job.objects.filter(pk=second["id"]).update(
            status=Job.Status.RUNNING, started_at=stale, attempts=settings.CLOAKROOM_JOB_MAX_ATTEMPTS
        )
        assert services.jobs_sweep() == {"requeued": 0, "failed": 1, "key_wait_expired": 0}
    finally:
        DpQuery.send = original
    assert Job.objects.get(pk=second["id"]).status == "failed"
    assert ledger_sums(purchase)["refund"] == Decimal("0.5")


def test_another_buyers_job_and_ledger_are_404(api, purchase, outsider):
    job = submit(api, purchase, {"aggregate": "count"}).json()
    other = client_for(outsider)
    assert other.get(f"/api/v1/jobs/{job['id']}/").status_code == 404
    assert other.post(f"/api/v1/jobs/{job['id']}/cancel/").status_code == 404
    assert other.get(f"/api/v1/purchases/{purchase.pk}/ledger/").status_code == 404
    assert other.get("/api/v1/jobs/").json()["count"] == 0
    assert submit(other, purchase, {"aggregate": "count"}).status_code == 404


def test_an_estimate_spends_nothing_and_inverts(api, purchase):
    body = {"purchase": purchase.pk, "query": {"aggregate": "sum", "column": "age"}, "epsilon": "0.5"}
    est = api.post("/api/v1/jobs/estimate/", body, format="json").json()
    # Sensitivity 100 / 0.5, released on a grid of 100/1024 or finer: at most 1/1024 more noise.
    noise = mechanism(0.5, 0.0, 100.0)
    assert est["noise_scale"] == noise.scale and 200.0 <= noise.scale <= 200.0 * (1 + 1 / 1024)
    # The exact 95% half-width of the discrete Laplace on that grid, plus half a grid step of rounding.
    assert est["ci95_halfwidth"] == noise.halfwidth() and est["exact"] is True
    assert est["ci95_halfwidth"] == pytest.approx(200.0 * 2.995732, rel=2e-3)
    assert est["price"] == "5.00"
    inverse = api.post("/api/v1/jobs/estimate/", {**body, "ci95_halfwidth": 100.0}, format="json").json()
    # Solved to 0.1%, for the grid's noise (at most 1/1024 more) and half a grid step of rounding.
    assert inverse["ci95_halfwidth"] <= 100.0
    assert 2.995733 <= float(inverse["epsilon"]) <= 2.995733 * (1 + 1 / 1024) * 1.001 + 1e-3
    assert not LedgerEntry.objects.exists() and not Job.objects.exists()


def test_results_download_as_csv_with_formula_cells_escaped_and_as_json(api, purchase):
    job = submit(api, purchase, {"aggregate": "histogram", "column": "region"}).json()
    services.job_run(job_id=job["id"])
    Job.objects.filter(pk=job["id"]).update(
        result={
            **Job.objects.get(pk=job["id"]).result,
            "groups": [{"key": {"region": "=HYPERLINK(1)"}, "value": -3.5, "ci95": [-5, 1]}],
            "aggregate": "sum",
        }
    )
    response = api.get(f"/api/v1/jobs/{job['id']}/download/?format=csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["region", "value", "ci95_low", "ci95_high"]
    assert rows[1] == ["'=HYPERLINK(1)", "-3.5", "-5", "1"]
    as_json = api.get(f"/api/v1/jobs/{job['id']}/download/?format=json").json()
    assert as_json["receipt"]["job"] == job["id"]
    assert api.get(f"/api/v1/jobs/{job['id']}/download/?format=xml").status_code == 400


def test_the_owner_sees_budget_by_buyer_but_never_a_released_value(owner_client, api, purchase, dp_dataset):
    job = submit(api, purchase, {"aggregate": "sum", "column": "income"}).json()
    services.job_run(job_id=job["id"])
    value = Job.objects.get(pk=job["id"]).result["groups"][0]["value"]
    body = owner_client.get(f"/api/v1/datasets/{dp_dataset.pk}/budget/")
    assert body.status_code == 200
    data = body.json()
    assert data["epsilon_sold"] == "2.000000" and data["epsilon_spent"] == "0.500000"
    assert data["by_buyer"][0]["buyer"] == "bob" and data["by_buyer"][0]["epsilon_spent"] == "0.500000"
    assert str(value)[:8] not in body.content.decode()
    assert api.get(f"/api/v1/datasets/{dp_dataset.pk}/budget/").status_code == 404


def test_the_purchase_delta_is_its_share_of_the_dataset_cap(purchase):
    purchase = Purchase.objects.get(pk=purchase.pk)
    assert purchase.delta == Decimal("0.000002")  # 1e-5 x 2 / 10
