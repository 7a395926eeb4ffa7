"""The "Try on fake data" panel of a DP dataset page: the query form, answered at once on the dataset's
fake table (compute/dummy.py), for anyone who may see the dataset, signed in or not.

With htmx the form redraws itself (another aggregate offers other controls) and its answer replaces
the panel; without JavaScript the same posts draw the whole dataset page. Nothing is spent or stored.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts.throttling import DummyQueryThrottle
from compute import dummy, presentation
from compute.forms.dp_query import MAX_FILTERS, FilterForm, attach_errors, build_job_body, filter_forms, query_initial
from compute.forms.dummy import AUTO_ID, DEFAULT_EPSILON, DummyQueryForm
from compute.views.common import dataset_for_query, dataset_page
from config.exceptions import ServiceError
from marketplace.datafiles import dataset_schema
from marketplace.models import Dataset

SECTION = "compute/_dummy_section.html"


def _structural(dataset: Dataset, form: DummyQueryForm, rows: list[FilterForm]) -> None:
    """Controls that change which other controls the form shows fetch the form again (htmx)."""
    attrs = {
        "hx-post": reverse("dummy-query-form", args=[dataset.pk]),
        "hx-trigger": "change",
        "hx-target": "#dummy-section",
        "hx-swap": "outerHTML",
    }
    for field in (form.fields["aggregate"], form.fields["column"]):
        field.widget.attrs.update(attrs)
    for row in rows:
        row.fields["column"].widget.attrs.update(attrs)
        row.fields["op"].widget.attrs.update(attrs)


def _with_defaults(data: QueryDict) -> QueryDict:
    data = data.copy()
    for name, default in (("quantiles", "0.5"), ("bins", "10"), ("epsilon", DEFAULT_EPSILON), ("delta", "0")):
        if name not in data:
            data[name] = default
    if data.get("add_filter"):
        try:
            total = int(data.get("filter_count") or 1)
        except ValueError:
            total = 1
        data["filter_count"] = str(min(total + 1, MAX_FILTERS))
    return data


def dummy_context(*, dataset: Dataset, data: QueryDict | None = None, validate: bool = False) -> dict[str, Any] | None:
    """The panel's context: a fresh form, the posted one redrawn (``validate`` False) or judged. None
    on an HE dataset, whose fake data the API answers (its query form is another)."""
    if dataset.mode != Dataset.Mode.DP:
        return None
    schema = dataset_schema(dataset)
    if data is None:
        form = DummyQueryForm(schema=schema)
        rows = filter_forms(None, schema=schema, total=1, auto_id=AUTO_ID)
    elif validate:
        form = DummyQueryForm(data, schema=schema)
        rows = filter_forms(data, schema=schema, total=form.filter_total, auto_id=AUTO_ID)
    else:
        data = _with_defaults(data)
        form = DummyQueryForm(initial=query_initial(data), schema=schema)
        rows = filter_forms(data, schema=schema, total=form.filter_total, initial=True, auto_id=AUTO_ID)
    _structural(dataset, form, rows)
    return {"dataset": dataset, "form": form, "filters": rows, "can_add_filter": len(rows) < MAX_FILTERS}


def _answer(request: HttpRequest, panel: dict[str, Any]) -> int:
    """Validate the posted form and answer it on the fake table into ``panel``; the status to answer."""
    form, rows = panel["form"], panel["filters"]
    built = build_job_body(form, rows)
    if built is None:
        return 400
    body, sent_from = built
    c = form.cleaned_data
    try:
        answer = dummy.dummy_query(
            user=request.user, dataset_id=panel["dataset"].pk, query=body, epsilon=c["epsilon"], delta=c["delta"]
        )
    except ServiceError as exc:
        attach_errors(form, rows, sent_from, exc)
        return exc.status_code if exc.status_code != 404 else 400
    panel["answer"] = {
        **answer,
        "described": presentation.describe_query(answer["query"]),
        "view": presentation.result_view(answer["result"], answer["query"]),
        "query_json": json.dumps(answer["query"]),
    }
    return 200


def _throttled(request: HttpRequest) -> HttpResponse | None:
    throttle = DummyQueryThrottle()
    if throttle.allow_request(request, None):
        return None
    wait = max(1, int(throttle.wait() or 1))
    response = HttpResponse(render_to_string("429.html", {"wait": wait}, request=request), status=429)
    response["Retry-After"] = str(wait)
    return response


def _panel_response(request: HttpRequest, dataset: Dataset, panel: dict[str, Any], status: int = 200) -> HttpResponse:
    # htmx swaps only 2xx answers into the page, so a refused query comes back 200 with its errors drawn.
    if request.headers.get("HX-Request"):
        return render(request, SECTION, {"dummy": panel})
    return dataset_page(request, dataset, None, status=status, dummy_panel=panel)


@require_POST
def dummy_form_fragment(request: HttpRequest, dataset_id: int) -> HttpResponse:
    """The fake-data form redrawn for what it holds now (another aggregate, another filter column, one
    more filter row)."""
    dataset = dataset_for_query(request, dataset_id)
    panel = dummy_context(dataset=dataset, data=request.POST)
    if panel is None:
        raise Http404("This dataset has no query form for fake data.")
    return _panel_response(request, dataset, panel)


@require_POST
def dummy_query(request: HttpRequest, dataset_id: int) -> HttpResponse:
    """Answer the form on the fake table (free) and show the answer, marked FAKE DATA."""
    dataset = dataset_for_query(request, dataset_id)
    if request.POST.get("add_filter") or request.POST.get("refresh"):
        return dummy_form_fragment(request, dataset_id)
    panel = dummy_context(dataset=dataset, data=request.POST, validate=True)
    if panel is None:
        raise Http404("This dataset has no query form for fake data.")
    refused = _throttled(request)
    if refused is not None:
        return refused
    status = _answer(request, panel)
    return _panel_response(request, dataset, panel, status)
