"""The released model's page (its parameters, receipt, download and the form that publishes it), the
model catalogue, a published model's page, and the trainer's models with what they sold. Real
PostgreSQL, the Django test client; train jobs submitted through the API and run with the worker's
service (compute.services.job_run)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.urls import reverse

from compute import services
from compute.models import Job, ModelListing, Prediction
from tests.compute.views.test_pages import by_id, find_all, logged_in

pytestmark = pytest.mark.django_db

MODELS = {
    "logistic_regression": {"features": ["age", "income", "region"], "label": "member"},
    "multiclass": {"features": ["age", "member"], "label": "region"},
    "linear_regression": {"features": ["age", "region"], "label": "income"},
    "naive_bayes": {"features": ["age", "member"], "label": "region"},
    "random_forest": {"features": ["age", "member"], "label": "region", "params": {"n_trees": 2, "max_depth": 2}},
    "kmeans": {"features": ["age", "income"], "params": {"k": 2, "iterations": 2}},
    "pca": {"features": ["age", "income", "member"]},
}


def train(api, purchase, name: str, epsilon: str = "0.2") -> Job:
    kind = "logistic_regression" if name == "multiclass" else name
    body = {"purchase": purchase.pk, "kind": "train", "model": {"type": kind, **MODELS[name]}, "epsilon": epsilon}
    response = api.post("/api/v1/jobs/", body, format="json")
    assert response.status_code == 202, response.content
    assert services.job_run(job_id=response.json()["id"]) == "released"
    return Job.objects.get(pk=response.json()["id"])


def tables(html: str) -> list[str]:
    return find_all(html, lambda tag, attrs: tag == "table" and "model-table" in (attrs.get("class") or ""))


def test_a_logistic_regression_shows_its_coefficients_by_feature_its_receipt_and_download(buyer, api, purchase):
    job = train(api, purchase, "logistic_regression")
    html = logged_in(buyer).get(reverse("job-detail", args=[job.pk])).content.decode()
    model = by_id(html, "job-body")
    assert "The model asked for" in html and "Logistic regression of member on age, income, region" in html
    coefficients = tables(model)[0]
    # One row per encoded column and the intercept; two classes: the score of the second one.
    for column in ("age", "income", "region=north", "region=south", "region=east", "intercept"):
        assert f'<th scope="row">{column}</th>' in coefficients
    assert "score of true" in coefficients
    released = job.result["model"]
    assert f"{released['coefficients'][0][0]:.4g}" in coefficients
    assert "false, true" in model  # the classes
    # The receipt: each noisy part with its mechanism, epsilon, rho, sensitivity and grid; the bounds used.
    parts, bounds = tables(model)[1:3]
    for part in job.result["training"]["parts"]:
        assert f'<th scope="row">{part["part"]}</th>' in parts
    # Output perturbation: a noisy count (whole numbers) sets the ridge, then the weights on their grid.
    grids = {p["part"]: p["granularity"] for p in job.result["training"]["parts"]}
    assert set(grids) == {"count", "weights"} and grids["count"] == 1.0
    assert "geometric" in parts and "laplace" in parts and f"{grids['weights']:.4g}" in parts
    assert "0 to 100" in bounds and "north, south, east" in bounds and "label" in bounds
    assert "none: no accuracy or loss" in model
    # The portable model file, downloadable with the session.
    link = reverse("api-job-model", args=[job.pk])
    assert f'href="{link}"' in model
    download = logged_in(buyer).get(link)
    assert download.status_code == 200 and json.loads(download.content)["format"] == "cloakroom-model"
    # Servable and not published: the form that publishes it.
    assert 'action="{}"'.format(reverse("job-publish", args=[job.pk])) in model


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("multiclass", ["class north", "class south", "class east", "intercept"]),
        ("linear_regression", ["Coefficient", "region=east", "intercept"]),
        ("naive_bayes", ["Prior", "Mean of each column per class", "Variance of each column per class"]),
        ("random_forest", ["tree 1", "tree 2", "noisy rows of north", "Inner nodes splitting on each column"]),
        ("kmeans", ["cluster 0", "cluster 1", "Noisy rows (last round)"]),
        ("pca", ["component 1", "component 3", "Noisy variance", "Noisy mean of each column"]),
    ],
)
def test_every_model_type_shows_its_parameters(buyer, api, purchase, name, words):
    job = train(api, purchase, name)
    html = logged_in(buyer).get(reverse("job-detail", args=[job.pk])).content.decode()
    shown = " ".join(tables(by_id(html, "job-body")))
    assert all(word in shown for word in words), name
    servable = name in ("multiclass", "linear_regression")
    assert ("publish-model-form" in html) is servable
    assert ("not-servable" in html) is not servable


def test_publishing_from_the_job_page_lists_the_model(buyer, api, purchase):
    job = train(api, purchase, "logistic_regression")
    client = logged_in(buyer)
    response = client.post(
        reverse("job-publish", args=[job.pk]), {"title": "Membership", "price_per_prediction": "0.05"}
    )
    listing = ModelListing.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("model-detail", args=[listing.pk])
    assert (listing.job, listing.owner, listing.title, listing.price_per_prediction) == (
        job,
        buyer,
        "Membership",
        Decimal("0.05"),
    )
    page = client.get(reverse("job-detail", args=[job.pk])).content.decode()
    assert "publish-model-form" not in page and "Published as" in page
    # Published already: a message, nothing new.
    again = client.post(
        reverse("job-publish", args=[job.pk]), {"title": "Again", "price_per_prediction": "1"}, follow=True
    )
    assert "published already" in again.content.decode() and ModelListing.objects.count() == 1


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"title": "", "price_per_prediction": "0.05"}, "title", "required"),
        ({"title": "M", "price_per_prediction": "0.001"}, "price_per_prediction", "2 decimal places"),
        # The API's own rules: a plain decimal string, so neither a sign nor a word.
        ({"title": "M", "price_per_prediction": "-1"}, "price_per_prediction", "must be a number"),
        ({"title": "M", "price_per_prediction": "cheap"}, "price_per_prediction", "must be a number"),
    ],
)
def test_a_bad_title_or_price_is_shown_beside_its_field(buyer, api, purchase, data, field, words):
    job = train(api, purchase, "logistic_regression")
    response = logged_in(buyer).post(reverse("job-publish", args=[job.pk]), data)
    assert response.status_code == 400
    html = response.content.decode()
    control = find_all(html, lambda tag, attrs: f"field-{field}" in (attrs.get("class") or "").split())[0]
    assert "has-error" in control and words in control.lower()
    assert "may not be blank" not in control  # one message for one mistake, the form's or the API's
    assert not ModelListing.objects.exists()


def test_a_model_that_cannot_be_served_and_a_query_job_are_refused_with_a_clear_message(buyer, api, purchase):
    client = logged_in(buyer)
    bayes = train(api, purchase, "naive_bayes")
    response = client.post(
        reverse("job-publish", args=[bayes.pk]), {"title": "B", "price_per_prediction": "1"}, follow=True
    )
    assert "only linear and logistic regressions can be served on encrypted rows" in response.content.decode()
    query = api.post(
        "/api/v1/jobs/", {"purchase": purchase.pk, "query": {"aggregate": "count"}, "epsilon": "0.1"}, format="json"
    ).json()
    services.job_run(job_id=query["id"])
    response = client.post(
        reverse("job-publish", args=[query["id"]]), {"title": "Q", "price_per_prediction": "1"}, follow=True
    )
    assert "This job trained no model" in response.content.decode()
    assert not ModelListing.objects.exists()


def test_another_users_job_cannot_be_published(outsider, api, purchase):
    job = train(api, purchase, "logistic_regression")
    response = logged_in(outsider).post(
        reverse("job-publish", args=[job.pk]), {"title": "T", "price_per_prediction": "1"}
    )
    assert response.status_code == 404 and not ModelListing.objects.exists()


def published(api, purchase, title: str = "Membership", price: str = "0.05") -> ModelListing:
    job = train(api, purchase, "logistic_regression")
    response = api.post(
        "/api/v1/models/", {"job": job.pk, "title": title, "price_per_prediction": price}, format="json"
    )
    assert response.status_code == 201, response.content
    return ModelListing.objects.get(pk=response.json()["id"])


def test_the_catalogue_lists_published_models_and_the_navigation_links_it(buyer, outsider, api, purchase, client):
    listing = published(api, purchase)
    html = logged_in(outsider).get(reverse("model-catalogue")).content.decode()
    table = find_all(html, lambda tag, attrs: tag == "table" and "model-catalogue" in (attrs.get("class") or ""))[0]
    row = table.split("<tbody>")[1]
    for text in ("Membership", "logistic regression", "age, income, region", "false, true", "0.05 credits", "bob"):
        assert text in row
    assert f'href="{reverse("model-detail", args=[listing.pk])}"' in row
    nav = find_all(html, lambda tag, attrs: tag == "nav" and attrs.get("aria-label") == "Main")[0]
    assert f'href="{reverse("model-catalogue")}" aria-current="page">Models</a>' in nav
    # The catalogue is public, as the dataset catalogue is.
    assert "Membership" in client.get(reverse("model-catalogue")).content.decode()


def test_a_model_page_says_how_to_predict_and_why_only_dp_models_are_served(outsider, api, purchase):
    listing = published(api, purchase)
    html = logged_in(outsider).get(reverse("model-detail", args=[listing.pk])).content.decode()
    assert f"cloakroom predict {listing.pk} rows.csv --out scores.csv" in html
    assert f"client.predict({listing.pk}, frame)" in html
    assert "Only DP-trained models are served." in html and "d + 1 queries" in html
    assert "region=north, region=south, region=east" in html  # the encoded columns, in order
    # The coefficients are not shown, and a visitor sees no sales.
    assert f"{listing.model['coefficients'][0][0]:.4g}" not in html and "What it sold" not in html
    assert logged_in(outsider).get(reverse("model-detail", args=[listing.pk + 1])).status_code == 404


def sell(listing, client_user, rows: int, status: str) -> Prediction:
    return Prediction.objects.create(
        listing=listing, client=client_user, rows=rows, price=listing.price_per_prediction * rows, status=status
    )


def test_the_trainer_sees_each_model_with_the_predictions_it_sold(buyer, outsider, api, purchase):
    listing = published(api, purchase)
    unpublished = train(api, purchase, "kmeans")
    sell(listing, outsider, 100, Prediction.Status.DELIVERED)
    sell(listing, outsider, 20, Prediction.Status.READY)
    sell(listing, outsider, 7, Prediction.Status.EXPIRED)
    sell(listing, outsider, 1000, Prediction.Status.FAILED)  # refunded: not sold
    sell(listing, outsider, 500, Prediction.Status.QUEUED)  # not paid to the publisher yet
    html = logged_in(buyer).get(reverse("my-models")).content.decode()
    rows = find_all(html, lambda tag, attrs: tag == "tr")[1:]
    assert len(rows) == 2
    assert str(unpublished.pk) in rows[0] and "not servable" in rows[0]
    sold = rows[1]
    assert "Membership" in sold
    assert '<td class="num predictions">3</td>' in sold
    assert '<td class="num rows-predicted">127</td>' in sold
    assert '<td class="num revenue">6.35</td>' in sold
    assert '<dd class="total-rows-predicted">127</dd>' in html and "6.35 credits" in html
    # Its page shows the publisher the same.
    page = logged_in(buyer).get(reverse("model-detail", args=[listing.pk])).content.decode()
    assert '<dd class="rows-predicted">127</dd>' in page and "6.35 credits" in page
    # Another user trained nothing.
    assert "You have not trained a model yet" in logged_in(outsider).get(reverse("my-models")).content.decode()


def test_the_owners_dashboard_counts_the_models_on_each_dataset_and_what_they_sold(
    owner, buyer, outsider, api, purchase, dp_dataset
):
    listing = published(api, purchase, title="Membership", price="0.10")
    train(api, purchase, "pca")  # trained, not published
    sell(listing, outsider, 30, Prediction.Status.DELIVERED)
    sell(listing, outsider, 5, Prediction.Status.FAILED)
    html = logged_in(owner).get(reverse("owner-dashboard")).content.decode()
    card = by_id(html, f"dataset-{dp_dataset.pk}")
    assert '<dd class="models-trained">2</dd>' in card and '<dd class="models-published">1</dd>' in card
    table = find_all(html, lambda tag, attrs: tag == "table" and "models-sold-table" in (attrs.get("class") or ""))[0]
    row = table.split("<tbody>")[1]
    for text in ("Membership", "logistic regression", "People", "bob", "0.10"):
        assert text in row
    assert '<td class="num predictions">1</td>' in row
    assert '<td class="num rows-predicted">30</td>' in row and '<td class="num revenue">3.00</td>' in row
    assert "30 rows scored in all, for 3.00 credits." in html
    # Another owner's dashboard shows none of it.
    other = logged_in(outsider).get(reverse("owner-dashboard")).content.decode()
    assert "Membership" not in other and "No model trained on your datasets is published yet." in other
