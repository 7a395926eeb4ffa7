"""Admin for accounts. Wallets and the credit ledger are read-only here: credits only move through
services, so every change is a ledger row. API keys show their prefix, never their hash."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts import services
from accounts.models import ApiKey, CreditEntry, User, Wallet


class ReadOnlyAdmin(admin.ModelAdmin):
    """Ledgers, balances and purchases: records of what happened, which administrators may look at
    but never add, change or delete. Shared by the accounts and marketplace admins."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ("username", "email", "is_owner", "is_buyer", "is_staff", "is_active", "date_joined")
    list_filter = ("is_owner", "is_buyer", "is_staff", "is_superuser", "is_active")
    fieldsets = (
        *DjangoUserAdmin.fieldsets,
        ("Roles", {"fields": ("is_owner", "is_buyer")}),
    )
    add_fieldsets = (
        *DjangoUserAdmin.add_fieldsets,
        ("Roles", {"classes": ("wide",), "fields": ("is_owner", "is_buyer")}),
    )

    def save_model(self, request: HttpRequest, obj: User, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change:
            # Every account has a wallet; the service also grants the configured sign-up credits.
            services.wallet_create(user=obj)


@admin.register(Wallet)
class WalletAdmin(ReadOnlyAdmin):
    list_display = ("user", "balance", "updated_at")
    search_fields = ("user__username", "user__email")
    list_select_related = ("user",)
    fields = ("user", "balance", "updated_at")


@admin.register(CreditEntry)
class CreditEntryAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "wallet", "kind", "amount", "balance_after", "purchase", "memo")
    list_filter = ("kind",)
    search_fields = ("wallet__user__username", "memo")
    list_select_related = ("wallet__user", "purchase__dataset", "purchase__buyer")
    date_hierarchy = "created_at"


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "user", "created_at", "last_used_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("name", "prefix", "user__username")
    list_select_related = ("user",)
    # hashed_key is never shown: it is left out of every field list.
    fields = ("name", "prefix", "user", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    actions = ("revoke_keys",)

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        # Keys are created by their owner, who alone ever sees the full key.
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.action(description="Revoke the selected keys")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = 0
        for key in queryset.filter(revoked_at__isnull=True):
            services.api_key_revoke(user=key.user, key_id=key.pk)
            count += 1
        self.message_user(request, f"Revoked {count} key(s).", messages.SUCCESS)
