"""Pages of ensembles: the catalogue (``/ensembles/``), an ensemble's page (members, schema, price, how
it works; the job form on it is compute's, drawn by the ``pate_section`` tag and submitted to compute's
views), and an owner's actions on their DP dataset's page: create an ensemble from it, add it to one,
take it out of one, through the same services as the API (marketplace/ensembles/services.py)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from config.exceptions import NotFound, ServiceError
from marketplace import selectors as market
from marketplace.ensembles import selectors, services
from marketplace.ensembles.forms import EnsembleCreateForm, EnsembleJoinForm, attach
from marketplace.ensembles.panel import owner_panel
from marketplace.models import Dataset, Ensemble
from marketplace.views import dataset_detail_context

ENSEMBLES_PAGE_SIZE = 20
HOW_IT_WORKS = (
    "Each member dataset's rows are split into teachers, models trained on the platform and never released, "
    "and the teachers vote on each of your unlabelled rows; only a noisy majority label leaves, and none where "
    "the teachers did not agree enough. Every member dataset is charged the same epsilon, since each of its rows "
    "sits in exactly one teacher."
)


def column_view(decl: dict[str, Any]) -> dict[str, Any]:
    """A declared column as the schema table shows it."""
    kind = decl.get("kind")
    bounds = f"{decl['lower']:g} to {decl['upper']:g}" if kind == "numeric" else ""
    categories = list(decl.get("categories") or []) if kind == "categorical" else []
    return {"name": decl.get("name"), "kind": kind, "bounds": bounds, "categories": ", ".join(categories)}


def label_classes(ensemble: Ensemble) -> list[str]:
    label = ensemble.label or {}
    return ["false", "true"] if label.get("kind") == "boolean" else [str(c) for c in label.get("categories") or []]


def ensemble_row(ensemble: Ensemble) -> dict[str, Any]:
    members = list(getattr(ensemble, "current_members", []))
    return {
        "ensemble": ensemble,
        "members": members,
        "features": ", ".join(f["name"] for f in ensemble.features),
        "label": (ensemble.label or {}).get("name", ""),
        "classes": ", ".join(label_classes(ensemble)),
    }


def ensemble_detail_context(request: HttpRequest, ensemble: Ensemble) -> dict[str, Any]:
    """The ensemble page's context; compute's PATE views draw the same page with their form added."""
    user = request.user
    row = ensemble_row(ensemble)
    return {
        **row,
        "columns": [column_view(f) for f in ensemble.features],
        "label_column": column_view(ensemble.label or {}),
        "how_it_works": HOW_IT_WORKS,
        "mine": [m for m in row["members"] if user.is_authenticated and m.dataset.owner_id == user.pk],
    }


def visible_ensemble(ensemble_id: int) -> Ensemble:
    try:
        return selectors.ensemble_get(ensemble_id=ensemble_id)
    except NotFound:
        raise Http404("No such ensemble.") from None


@require_GET
def ensemble_catalogue(request: HttpRequest) -> HttpResponse:
    page_obj = Paginator(selectors.ensemble_list(), ENSEMBLES_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [ensemble_row(e) for e in page_obj.object_list]
    return render(request, "marketplace/ensembles/catalogue.html", {"page_obj": page_obj, "rows": rows, "query": ""})


@require_GET
def ensemble_detail(request: HttpRequest, ensemble_id: int) -> HttpResponse:
    context = ensemble_detail_context(request, visible_ensemble(ensemble_id))
    return render(request, "marketplace/ensembles/detail.html", context)


# -- the owner's actions, on their DP dataset's page -------------------------------------------------


def _own_dp_dataset(request: HttpRequest, dataset_id: int) -> Dataset:
    try:
        dataset = market.dataset_get(user=request.user, dataset_id=dataset_id)
    except NotFound:
        raise Http404("No such dataset.") from None
    if dataset.owner_id != request.user.pk:
        raise Http404("No such dataset among yours.")
    return dataset


def _redrawn(request: HttpRequest, dataset: Dataset, panel: dict[str, Any], status: int) -> HttpResponse:
    context = dataset_detail_context(request, dataset, ensemble_panel=panel)
    return render(request, "marketplace/dataset_detail.html", context, status=status)


@login_required
@require_POST
def ensemble_create(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = _own_dp_dataset(request, dataset_id)
    form = EnsembleCreateForm(request.POST, dataset=dataset)
    status = 400
    if form.is_valid():
        c = form.cleaned_data
        try:
            ensemble = services.ensemble_create(
                owner=request.user,
                title=c["title"],
                description=c["description"] or "",
                dataset_id=dataset.pk,
                price_per_label=c["price_per_label"],
                label=c["label"],
            )
        except ServiceError as exc:
            attach(form, exc, default=None)
            status = exc.status_code if exc.status_code != 404 else 400
        else:
            messages.success(request, f"“{ensemble.title}” is listed with “{dataset.title}” as its first member.")
            return redirect("ensemble-detail", ensemble_id=ensemble.pk)
    return _redrawn(request, dataset, owner_panel(dataset, create_form=form) or {}, status)


@login_required
@require_POST
def ensemble_join(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = _own_dp_dataset(request, dataset_id)
    form = EnsembleJoinForm(request.POST, dataset=dataset)
    status = 400
    if form.is_valid():
        try:
            member = services.ensemble_join(
                owner=request.user, ensemble_id=form.cleaned_data["ensemble"], dataset_id=dataset.pk
            )
        except ServiceError as exc:
            attach(form, exc, default="ensemble")
            status = exc.status_code if exc.status_code != 404 else 400
        else:
            messages.success(request, f"“{dataset.title}” is a member of “{member.ensemble.title}”.")
            return redirect("ensemble-detail", ensemble_id=member.ensemble_id)
    return _redrawn(request, dataset, owner_panel(dataset, join_form=form) or {}, status)


@login_required
@require_POST
def ensemble_leave(request: HttpRequest, dataset_id: int, ensemble_id: int) -> HttpResponse:
    dataset = _own_dp_dataset(request, dataset_id)
    try:
        services.ensemble_leave(owner=request.user, ensemble_id=ensemble_id, dataset_id=dataset.pk)
    except NotFound:
        raise Http404("This dataset is not a member of that ensemble.") from None
    messages.success(
        request, f"“{dataset.title}” left the ensemble: jobs submitted from now on do not use it; earlier ones keep it."
    )
    return redirect("dataset-detail", dataset_id=dataset.pk)
