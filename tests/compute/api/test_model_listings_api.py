"""Models as listings (docs/MODELS.md, "Encrypted inference"): publishing a released, DP-trained linear
model, the catalogue, and encrypted predictions through the API, scored synchronously with
compute.inference.services.prediction_run (the worker's service) on real TenSEAL ciphertexts."""

from __future__ import annotations

import io
from datetime import timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from django.utils import timezone

from accounts.models import Wallet
from cloakroom_client import models as sdk_models
from cloakroom_client.he import inference as crypto
from cloakroom_client.protocol import inference
from compute import services
from compute.api.listings import MAX_BODY_BYTES
from compute.inference import services as inference_services
from compute.inference import storage
from compute.models import ModelListing, Prediction
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

LOGISTIC = {"type": "logistic_regression", "features": ["age", "income", "region"], "label": "member"}


def trained(api, purchase, model=LOGISTIC, run=True) -> int:
    body = {"purchase": purchase.pk, "kind": "train", "model": model, "epsilon": "1", "delta": "0"}
    response = api.post("/api/v1/jobs/", body, format="json")
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    if run:
        assert services.job_run(job_id=job_id) == "released"
    return job_id


def publish(api, job_id, price="0.50", title="Membership"):
    body = {"job": job_id, "title": title, "price_per_prediction": price}
    return api.post("/api/v1/models/", body, format="json")


@pytest.fixture
def listing(api, purchase):
    response = publish(api, trained(api, purchase))
    assert response.status_code == 201, response.content
    return response.json()


def test_the_buyer_of_a_released_train_job_publishes_its_model(api, purchase, buyer):
    job_id = trained(api, purchase)
    response = publish(api, job_id)
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["title"], body["type"], body["features"], body["owner"]) == (
        "Membership",
        "logistic_regression",
        ["age", "income", "region"],
        buyer.username,
    )
    assert body["classes"] == [False, True]
    assert body["price_per_prediction"] == "0.50"
    assert body["dp"] is True and "differential privacy" in body["privacy"]
    assert body["scores"] == ["score_True"]
    # The coefficients stay on the server: the listing shows the encoding only.
    assert "coefficients" not in body and "intercept" not in body
    assert body["columns"] == ["age", "income", "region=north", "region=south", "region=east"]
    assert api.get("/api/v1/models/").json()["results"][0]["id"] == body["id"]
    assert api.get(f"/api/v1/models/{body['id']}/").json() == body


def test_someone_elses_job_is_a_404(api, purchase, outsider):
    job_id = trained(api, purchase)
    response = publish(client_for(outsider), job_id)
    assert response.status_code == 404
    assert "job" in response.json()["error"]["fields"]
    assert not ModelListing.objects.exists()


def test_a_job_that_is_not_released_is_a_409(api, purchase):
    response = publish(api, trained(api, purchase, run=False))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_released"


def test_a_model_is_published_once(api, purchase):
    job_id = trained(api, purchase)
    assert publish(api, job_id).status_code == 201
    again = publish(api, job_id)
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_published"


def test_naive_bayes_cannot_be_served_under_encryption(api, purchase):
    # A well-formed request about a job whose model cannot be served: a 409 naming the job, not a 400.
    model = {"type": "naive_bayes", "features": ["age", "income"], "label": "region"}
    response = publish(api, trained(api, purchase, model))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_servable" and "job" in response.json()["error"]["fields"]
    assert not ModelListing.objects.exists()


def test_a_query_job_is_no_model_to_publish(api, purchase):
    job = api.post(
        "/api/v1/jobs/",
        {"purchase": purchase.pk, "kind": "query", "query": {"aggregate": "count"}, "epsilon": "0.1"},
        format="json",
    ).json()
    response = publish(api, job["id"])
    assert response.status_code == 409 and response.json()["error"]["code"] == "not_a_model"
    assert not ModelListing.objects.exists()


@pytest.mark.parametrize("price", ["-1", "abc", "0.001", "", None])
def test_a_bad_price_is_a_400_naming_the_field(api, purchase, price):
    response = publish(api, trained(api, purchase), price=price)
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["price_per_prediction"]
    assert not ModelListing.objects.exists()


def test_a_blank_title_is_a_400_naming_the_field(api, purchase):
    response = publish(api, trained(api, purchase), title="  ")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["title"]


def frame(n=40, seed=5) -> pd.DataFrame:
    rs = np.random.RandomState(seed)
    return pd.DataFrame(
        {
            "age": rs.randint(18, 90, n),
            "income": rs.uniform(10000, 150000, n),
            "region": rs.choice(["north", "south", "east"], n),
        }
    )


def encrypt(listing, table):
    ctx = crypto.new_context()
    matrix = sdk_models.design_matrix({"model": listing}, table).to_numpy(dtype=float)
    blobs = crypto.encrypt_matrix(ctx, matrix)
    return ctx, crypto.public_context_bytes(ctx), inference.pack_blobs(blobs), matrix


def submit(api, listing_id, rows, context, container):
    files = {"rows": str(rows), "context": io.BytesIO(context), "ciphertexts": io.BytesIO(container)}
    files["context"].name, files["ciphertexts"].name = "context.bin", "ciphertexts.ct"
    return api.post(f"/api/v1/models/{listing_id}/predictions/", files, format="multipart")


def balance(user) -> Decimal:
    return Wallet.objects.get(user=user).balance


def test_a_client_gets_encrypted_scores_it_alone_can_decrypt_and_pays_per_row(listing, outsider, buyer):
    client = client_for(outsider)
    table = frame()
    ctx, public, container, matrix = encrypt(listing, table)
    before, earned = balance(outsider), balance(buyer)
    response = submit(client, listing["id"], len(table), public, container)
    assert response.status_code == 202, response.content
    created = response.json()
    assert (created["status"], created["rows"], created["price"]) == ("queued", 40, "20.00")
    assert balance(outsider) == before - Decimal("20.00")
    # Nobody else can follow it.
    assert client_for(buyer).get(f"/api/v1/predictions/{created['id']}/").status_code == 404

    assert inference_services.prediction_run(prediction_id=created["id"]) == "ready"
    assert inference_services.prediction_run(prediction_id=created["id"]) == "skipped"
    assert balance(buyer) == earned + Decimal("20.00")  # the publisher is paid once
    assert client.get(f"/api/v1/predictions/{created['id']}/").json()["status"] == "ready"
    # The inputs are gone as soon as they are scored.
    assert sorted(p.name for p in storage.folder(created["id"]).iterdir()) == [storage.SCORES_FILE]

    download = client.get(f"/api/v1/predictions/{created['id']}/scores/")
    assert download.status_code == 200
    blobs = list(inference.iter_blobs(io.BytesIO(download.content), count=1))
    scores = crypto.decrypt_scores(ctx, blobs, rows=len(table), scores=1)
    model = ModelListing.objects.get(pk=listing["id"]).model
    plain = sdk_models.scores({"model": model}, matrix)
    assert np.max(np.abs(scores - plain)) < 1e-3
    assert inference.predictions(model, scores) == inference.predictions(model, plain)

    # Once downloaded, the scores are gone.
    assert not storage.folder(created["id"]).exists()
    again = client.get(f"/api/v1/predictions/{created['id']}/scores/")
    assert again.status_code == 409
    assert Prediction.objects.get(pk=created["id"]).status == "delivered"


def test_a_wallet_that_cannot_pay_is_a_409_and_nothing_is_kept(listing, outsider):
    Wallet.objects.filter(user=outsider).update(balance=Decimal("1.00"))
    _, public, container, _ = encrypt(listing, frame())
    response = submit(client_for(outsider), listing["id"], 40, public, container)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "insufficient_credits"
    assert not Prediction.objects.exists()
    assert not storage.folder(1).parent.exists() or not any(storage.folder(1).parent.iterdir())


@pytest.mark.parametrize(
    "change, field",
    [
        ({"rows": "0"}, "rows"),
        ({"rows": "x"}, "rows"),
        ({"rows": str(inference.SLOTS * 4 + 1)}, "rows"),
        ({"rows": str(inference.SLOTS + 1)}, "ciphertexts"),  # one batch sent, two needed
        ({"ciphertexts": b"not a container"}, "ciphertexts"),
        ({"context": b""}, "context"),
    ],
)
def test_a_malformed_upload_is_a_400_naming_the_field(listing, outsider, change, field):
    _, public, container, _ = encrypt(listing, frame())
    body = {"rows": "40", "context": public, "ciphertexts": container, **change}
    before = balance(outsider)
    response = submit(client_for(outsider), listing["id"], body["rows"], body["context"], body["ciphertexts"])
    assert response.status_code == 400, response.content
    assert list(response.json()["error"]["fields"]) == [field]
    assert not Prediction.objects.exists()
    assert balance(outsider) == before


def test_a_context_with_the_secret_key_fails_the_prediction_and_refunds(listing, outsider):
    ctx, _, container, _ = encrypt(listing, frame())
    before = balance(outsider)
    response = submit(client_for(outsider), listing["id"], 40, ctx.serialize(save_secret_key=True), container)
    assert response.status_code == 202
    assert inference_services.prediction_run(prediction_id=response.json()["id"]) == "failed"
    stored = Prediction.objects.get(pk=response.json()["id"])
    assert stored.status == "failed" and "secret key" in stored.error
    assert balance(outsider) == before
    assert not storage.folder(stored.pk).exists()


def test_a_missing_model_is_a_404(outsider):
    response = submit(client_for(outsider), 999, 1, b"x", b"y")
    assert response.status_code == 404


def test_the_sweeper_refunds_a_stuck_prediction_and_deletes_scores_nobody_fetched(listing, outsider, settings):
    _, public, container, _ = encrypt(listing, frame())
    before = balance(outsider)
    stuck = submit(client_for(outsider), listing["id"], 40, public, container).json()["id"]
    ready = submit(client_for(outsider), listing["id"], 40, public, container).json()["id"]
    assert inference_services.prediction_run(prediction_id=ready) == "ready"
    assert inference_services.predictions_sweep() == {"failed": 0, "expired": 0}  # nothing is old yet

    long_ago = timezone.now() - timedelta(seconds=settings.CLOAKROOM_JOB_LEASE_SECONDS + 1)
    Prediction.objects.filter(pk=stuck).update(created_at=long_ago)
    scored = timezone.now() - timedelta(seconds=inference_services.SCORES_KEPT_SECONDS + 1)
    Prediction.objects.filter(pk=ready).update(finished_at=scored)
    assert inference_services.predictions_sweep() == {"failed": 1, "expired": 1}
    assert Prediction.objects.get(pk=stuck).status == "failed"
    assert Prediction.objects.get(pk=ready).status == "expired"
    assert not storage.folder(stuck).exists() and not storage.folder(ready).exists()
    assert balance(outsider) == before - Decimal("20.00")  # the stuck one refunded, the scored one paid
    # A worker that picks the swept prediction up late does nothing.
    assert inference_services.prediction_run(prediction_id=stuck) == "skipped"


def test_a_body_over_the_limit_is_a_413_before_it_is_read(listing, outsider):
    response = client_for(outsider).post(
        f"/api/v1/models/{listing['id']}/predictions/",
        {"rows": "1"},
        format="multipart",
        CONTENT_LENGTH=str(MAX_BODY_BYTES + 1),
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert not Prediction.objects.exists()


@pytest.mark.parametrize(
    ("limits", "error"),
    [
        # TenSEAL cannot even load under 64 MiB of address space: the child fails, the worker does not.
        ({"CLOAKROOM_SCORING_MEMORY_BYTES": 64 * 1024 * 1024}, "more memory than the scorer allows"),
        # A child that runs past its wall clock is stopped.
        ({"CLOAKROOM_SCORING_TIMEOUT": 0.01}, "took longer"),
    ],
)
def test_scoring_runs_in_a_sandboxed_child_whose_failure_fails_and_refunds_the_prediction(
    listing, outsider, settings, caplog, limits, error
):
    # The client's TenSEAL bytes are read by compute/inference/scorer.py in its own process with memory
    # and time limits: whatever they do to it, this process (the worker) carries on, and the client is
    # refunded with nothing kept.
    for name, value in limits.items():
        setattr(settings, name, value)
    _, context, container, _ = encrypt(listing, frame())
    before = balance(outsider)
    response = submit(client_for(outsider), listing["id"], 40, context, container)
    assert response.status_code == 202
    assert inference_services.prediction_run(prediction_id=response.json()["id"]) == "failed"
    stored = Prediction.objects.get(pk=response.json()["id"])
    assert stored.status == "failed" and "refunded" in stored.error
    assert balance(outsider) == before
    assert not storage.folder(stored.pk).exists()
    assert error in caplog.text  # the worker's log says what happened to the child


def test_a_garbled_ciphertext_is_refused_by_the_scorer_and_refunded(listing, outsider):
    _, context, container, _ = encrypt(listing, frame())
    garbled = container[:40] + bytes(b ^ 0xFF for b in container[40:4000]) + container[4000:]
    before = balance(outsider)
    response = submit(client_for(outsider), listing["id"], 40, context, garbled)
    assert response.status_code == 202
    assert inference_services.prediction_run(prediction_id=response.json()["id"]) == "failed"
    stored = Prediction.objects.get(pk=response.json()["id"])
    assert stored.status == "failed" and "The upload was refused" in stored.error and "ciphertext" in stored.error
    assert balance(outsider) == before
