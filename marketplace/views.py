"""Server-rendered marketplace pages.

Views stay thin: they parse forms, call services (writes) and selectors (reads), and render.
Another user's draft, or any object the caller may not see, is a 404, never a 403. The New dataset
page has a module of its own (marketplace/new_dataset.py).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts.selectors import wallet_balance
from config.exceptions import NotFound, ServiceError
from marketplace import selectors, services
from marketplace.ensembles.panel import owner_panel
from marketplace.forms import BuyForm, CatalogueFilterForm
from marketplace.models import Dataset

CATALOGUE_PAGE_SIZE = 12
LIST_PAGE_SIZE = 25


def _visible_dataset(request: HttpRequest, dataset_id: int) -> Dataset:
    try:
        return selectors.dataset_get(user=request.user, dataset_id=dataset_id)
    except NotFound:
        raise Http404("No such dataset.") from None


@require_GET
def catalogue(request: HttpRequest) -> HttpResponse:
    form = CatalogueFilterForm(request.GET or None)
    status = 200
    filters: dict = {}
    if form.is_bound:
        # A filter that does not parse is shown with its error beside it; the others still apply.
        if not form.is_valid():
            status = 400
        filters = {k: v for k, v in form.cleaned_data.items() if v not in (None, "")}
    search = (filters.pop("search", "") or "").strip()
    datasets = selectors.dataset_catalogue(user=request.user, search=search, **filters)
    page_obj = Paginator(datasets, CATALOGUE_PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "marketplace/catalogue.html",
        {
            "form": form,
            "page_obj": page_obj,
            "datasets": page_obj.object_list,
            "query": query.urlencode(),
            "search": search,
            "filtered": bool(filters),
        },
        status=status,
    )


def dataset_detail_context(
    request: HttpRequest, dataset: Dataset, buy_form: BuyForm | None = None, ensemble_panel: dict | None = None
) -> dict:
    """The dataset page's context; compute's query views draw the same page with their panels added, and
    the ensemble views (marketplace/ensembles/views.py) with the owner's ensemble forms as posted."""
    user = request.user
    is_owner = user.is_authenticated and dataset.owner_id == user.pk
    can_buy = user.is_authenticated and user.is_buyer and not is_owner and dataset.status == Dataset.Status.PUBLISHED
    quote = None
    if buy_form is not None and buy_form.is_bound and buy_form.is_valid():
        quote = services.purchase_price(dataset=dataset, epsilon=buy_form.cleaned_data["epsilon"])
    cap = dataset.epsilon_cap
    return {
        "dataset": dataset,
        "columns": list(dataset.columns.all()),
        "is_owner": is_owner,
        "can_buy": can_buy,
        "buy_form": buy_form or BuyForm(),
        "quote": quote,
        "show_row_count": dataset.row_count_public or is_owner,
        "sold_percent": int(dataset.epsilon_sold * 100 / cap) if cap else 0,
        "balance": wallet_balance(user=user) if can_buy else None,
        "ensemble_panel": (ensemble_panel or owner_panel(dataset)) if is_owner else None,
    }


@require_GET
def dataset_detail(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = _visible_dataset(request, dataset_id)
    return render(request, "marketplace/dataset_detail.html", dataset_detail_context(request, dataset))


@login_required
@require_POST
def dataset_buy(request: HttpRequest, dataset_id: int) -> HttpResponse:
    dataset = _visible_dataset(request, dataset_id)
    form = BuyForm(request.POST)
    status = 400
    if form.is_valid():
        try:
            purchase = services.purchase_create(
                buyer=request.user, dataset_id=dataset.pk, epsilon=form.cleaned_data["epsilon"]
            )
        except ServiceError as exc:
            # The message goes beside the field and the form keeps what the user typed.
            form.add_error("epsilon" if "dataset" not in exc.fields else None, exc.message)
            status = exc.status_code
            dataset.refresh_from_db()
        else:
            messages.success(
                request,
                f"You bought epsilon {purchase.epsilon.normalize():f} of “{dataset.title}” for {purchase.price} credits.",
            )
            return redirect("my-purchases")
    context = dataset_detail_context(request, dataset, buy_form=form)
    if not context["can_buy"] and form.errors:
        # The buy form is not drawn for this user or dataset state, so its error becomes a message.
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, error)
    return render(request, "marketplace/dataset_detail.html", context, status=status)


@login_required
@require_POST
def dataset_publish(request: HttpRequest, dataset_id: int) -> HttpResponse:
    return _owner_status_change(
        request, dataset_id, services.dataset_publish, "is published: buyers can now find it in the catalogue."
    )


@login_required
@require_POST
def dataset_suspend(request: HttpRequest, dataset_id: int) -> HttpResponse:
    return _owner_status_change(
        request,
        dataset_id,
        services.dataset_suspend,
        "is suspended: no new purchases or jobs until you publish it again.",
    )


def _owner_status_change(request: HttpRequest, dataset_id: int, change, outcome: str) -> HttpResponse:
    """Publish or suspend one of the owner's datasets, and say what happened on its page."""
    try:
        dataset = change(owner=request.user, dataset_id=dataset_id)
    except NotFound:
        raise Http404("No such dataset.") from None
    except ServiceError as exc:
        # A second click, or a stale tab, asks for the state the dataset is in already: that is news,
        # not a failure.
        level = messages.INFO if exc.code == "already_published" else messages.ERROR
        messages.add_message(request, level, exc.message)
        return redirect("dataset-detail", dataset_id=dataset_id)
    messages.success(request, f"“{dataset.title}” {outcome}")
    return redirect("dataset-detail", dataset_id=dataset.pk)


@login_required
@require_GET
def my_datasets(request: HttpRequest) -> HttpResponse:
    datasets = selectors.dataset_list_with_earnings(owner=request.user)
    page_obj = Paginator(datasets, LIST_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "marketplace/my_datasets.html", {"page_obj": page_obj, "datasets": page_obj.object_list})


@login_required
@require_GET
def my_purchases(request: HttpRequest) -> HttpResponse:
    page_obj = Paginator(selectors.purchase_list(user=request.user), LIST_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [
        {"purchase": purchase, "spent": budget.spent, "remaining": budget.remaining, "share_used": budget.share_used}
        for purchase in page_obj.object_list
        for budget in [selectors.purchase_budget(purchase)]
    ]
    return render(request, "marketplace/my_purchases.html", {"page_obj": page_obj, "rows": rows})


@login_required
@require_GET
def purchase_detail(request: HttpRequest, purchase_id: int) -> HttpResponse:
    """One purchase, what its answers spent and how much of its allotment they use under the accountant,
    and its privacy ledger. Another user's purchase is a 404."""
    try:
        purchase = selectors.purchase_get(user=request.user, purchase_id=purchase_id)
    except NotFound:
        raise Http404("No such purchase.") from None
    budget = selectors.purchase_budget(purchase)
    context = {
        "purchase": purchase,
        "spent": budget.spent,
        "held": budget.held,
        "remaining": budget.remaining,
        "share_used": budget.share_used,
        "released": budget.released,
        "ledger": purchase.ledger_entries.all(),
    }
    return render(request, "marketplace/purchase_detail.html", context)
