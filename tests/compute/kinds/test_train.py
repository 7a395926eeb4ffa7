"""Training jobs (kind "train", docs/MODELS.md) through the one lifecycle: submitted through the API,
run synchronously with compute.services.job_run (as tests/compute/test_tight_accounting.py does),
released with a receipt and charged once; bad requests are 400s or 409s that name the field and
spend nothing."""

from __future__ import annotations

import io
import json
import math
from decimal import Decimal

import numpy as np
import pytest

from compute import services
from compute.engines import accounting
from compute.models import Job
from marketplace.models import Dataset, LedgerEntry
from marketplace.services import purchase_create

pytestmark = pytest.mark.django_db

TYPES = {
    "logistic_regression": {"features": ["age", "income", "region"], "label": "member"},
    "naive_bayes": {"features": ["age", "income", "member"], "label": "region"},
    "linear_regression": {"features": ["age", "region", "member"], "label": "income"},
}


def train(api, purchase, model, epsilon="1", delta="0"):
    body = {"purchase": purchase.pk, "kind": "train", "model": model, "epsilon": epsilon, "delta": delta}
    return api.post("/api/v1/jobs/", body, format="json")


def rows(kind: str, purchase=None) -> list[tuple]:
    qs = LedgerEntry.objects.filter(kind=kind)
    if purchase is not None:
        qs = qs.filter(purchase=purchase)
    return list(qs.values_list("job_id", "epsilon", "rho"))


@pytest.mark.parametrize("model_type", list(TYPES))
@pytest.mark.parametrize("delta", ["0", "0.000001"])
def test_a_model_of_each_type_is_released_with_its_receipt_and_charged_once(api, purchase, model_type, delta):
    model = {"type": model_type, **TYPES[model_type]}
    response = train(api, purchase, model, epsilon="0.5", delta=delta)
    assert response.status_code == 202, response.content
    job = response.json()
    assert (job["kind"], job["query"], job["model"]["type"]) == ("train", None, model_type)

    assert services.job_run(job_id=job["id"]) == "released"
    assert services.job_run(job_id=job["id"]) == "skipped"  # a second delivery changes nothing
    body = api.get(f"/api/v1/jobs/{job['id']}/").json()
    assert body["status"] == "released"
    released = body["result"]["model"]
    assert (released["type"], released["features"], released["label"]) == (
        model_type,
        model["features"],
        model["label"],
    )

    # Charged once: one reserve and one commit row, at the job's rho.
    (commit,) = rows("commit", purchase)
    assert rows("reserve", purchase) == [commit]
    stored = Job.objects.get(pk=job["id"])
    if delta == "0":
        assert stored.rho == accounting.rho_charge(accounting.pure_rho(0.5)) == Decimal("0.125")
    else:
        parts = body["receipt"]["training"]["parts"]
        assert {p["mechanism"] for p in parts} == {"gaussian"}
        assert stored.rho == accounting.rho_charge(sum(p["rho"] for p in parts))
        assert stored.rho < accounting.rho_charge(accounting.pure_rho(0.5))  # the Gaussian is cheaper in rho
    assert commit[1:] == (Decimal("0.5"), stored.rho)

    receipt = body["receipt"]
    assert (receipt["epsilon_charged"], receipt["delta_charged"]) == ("0.500000", f"{Decimal(delta):.12f}")
    training = receipt["training"]
    if delta == "0":
        # The parts' epsilons add up to at most the job's.
        assert sum(p["epsilon"] for p in training["parts"]) <= 0.5
    declared = {b["name"]: b for b in training["bounds"]}
    assert declared["age"]["lower"] == 0 and declared["age"]["upper"] == 100
    assert declared["income"]["upper"] == 200000
    assert "none" in training["evaluation"]
    # Every released statistic lay on its grid; the parameters are what the fit made of them. The
    # statistics' grid is 2**-10; logistic regression's weights have a power of two of their own.
    grids = receipt["granularity"]
    assert grids and all(math.log2(g).is_integer() for g in grids.values())
    if model_type != "logistic_regression":
        assert all(g == 2.0**-10 for g in grids.values())


def test_classes_come_from_the_declaration_even_when_a_class_has_no_rows(api, purchase):
    # The table's region is only ever north or south; "east" is declared and is a class all the same.
    response = train(api, purchase, {"type": "naive_bayes", "features": ["age", "member"], "label": "region"})
    assert services.job_run(job_id=response.json()["id"]) == "released"
    model = api.get(f"/api/v1/jobs/{response.json()['id']}/").json()["result"]["model"]
    assert model["classes"] == ["north", "south", "east"]
    assert len(model["theta"]) == len(model["var"]) == len(model["class_prior"]) == 3


def test_categorical_features_are_one_hot_from_the_declared_categories(api, purchase):
    response = train(api, purchase, {"type": "logistic_regression", "features": ["region", "age"], "label": "member"})
    services.job_run(job_id=response.json()["id"])
    model = api.get(f"/api/v1/jobs/{response.json()['id']}/").json()["result"]["model"]
    assert model["columns"] == ["region=north", "region=south", "region=east", "age"]
    assert model["classes"] == [False, True]
    assert np.array(model["coefficients"]).shape == (1, 4)  # binary: one row, for the second class


def test_the_model_file_is_the_parameters_the_encoding_and_the_receipt(api, purchase, outsider_client):
    response = train(api, purchase, {"type": "linear_regression", "features": ["age"], "label": "income"})
    job_id = response.json()["id"]
    assert api.get(f"/api/v1/jobs/{job_id}/model/").json()["error"]["code"] == "not_released"
    services.job_run(job_id=job_id)
    download = api.get(f"/api/v1/jobs/{job_id}/model/")
    assert download.status_code == 200
    assert download["Content-Disposition"] == f'attachment; filename="cloakroom-model-{job_id}.json"'
    doc = json.loads(download.content)
    assert (doc["format"], doc["version"], doc["job"]) == ("cloakroom-model", 1, job_id)
    assert doc["model"] == api.get(f"/api/v1/jobs/{job_id}/").json()["result"]["model"]
    assert doc["model"]["encoding"] == [
        {"name": "age", "kind": "numeric", "columns": ["age"], "lower": 0, "upper": 100}
    ]
    assert doc["receipt"]["training"]["parts"]
    # Another account's job is a 404, as every lookup by id.
    assert outsider_client.get(f"/api/v1/jobs/{job_id}/model/").status_code == 404
    # The result download: JSON as any job's; a model has no table, so CSV is a 400 naming the format.
    assert api.get(f"/api/v1/jobs/{job_id}/download/?format=json").status_code == 200
    as_csv = api.get(f"/api/v1/jobs/{job_id}/download/?format=csv")
    assert as_csv.status_code == 400 and "format" in as_csv.json()["error"]["fields"]


def test_a_query_job_has_no_model_file(api, purchase):
    response = api.post(
        "/api/v1/jobs/",
        {"purchase": purchase.pk, "kind": "query", "query": {"aggregate": "count"}, "epsilon": "0.1"},
        format="json",
    )
    services.job_run(job_id=response.json()["id"])
    answer = api.get(f"/api/v1/jobs/{response.json()['id']}/model/")
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_a_model"


def test_a_training_estimate_states_the_epsilon_and_the_share_and_promises_no_accuracy(api, purchase):
    body = {
        "purchase": purchase.pk,
        "kind": "train",
        "model": {"type": "logistic_regression", "features": ["age"], "label": "member"},
        "epsilon": "0.5",
    }
    est = api.post("/api/v1/jobs/estimate/", body, format="json")
    assert est.status_code == 200, est.content
    est = est.json()
    assert Decimal(est["epsilon"]) == Decimal("0.5") and Decimal(est["rho"]) == Decimal("0.125")
    assert est["share_of_allotment"] > 0 and est["affordable"] is True
    assert est["ci95_halfwidth"] is None and "not promised" in est["accuracy_in_words"]
    assert "discrete Laplace" in est["mechanism"]
    assert not LedgerEntry.objects.exists()


# -- refusals: a 400 or 409 naming the field, and nothing spent ---------------------------------------


@pytest.fixture
def one_class_dataset(owner, owner_client):
    upload = io.BytesIO(b"x,kind,size\n1,a,2\n4,a,3\n7,a,9\n")
    upload.name = "one.csv"
    meta = {
        "title": "One class",
        "epsilon_cap": "10",
        "price_per_epsilon": "1",
        "columns": [
            {"name": "x", "kind": "numeric", "lower": 0, "upper": 10},
            {"name": "kind", "kind": "categorical", "categories": ["a"]},
            {"name": "size", "kind": "numeric", "lower": 0, "upper": 10},
        ],
    }
    response = owner_client.post(
        "/api/v1/datasets/", {"file": upload, "metadata": json.dumps(meta)}, format="multipart"
    )
    assert response.status_code == 201, response.content
    owner_client.post(f"/api/v1/datasets/{response.json()['id']}/publish/")
    return Dataset.objects.get(pk=response.json()["id"])


REFUSED = [
    # A bound the model would need and the declaration does not have: a categorical label has none.
    ({"type": "linear_regression", "features": ["age"], "label": "region"}, "model.label", "declared bounds"),
    ({"type": "logistic_regression", "features": ["age"], "label": "height"}, "model.label", "declared column"),
    ({"type": "naive_bayes", "features": ["age", "weight"], "label": "member"}, "model.features.1", "declared"),
    ({"type": "naive_bayes", "features": ["age"], "label": "age"}, "model.label", "numeric"),
    ({"type": "logistic_regression", "features": ["member"], "label": "member"}, "model.label", "also a feature"),
    ({"type": "gradient_boosting", "features": ["age"], "label": "member"}, "model.type", "Must be one of"),
    ({"type": "linear_regression", "features": [], "label": "income"}, "model.features", "list"),
    ({"type": "linear_regression", "features": ["age"], "label": "income", "params": {"C": 1}}, "model.params.C", ""),
    ({"type": "logistic_regression", "features": ["age"], "label": "member", "params": {"C": 0}}, "model.params.C", ""),
]


@pytest.mark.parametrize(("model", "field", "words"), REFUSED)
def test_a_bad_model_is_a_400_naming_the_field_and_spends_nothing(api, purchase, model, field, words):
    response = train(api, purchase, model)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert field in error["fields"], error
    assert words in error["message"]
    assert not LedgerEntry.objects.exists() and not Job.objects.exists()


def test_a_categorical_label_with_one_class_is_refused(buyer, api, one_class_dataset):
    purchase = purchase_create(buyer=buyer, dataset_id=one_class_dataset.pk, epsilon=Decimal("1"))
    response = train(api, purchase, {"type": "logistic_regression", "features": ["x"], "label": "kind"})
    assert response.status_code == 400
    assert "one class" in response.json()["error"]["fields"]["model.label"][0]
    assert not LedgerEntry.objects.exists()


def test_an_epsilon_over_the_allotment_is_a_409_and_spends_nothing(api, purchase):
    response = train(api, purchase, {"type": "naive_bayes", "features": ["age"], "label": "member"}, epsilon="2.5")
    assert response.status_code == 409, response.content
    assert response.json()["error"]["code"] == "insufficient_budget"
    assert not LedgerEntry.objects.exists() and not Job.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "train"}, "model"),
        ({"kind": "train", "query": {"aggregate": "count"}}, "query"),
        ({"kind": "query", "model": {"type": "naive_bayes"}}, "model"),
        (
            {"kind": "train", "model": {"type": "naive_bayes", "features": ["age"], "label": "member"}, "delta": "0.1"},
            "delta",
        ),
    ],
)
def test_a_train_job_takes_model_and_a_query_job_query(api, purchase, body, field):
    response = api.post("/api/v1/jobs/", {"purchase": purchase.pk, "epsilon": "1", **body}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]
    assert not LedgerEntry.objects.exists()
