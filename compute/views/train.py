"""The training form of a DP dataset, on the dataset page, with its live estimate (htmx fragments that
answer 200 with the problem drawn in them, as the query form's do) and its submission, which creates
the ``train`` job through the same service as ``POST /api/v1/jobs/`` (docs/MODELS.md)."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts.models import User
from compute import presentation, services
from compute.engines.models import spec as model_spec
from compute.forms.train import TrainForm, train_initial, with_param_defaults
from compute.models import Job
from compute.views.common import dataset_for_query, dataset_page, form_errors, query_purchases
from config.exceptions import ServiceError
from marketplace.datafiles import dataset_schema
from marketplace.models import Column, Dataset

NOISE_NOTE = "on each statistic, in the columns scaled to [-1, 1]; a random forest's in rows"


def _form(dataset: Dataset, schema: dict, purchases: list, data: Any = None, **kwargs: Any) -> TrainForm:
    return TrainForm(data, schema=schema, purchases=purchases, delta_allowed=dataset.delta_cap > 0, **kwargs)


def _start(dataset: Dataset, schema: dict, purchases: list) -> dict[str, Any]:
    """A fresh form's values: the column the owner marked as the label (else the first category or
    yes/no column), every other column as a feature, and the type that fits the label."""
    marked = list(Column.objects.filter(dataset=dataset, is_label=True).values_list("name", flat=True))
    classes = [n for n, m in schema.items() if m.kind in ("categorical", "boolean")]
    label = next((n for n in marked if n in schema), None) or (classes[0] if classes else None)
    if label is None:
        kind = "kmeans"
    else:
        kind = "linear_regression" if schema[label].kind == "numeric" else "logistic_regression"
    return {
        "purchase": purchases[0].pk,
        "model_type": kind,
        "features": [n for n in schema if n != label],
        "label": label or "",
        "epsilon": "1",
        "delta": "0",
        "form_token": secrets.token_urlsafe(12),
    }


def _as_data(values: dict[str, Any]) -> QueryDict:
    data = QueryDict(mutable=True)
    for name, value in values.items():
        if isinstance(value, list):
            data.setlist(name, [str(v) for v in value])
        else:
            data[name] = str(value)
    return with_param_defaults(data)


def _estimate(user: User, form: TrainForm) -> dict[str, Any]:
    """The live estimate for a bound form; problems are listed, never raised. Spends nothing."""
    if not form.is_valid():
        return {"errors": form_errors(form)}
    c = form.cleaned_data
    try:
        est = services.job_estimate(
            user=user,
            purchase_id=c["purchase"],
            kind=Job.Kind.TRAIN,
            query=form.job_body(),
            epsilon=c["epsilon"],
            delta=c["delta"] or "0",
        )
    except ServiceError as exc:
        form.attach(exc)
        return {"errors": form_errors(form)}
    return {"estimate": est, "noise_scale": presentation.fmt(est.noise_scale), "noise_note": NOISE_NOTE}


def _structural(dataset: Dataset, form: TrainForm) -> None:
    """Another model type shows other controls (a label or none, its own parameters): the form is
    fetched again when it changes (htmx)."""
    form.fields["model_type"].widget.attrs.update(
        {
            "hx-post": reverse("train-form", args=[dataset.pk]),
            "hx-trigger": "change",
            "hx-target": "#train-form",
            "hx-swap": "outerHTML",
        }
    )


def train_context(
    *, user: User, dataset: Dataset, data: QueryDict | None = None, validate: bool = False
) -> dict[str, Any] | None:
    """Context for the training form, or None when the user holds no purchase of the DP dataset.

    With no ``data`` the form starts from :func:`_start`; with ``data`` and ``validate`` False it
    shows what was posted without judging it (the type changed); with ``validate`` True the caller
    validates it and attaches errors.
    """
    purchases = query_purchases(user, dataset)
    if not purchases:
        return None
    schema = dataset_schema(dataset)
    if data is None:
        data = _as_data(_start(dataset, schema, purchases))
        form = _form(dataset, schema, purchases, initial=train_initial(data))
        estimate: dict[str, Any] | None = _estimate(user, _form(dataset, schema, purchases, data))
    elif validate:
        form = _form(dataset, schema, purchases, data)
        estimate = None
    else:
        data = with_param_defaults(data)
        form = _form(dataset, schema, purchases, initial=train_initial(data))
        estimate = _estimate(user, _form(dataset, schema, purchases, data))
    _structural(dataset, form)
    return {
        "dataset": dataset,
        "form": form,
        "estimate": estimate,
        "open": dataset.status == Dataset.Status.PUBLISHED,
        "unsupervised": model_spec.UNSUPERVISED,
    }


def _posted(request: HttpRequest, dataset_id: int, validate: bool = False) -> tuple[Dataset, dict[str, Any]]:
    dataset = dataset_for_query(request, dataset_id)
    context = train_context(user=request.user, dataset=dataset, data=request.POST, validate=validate)
    if context is None:
        raise Http404("You hold no purchase of this dataset.")
    return dataset, context


@login_required
@require_POST
def train_form_fragment(request: HttpRequest, dataset_id: int) -> HttpResponse:
    """The training form redrawn for another model type (htmx)."""
    _, context = _posted(request, dataset_id)
    return render(request, "compute/_train_form.html", {"train": context})


@login_required
@require_POST
def train_estimate_fragment(request: HttpRequest, dataset_id: int) -> HttpResponse:
    """The estimate panel for the training form's current values (htmx). Spends nothing."""
    _, context = _posted(request, dataset_id)
    return render(request, "compute/_estimate.html", {"estimate": context["estimate"]})


@login_required
@require_POST
def train_submit(request: HttpRequest, dataset_id: int) -> HttpResponse:
    """Submit the training form: the service validates, reserves the budget and queues the job, as for
    the API; then the job's page. Without JavaScript, "Update the form" comes here and only redraws."""
    if request.POST.get("refresh"):
        dataset, train = _posted(request, dataset_id)
        return dataset_page(request, dataset, None, train_panel=train)
    dataset, train = _posted(request, dataset_id, validate=True)
    form = train["form"]
    status = 400
    if form.is_valid():
        c = form.cleaned_data
        key = form.idempotency_key()
        try:
            job, created = services.job_submit(
                buyer=request.user,
                purchase_id=c["purchase"],
                kind=Job.Kind.TRAIN,
                query=form.job_body(),
                epsilon=c["epsilon"],
                delta=c["delta"] or "0",
                idempotency_key=key,
            )
        except ServiceError as exc:
            form.attach(exc)
            status = exc.status_code if exc.status_code != 404 else 400
        else:
            if created:
                messages.success(
                    request, f"Job {job.pk} is queued: ε {job.epsilon.normalize():f} is reserved to train the model."
                )
            elif key and job.idempotency_key == key:
                messages.info(request, "This form was already submitted; here is the job it made.")
            else:
                messages.info(
                    request,
                    "You trained this exact model at this epsilon before: here it is, at no new cost. Training it "
                    "again would only return the same noise.",
                )
            return redirect("job-detail", job_id=job.pk)
    # Redrawn with the errors beside their controls and what the buyer typed kept.
    train["estimate"] = _estimate(request.user, _form(dataset, form.schema, form.purchases, request.POST))
    return dataset_page(request, dataset, None, status=status, train_panel=train)
