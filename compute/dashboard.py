"""The owner's dashboard page (``/dashboard/``, URL name ``owner-dashboard``).

A page of compute, routed from ``config/urls.py``: it shows the marketplace's datasets with compute's
job counts (:mod:`compute.activity`), and the marketplace never imports compute.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from compute.activity import dataset_activity
from marketplace import charts
from marketplace import selectors as market

DASHBOARD_PAGE_SIZE = 10
# The dashboard lists this many of a dataset's latest commits under its chart.
DASHBOARD_COMMIT_ROWS = 10


@login_required
@require_GET
def owner_dashboard(request: HttpRequest) -> HttpResponse:
    """Each of the owner's datasets with its budget burn-down, earnings, buyers and jobs by status.
    Only budget, money and counts: released values belong to the buyers who paid for them."""
    datasets = market.dataset_list(user=request.user, mine=True).order_by("-created_at", "-id")
    page_obj = Paginator(datasets, DASHBOARD_PAGE_SIZE).get_page(request.GET.get("page"))
    now = timezone.now()
    cards = [
        {
            "activity": activity,
            "dataset": activity.dataset,
            "chart": charts.burn_down(
                cap=activity.dataset.epsilon_cap,
                sold=activity.dataset.epsilon_sold,
                start=activity.dataset.published_at or activity.dataset.created_at,
                now=now,
                commits=activity.commits,
            ),
            "recent_commits": [
                (when, total, activity.dataset.epsilon_cap - total)
                for when, total in reversed(activity.commits[-DASHBOARD_COMMIT_ROWS:])
            ],
        }
        for activity in dataset_activity(owner=request.user, datasets=list(page_obj.object_list))
    ]
    return render(
        request,
        "marketplace/dashboard.html",
        {
            "page_obj": page_obj,
            "cards": cards,
            "totals": market.owner_totals(owner=request.user),
            "commit_rows": DASHBOARD_COMMIT_ROWS,
        },
    )
