"""Reads of ensembles. Ensembles and their members are public listings, like published datasets."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Prefetch, Q, QuerySet

from config.lookups import get_or_404
from marketplace.models import Dataset, Ensemble, EnsembleMember


def _current(at: datetime | None = None) -> Q:
    """Members that had joined and not left at ``at`` (now when None)."""
    if at is None:
        return Q(left_at__isnull=True)
    return Q(joined_at__lte=at) & (Q(left_at__isnull=True) | Q(left_at__gt=at))


def ensemble_list() -> QuerySet[Ensemble]:
    """Every ensemble, newest first, with its current members (oldest first) and their owners."""
    members = EnsembleMember.objects.filter(_current()).select_related("dataset", "dataset__owner")
    return (
        Ensemble.objects.select_related("owner")
        .prefetch_related(Prefetch("members", queryset=members, to_attr="current_members"))
        .order_by("-created_at", "-id")
    )


def ensemble_get(*, ensemble_id) -> Ensemble:
    return get_or_404(ensemble_list(), message="No such ensemble.", pk=ensemble_id)


def ensemble_member_datasets(*, ensemble: Ensemble) -> list[Dataset]:
    """The datasets a job submitted now runs on: current members whose dataset is published (a
    suspended dataset takes no new jobs), in primary-key order, the order their rows are locked in."""
    ids = EnsembleMember.objects.filter(_current(), ensemble=ensemble).values_list("dataset_id", flat=True)
    return list(
        Dataset.objects.filter(pk__in=list(ids), status=Dataset.Status.PUBLISHED, mode=Dataset.Mode.DP)
        .select_related("owner")
        .order_by("pk")
    )
