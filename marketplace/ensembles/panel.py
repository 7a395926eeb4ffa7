"""The ensemble section of a DP dataset's page, for its owner: the ensembles the dataset is a member of
(each with a button to leave), the form that adds it to another, and the form that creates one from it."""

from __future__ import annotations

from typing import Any

from marketplace.ensembles.forms import EnsembleCreateForm, EnsembleJoinForm
from marketplace.models import Dataset


def owner_panel(
    dataset: Dataset, create_form: EnsembleCreateForm | None = None, join_form: EnsembleJoinForm | None = None
) -> dict[str, Any] | None:
    """The dataset page's ensemble section for its owner, or None for an HE dataset."""
    if dataset.mode != Dataset.Mode.DP:
        return None
    memberships = list(
        dataset.ensemble_memberships.filter(left_at__isnull=True).select_related("ensemble").order_by("joined_at")
    )
    join = join_form or EnsembleJoinForm(dataset=dataset)
    return {
        "memberships": memberships,
        "create_form": create_form or EnsembleCreateForm(dataset=dataset),
        "join_form": join,
        "can_join": bool(join.fields["ensemble"].choices),
        "published": dataset.status == Dataset.Status.PUBLISHED,
        "delta_ok": dataset.delta_cap > 0,
    }
