"""Atlassian Cloud in the sandbox admin: the developer console app, the sites, and each consent's token family.

A consent's first-consent time is the one editable field: moving it back ages
the family towards the 365-day limit, for a demo or a test.
"""

from django.contrib import admin, messages
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from jira_sandbox import users

from . import identity, service_accounts
from .models import CloudApp, CloudIssue, CloudProject, CloudServiceAccount, CloudSite, Consent


@admin.register(CloudApp)
class CloudAppAdmin(admin.ModelAdmin):
    list_display = ("name", "client_id", "callback_url", "created")
    fields = ("name", "client_id", "callback_url", "secret")
    readonly_fields = ("client_id", "callback_url", "secret")

    @admin.display(description="Secret")
    def secret(self, app):
        # Stored hashed, like a real console never shows it again: the deployment knows it.
        return "Set by SANDBOX_CLOUD_CLIENT_SECRET when sandbox_setup runs (stored hashed)."

    def has_add_permission(self, request):
        return False  # created by sandbox_setup from SANDBOX_CLOUD_CLIENT_ID / _SECRET / _CALLBACK_URL


@admin.register(CloudSite)
class CloudSiteAdmin(admin.ModelAdmin):
    list_display = ("name", "url", "cloud_id")
    readonly_fields = ("name", "url", "cloud_id")

    def has_add_permission(self, request):
        return False  # the two fixed sites come from sandbox_setup


@admin.register(Consent)
class ConsentAdmin(admin.ModelAdmin):
    list_display = ("person", "account_id", "app", "site_names", "scope", "consented_at", "status")
    list_select_related = ("user", "app")
    fields = (
        "person",
        "account_id",
        "app",
        "site_names",
        "scope",
        "consented_at",
        "status",
        "refresh_tokens",
    )
    readonly_fields = ("person", "account_id", "app", "site_names", "scope", "status", "refresh_tokens")

    def has_add_permission(self, request):
        return False  # a consent is given on the consent screen

    @admin.display(description="Person")
    def person(self, consent):
        return f"{users.display_name(consent.user)} ({consent.user.username})"

    @admin.display(description="Account ID")
    def account_id(self, consent):
        return identity.account_id(consent.user)

    @admin.display(description="Sites")
    def site_names(self, consent):
        return ", ".join(site.name for site in consent.sites.all())

    @admin.display(description="Status")
    def status(self, consent):
        if consent.revoked_at:
            when = timezone.localtime(consent.revoked_at)
            return f"Revoked {when:%Y-%m-%d %H:%M}: {consent.get_revoked_because_display()}"
        return "Active"

    @admin.display(description="Refresh tokens")
    def refresh_tokens(self, consent):
        rows = [
            (
                timezone.localtime(token.issued).strftime("%Y-%m-%d %H:%M:%S"),
                timezone.localtime(token.replaced_at).strftime("%Y-%m-%d %H:%M:%S") if token.replaced_at else "in use",
            )
            for token in consent.refresh_tokens.all()
        ]
        if not rows:
            return "None (offline_access not granted, or the code is not redeemed yet)."
        body = format_html_join("", "<tr><td>{}</td><td>{}</td></tr>", rows)
        return format_html("<table><tr><th>Issued</th><th>Replaced</th></tr>{}</table>", body)


@admin.register(CloudProject)
class CloudProjectAdmin(admin.ModelAdmin):
    list_display = ("key", "name", "site", "issue_counter")
    list_filter = ("site",)


@admin.register(CloudIssue)
class CloudIssueAdmin(admin.ModelAdmin):
    list_display = ("key", "summary", "site", "reporter_name", "created")
    list_filter = ("project__site",)
    list_select_related = ("project__site", "reporter")
    fields = ("project", "issue_type", "summary", "description", "reporter", "created")
    readonly_fields = ("project", "reporter", "created")

    @admin.display(description="Site")
    def site(self, issue):
        return issue.project.site.name

    @admin.display(description="Reporter")
    def reporter_name(self, issue):
        return f"{users.display_name(issue.reporter)} ({identity.account_id(issue.reporter)})"

    def has_add_permission(self, request):
        return False  # only POST .../rest/api/3/issue creates, with the token's person as reporter


@admin.register(CloudServiceAccount)
class CloudServiceAccountAdmin(admin.ModelAdmin):
    """Atlassian Administration → Directory → Service accounts: created by `sandbox_create_service_account --cloud`."""

    list_display = ("name", "account_id", "email", "client_id", "scope", "site_names", "status")
    list_select_related = ("user",)
    fields = ("name", "account_id", "email", "client_id", "scope", "site_names", "status", "created")
    readonly_fields = fields
    actions = ["disable", "enable"]

    def has_add_permission(self, request):
        return False  # the command prints the credential's Client ID and Secret, once

    @admin.display(description="Email")
    def email(self, account):
        return account.user.email

    @admin.display(description="Sites")
    def site_names(self, account):
        return ", ".join(site.name for site in account.sites.all())

    @admin.display(description="Status")
    def status(self, account):
        return "Active" if account.disabled_at is None else "Disabled"

    @admin.action(description="Disable selected service accounts")
    def disable(self, request, queryset):
        for account in queryset:
            service_accounts.set_enabled(account, False)
        self.message_user(request, f"Disabled {queryset.count()} service account(s).", messages.SUCCESS)

    @admin.action(description="Enable selected service accounts")
    def enable(self, request, queryset):
        for account in queryset:
            service_accounts.set_enabled(account, True)
        self.message_user(request, f"Enabled {queryset.count()} service account(s).", messages.SUCCESS)
