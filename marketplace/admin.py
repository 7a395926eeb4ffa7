"""Admin for the marketplace. Administrators publish, suspend and edit listings here; purchases and
the privacy ledger are read-only. Stored files are never linked: their path is not shown at all."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from accounts.admin import ReadOnlyAdmin
from marketplace import services
from marketplace.models import Column, Dataset, Ensemble, EnsembleMember, LedgerEntry, Purchase

admin.site.site_header = "Cloakroom administration"
admin.site.site_title = "Cloakroom administration"
admin.site.index_title = "Catalogue, accounts and ledgers"


class ColumnInline(admin.TabularInline):
    # The schema was checked against the stored file at upload, so it is shown, not edited:
    # changing a bound here would silently break the guarantee the check gave.
    model = Column
    fields = ("position", "name", "kind", "lower", "upper", "categories", "is_label")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = (
        "title",
        "owner",
        "mode",
        "status",
        "epsilon_cap",
        "epsilon_sold",
        "price_per_epsilon",
        "created_at",
        "links",
    )
    list_filter = ("mode", "status")
    search_fields = ("title", "description", "owner__username")
    list_select_related = ("owner",)
    date_hierarchy = "created_at"
    inlines = (ColumnInline,)
    actions = ("publish_datasets", "suspend_datasets")
    # file_path and file_sha256 are deliberately absent from every list: no page shows where a file lives.
    fieldsets = (
        (None, {"fields": ("title", "slug", "description", "owner", "mode", "status")}),
        ("Budget and price", {"fields": ("epsilon_cap", "delta_cap", "epsilon_sold", "price_per_epsilon")}),
        (
            "Data",
            {"fields": ("row_count", "row_count_public", "clip_to_bounds", "file_format", "file_size", "version")},
        ),
        ("Dates", {"fields": ("created_at", "updated_at", "published_at")}),
    )

    @admin.display(description="see")
    def links(self, obj: Dataset) -> str:
        """The listing as buyers see it, and its jobs and privacy ledger in this admin."""
        return format_html(
            '<a href="{}">page</a> · <a href="{}?dataset__id__exact={}">jobs</a> · <a href="{}?dataset__id__exact={}">ledger</a>',
            reverse("dataset-detail", args=[obj.pk]),
            reverse("admin:compute_job_changelist"),
            obj.pk,
            reverse("admin:marketplace_ledgerentry_changelist"),
            obj.pk,
        )

    # Budget, ownership and file facts come from the upload and the ledger; status moves through the actions.
    readonly_fields = (
        "owner",
        "mode",
        "status",
        "epsilon_cap",
        "delta_cap",
        "epsilon_sold",
        "row_count",
        "clip_to_bounds",
        "file_format",
        "file_size",
        "version",
        "created_at",
        "updated_at",
        "published_at",
    )

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        # A dataset needs a checked, encrypted upload: owners create them through the site or the API.
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        # Suspend instead: purchases and the ledger refer to datasets, and history is kept.
        return False

    def _set_status(self, request: HttpRequest, queryset: QuerySet[Dataset], status: str) -> None:
        count = 0
        for dataset in queryset:
            services.dataset_set_status(dataset=dataset, status=status)
            count += 1
        self.message_user(request, f"{count} dataset(s) now {status}.", messages.SUCCESS)

    @admin.action(description="Publish the selected datasets")
    def publish_datasets(self, request: HttpRequest, queryset: QuerySet[Dataset]) -> None:
        self._set_status(request, queryset, Dataset.Status.PUBLISHED)

    @admin.action(description="Suspend the selected datasets (stops new purchases)")
    def suspend_datasets(self, request: HttpRequest, queryset: QuerySet[Dataset]) -> None:
        self._set_status(request, queryset, Dataset.Status.SUSPENDED)


@admin.register(Purchase)
class PurchaseAdmin(ReadOnlyAdmin):
    list_display = ("id", "buyer", "dataset", "epsilon", "epsilon_used", "price", "created_at")
    list_filter = ("dataset__mode",)
    search_fields = ("buyer__username", "dataset__title")
    list_select_related = ("buyer", "dataset")
    date_hierarchy = "created_at"


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "kind", "dataset", "purchase", "job_id", "epsilon", "delta")
    list_filter = ("kind",)
    search_fields = ("dataset__title", "purchase__buyer__username")
    list_select_related = ("dataset", "purchase__buyer", "purchase__dataset")
    date_hierarchy = "created_at"


class EnsembleMemberInline(admin.TabularInline):
    # Membership is each dataset owner's consent, given and withdrawn through the API: shown, not edited.
    model = EnsembleMember
    fields = ("dataset", "joined_at", "left_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Ensemble)
class EnsembleAdmin(admin.ModelAdmin):
    list_display = ("title", "owner", "price_per_label", "created_at")
    search_fields = ("title", "description", "owner__username")
    list_select_related = ("owner",)
    date_hierarchy = "created_at"
    inlines = (EnsembleMemberInline,)
    # The schema was checked against every member's declaration when it joined: shown, not edited.
    readonly_fields = ("owner", "features", "label", "created_at")
    fields = ("title", "description", "price_per_label", "owner", "features", "label", "created_at")
