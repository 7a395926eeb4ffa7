"""The owner's dashboard page (``/dashboard/``, URL name ``owner-dashboard``).

A page of compute, routed from ``config/urls.py``: it shows the marketplace's datasets with compute's
job counts and the share of each one's privacy budget used under the accountant (:mod:`compute.activity`),
and the marketplace never imports compute.
"""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from compute import model_view
from compute.activity import DatasetActivity, budget_steps, dataset_activity
from compute.inference import selectors as models
from marketplace import charts
from marketplace import selectors as market

DASHBOARD_PAGE_SIZE = 10
# The dashboard lists this many of a dataset's latest commits under its chart.
DASHBOARD_COMMIT_ROWS = 10


def _card(activity: DatasetActivity, now: datetime) -> dict[str, object]:
    """A dataset's card: its activity, the chart of the share of its budget used, and its latest commits.

    The commits are thinned to the chart's points before the accountant runs, so a dataset with
    thousands of commits costs what its points cost."""
    dataset, commits = activity.dataset, activity.commits
    start, end = charts.window(
        start=dataset.published_at or dataset.created_at,
        now=now,
        first=commits[0].when if commits else None,
        last=commits[-1].when if commits else None,
    )
    shown = charts.thin([c.when for c in commits], start, end)
    latest = list(range(max(len(commits) - DASHBOARD_COMMIT_ROWS, 0), len(commits)))
    steps = budget_steps(activity, sorted(set(shown) | set(latest)))
    usage = steps[len(commits) - 1].usage if commits else charts.NOTHING
    return {
        "activity": activity,
        "dataset": dataset,
        "usage": usage,
        "chart": charts.burn_down(
            cap_epsilon=dataset.epsilon_cap,
            cap_delta=dataset.delta_cap,
            sold=dataset.epsilon_sold,
            start=start,
            end=end,
            steps=[steps[i] for i in shown],
            commits=len(commits),
            usage=usage,
        ),
        "recent_commits": [steps[i] for i in reversed(latest)],
    }


@login_required
@require_GET
def owner_dashboard(request: HttpRequest) -> HttpResponse:
    """Each of the owner's datasets with the share of its budget used over time, earnings, buyers, jobs by
    status and the models trained on it; then the models published from them with the predictions they
    sold. Only budget, money and counts: released values belong to the buyers who paid for them."""
    datasets = market.dataset_list(user=request.user, mine=True).order_by("-created_at", "-id")
    page_obj = Paginator(datasets, DASHBOARD_PAGE_SIZE).get_page(request.GET.get("page"))
    now = timezone.now()
    cards = [_card(a, now) for a in dataset_activity(owner=request.user, datasets=list(page_obj.object_list))]
    counts = models.model_counts(dataset_ids=[card["dataset"].pk for card in cards])
    for card in cards:
        card["models"] = counts[card["dataset"].pk]
    sold = models.sales_of(list(models.models_on_datasets(owner=request.user)))
    for row in sold:
        row["type"] = model_view.TYPE_NAMES.get(row["listing"].model.get("type"), "")
    return render(
        request,
        "marketplace/dashboard.html",
        {
            "page_obj": page_obj,
            "cards": cards,
            "totals": market.owner_totals(owner=request.user),
            "commit_rows": DASHBOARD_COMMIT_ROWS,
            "models_sold": sold,
            "models_totals": models.sales_totals(sold),
        },
    )
