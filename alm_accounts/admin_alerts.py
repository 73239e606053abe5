"""The Alerts list: every "connection broken" / "connection recovered" alert and how its delivery went.

Read-only: alerts are raised by the refreshes and delivered by services.alert_delivery; nobody adds,
edits or deletes one here. Imported at the end of admin.py.
"""

from __future__ import annotations

from django.contrib import admin

from .admin_records import RecordAdmin
from .models import Alert


@admin.register(Alert)
class AlertAdmin(RecordAdmin):
    list_display = ["created_at", "event", "account_display", "grant_owner_display", "subject", "email_state",
                    "webhook_state", "attempts", "last_error"]
    list_filter = ["event", "email_state", "webhook_state"]
    search_fields = ["account_name", "grant_owner", "subject", "recipients"]
    date_hierarchy = "created_at"
    fields = ["created_at", "event", "reason", "account_display", "grant_owner_display", "subject", "message",
              "link", "recipients", "email_state", "webhook_state", "attempts", "last_attempt_at", "next_attempt_at",
              "delivered_at", "last_error"]
    readonly_fields = fields
