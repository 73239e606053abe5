"""Atlassian Cloud in the sandbox admin: the developer console app, the sites, and each consent's token family.

A consent's first-consent time is the one editable field: moving it back ages
the family towards the 365-day limit, for a demo or a test.
"""

from django.contrib import admin
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from jira_sandbox import users

from . import identity
from .models import CloudApp, CloudIssue, CloudProject, CloudSite, Consent


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
