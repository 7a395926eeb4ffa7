"""A PATE job's optional student (``spec.student``, docs/PATE.md): trained on the answered labels only,
released in a train job's portable model format, served by /api/v1/jobs/{id}/model/ and rebuilt by the
SDK in scikit-learn; a job without it has none, and it changes nothing that is charged."""

from __future__ import annotations

import io
import json
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from cloakroom_client import models as sdk_models
from compute.engines import accounting
from compute.engines import pate as engine
from compute.models import Job
from compute.pate_data import encode
from compute.pate_student import columns_and_encoding, declared_units, released_student
from compute.services import job_run
from marketplace.models import Dataset, LedgerEntry
from tests.fixtures.pate import PATE_COLUMNS, pate_rows, submit, unlabelled_csv

SPEC = {"teachers": 15, "threshold": 8, "sigma1": 4, "sigma2": 2, "max_queries": 40}
FEATURES = [c for c in PATE_COLUMNS if not c.get("is_label")]
LABEL = next(c for c in PATE_COLUMNS if c.get("is_label"))


@pytest.fixture
def large_caps(pate_ensemble):
    # 15 teachers and little noise cost rho ~11 a job: a large cap for two of them.
    for dataset in Dataset.objects.filter(pk__in=pate_ensemble["dataset_ids"]):
        dataset.epsilon_cap = Decimal("200")
        dataset.save()


def released(api, ensemble_id: int, spec: dict) -> Job:
    response = submit(api, ensemble_id, spec, upload=unlabelled_csv(40))
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["id"])
    assert job_run(job_id=job.pk) == "released"
    job.refresh_from_db()
    return job


def raw_rows() -> pd.DataFrame:
    """The buyer's table as the buyer holds it (raw values, as uploaded by unlabelled_csv(40))."""
    return pd.read_csv(io.StringIO(pate_rows(40, 99, labelled=False)[0]))


@pytest.mark.django_db
def test_the_released_student_rebuilds_in_scikit_learn_and_predicts_what_its_parameters_say(
    pate_ensemble, api, large_caps
):
    job = released(api, pate_ensemble["id"], {**SPEC, "student": True})
    student = job.result["student"]
    assert (student["type"], student["label"], student["classes"]) == (
        "logistic_regression",
        "outcome",
        ["low", "high"],
    )
    assert student["features"] == ["age", "region", "member"]
    assert student["columns"] == ["age", "region=north", "region=south", "region=east", "member"]
    # Trained on the answered labels only, and the encoding is the declaration's.
    assert student["trained_on"] == job.result["answered"] == sum(v is not None for v in job.result["labels"])
    assert student["encoding"][0] == {"name": "age", "kind": "numeric", "columns": ["age"], "lower": 0, "upper": 100}

    assert api.get(f"/api/v1/jobs/{job.pk}/").json()["result"]["student"] == student
    response = api.get(f"/api/v1/jobs/{job.pk}/model/")
    assert response.status_code == 200, response.content
    doc = response.json()
    assert doc["model"] == student and doc["receipt"]["members"]
    frame = raw_rows()
    matrix = sdk_models.design_matrix(doc, frame)
    estimator = sdk_models.estimator(doc)
    predicted = estimator.predict(matrix)
    # The same as the parameters say, computed with numpy alone (one row of coefficients: the score of "high").
    by_hand = np.where(sdk_models.scores(doc, matrix)[:, 0] > 0, "high", "low")
    assert list(predicted) == list(by_hand)
    # And the student learnt the teachers' rule (high exactly when age > 50) from the noisy labels.
    truth = np.where(frame["age"] > 50, "high", "low")
    assert np.mean(predicted == truth) >= 0.9


@pytest.mark.django_db
def test_a_job_without_student_has_none_and_no_model_file_and_the_student_costs_nothing(pate_ensemble, api, large_caps):
    plain = released(api, pate_ensemble["id"], SPEC)
    assert "student" not in plain.result and "student" not in plain.spec
    assert "student" not in api.get(f"/api/v1/jobs/{plain.pk}/").json()["result"]
    response = api.get(f"/api/v1/jobs/{plain.pk}/model/")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_a_model"

    with_student = released(api, pate_ensemble["id"], {**SPEC, "student": True})
    # The same reservation on every member, and each commit the labels' own cost (asked rho1 + answered rho2).
    assert with_student.rho == plain.rho and with_student.epsilon == plain.epsilon
    parsed = engine.parse_spec(SPEC, 40, delta=1e-5)
    used = accounting.rho_charge(engine.used_rho(parsed, 40, with_student.result["answered"]))
    commits = LedgerEntry.objects.filter(job_id=with_student.pk, kind="commit")
    assert sorted(c.dataset_id for c in commits) == sorted(pate_ensemble["dataset_ids"])
    assert {c.rho for c in commits} == {used}


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["yes", 1, None, {"model": "svm"}])
def test_a_student_that_is_not_true_or_false_is_a_400_naming_it(pate_ensemble, api, value):
    response = api.post(
        f"/api/v1/ensembles/{pate_ensemble['id']}/jobs/",
        {"file": unlabelled_csv(), "spec": json.dumps({**SPEC, "student": value})},
        format="multipart",
    )
    assert response.status_code == 400, response.content
    assert "spec.student" in response.json()["error"]["fields"]
    assert not Job.objects.exists() and not LedgerEntry.objects.exists()


def test_declared_units_give_the_same_scores_on_raw_rows_as_the_scaled_coefficients_on_encoded_ones():
    rs = np.random.RandomState(3)
    frame = raw_rows()
    encoded = encode(FEATURES, {f["name"]: frame[f["name"]] for f in FEATURES})
    w, b = rs.normal(size=(1, encoded.shape[1])), rs.normal(size=1)
    coef, intercept = declared_units(FEATURES, w.tolist(), b.tolist())
    names, encoding = columns_and_encoding(FEATURES)
    doc = {"model": {"type": "logistic_regression", "encoding": encoding, "columns": names}}
    raw = sdk_models.design_matrix(doc, frame).to_numpy()
    assert np.allclose(raw @ np.array(coef).T + np.array(intercept), encoded @ w.T + b)


def test_answered_labels_of_one_class_release_no_student_and_say_why():
    frame = raw_rows()
    x = encode(FEATURES, {f["name"]: frame[f["name"]] for f in FEATURES})
    labels = ["high"] * 5 + [None] * (len(x) - 5)
    out = released_student(FEATURES, LABEL, x, labels)
    assert out["student"] is None and "fewer than two classes" in out["student_error"]
