"""A PATE job through the API with the real engine: the upload and spec refusals (a 400 naming the
field, nothing written), a run that labels the buyer's rows, and two concurrent submissions on a budget
that fits one: exactly one wins."""

from __future__ import annotations

import io
import threading
import uuid
from decimal import Decimal

import pytest
from django.db import connections

from compute.models import Job
from compute.pate_services import pate_submit
from compute.services import job_run
from config.celery_app import app as celery_app
from config.exceptions import Conflict
from marketplace.models import Dataset, LedgerEntry
from tests.fixtures.pate import submit, unlabelled_csv

SPEC = {"teachers": 15, "threshold": 8, "sigma1": 20, "sigma2": 10, "max_queries": 30}


def csv(text: str) -> io.BytesIO:
    upload = io.BytesIO(text.encode())
    upload.name = "rows.csv"
    return upload


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("upload", "spec", "field", "words"),
    [
        (lambda: csv("age,region\n30,north\n"), SPEC, "file", "member"),
        (lambda: csv("age,region,member\n130,north,true\n"), SPEC, "file", "age"),
        (lambda: csv("age,region,member\n30,west,true\n"), SPEC, "file", "region"),
        (lambda: csv("age,region,member\n"), SPEC, "file", "rows"),
        (lambda: None, SPEC, "file", "file"),
        (unlabelled_csv, {"teachers": 0}, "spec.teachers", ""),
        (unlabelled_csv, {"colour": "red"}, "spec.colour", "Unknown"),
        (unlabelled_csv, {"teacher_model": "svm"}, "spec.teacher_model", ""),
        (unlabelled_csv, {"max_queries": 41}, "spec.max_queries", ""),
        (unlabelled_csv, "[1, 2]", "spec", "object"),
        (unlabelled_csv, "{not json", "spec", "JSON"),
    ],
)
def test_a_bad_table_or_spec_is_a_400_naming_the_field_and_writes_nothing(
    pate_ensemble, api, buyer, private_storage, upload, spec, field, words
):
    before = sorted(p for p in private_storage.rglob("*") if p.is_file())
    body = {}
    file = upload()
    if file is not None:
        body["file"] = file
    import json

    body["spec"] = spec if isinstance(spec, str) else json.dumps(spec)
    response = api.post(f"/api/v1/ensembles/{pate_ensemble['id']}/jobs/", body, format="multipart")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert field in error["fields"], error
    assert words in error["message"] or words in str(error["fields"]), error
    assert not Job.objects.exists() and not LedgerEntry.objects.exists()
    assert sorted(p for p in private_storage.rglob("*") if p.is_file()) == before


@pytest.mark.django_db
def test_only_buyers_submit_and_an_unknown_ensemble_is_a_404(pate_ensemble, api, owner_client):
    assert submit(owner_client, pate_ensemble["id"], SPEC).status_code == 403
    assert submit(api, 999999, SPEC).status_code == 404


@pytest.mark.django_db
def test_the_stored_table_is_encrypted_and_the_idempotency_key_answers_once(pate_ensemble, api, private_storage):
    first = submit(api, pate_ensemble["id"], SPEC, HTTP_IDEMPOTENCY_KEY="k1")
    again = submit(api, pate_ensemble["id"], SPEC, HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == again.status_code == 202 and first.json()["id"] == again.json()["id"]
    job = Job.objects.get()
    stored = (private_storage / job.input_path).read_bytes()
    assert job.input_path.startswith("pate-inputs/") and b"north" not in stored and b"age" not in stored
    assert LedgerEntry.objects.filter(kind="reserve").count() == 3


@pytest.mark.django_db
def test_the_real_engine_labels_the_rows_and_commits_what_it_used(pate_ensemble, api):
    from compute.engines import accounting
    from compute.engines import pate as engine

    upload = unlabelled_csv(40)
    spec = {"teachers": 15, "threshold": 8, "sigma1": 4, "sigma2": 2, "max_queries": 40}
    # A small, generous budget: 15 teachers that agree, little noise; one job of rho ~ 11 needs a large cap.
    Dataset.objects.filter(pk__in=pate_ensemble["dataset_ids"]).update(epsilon_cap=Decimal("100"))
    for d in Dataset.objects.filter(pk__in=pate_ensemble["dataset_ids"]):
        d.save()  # the rho cap follows the caps
    response = submit(api, pate_ensemble["id"], spec, upload=upload)
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["id"])
    assert job_run(job_id=job.pk) == "released"
    job.refresh_from_db()
    result = job.result
    answered = [(label, truth) for label, truth in zip(result["labels"], upload.truth, strict=True) if label]
    assert result["asked"] == 40 and result["answered"] == len(answered) >= 30
    assert sum(label == truth for label, truth in answered) >= 0.9 * len(answered)
    parsed = engine.parse_spec(spec, 40, delta=1e-5)
    used = accounting.rho_charge(engine.used_rho(parsed, 40, result["answered"]))
    commits = LedgerEntry.objects.filter(job_id=job.pk, kind="commit")
    assert sorted(c.dataset_id for c in commits) == sorted(pate_ensemble["dataset_ids"])
    assert {c.rho for c in commits} == {used}
    assert job.progress_done == job.progress_total > 0


@pytest.fixture
def purged_ml_queue(settings):
    # The jobs go to a queue of this test's own on the real broker, emptied afterwards.
    settings.CLOAKROOM_ML_QUEUE = f"pate-test-{uuid.uuid4().hex}"
    yield
    with celery_app.connection_for_write() as conn:
        conn.default_channel.queue_delete(settings.CLOAKROOM_ML_QUEUE)


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_submissions_on_a_budget_that_fits_one_give_one_job(pate_ensemble, buyer, purged_ml_queue):
    # rho 30 x (1/200 + 1/36) ~ 0.98 each; a member's cap at (10, 1e-5) holds ~1.78: one fits, two do not.
    spec = {"teachers": 15, "threshold": 8, "sigma1": 10, "sigma2": 6, "max_queries": 30}
    barrier = threading.Barrier(2)
    outcomes: list[str] = []
    lock = threading.Lock()

    def go(i: int) -> None:
        try:
            barrier.wait(timeout=60)
            pate_submit(buyer=buyer, ensemble_id=pate_ensemble["id"], upload=unlabelled_csv(), spec=spec)
            outcome = "accepted"
        except Conflict as exc:
            outcome = exc.code
        except Exception as exc:  # noqa: BLE001 - recorded and asserted on below
            outcome = f"error {type(exc).__name__}: {exc}"
        finally:
            connections.close_all()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(outcomes) == ["accepted", "dataset_budget_exhausted"], outcomes
    job = Job.objects.get()
    for dataset in Dataset.objects.filter(pk__in=pate_ensemble["dataset_ids"]):
        assert dataset.rho_used == job.rho <= dataset.rho_cap < 2 * job.rho
    assert LedgerEntry.objects.filter(kind="reserve").count() == 3
