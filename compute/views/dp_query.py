"""The query form of a DP dataset, on the dataset page, with its live estimate (htmx fragments that answer
200 with the problem drawn in them, because htmx does not swap error responses into the page)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts.models import User
from compute import presentation, services
from compute.forms.dp_query import (
    MAX_FILTERS,
    FilterForm,
    QueryForm,
    attach_errors,
    build_job_body,
    filter_forms,
    idempotency_key,
    query_initial,
    with_defaults,
)
from compute.models import Job
from compute.views.common import dataset_for_query, dataset_page, query_purchases
from config.exceptions import ServiceError
from marketplace.datafiles import dataset_schema
from marketplace.models import Dataset


def _structural(dataset: Dataset, form: QueryForm, rows: list[FilterForm]) -> None:
    """Controls that change which other controls the form shows fetch the form again (htmx)."""
    attrs = {
        "hx-post": reverse("job-query-form", args=[dataset.pk]),
        "hx-trigger": "change",
        "hx-target": "#query-form",
        "hx-swap": "outerHTML",
    }
    for field in (form.fields["aggregate"], form.fields["column"]):
        field.widget.attrs.update(attrs)
    for row in rows:
        row.fields["column"].widget.attrs.update(attrs)
        row.fields["op"].widget.attrs.update(attrs)


def _collect_errors(form: QueryForm, rows: list[FilterForm]) -> list[tuple[str, str]]:
    """Every error on the forms as (control label, message), for the estimate panel."""
    out = []
    for name, errors in form.errors.items():
        label = form.fields[name].label if name in form.fields else "Query"
        out += [(str(label), str(e)) for e in errors]
    for row in rows:
        for name, errors in row.errors.items():
            label = row.fields[name].label if name in row.fields else "Filter"
            out += [(f"Filter {row.index + 1}, {str(label).lower()}", str(e)) for e in errors]
    return out


def _estimate(user: User, schema: dict, purchases: list, data: Any) -> dict[str, Any]:
    """The live estimate for what the form holds now; problems are listed, never raised."""
    form = QueryForm(data, schema=schema, purchases=purchases)
    rows = filter_forms(data, schema=schema, total=form.filter_total)
    built = build_job_body(form, rows)
    if built is None:
        return {"errors": _collect_errors(form, rows)}
    query, sent_from = built
    c = form.cleaned_data
    try:
        est = services.job_estimate(
            user=user,
            purchase_id=c["purchase"],
            query=query,
            epsilon=c["epsilon"],
            delta=c["delta"] or "0",
            rows=c["rows"],
        )
    except ServiceError as exc:
        attach_errors(form, rows, sent_from, exc)
        return {"errors": _collect_errors(form, rows)}
    return {
        "estimate": est,
        "noise_scale": presentation.fmt(est.noise_scale),
    }


def _initial_data(purchases: list, form: QueryForm) -> dict[str, Any]:
    return {
        "purchase": purchases[0].pk,
        "aggregate": "count",
        "epsilon": form.initial.get("epsilon") or form.fields["epsilon"].initial,
        "delta": "0",
        "filter_count": 1,
        "form_token": form.initial["form_token"],
    }


def query_context(
    *, user: User, dataset: Dataset, data: QueryDict | None = None, validate: bool = False
) -> dict[str, Any] | None:
    """Context for the query form, or None when the user holds no purchase of the dataset.

    With no ``data`` the form starts fresh. With ``data`` and ``validate`` False it shows what was
    posted without judging it (a control changed and the form is redrawn); with ``validate`` True
    the caller validates it and attaches errors.
    """
    purchases = query_purchases(user, dataset)
    if not purchases:
        return None
    schema = dataset_schema(dataset)
    if data is None:
        form = QueryForm(schema=schema, purchases=purchases)
        rows = filter_forms(None, schema=schema, total=1)
        estimate = _estimate(user, schema, purchases, _initial_data(purchases, form))
    elif validate:
        form = QueryForm(data, schema=schema, purchases=purchases)
        rows = filter_forms(data, schema=schema, total=form.filter_total)
        estimate = None
    else:
        data = with_defaults(data)
        form = QueryForm(initial=query_initial(data), schema=schema, purchases=purchases)
        rows = filter_forms(data, schema=schema, total=form.filter_total, initial=True)
        estimate = _estimate(user, schema, purchases, data)
    _structural(dataset, form, rows)
    return {
        "dataset": dataset,
        "form": form,
        "filters": rows,
        "estimate": estimate,
        "can_add_filter": len(rows) < MAX_FILTERS,
        "open": dataset.status == Dataset.Status.PUBLISHED,
    }


def _with_more_filters(data: QueryDict) -> QueryDict:
    data = data.copy()
    try:
        total = int(data.get("filter_count") or 1)
    except ValueError:
        total = 1
    data["filter_count"] = str(min(total + 1, MAX_FILTERS))
    return data


@login_required
@require_POST
def query_form_fragment(request: HttpRequest, dataset_id: int) -> HttpResponse:
    """The query form redrawn for what it holds now (htmx): another aggregate offers other columns,
    another filter column other conditions and values, "add a filter" one more row."""
    dataset = dataset_for_query(request, dataset_id)
    data = _with_more_filters(request.POST) if request.POST.get("add_filter") else request.POST
    context = query_context(user=request.user, dataset=dataset, data=data)
    if context is None:
        raise Http404("You hold no purchase of this dataset.")
    return render(request, "compute/_query_form.html", context)


@login_required
@require_POST
def estimate_fragment(request: HttpRequest, dataset_id: int) -> HttpResponse:
    """The estimate panel for the form's current values (htmx). Spends nothing."""
    dataset = dataset_for_query(request, dataset_id)
    purchases = query_purchases(request.user, dataset)
    if not purchases:
        raise Http404("You hold no purchase of this dataset.")
    context = _estimate(request.user, dataset_schema(dataset), purchases, request.POST)
    return render(request, "compute/_estimate.html", {"estimate": context})


@login_required
@require_POST
def job_submit(request: HttpRequest, dataset_id: int) -> HttpResponse:
    """Submit the query form: validate, reserve the budget and queue the job, then show it.

    Without JavaScript, "add a filter" and "update the form" come here too and only redraw the form.
    """
    dataset = dataset_for_query(request, dataset_id)
    if request.POST.get("add_filter") or request.POST.get("refresh"):
        data = _with_more_filters(request.POST) if request.POST.get("add_filter") else request.POST
        query = query_context(user=request.user, dataset=dataset, data=data)
        if query is None:
            raise Http404("You hold no purchase of this dataset.")
        return dataset_page(request, dataset, query)

    query = query_context(user=request.user, dataset=dataset, data=request.POST, validate=True)
    if query is None:
        raise Http404("You hold no purchase of this dataset.")
    form, rows = query["form"], query["filters"]
    built = build_job_body(form, rows)
    status = 400
    if built is not None:
        body, sent_from = built
        c = form.cleaned_data
        key = idempotency_key(form, body)
        try:
            job, created = services.job_submit(
                buyer=request.user,
                purchase_id=c["purchase"],
                kind=Job.Kind.QUERY,
                query=body,
                epsilon=c["epsilon"],
                delta=c["delta"] or "0",
                idempotency_key=key,
            )
        except ServiceError as exc:
            attach_errors(form, rows, sent_from, exc)
            status = exc.status_code if exc.status_code != 404 else 400
        else:
            if created:
                messages.success(request, f"Job {job.pk} is queued: ε {job.epsilon.normalize():f} is reserved.")
            elif key and job.idempotency_key == key:
                messages.info(request, "This form was already submitted; here is the job it made.")
            else:
                messages.info(
                    request,
                    "You asked this exact query at this epsilon before: here is the stored answer, at no new cost. "
                    "Asking again would only return the same noise.",
                )
            return redirect("job-detail", job_id=job.pk)
    # Re-drawn with the errors beside their controls and what the buyer typed kept.
    query["estimate"] = _estimate(request.user, form.schema, form.purchases, request.POST)
    return dataset_page(request, dataset, query, status=status)
