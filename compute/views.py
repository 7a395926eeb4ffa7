"""Server-rendered pages for DP query jobs: the query form on the dataset page with its live
estimate, the buyer's job list, and a job's page with its result, receipt and downloads.

Views stay thin: forms turn what the browser sends into the API's job body, services validate,
estimate, submit and cancel, and selectors read. The htmx fragments (estimate, form refresh, jobs
table, job body) answer 200 with the problem drawn in them, because htmx does not swap error
responses into the page. Another user's job is a 404.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET, require_POST

from accounts.models import User
from compute import presentation, receipts, selectors, services
from compute.forms import (
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
from config.exceptions import NotFound, ServiceError
from marketplace import selectors as market
from marketplace.datafiles import dataset_schema
from marketplace.models import Dataset

JOBS_PAGE_SIZE = 25
# How often an open job's status is fetched again; a job usually finishes within seconds.
POLL_EVERY = "2s"


# ---------------------------------------------------------------------------------------------
# The query form on the dataset page


def _purchases(user: User, dataset: Dataset, mode: str = Dataset.Mode.DP) -> list:
    if not (user.is_authenticated and dataset.mode == mode):
        return []
    return list(market.purchase_list(user=user).filter(dataset=dataset).order_by("created_at", "id"))


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
        "halfwidth": None if est.ci95_halfwidth is None else presentation.fmt(est.ci95_halfwidth),
        "in_ranks": form.cleaned_data["aggregate"] == "quantile",
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
    purchases = _purchases(user, dataset)
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


def _dataset_for_query(request: HttpRequest, dataset_id: int) -> Dataset:
    try:
        return market.dataset_get(user=request.user, dataset_id=dataset_id)
    except NotFound:
        raise Http404("No such dataset.") from None


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
    dataset = _dataset_for_query(request, dataset_id)
    data = _with_more_filters(request.POST) if request.POST.get("add_filter") else request.POST
    context = query_context(user=request.user, dataset=dataset, data=data)
    if context is None:
        raise Http404("You hold no purchase of this dataset.")
    return render(request, "compute/_query_form.html", context)


@login_required
@require_POST
def estimate_fragment(request: HttpRequest, dataset_id: int) -> HttpResponse:
    """The estimate panel for the form's current values (htmx). Spends nothing."""
    dataset = _dataset_for_query(request, dataset_id)
    purchases = _purchases(request.user, dataset)
    if not purchases:
        raise Http404("You hold no purchase of this dataset.")
    context = _estimate(request.user, dataset_schema(dataset), purchases, request.POST)
    return render(request, "compute/_estimate.html", {"estimate": context})


def _dataset_page(
    request: HttpRequest,
    dataset: Dataset,
    query: dict[str, Any] | None,
    status: int = 200,
    he_query: dict[str, Any] | None = None,
) -> HttpResponse:
    # The dataset page is the marketplace's; its context comes from there, the query form from here.
    from marketplace.views import _detail_context

    context = {**_detail_context(request, dataset), "query_panel": query, "he_query_panel": he_query}
    return render(request, "marketplace/dataset_detail.html", context, status=status)


@login_required
@require_POST
def job_submit(request: HttpRequest, dataset_id: int) -> HttpResponse:
    """Submit the query form: validate, reserve the budget and queue the job, then show it.

    Without JavaScript, "add a filter" and "update the form" come here too and only redraw the form.
    """
    dataset = _dataset_for_query(request, dataset_id)
    if request.POST.get("add_filter") or request.POST.get("refresh"):
        data = _with_more_filters(request.POST) if request.POST.get("add_filter") else request.POST
        query = query_context(user=request.user, dataset=dataset, data=data)
        if query is None:
            raise Http404("You hold no purchase of this dataset.")
        return _dataset_page(request, dataset, query)

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
    return _dataset_page(request, dataset, query, status=status)


# ---------------------------------------------------------------------------------------------
# Jobs


def _jobs_context(request: HttpRequest) -> dict[str, Any]:
    page_obj = Paginator(selectors.job_list(user=request.user), JOBS_PAGE_SIZE).get_page(request.GET.get("page"))
    jobs = [{"job": job, "query": presentation.describe_query(job.spec)} for job in page_obj.object_list]
    return {
        "page_obj": page_obj,
        "jobs": jobs,
        # Poll only while a job on this page can still change; the redrawn table stops by itself.
        "polling": any(row["job"].status in Job.OPEN_STATUSES for row in jobs),
        "poll_every": POLL_EVERY,
        # The table polls the page it shows; the pagination links carry no other parameter.
        "poll_query": f"page={page_obj.number}" if page_obj.number > 1 else "",
        "query": "",
    }


@login_required
@require_GET
def my_jobs(request: HttpRequest) -> HttpResponse:
    return render(request, "compute/my_jobs.html", _jobs_context(request))


@login_required
@require_GET
def my_jobs_table(request: HttpRequest) -> HttpResponse:
    """The jobs table alone, fetched every few seconds while a job on it is open (htmx)."""
    return render(request, "compute/_jobs_table.html", _jobs_context(request))


def _own_job(request: HttpRequest, job_id: int) -> Job:
    try:
        return selectors.job_get(user=request.user, job_id=job_id)
    except NotFound:
        raise Http404("No such job.") from None


def _job_context(job: Job) -> dict[str, Any]:
    released = job.status == Job.Status.RELEASED and bool(job.result)
    receipt = receipts.receipt(job)
    if receipt:
        receipt["noise_scale_text"] = presentation.fmt(receipt.get("noise_scale"))
        if receipt.get("ckks"):
            receipt["ckks_error_text"] = presentation.fmt(receipt["ckks"].get("error_bound"))
        receipt["free_repeat"] = job.reused_from_id is not None
        grid = receipt.get("granularity") or {}
        receipt["granularity_text"] = ", ".join(f"{name} {presentation.fmt(g)}" for name, g in grid.items())
        receipt["released_at_time"] = parse_datetime(receipt.get("released_at") or "")
    return {
        "job": job,
        "query": presentation.describe_query(job.spec),
        "open": job.status in Job.OPEN_STATUSES,
        "result": presentation.result_view(job.result, job.spec) if released else None,
        "receipt": receipt,
        "poll_every": POLL_EVERY,
    }


@login_required
@require_GET
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    return render(request, "compute/job_detail.html", _job_context(_own_job(request, job_id)))


@login_required
@require_GET
def job_body(request: HttpRequest, job_id: int) -> HttpResponse:
    """The job's status, result and receipt alone, fetched again while the job is open (htmx)."""
    return render(request, "compute/_job_body.html", _job_context(_own_job(request, job_id)))


@login_required
@require_POST
def job_cancel(request: HttpRequest, job_id: int) -> HttpResponse:
    """Cancel an open job; the service refunds its reservation once."""
    job = _own_job(request, job_id)
    try:
        services.job_cancel(buyer=request.user, job_id=job.pk)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Job {job.pk} was cancelled and its ε {job.epsilon.normalize():f} refunded.")
    return redirect("job-detail", job_id=job.pk)


# ---------------------------------------------------------------------------------------------
# The query form of an HE dataset


def he_query_context(*, user: User, dataset: Dataset, data: QueryDict | None = None) -> dict[str, Any] | None:
    """Context for an HE dataset's query form, or None when the user holds no purchase of it."""
    from compute.he_forms import HeQueryForm

    purchases = _purchases(user, dataset, Dataset.Mode.HE)
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


def _form_errors(form) -> list[tuple[str, str]]:
    labels = form.fields
    return [(str(labels[n].label if n in labels else "Query"), str(e)) for n, es in form.errors.items() for e in es]


def _he_estimate(user: User, form) -> dict[str, Any]:
    if not form.is_valid():
        return {"errors": _form_errors(form)}
    try:
        est = services.job_estimate(
            user=user,
            purchase_id=form.cleaned_data["purchase"],
            query=form.job_body(),
            epsilon=form.cleaned_data["epsilon"],
        )
    except ServiceError as exc:
        form.attach(exc)
        return {"errors": _form_errors(form)}
    return {
        "estimate": est,
        "noise_scale": presentation.fmt(est.noise_scale),
        "halfwidth": None if est.ci95_halfwidth is None else presentation.fmt(est.ci95_halfwidth),
        "in_ranks": False,
    }


def _posted_he_query(request: HttpRequest, dataset_id: int) -> tuple[Dataset, dict[str, Any]]:
    """The dataset and its HE query form as posted; a 404 for a user holding no purchase of it."""
    dataset = _dataset_for_query(request, dataset_id)
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
    return _dataset_page(request, dataset, None, status=status, he_query=query)
