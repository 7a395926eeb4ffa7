"""Reads of encrypted inference: the model catalogue (every signed-in user sees every listing) and a
client's own predictions (another account's prediction is a 404)."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import User
from compute.models import ModelListing, Prediction
from config.lookups import get_or_404


def listing_list() -> QuerySet[ModelListing]:
    return ModelListing.objects.select_related("owner", "job").order_by("-created_at", "-id")


def listing_get(*, listing_id: int) -> ModelListing:
    return get_or_404(listing_list(), message="No such model.", pk=listing_id)


def prediction_get(*, user: User, prediction_id: int) -> Prediction:
    return get_or_404(
        Prediction.objects.select_related("listing").filter(client=user),
        message="No such prediction.",
        pk=prediction_id,
    )
