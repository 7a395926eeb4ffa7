"""Template tags for the query pages.

The dataset page belongs to the marketplace app; the query form on it belongs here. The
``query_section`` tag lets that page draw the form without the marketplace knowing about jobs.
"""

from __future__ import annotations

from typing import Any

from django import template

from compute.views import dummy_context, he_query_context, pate_context, query_context, train_context

register = template.Library()


@register.inclusion_tag("compute/_query_section.html", takes_context=True)
def query_section(context: template.Context) -> dict[str, Any]:
    """The query form (and, on a DP dataset, the training form) for the current dataset, for a buyer
    holding a purchase of it, and the form that tries a query on the dataset's fake table, for anyone.

    A view that already validated the form (a submission with errors) puts it in the context as
    ``query_panel`` (``train_panel``); otherwise a fresh form is built here.
    """
    request = context["request"]
    dataset = context["dataset"]
    query = context.get("query_panel")
    he_query = context.get("he_query_panel")
    train = context.get("train_panel")
    if dataset.mode == "he":
        query = train = None
        if he_query is None:
            he_query = he_query_context(user=request.user, dataset=dataset)
    else:
        if query is None:
            query = query_context(user=request.user, dataset=dataset)
        if train is None:
            train = train_context(user=request.user, dataset=dataset)
    dummy = context.get("dummy_panel") or dummy_context(dataset=dataset)
    return {
        "query": query,
        "he_query": he_query,
        "train": train,
        "dummy": dummy,
        "request": request,
        "csrf_token": context.get("csrf_token"),
        "user": request.user,
    }


@register.inclusion_tag("compute/_pate_section.html", takes_context=True)
def pate_section(context: template.Context) -> dict[str, Any]:
    """The PATE job form on an ensemble's page, for a buyer (else what the visitor may do). A view that
    already validated the form (a submission with errors) puts its panel in the context as ``pate_panel``."""
    request = context["request"]
    panel = context.get("pate_panel") or pate_context(user=request.user, ensemble=context["ensemble"])
    return {"pate": panel, "request": request, "csrf_token": context.get("csrf_token"), "user": request.user}
