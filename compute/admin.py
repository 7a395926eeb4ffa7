"""Admin for jobs: read-only. Administrators see who ran what, on which dataset, at what epsilon, and
how it ended; they do not see the released values (the buyer's) nor anything of an HE key."""

from __future__ import annotations

from django.contrib import admin

from accounts.admin import ReadOnlyAdmin
from compute.models import Job, ModelListing, Prediction


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    list_display = ("id", "buyer", "dataset", "status", "epsilon", "delta", "created_at", "finished_at")
    list_filter = ("status", "dataset__mode", "dataset")
    search_fields = ("buyer__username", "dataset__title")
    list_select_related = ("buyer", "dataset")
    date_hierarchy = "created_at"
    fields = (
        "buyer",
        "dataset",
        "purchase",
        "kind",
        "spec",
        "epsilon",
        "delta",
        "dataset_version",
        "status",
        "error",
        "progress_done",
        "progress_total",
        "attempts",
        "reused_from",
        "created_at",
        "started_at",
        "computed_at",
        "finished_at",
    )
    readonly_fields = fields


@admin.register(ModelListing)
class ModelListingAdmin(ReadOnlyAdmin):
    """Published models: who, which job, at what price; not the parameters (the publisher's)."""

    list_display = ("id", "title", "owner", "job", "price_per_prediction", "created_at")
    search_fields = ("title", "owner__username")
    list_select_related = ("owner", "job")
    fields = ("title", "owner", "job", "price_per_prediction", "created_at")
    readonly_fields = fields


@admin.register(Prediction)
class PredictionAdmin(ReadOnlyAdmin):
    """Encrypted predictions: who paid what for how many rows; the platform holds no row or score to show."""

    list_display = ("id", "listing", "client", "rows", "price", "status", "created_at", "finished_at")
    list_filter = ("status",)
    search_fields = ("client__username", "listing__title")
    list_select_related = ("listing", "client")
    fields = (
        "listing",
        "client",
        "rows",
        "price",
        "status",
        "error",
        "created_at",
        "started_at",
        "finished_at",
        "delivered_at",
    )
    readonly_fields = fields
