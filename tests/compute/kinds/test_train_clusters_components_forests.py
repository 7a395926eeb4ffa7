"""Training jobs of issue 15's second slice (kmeans, pca, random_forest; docs/MODELS.md) through the one
lifecycle, as tests/compute/kinds/test_train.py does for the first: submitted through the API, run
with compute.services.job_run, released with a receipt and charged once; the model file rebuilds in
the SDK into an estimator that predicts (or transforms) what the parameters say; a request the
declaration cannot serve is a 400 naming the field and spends nothing."""

from __future__ import annotations

import json
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

from cloakroom_client import models as sdk
from compute import services
from compute.engines import accounting
from compute.models import Job
from marketplace.models import LedgerEntry

pytestmark = pytest.mark.django_db

GRID = 2.0**-10
TYPES = {
    "kmeans": {"features": ["age", "income", "region"], "params": {"k": 3, "iterations": 3}},
    "pca": {"features": ["age", "income", "member"], "params": {"n_components": 2}},
    "random_forest": {
        "features": ["age", "income", "member"],
        "label": "region",
        "params": {"n_trees": 4, "max_depth": 3},
    },
}


def train(api, purchase, model, epsilon="1", delta="0"):
    body = {"purchase": purchase.pk, "kind": "train", "model": model, "epsilon": epsilon, "delta": delta}
    return api.post("/api/v1/jobs/", body, format="json")


def released(api, purchase, model_type, epsilon="0.5", delta="0"):
    response = train(api, purchase, {"type": model_type, **TYPES[model_type]}, epsilon=epsilon, delta=delta)
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    assert services.job_run(job_id=job_id) == "released"
    return job_id, api.get(f"/api/v1/jobs/{job_id}/").json()


def check_shape(model_type: str, model: dict, training: dict) -> None:
    parts = training["parts"]
    if model_type == "kmeans":
        assert model["label"] is None and model["classes"] is None
        assert model["columns"] == ["age", "income", "region=north", "region=south", "region=east"]
        assert np.array(model["centres"]).shape == (3, 5)
        # Three rounds, each a count and a sum part; the centres start from the public rule.
        assert [p["part"] for p in parts] == [f"round_{r}_{w}" for r in (1, 2, 3) for w in ("counts", "sums")]
        assert {p["granularity"] for p in parts} == {GRID}
        assert "no row is a centre" in training["public"]
    elif model_type == "pca":
        assert model["label"] is None and model["classes"] is None
        assert np.array(model["components"]).shape == (2, 3) and len(model["mean"]) == 3
        variance = model["explained_variance"]
        assert len(variance) == 2 and variance[0] >= variance[1] >= 0
        np.testing.assert_allclose(
            np.array(model["components"]) @ np.array(model["components"]).T, np.eye(2), atol=1e-9
        )
        assert {p["granularity"] for p in parts} == {GRID}
    else:
        # Classes from the declaration: east has no rows in the table and is a class all the same.
        assert model["classes"] == ["north", "south", "east"]
        assert len(model["trees"]) == 4
        assert [p["part"] for p in parts] == ["tree_1", "tree_2", "tree_3", "tree_4"]
        assert all(p["statistics"] == 8 * 3 and p["sensitivity"] == 1 and p["granularity"] == 1.0 for p in parts)
        assert "no row is looked at" in training["public"]


@pytest.mark.parametrize("model_type", list(TYPES))
@pytest.mark.parametrize("delta", ["0", "0.000001"])
def test_each_type_is_released_with_its_receipt_and_charged_once(api, purchase, model_type, delta):
    job_id, body = released(api, purchase, model_type, delta=delta)
    assert services.job_run(job_id=job_id) == "skipped"  # a second delivery changes nothing
    assert body["status"] == "released" and body["model"]["type"] == model_type
    model, receipt = body["result"]["model"], body["receipt"]
    assert (model["type"], model["features"]) == (model_type, TYPES[model_type]["features"])
    check_shape(model_type, model, receipt["training"])

    commits = list(LedgerEntry.objects.filter(kind="commit").values_list("job_id", "epsilon", "rho"))
    reserves = list(LedgerEntry.objects.filter(kind="reserve").values_list("job_id", "epsilon", "rho"))
    stored = Job.objects.get(pk=job_id)
    assert commits == reserves == [(job_id, Decimal("0.5"), stored.rho)]
    parts = receipt["training"]["parts"]
    if delta == "0":
        assert stored.rho == accounting.rho_charge(accounting.pure_rho(0.5)) == Decimal("0.125")
        assert sum(p["epsilon"] for p in parts) <= 0.5
        if model_type != "pca":  # the rounds (or the trees) share the budget equally
            assert len({p["epsilon"] for p in parts if not p["part"].endswith("_counts")}) == 1
    else:
        assert {p["mechanism"] for p in parts} == {"gaussian"}
        assert stored.rho == accounting.rho_charge(sum(p["rho"] for p in parts))
    assert receipt["epsilon_charged"] == "0.500000"
    declared = {b["name"]: b for b in receipt["training"]["bounds"]}
    assert declared["income"]["lower"] == 0 and declared["income"]["upper"] == 200000
    assert "none" in receipt["training"]["evaluation"]


def rebuild(api, job_id, frame):
    doc = json.loads(api.get(f"/api/v1/jobs/{job_id}/model/").content)
    assert doc["model"] == api.get(f"/api/v1/jobs/{job_id}/").json()["result"]["model"]
    x = sdk.design_matrix(doc, frame)
    assert list(x.columns) == doc["model"]["columns"]
    return doc["model"], sdk.estimator(doc), x


def walk(tree: dict, row: np.ndarray) -> list[float]:
    while "counts" not in tree:
        tree = tree["left"] if row[tree["index"]] <= tree["threshold"] else tree["right"]
    return tree["counts"]


def test_the_model_files_rebuild_into_estimators_that_say_what_the_parameters_say(api, purchase, dp_dataset):
    truth = dp_dataset.truth
    frame = pd.DataFrame({k: truth[k] for k in ("age", "income", "region", "member")})

    job_id, _ = released(api, purchase, "kmeans", epsilon="0.3")
    model, est, x = rebuild(api, job_id, frame)
    assert type(est) is KMeans
    centres = np.array(model["centres"])
    nearest = ((x.to_numpy()[:, None, :] - centres[None]) ** 2).sum(axis=2).argmin(axis=1)
    assert list(est.predict(x)) == list(nearest)

    job_id, _ = released(api, purchase, "pca", epsilon="0.3")
    model, est, x = rebuild(api, job_id, frame)
    assert type(est) is PCA
    by_hand = (x.to_numpy() - np.array(model["mean"])) @ np.array(model["components"]).T
    np.testing.assert_allclose(est.transform(x), by_hand, rtol=1e-9, atol=1e-6)

    job_id, _ = released(api, purchase, "random_forest", epsilon="0.3")
    model, est, x = rebuild(api, job_id, frame)
    assert type(est) is sdk.Forest  # plain Python from the nested dicts (docs/MODELS.md)
    shares = np.zeros((len(x), 3))
    for tree in model["trees"]:
        for i, row in enumerate(x.to_numpy()):
            counts = np.clip(walk(tree, row), 0, None)
            shares[i] += counts / counts.sum() if counts.sum() > 0 else 1 / 3
    np.testing.assert_allclose(est.predict_proba(x), shares / 4, rtol=1e-12)
    assert list(est.predict(x)) == list(np.array(model["classes"], dtype=object)[shares.argmax(axis=1)])


REFUSED = [
    ({"type": "kmeans", "features": ["age", "income"]}, "model.params.k", "needs k"),
    ({"type": "kmeans", "features": ["age"], "params": {"k": 21}}, "model.params.k", "<= 20"),
    ({"type": "kmeans", "features": ["age"], "params": {"k": 2.5}}, "model.params.k", "whole"),
    ({"type": "kmeans", "features": ["age"], "label": "member", "params": {"k": 2}}, "model.label", "no label"),
    ({"type": "pca", "features": ["age", "region"], "params": {"n_components": 5}}, "model.params.n_components", "4"),
    ({"type": "pca", "features": ["age", "weight"]}, "model.features.1", "declared"),
    ({"type": "random_forest", "features": ["age"], "label": "income"}, "model.label", "numeric"),
    (
        {"type": "random_forest", "features": ["age"], "label": "member", "params": {"n_trees": 0}},
        "model.params.n_trees",
        ">= 1",
    ),
    (
        {"type": "random_forest", "features": ["age"], "label": "region", "params": {"n_trees": 50, "max_depth": 8}},
        "model.params.n_trees",
        "at most",
    ),
    (
        {"type": "random_forest", "features": ["age"], "label": "member", "params": {"k": 2}},
        "model.params.k",
        "Unknown",
    ),
]


@pytest.mark.parametrize(("model", "field", "words"), REFUSED)
def test_a_request_the_declaration_cannot_serve_is_a_400_naming_the_field_and_spends_nothing(
    api, purchase, model, field, words
):
    response = train(api, purchase, model)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert field in error["fields"], error
    assert words in error["message"], error
    assert not LedgerEntry.objects.exists() and not Job.objects.exists()


def test_an_estimate_of_each_type_states_the_epsilon_and_spends_nothing(api, purchase):
    for model_type, request in TYPES.items():
        body = {"purchase": purchase.pk, "kind": "train", "model": {"type": model_type, **request}, "epsilon": "0.5"}
        est = api.post("/api/v1/jobs/estimate/", body, format="json")
        assert est.status_code == 200, est.content
        assert Decimal(est.json()["rho"]) == Decimal("0.125") and est.json()["ci95_halfwidth"] is None
    assert not LedgerEntry.objects.exists()
