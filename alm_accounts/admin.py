"""The ALM Accounts admin: list, form and connection buttons.

Thin on purpose: each button calls one service and turns its result or error
into a message. Stored secrets are never rendered; tokens are shown only as
"present" with their expiry.
"""

from __future__ import annotations

import shlex
from datetime import timedelta

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from . import services
from .forms import ALMAccountForm
from .jira import Deadline
from .models import ALMAccount, AuthEvent

AUDIT_TRAIL_ROWS = 25
# Each refresh may wait for Jira up to JIRA_REFRESH_DEADLINE: more than a few in one web request would outlast
# the proxy's or gunicorn's timeout. More accounts are refreshed by manage.py refresh_tokens.
MAX_ACCOUNTS_PER_REFRESH_ACTION = 5


def status_badge(account: ALMAccount) -> str:
    return format_html(
        '<span class="alm-status alm-status-{}">{}</span>', account.status, account.get_status_display()
    )


@admin.register(ALMAccount)
class ALMAccountAdmin(admin.ModelAdmin):
    form = ALMAccountForm
    change_form_template = "admin/alm_accounts/almaccount/change_form.html"
    list_display = ["name", "alm_type", "base_url", "status_display", "connected_as", "token_expires_at",
                    "last_refreshed_at"]
    list_filter = ["status", "alm_type"]
    search_fields = ["name", "base_url"]
    list_per_page = 50
    actions = ["refresh_selected"]
    readonly_fields = ["status_display", "connected_as", "token_state", "token_scope", "connected_at",
                       "last_refreshed_at", "last_error", "audit_trail"]

    def get_fieldsets(self, request, obj=None):
        fieldsets = [
            ("I. ALM account", {"fields": ["alm_type", "name", "authentication", "base_url", "jira_ca_certificate",
                                           "callback_url"],
                                "description": "Keep this screen open while you create the link in Jira."}),
            ("III. Jira credentials", {
                # View-only screens render fields read-only, which would show the decrypted secret.
                "fields": ["client_id", "client_secret" if obj is None or self.has_change_permission(request, obj)
                           else "client_secret_state", "scope"],
                "description": "From Jira's incoming application link (Administration → Applications → "
                               "Application links): paste the Client ID and Client Secret, then click Get Auth "
                               "Token.",
            }),
        ]
        if obj is not None:
            # An existing account's page opens with its connection state, readable at a glance.
            fieldsets.insert(0, ("Connection", {"fields": ["status_display", "connected_as", "token_state",
                                                           "token_scope", "connected_at", "last_refreshed_at",
                                                           "last_error"]}))
            fieldsets.append(("Audit trail", {"fields": ["audit_trail"], "classes": ["collapse"]
                                              if not obj.events.exists() else []}))
        return fieldsets

    @method_decorator(sensitive_post_parameters("client_secret"))
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # Django's error reports (DEBUG page, error e-mails) then mask the typed Client Secret.
        return super().changeform_view(request, object_id, form_url, extra_context)

    def get_form(self, request, obj=None, change=False, **kwargs):
        base = super().get_form(request, obj, change=change, **kwargs)

        class FormWithRequest(base):
            def __init__(self, *args, **kw):
                super().__init__(*args, request=request, **kw)

        return FormWithRequest

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        match = request.resolver_match
        if match and match.url_name and match.url_name.endswith("changelist"):
            # The list never shows secrets: don't load (or decrypt) them.
            queryset = queryset.defer("client_secret", "access_token", "refresh_token", "last_error")
        return queryset

    # --- read-only displays ---

    @admin.display(description="Status", ordering="status")
    def status_display(self, obj):
        return status_badge(obj)

    @admin.display(description="Connected as")
    def connected_as(self, obj):
        return obj.connected_as or "—"

    @admin.display(description="Client Secret")
    def client_secret_state(self, obj):
        return "Stored (encrypted)" if obj.client_secret is not None else "Not set"

    @admin.display(description="Auth token")
    def token_state(self, obj):
        unreadable = obj.unreadable_secrets
        if unreadable:
            return format_html(
                '<strong class="errornote">Stored {} cannot be decrypted with the configured '
                "FIELD_ENCRYPTION_KEY.</strong>",
                ", ".join(unreadable),
            )
        if obj.refresh_token is None:
            return "No token yet: click Get Auth Token."
        if obj.token_expires_at is None:
            return "Present (expiry unknown)"
        left = obj.token_expires_at - timezone.now()
        when = timezone.localtime(obj.token_expires_at).strftime("%Y-%m-%d %H:%M:%S %Z")
        if left <= timedelta(0):
            return f"Present; the access token expired at {when} (it is refreshed when next used)."
        return f"Present; the access token expires at {when} (in {int(left.total_seconds() // 60)} min)."

    @admin.display(description="Recent activity")
    def audit_trail(self, obj):
        events = list(obj.events.all()[:AUDIT_TRAIL_ROWS])
        if not events:
            return "No activity yet."
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (timezone.localtime(e.created_at).strftime("%Y-%m-%d %H:%M:%S"), e.get_kind_display(),
                 e.get_outcome_display(), e.actor, e.message)
                for e in events
            ),
        )
        more = reverse("admin:alm_accounts_authevent_changelist") + f"?account__id__exact={obj.pk}"
        return format_html(
            '<table class="alm-audit-trail"><thead><tr><th>When</th><th>What</th><th>Outcome</th><th>Who</th>'
            "<th>Message</th></tr></thead><tbody>{}</tbody></table>"
            '<p><a href="{}">All activity of this account</a></p>',
            rows,
            more,
        )

    # --- saving, and "Get Auth Token" (which saves first) ---

    def save_model(self, request, obj, form, change):
        # The service writes only what the form edits (a refresh may have rotated the tokens meanwhile) and
        # ends the connection when the Jira base URL or the Client ID changed.
        ended = services.save_account(account=obj, form_fields=list(form._meta.fields),
                                      new_client_secret=form.client_secret_entered, actor=self._actor(request),
                                      report=self._reporter(request))
        if ended:
            self.message_user(request, ended, messages.WARNING)
        if not change:
            form.forget_pending_callback_id()

    def delete_model(self, request, obj):
        services.delete_account(account=obj, actor=self._actor(request), report=self._reporter(request))

    def delete_queryset(self, request, queryset):
        # One time budget for every revocation of a bulk delete: the request must end.
        deadline = Deadline(settings.JIRA_REFRESH_DEADLINE)
        for account in queryset:
            services.delete_account(account=account, actor=self._actor(request), report=self._reporter(request),
                                    deadline=deadline)

    def _reporter(self, request):
        """How a service tells, after the commit, what Jira answered to a revocation."""
        def report(text: str, confirmed: bool):
            self.message_user(request, text, messages.SUCCESS if confirmed else messages.WARNING)
        return report

    def response_add(self, request, obj, post_url_continue=None):
        if "_get_auth_token" in request.POST:
            return self._start_authorization(request, obj)
        return super().response_add(request, obj, post_url_continue)

    def response_change(self, request, obj):
        if "_get_auth_token" in request.POST:
            return self._start_authorization(request, obj)
        return super().response_change(request, obj)

    def _start_authorization(self, request, account):
        if not self.has_change_permission(request, account):
            raise PermissionDenied
        try:
            url = services.start_authorization(account=account, user=request.user, session=request.session)
        except services.ServiceError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(account.get_admin_url())
        return HttpResponseRedirect(url)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        # Starting needs change permission (see _start_authorization), on the add form too.
        context["can_connect"] = self.has_change_permission(request, obj) and (
            obj is not None or self.has_add_permission(request))
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- connection buttons (POST only, change permission) ---

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        own = [
            path("<int:pk>/test-connection/", self.admin_site.admin_view(require_POST(self._test_connection)),
                 name="{}_{}_test_connection".format(*info)),
            path("<int:pk>/refresh-token/", self.admin_site.admin_view(require_POST(self._refresh_token)),
                 name="{}_{}_refresh_token".format(*info)),
            path("<int:pk>/disconnect/", self.admin_site.admin_view(require_POST(self._disconnect)),
                 name="{}_{}_disconnect".format(*info)),
        ]
        return own + super().get_urls()

    def _account_for_change(self, request, pk) -> ALMAccount:
        account = get_object_or_404(ALMAccount, pk=pk)
        if not self.has_change_permission(request, account):
            raise PermissionDenied
        return account

    def _actor(self, request) -> str:
        return services.actor_of(request.user)

    @staticmethod
    def _back(account):
        return HttpResponseRedirect(account.get_admin_url())

    def _test_connection(self, request, pk):
        account = self._account_for_change(request, pk)
        try:
            self.message_user(request, services.test_connection(account=account, actor=self._actor(request)),
                              messages.SUCCESS)
        except services.ServiceError as exc:
            self.message_user(request, f"Test connection failed: {exc}", messages.ERROR)
        return self._back(account)

    def _refresh_token(self, request, pk):
        account = self._account_for_change(request, pk)
        result = services.refresh_account(account_id=account.pk, actor=self._actor(request))
        self._report_refresh(request, result)
        return self._back(account)

    def _disconnect(self, request, pk):
        account = self._account_for_change(request, pk)
        try:
            outcome = services.disconnect(account=account, actor=self._actor(request))
        except services.ServiceError as exc:
            self.message_user(request, f"Disconnect failed: {exc}", messages.ERROR)
            return self._back(account)
        self.message_user(request, outcome, messages.SUCCESS if outcome.confirmed else messages.WARNING)
        return self._back(account)

    def _report_refresh(self, request, result: services.RefreshResult):
        level = messages.ERROR if result.failed else (
            messages.SUCCESS if result.outcome is services.RefreshOutcome.REFRESHED else messages.WARNING)
        text = f"{result.account_name}: {result.outcome.value}"
        self.message_user(request, f"{text} — {result.message}" if result.message else text, level)

    @admin.action(description="Refresh the auth tokens of the selected ALM accounts", permissions=["change"])
    def refresh_selected(self, request, queryset):
        selected = list(queryset.values_list("pk", "name")[:MAX_ACCOUNTS_PER_REFRESH_ACTION + 1])
        if len(selected) > MAX_ACCOUNTS_PER_REFRESH_ACTION:
            count = queryset.count()
            names = list(queryset.values_list("name", flat=True)[:20]) if count <= 20 else []
            accounts = " ".join(f"--account {shlex.quote(name)}" for name in names) or '--account "<name>" ...'
            self.message_user(request, (
                f"Nothing was refreshed: {count} ALM accounts were selected, and this button refreshes at most "
                f"{MAX_ACCOUNTS_PER_REFRESH_ACTION} at once (each may wait up to "
                f"{settings.JIRA_REFRESH_DEADLINE:g} s for Jira). Refresh them on the server instead: "
                f"manage.py refresh_tokens --force {accounts}"
            ), messages.ERROR)
            return
        for account_id, _name in selected:
            self._report_refresh(request, services.refresh_account(account_id=account_id,
                                                                   actor=self._actor(request)))


@admin.register(AuthEvent)
class AuthEventAdmin(admin.ModelAdmin):
    """The full audit trail, read-only."""

    list_display = ["created_at", "account_display", "kind", "outcome", "actor", "message"]
    # Not "account": that filter lists every account in the sidebar (thousands). The account page links here
    # with ?account__id__exact=<id>, allowed below.
    list_filter = ["kind", "outcome"]
    list_select_related = ["account"]
    # account_name: the name the account had at the event, and the only one left once the account is deleted.
    search_fields = ["account_name", "account__name", "actor", "message"]
    date_hierarchy = "created_at"

    @admin.display(description="Account", ordering="account_name")
    def account_display(self, obj):
        if obj.account is not None:
            return obj.account.name
        return f"{obj.account_name} (deleted)" if obj.account_name else "—"

    def lookup_allowed(self, lookup, value, request=None):
        return lookup == "account__id__exact" or super().lookup_allowed(lookup, value, request)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

