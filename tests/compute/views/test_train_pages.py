"""The training form on a DP dataset's page (docs/MODELS.md, "Web pages"): its live estimate, the
controls each model type shows, submission through the API's service, and the engine's refusals drawn
beside the control they name, with no job written. Real PostgreSQL, the Django test client and a real
encrypted dataset file."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from compute.models import Job
from marketplace.models import LedgerEntry
from tests.compute.views.test_pages import by_id, find_all, logged_in

pytestmark = pytest.mark.django_db


def field_html(html: str, name: str) -> str:
    """The ``.field-<name>`` block of the training form."""
    form = by_id(html, "train-form")
    found = find_all(form, lambda tag, attrs: f"field-{name}" in (attrs.get("class") or "").split())
    assert found, f"no control {name!r} in the training form"
    return found[0]


def body(purchase, **changes) -> dict:
    data = {
        "purchase": purchase.pk,
        "model_type": "logistic_regression",
        "features": ["age", "income", "region"],
        "label": "member",
        "C": "1",
        "alpha": "",
        "epsilon": "1",
        "delta": "0",
        "form_token": "t0k3n",
    }
    data.update(changes)
    return data


def test_it_shows_the_training_form_with_a_live_estimate(buyer, purchase, dp_dataset):
    html = logged_in(buyer).get(reverse("dataset-detail", args=[dp_dataset.pk])).content.decode()
    section = by_id(html, "train")
    assert "Train a model" in section
    # Features from the declared schema, the label from the declared columns that fit the type.
    features = field_html(html, "features")
    assert all(f'value="{name}"' in features for name in ("age", "income", "region", "member"))
    checked = re.findall(r'value="(\w+)" id="train_features_\d+" checked', features)
    assert checked == ["age", "income", "member"]
    # No column is marked as the label: the first category column is, the others are the features.
    label = field_html(html, "label")
    assert '<option value="region" selected>' in label and 'value="member"' in label and 'value="age"' not in label
    # C has no default: left empty, the engine chooses the ridge from a noisy row count.
    assert (
        'name="C"' in field_html(html, "C") and "value=" not in field_html(html, "C").split("<input")[1].split(">")[0]
    )
    assert 'name="k"' not in section
    # The estimate: epsilon, rho and the share of the allotment, as the query form shows.
    panel = by_id(html, "train-estimate-panel")
    assert re.search(r'class="share" data-value="0\.\d+"', panel)
    assert "ρ 0.5 by zCDP" in panel
    assert "10.00 credits" in panel  # epsilon 1 at 10 credits per epsilon
    assert "accuracy depends on the private rows and is not promised" in panel


def test_the_estimate_follows_the_form_and_spends_nothing(buyer, purchase, dp_dataset):
    client = logged_in(buyer)
    url = reverse("train-estimate", args=[dp_dataset.pk])
    half = client.post(url, body(purchase, epsilon="0.5")).content.decode()
    assert "5.00 credits" in half and "ρ 0.125 by zCDP" in half
    over = client.post(url, body(purchase, epsilon="5")).content.decode()
    assert "not-ok" in over  # the allotment of epsilon 2 cannot take it
    wrong = client.post(url, body(purchase, label="height")).content.decode()
    assert "Label (the target):" in wrong and "the label must be a declared column" in wrong
    assert not Job.objects.exists() and not LedgerEntry.objects.filter(kind="reserve").exists()


def test_another_type_redraws_the_form_with_its_own_controls(buyer, purchase, dp_dataset):
    client = logged_in(buyer)
    html = client.post(
        reverse("train-form", args=[dp_dataset.pk]),
        {"purchase": purchase.pk, "model_type": "kmeans", "features": ["age", "income"], "epsilon": "1"},
    ).content.decode()
    assert html.startswith('\n<form id="train-form"') or 'id="train-form"' in html
    assert 'name="label"' not in html  # k-means takes no label
    assert 'name="k"' in html and 'value="3"' in field_html(html, "k")
    assert 'name="iterations"' in html and 'name="C"' not in html
    # Nothing was judged on a redraw: no error beside a control.
    assert "has-error" not in html
    assert "ρ 0.5 by zCDP" in by_id(html, "train-estimate-panel")


def test_submitting_creates_the_train_job_the_api_would(buyer, purchase, dp_dataset, eager_tasks):
    client = logged_in(buyer)
    response = client.post(reverse("train-submit", args=[dp_dataset.pk]), body(purchase, C="2"))
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("job-detail", args=[job.pk])
    assert (job.kind, job.buyer, job.purchase) == ("train", buyer, purchase)
    assert job.spec == {
        "type": "logistic_regression",
        "features": ["age", "income", "region"],
        "label": "member",
        "params": {"C": 2.0},
    }
    # The same form submitted twice (a double click) makes one job.
    again = client.post(reverse("train-submit", args=[dp_dataset.pk]), body(purchase, C="2"))
    assert again["Location"] == response["Location"] and Job.objects.count() == 1


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        # A bound the model needs and the declaration lacks: a categorical label has no bounds.
        ({"model_type": "linear_regression", "label": "region", "features": ["age"]}, "label", "declared bounds"),
        ({"label": "height"}, "label", "the label must be a declared column"),
        ({"label": "age"}, "label", "needs a categorical or boolean label"),
        ({"features": ["age", "shoe_size"]}, "features", "features must be declared columns"),
        ({"features": []}, "features", "Give a list of declared column names"),
        ({"C": "0"}, "C", "Must be greater than 0"),
        ({"C": "lots"}, "C", "Enter a number"),
        ({"epsilon": "5"}, "epsilon", "allotment"),
        ({"epsilon": "0"}, "epsilon", ""),
        ({"delta": "0.5"}, "delta", "delta cap"),
    ],
)
def test_a_refused_request_shows_the_error_beside_its_field_and_writes_no_job(
    buyer, purchase, dp_dataset, changes, field, words
):
    response = logged_in(buyer).post(reverse("train-submit", args=[dp_dataset.pk]), body(purchase, **changes))
    assert response.status_code in (400, 409)
    html = response.content.decode()
    control = field_html(html, field)
    assert "has-error" in control and "field-error" in control
    assert words in control
    assert not Job.objects.exists()
    assert not LedgerEntry.objects.exists()
    # What was typed is kept.
    if field == "epsilon":
        assert f'value="{changes["epsilon"]}"' in control


def test_kmeans_sends_no_label_and_its_required_k(buyer, purchase, dp_dataset, eager_tasks):
    data = body(purchase, model_type="kmeans", features=["age", "income"], k="4", iterations="2", seed="7")
    response = logged_in(buyer).post(reverse("train-submit", args=[dp_dataset.pk]), data)
    assert response.status_code == 302
    assert Job.objects.get().spec == {
        "type": "kmeans",
        "features": ["age", "income"],
        "label": None,
        "params": {"iterations": 2, "k": 4, "seed": 7},
    }


def test_without_javascript_update_redraws_the_page_for_the_type(buyer, purchase, dp_dataset):
    data = {**body(purchase, model_type="random_forest"), "refresh": "1"}
    response = logged_in(buyer).post(reverse("train-submit", args=[dp_dataset.pk]), data)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="n_trees"' in field_html(html, "n_trees") and 'name="C"' not in by_id(html, "train-form")
    assert not Job.objects.exists()


def test_a_user_without_a_purchase_gets_no_form_and_a_404(outsider, dp_dataset):
    client = logged_in(outsider)
    html = client.get(reverse("dataset-detail", args=[dp_dataset.pk])).content.decode()
    assert 'id="train-form"' not in html
    for name in ("train-submit", "train-estimate", "train-form"):
        assert client.post(reverse(name, args=[dp_dataset.pk]), {"model_type": "pca"}).status_code == 404
