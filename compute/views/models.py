"""Pages of models: publishing a released model for encrypted inference (from its job's page), the
model catalogue, a published model's page with how to predict with it, and the trainer's models with
the predictions they sold. Publishing goes through the API's serializer and service."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from rest_framework import serializers

from compute import model_view, selectors
from compute.api.listings import DP_NOTE, ListingInputSerializer
from compute.forms.publish import PublishForm
from compute.inference import selectors as listings
from compute.inference import services as inference
from compute.models import Job
from compute.views.jobs import job_context
from config.exceptions import NotFound, ServiceError

MODELS_PAGE_SIZE = 20


def _own_job(request: HttpRequest, job_id: int) -> Job:
    try:
        return selectors.job_get(user=request.user, job_id=job_id)
    except NotFound:
        raise Http404("No such job.") from None


@login_required
@require_POST
def job_publish(request: HttpRequest, job_id: int) -> HttpResponse:
    """Publish the model of one of the viewer's train jobs (``POST /api/v1/models/``'s serializer and
    service). A refusal of the job itself (not a model, not servable, published already) is a message
    on the job's page; a bad title or price is drawn beside its control."""
    job = _own_job(request, job_id)
    form = PublishForm(request.POST)
    data = ListingInputSerializer(
        data={
            "job": job.pk,
            "title": request.POST.get("title", ""),
            "price_per_prediction": request.POST.get("price_per_prediction", ""),
        }
    )
    try:
        data.is_valid(raise_exception=True)
        v = data.validated_data
        listing = inference.listing_publish(
            user=request.user, job_id=v["job"], title=v["title"], price_per_prediction=v["price_per_prediction"]
        )
    except serializers.ValidationError as exc:
        form.is_valid()
        form.attach(exc.detail if isinstance(exc.detail, dict) else {"title": exc.detail})
    except ServiceError as exc:
        placed = {k: v for k, v in (exc.fields or {}).items() if k in form.fields}
        if not placed:
            messages.error(request, _refusal(exc))
            return redirect("job-detail", job_id=job.pk)
        form.is_valid()
        form.attach(placed)
    else:
        messages.success(request, f"“{listing.title}” is in the model catalogue.")
        return redirect("model-detail", listing_id=listing.pk)
    return render(request, "compute/job_detail.html", job_context(job, publish_form=form), status=400)


def _refusal(exc: ServiceError) -> str:
    if exc.code == "not_servable":
        return (
            "This model cannot be published: only linear and logistic regressions can be served on encrypted "
            f"rows ({exc.message.removeprefix('job: ')})"
        )
    if exc.code == "not_a_model":
        return "This job trained no model: only a train job's model can be published."
    return exc.message


def _listing_row(listing: Any) -> dict[str, Any]:
    model = listing.model
    return {
        "listing": listing,
        "type": model_view.TYPE_NAMES.get(model.get("type"), model.get("type")),
        "features": ", ".join(model.get("features") or []),
        "classes": ", ".join(model_view.class_text(c) for c in model.get("classes") or []) or "– (a number)",
    }


@require_GET
def model_catalogue(request: HttpRequest) -> HttpResponse:
    page_obj = Paginator(listings.listing_list(), MODELS_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [_listing_row(listing) for listing in page_obj.object_list]
    return render(request, "compute/model_catalogue.html", {"page_obj": page_obj, "rows": rows, "query": ""})


@require_GET
def model_detail(request: HttpRequest, listing_id: int) -> HttpResponse:
    try:
        listing = listings.listing_get(listing_id=listing_id)
    except NotFound:
        raise Http404("No such model.") from None
    context = {
        **_listing_row(listing),
        "encoding": listing.model.get("encoding") or [],
        "columns": listing.model.get("columns") or [],
        "privacy": DP_NOTE,
        "mine": listing.owner_id == request.user.pk,
        "sales": listings.sales_of([listing])[0] if listing.owner_id == request.user.pk else None,
    }
    return render(request, "compute/model_detail.html", context)


@login_required
@require_GET
def my_models(request: HttpRequest) -> HttpResponse:
    """The trainer's view: each model the viewer trained, published or not, with what it sold."""
    page_obj = Paginator(listings.trained_models(user=request.user), MODELS_PAGE_SIZE).get_page(request.GET.get("page"))
    jobs = list(page_obj.object_list)
    published = [job.listing for job in jobs if hasattr(job, "listing")]
    sales = {row["listing"].pk: row for row in listings.sales_of(published)}
    rows = [
        {
            "job": job,
            "described": model_view.describe_model(job.spec),
            "servable": job.spec.get("type") in model_view.SERVABLE,
            "sales": sales.get(job.listing.pk) if hasattr(job, "listing") else None,
        }
        for job in jobs
    ]
    totals = listings.sales_totals(list(sales.values()))
    return render(
        request, "compute/my_models.html", {"page_obj": page_obj, "rows": rows, "totals": totals, "query": ""}
    )
