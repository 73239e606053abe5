"""Jira's "Service accounts" list in the sandbox admin: who they are, their scope, and Disable / Enable.

Created with `sandbox_create_service_account` (it prints the Client ID and the Secret, which exists in plaintext
only then); deleting one here deletes its user and credential, as in Jira.
"""

from django.contrib import admin, messages

from . import accounts
from .models import ServiceAccount


@admin.register(ServiceAccount)
class ServiceAccountAdmin(admin.ModelAdmin):
    list_display = ("display_name", "username", "client_id", "scope", "status", "created")
    list_select_related = ("user", "credential")
    fields = ("display_name", "username", "client_id", "scope", "status", "created")
    readonly_fields = fields
    actions = ["disable", "enable"]

    def has_add_permission(self, request):
        return False  # jira_sandbox/manage.py sandbox_create_service_account prints its credentials once

    @admin.display(description="Name")
    def display_name(self, account):
        return str(account)

    @admin.display(description="User name")
    def username(self, account):
        return account.user.username

    @admin.display(description="Client ID")
    def client_id(self, account):
        return account.credential.client_id

    @admin.display(description="Scope")
    def scope(self, account):
        return account.credential.permission

    @admin.display(description="Status")
    def status(self, account):
        return "Active" if account.is_active else "Disabled"

    @admin.action(description="Disable selected service accounts")
    def disable(self, request, queryset):
        for account in queryset:
            accounts.set_enabled(account, False)
        self.message_user(request, f"Disabled {queryset.count()} service account(s).", messages.SUCCESS)

    @admin.action(description="Enable selected service accounts")
    def enable(self, request, queryset):
        for account in queryset:
            accounts.set_enabled(account, True)
        self.message_user(request, f"Enabled {queryset.count()} service account(s).", messages.SUCCESS)
