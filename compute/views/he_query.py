"""The query form of an HE dataset, on the dataset page, with its live estimate and submission."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.models import User
from compute import presentation, services
from compute.forms.he_query import HeQueryForm
from compute.models import Job
from compute.views.common import dataset_for_query, dataset_page, form_errors, query_purchases
from config.exceptions import ServiceError
from marketplace.models import Dataset


def he_query_context(*, user: User, dataset: Dataset, data: QueryDict | None = None) -> dict[str, Any] | None:
    """Context for an HE dataset's query form, or None when the user holds no purchase of it."""

    purchases = query_purchases(user, dataset, Dataset.Mode.HE)
    if not purchases:
        return None
    if data is not None:
        form = HeQueryForm(data, dataset=dataset, purchases=purchases)
        estimate = _he_estimate(user, form)
    else:
        # Start on a question the dataset can answer: the mean of its first numeric column, or counts.
        form = HeQueryForm(dataset=dataset, purchases=purchases)
        columns = form.fields["column"].choices
        numeric = [name for name, label in columns if "(numeric" in label]
        start = (
            {"aggregate": "mean", "column": numeric[0]} if numeric else {"aggregate": "count", "column": columns[0][0]}
        )
        initial = {"purchase": purchases[0].pk, "epsilon": form.fields["epsilon"].initial, **start}
        form = HeQueryForm(initial={**form.initial, **initial}, dataset=dataset, purchases=purchases)
        estimate = _he_estimate(user, HeQueryForm(initial, dataset=dataset, purchases=purchases))
    return {
        "dataset": dataset,
        "form": form,
        "estimate": estimate,
        "open": dataset.status == Dataset.Status.PUBLISHED,
    }


def _he_estimate(user: User, form) -> dict[str, Any]:
    if not form.is_valid():
        return {"errors": form_errors(form)}
    try:
        est = services.job_estimate(
            user=user,
            purchase_id=form.cleaned_data["purchase"],
            query=form.job_body(),
            epsilon=form.cleaned_data["epsilon"],
        )
    except ServiceError as exc:
        form.attach(exc)
        return {"errors": form_errors(form)}
    return {
        "estimate": est,
        "noise_scale": presentation.fmt(est.noise_scale),
    }


def _posted_he_query(request: HttpRequest, dataset_id: int) -> tuple[Dataset, dict[str, Any]]:
    """The dataset and its HE query form as posted; a 404 for a user holding no purchase of it."""
    dataset = dataset_for_query(request, dataset_id)
    context = he_query_context(user=request.user, dataset=dataset, data=request.POST)
    if context is None:
        raise Http404("You hold no purchase of this dataset.")
    return dataset, context


@login_required
@require_POST
def he_estimate_fragment(request: HttpRequest, dataset_id: int) -> HttpResponse:
    """The estimate panel of an HE dataset's query form (htmx). Spends nothing."""
    _, context = _posted_he_query(request, dataset_id)
    return render(request, "compute/_estimate.html", {"estimate": context["estimate"]})


@login_required
@require_POST
def he_job_submit(request: HttpRequest, dataset_id: int) -> HttpResponse:
    """Submit an HE dataset's query form: the job goes to the HE workers, then waits for the owner's key."""
    dataset, query = _posted_he_query(request, dataset_id)
    form = query["form"]
    status = 400
    if form.is_valid():
        c = form.cleaned_data
        try:
            job, created = services.job_submit(
                buyer=request.user,
                purchase_id=c["purchase"],
                kind=Job.Kind.QUERY,
                query=form.job_body(),
                epsilon=c["epsilon"],
                idempotency_key=f"form-{c['form_token']}" if c.get("form_token") else None,
            )
        except ServiceError as exc:
            form.attach(exc)
            status = exc.status_code if exc.status_code != 404 else 400
        else:
            if created:
                messages.success(
                    request,
                    f"Job {job.pk} is queued: ε {job.epsilon.normalize():f} is reserved. It is computed under "
                    "encryption, then waits for the owner's key holder to decrypt and noise it.",
                )
            return redirect("job-detail", job_id=job.pk)
    query["estimate"] = None
    return dataset_page(request, dataset, None, status=status, he_query=query)
