"""Reads of encrypted inference: the model catalogue (every signed-in user sees every listing), a
client's own predictions (another account's prediction is a 404), and the dashboards' counts: the
models a user trained, those trained on an owner's datasets, and what each listing sold."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import Count, QuerySet, Sum

from accounts.models import User
from compute.models import Job, ModelListing, Prediction
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


# A prediction whose scores were computed was sold (the publisher was credited then); a failed one was
# refunded, and an open one is not paid for yet.
SOLD = (Prediction.Status.READY, Prediction.Status.DELIVERED, Prediction.Status.EXPIRED)


def listing_sales(*, listings: QuerySet[ModelListing] | None = None, owner: User | None = None) -> dict[int, dict]:
    """Per listing (the owner's, or those given): predictions sold, rows scored and credits earned."""
    qs = Prediction.objects.filter(status__in=SOLD)
    if owner is not None:
        qs = qs.filter(listing__owner=owner)
    if listings is not None:
        qs = qs.filter(listing__in=listings)
    totals = qs.values("listing_id").annotate(predictions=Count("id"), rows=Sum("rows"), revenue=Sum("price"))
    return {
        t["listing_id"]: {
            "predictions": t["predictions"],
            "rows": t["rows"] or 0,
            "revenue": t["revenue"] or Decimal("0"),
        }
        for t in totals
    }


def sales_of(listings: list[ModelListing]) -> list[dict]:
    """Each listing with its sales (zero when it sold nothing)."""
    sales = listing_sales(listings=ModelListing.objects.filter(pk__in=[x.pk for x in listings]))
    empty = {"predictions": 0, "rows": 0, "revenue": Decimal("0.00")}
    return [{"listing": x, **sales.get(x.pk, empty)} for x in listings]


def sales_totals(rows: list[dict]) -> dict:
    """The sums of :func:`sales_of` rows: predictions, rows scored and credits earned."""
    return {
        "predictions": sum(r["predictions"] for r in rows),
        "rows": sum(r["rows"] for r in rows),
        "revenue": sum((r["revenue"] for r in rows), Decimal("0.00")),
    }


def trained_models(*, user: User) -> QuerySet[Job]:
    """The user's released train jobs, newest first, with their listing when published."""
    return (
        Job.objects.filter(buyer=user, kind=Job.Kind.TRAIN, status=Job.Status.RELEASED)
        .select_related("dataset", "listing")
        .order_by("-created_at", "-id")
    )


def models_on_datasets(*, owner: User) -> QuerySet[ModelListing]:
    """Published models trained on the owner's datasets."""
    return listing_list().filter(job__dataset__owner=owner).select_related("job__dataset")


def model_counts(*, dataset_ids: list[int]) -> dict[int, dict[str, int]]:
    """Per dataset: the models released on it (train jobs) and how many of them are published."""
    trained = (
        Job.objects.filter(dataset_id__in=dataset_ids, kind=Job.Kind.TRAIN, status=Job.Status.RELEASED)
        .values("dataset_id")
        .annotate(n=Count("id"))
    )
    listed = (
        ModelListing.objects.filter(job__dataset_id__in=dataset_ids).values("job__dataset_id").annotate(n=Count("id"))
    )
    out = {pk: {"trained": 0, "published": 0} for pk in dataset_ids}
    for row in trained:
        out[row["dataset_id"]]["trained"] = row["n"]
    for row in listed:
        out[row["job__dataset_id"]]["published"] = row["n"]
    return out
