"""The Alerts list: every "connection broken" / "connection recovered" alert and how its delivery went.

Read-only: alerts are raised by the refreshes and delivered by services.alert_delivery; nobody adds,
edits or deletes one here. Imported at the end of admin.py.
"""

from __future__ import annotations

from django.contrib import admin

from .models import Alert


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["created_at", "event", "account_display", "grant_owner_display", "subject", "email_state",
                    "webhook_state", "attempts", "last_error"]
    list_filter = ["event", "email_state", "webhook_state"]
    list_select_related = ["account"]
    search_fields = ["account_name", "grant_owner", "subject", "recipients"]
    date_hierarchy = "created_at"
    fields = ["created_at", "event", "reason", "account_display", "grant_owner_display", "subject", "message",
              "link", "recipients", "email_state", "webhook_state", "attempts", "last_attempt_at", "next_attempt_at",
              "delivered_at", "last_error"]
    readonly_fields = fields

    @admin.display(description="Account", ordering="account_name")
    def account_display(self, obj):
        if obj.account is not None:
            return obj.account.name
        return f"{obj.account_name} (deleted)" if obj.account_name else "—"

    @admin.display(description="Whose grant", ordering="grant_owner")
    def grant_owner_display(self, obj):
        return obj.grant_owner or "The account"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
