"""What the query pages of every kind share: the buyer's purchases of a dataset, the dataset a form posts
to, the dataset page the forms live on (the marketplace's page with the query panels added), and a
form's errors as an estimate panel lists them."""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.models import User
from config.exceptions import NotFound
from marketplace import selectors as market
from marketplace.models import Dataset
from marketplace.views import dataset_detail_context


def query_purchases(user: User, dataset: Dataset, mode: str = Dataset.Mode.DP) -> list:
    if not (user.is_authenticated and dataset.mode == mode):
        return []
    return list(market.purchase_list(user=user).filter(dataset=dataset).order_by("created_at", "id"))


def dataset_for_query(request: HttpRequest, dataset_id: int) -> Dataset:
    try:
        return market.dataset_get(user=request.user, dataset_id=dataset_id)
    except NotFound:
        raise Http404("No such dataset.") from None


def dataset_page(
    request: HttpRequest,
    dataset: Dataset,
    query: dict[str, Any] | None,
    status: int = 200,
    he_query: dict[str, Any] | None = None,
    dummy_panel: dict[str, Any] | None = None,
    train_panel: dict[str, Any] | None = None,
) -> HttpResponse:
    # The dataset page is the marketplace's; its context comes from there, the query panels from here.
    context = {
        **dataset_detail_context(request, dataset),
        "query_panel": query,
        "he_query_panel": he_query,
        "dummy_panel": dummy_panel,
        "train_panel": train_panel,
    }
    return render(request, "marketplace/dataset_detail.html", context, status=status)


def form_errors(form: Any) -> list[tuple[str, str]]:
    """Every error on a form as (control label, message), for an estimate panel's list."""
    labels = form.fields
    return [(str(labels[n].label if n in labels else "Query"), str(e)) for n, es in form.errors.items() for e in es]
