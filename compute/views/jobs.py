"""The buyer's job list and a job's page with its result (or its model), receipt and downloads; another
user's job is a 404."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET, require_POST

from compute import model_view, presentation, receipts, selectors, services
from compute.forms.publish import PublishForm
from compute.models import Job, ModelListing
from compute.pate_view import describe_pate, pate_view
from config.exceptions import NotFound, ServiceError

JOBS_PAGE_SIZE = 25
# How often an open job's status is fetched again; a job usually finishes within seconds.
POLL_EVERY = "2s"


def _jobs_context(request: HttpRequest) -> dict[str, Any]:
    page_obj = Paginator(selectors.job_list(user=request.user), JOBS_PAGE_SIZE).get_page(request.GET.get("page"))
    jobs = [{"job": job, "query": _describe(job)} for job in page_obj.object_list]
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


def _describe(job: Job) -> str:
    if job.kind == Job.Kind.PATE:
        return describe_pate(job.spec)
    return model_view.describe_model(job.spec) if job.kind == Job.Kind.TRAIN else presentation.describe_query(job.spec)


def job_context(job: Job, publish_form: PublishForm | None = None, labels_page: Any = None) -> dict[str, Any]:
    """A job's page: its status, its answer (or, for a train job, its model and the form that publishes
    it; for a PATE job, its labels and each member's charge), its receipt and its downloads."""
    released = job.status == Job.Status.RELEASED and bool(job.result)
    trained = released and job.kind == Job.Kind.TRAIN
    pate = pate_view(job, labels_page) if job.kind == Job.Kind.PATE else None
    receipt = receipts.receipt(job)
    if receipt:
        receipt["noise_scale_text"] = presentation.fmt(receipt.get("noise_scale"))
        if receipt.get("ckks"):
            receipt["ckks_error_text"] = presentation.fmt(receipt["ckks"].get("error_bound"))
        receipt["free_repeat"] = job.reused_from_id is not None
        grid = receipt.get("granularity") or {}
        receipt["granularity_text"] = ", ".join(f"{name} {presentation.fmt(g)}" for name, g in grid.items())
        receipt["released_at_time"] = parse_datetime(receipt.get("released_at") or "")
        receipt["purchase_after_text"] = presentation.cumulative_text(receipt.get("purchase_after"), "the allotment")
        receipt["dataset_after_text"] = presentation.cumulative_text(receipt.get("dataset_after"), "its budget")
        if receipt.get("training"):
            receipt["training_view"] = model_view.training_view(receipt["training"])
    model = model_view.model_view(job.result.get("model") or {}) if trained else None
    listing = ModelListing.objects.filter(job=job).first() if trained else None
    if model and model["servable"] and listing is None and publish_form is None:
        publish_form = PublishForm()
    return {
        "job": job,
        "query": _describe(job),
        "open": job.status in Job.OPEN_STATUSES,
        "result": presentation.result_view(job.result, job.spec) if released and not (trained or pate) else None,
        "pate": pate,
        "model": model,
        "listing": listing,
        "publish_form": publish_form if model and model["servable"] and listing is None else None,
        "receipt": receipt,
        "poll_every": POLL_EVERY,
    }


@login_required
@require_GET
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    context = job_context(_own_job(request, job_id), labels_page=request.GET.get("page"))
    return render(request, "compute/job_detail.html", context)


@login_required
@require_GET
def job_body(request: HttpRequest, job_id: int) -> HttpResponse:
    """The job's status, result and receipt alone, fetched again while the job is open (htmx)."""
    return render(request, "compute/_job_body.html", job_context(_own_job(request, job_id)))


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
        eps = f"{job.epsilon.normalize():f}"
        if job.kind == Job.Kind.PATE:
            done = f"its ε {eps} is refunded to every member dataset and the credits held are back in your wallet"
        else:
            done = f"its ε {eps} refunded"
        messages.success(request, f"Job {job.pk} was cancelled and {done}.")
    return redirect("job-detail", job_id=job.pk)
