"""The ALM Accounts admin: list, form, connection buttons, and the people's own credentials.

Thin on purpose: each button calls one service and turns its result or error
into a message. Stored secrets are never rendered; tokens are shown only as
"present" with their expiry. People's credentials (user-based sync) are shown
on their account's page and in a read-only list; an admin with change
permission on the account can revoke one (services.disconnect_grant).
"""

from __future__ import annotations

import shlex
from datetime import timedelta

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import BooleanField, ExpressionWrapper, Q
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from . import services
from .admin_records import RecordAdmin
from .conf import app_settings
from .forms import ALMAccountForm
from .grant_health import health_of, healths
from .jira import Deadline
from .models import ALMAccount, ALMCredential, AuthEvent
from .providers import provider_for
from .status import GrantHealthFilter, admin_summary

AUDIT_TRAIL_ROWS = 25
# People's credentials listed on an account's page; the rest are in the list of ALM credentials (linked).
USER_CREDENTIAL_ROWS = 100
# The tokens never leave the database for a screen: not loaded, not decrypted.
TOKEN_COLUMNS = ("access_token", "refresh_token")
# Never rendered, never read for a list (the service account's secret: providers.service_accounts).
SERVICE_SECRET_FIELDS = ("service_client_id", "service_client_secret")
# Each refresh may wait for Jira up to JIRA_REFRESH_DEADLINE: more than a few in one web request would outlast
# the proxy's or gunicorn's timeout. More accounts are refreshed by manage.py refresh_tokens.
MAX_ACCOUNTS_PER_REFRESH_ACTION = 5


def status_badge(grant) -> str:
    return format_html('<span class="alm-status alm-status-{}">{}</span>', grant.status, grant.get_status_display())


def provider_text(data_center: str, *, cloud: str) -> str:
    """Words for Jira Data Center, swapped for Jira Cloud's by provider_fields.js when Jira Cloud is chosen."""
    return format_html('<span data-cloud-text="{}">{}</span>', cloud, data_center) if data_center or cloud else ""


def when(moment) -> str:
    # The format of every date on the screens (kendis_integration/formats): one format, with the time zone.
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z") if moment else "—"


@admin.register(ALMAccount)
class ALMAccountAdmin(admin.ModelAdmin):
    form = ALMAccountForm
    change_form_template = "admin/alm_accounts/almaccount/change_form.html"
    list_display = ["name", "alm_type", "provider_display", "base_url", "status_display", "connected_as",
                    "token_expires_at", "last_refreshed_at"]
    list_filter = ["status", GrantHealthFilter, "authentication", "alm_type"]
    search_fields = ["name", "base_url"]
    list_per_page = 50
    actions = ["refresh_selected"]
    readonly_fields = ["provider_display", "cloud_site", "consent_ends", "status_display", "connected_as",
                       "token_state", "token_scope", "connected_at", "last_refreshed_at", "refresh_count", "last_error",
                       "grant_health", "audit_trail",
                       "user_credentials", "user_credentials_view"]

    def get_fieldsets(self, request, obj=None):
        # The sections follow the setup walk-through (I in our app, II in Jira, III back here); each provider's
        # words in spans that provider_fields.js swaps when the Authentication changes (data-cloud-text).
        connected = obj is not None and (obj.refresh_token is not None or obj.access_token is not None)
        keep_open = "" if connected or (obj is not None and obj.is_cloud) else (
            "Keep this screen open while you create the link in Jira (II): you come back to it for III.")
        fieldsets = [
            ("I. ALM account", {"fields": ["alm_type", "name", "authentication", "base_url", "cloud_scopes",
                                           "jira_ca_certificate", "callback_url"],
                                "description": provider_text(keep_open, cloud="")}),
            ("II. In Jira: the incoming application link", {
                "fields": [],
                "description": provider_text(
                    "In Jira, as an administrator: Administration → Applications → Application links → Create "
                    "link → External application, Incoming. Paste the Callback URL above as its Redirect URL, "
                    "choose the Permission (Admin), save: Jira shows the Client ID and the Client Secret.",
                    cloud="Jira Cloud: nothing to create in Jira. This deployment's Atlassian app is used, or your "
                    "own app from Atlassian's developer console (developer.atlassian.com) with the Callback URL "
                    "above registered in it."),
            }),
            ("III. Jira credentials", {
                # View-only screens render fields read-only, which would show the decrypted secret.
                "fields": ["client_id", "client_secret" if obj is None or self.has_change_permission(request, obj)
                           else "client_secret_state", "scope"],
                "description": provider_text(
                    "From Jira's incoming application link: paste the Client ID and Client Secret, then click Get "
                    "Auth Token. With a service account: optional, the link people use for My ALM Credentials.",
                    cloud="Leave both blank to use this deployment's Atlassian app (or paste your own app's, from "
                    "Atlassian's developer console → your app → Settings), then click Get Auth Token. With a service "
                    "account: no Get Auth Token; the app is the one people use for My ALM Credentials."),
            }),
        ]
        service = "service_client_secret" if obj is None or self.has_change_permission(request, obj) \
            else "service_client_secret_state"
        fieldsets.insert(3, ("Service account", {
            "fields": ["service_client_id", service],
            "classes": ["alm-service-account"],
            "description": "Only for a service-account authentication (OAuth 2.0 client credentials): the Client ID "
                           "and Client Secret of the service account's credential (Data Center: its Permission is "
                           "Read or Write above; Cloud: its scopes above). No callback URL and no Get Auth Token: "
                           "Save gets a token and reads who the service account is at once. The Client ID and Client "
                           "Secret above stay optional: they are the link or app people use for My ALM Credentials.",
        }))
        fieldsets.append(("Alerts", {
            "fields": ["notify"],
            "description": "Who is told by e-mail when this account's connection breaks (needs re-authorization, or "
                           "keeps failing) and when it works again.",
        }))
        people = ["unconnected_users"]
        if obj is not None:
            # Revoke buttons only for those who may press them (view-only screens get the same list without).
            people.append("user_credentials" if self.has_change_permission(request, obj) else "user_credentials_view")
        fieldsets.append(("User credentials", {
            "fields": people,
            "description": "People connect their own Jira account under My ALM Credentials: the product then acts in "
                           "Jira as them, within their own Jira permissions.",
        }))
        if obj is not None:
            # An existing account's page opens with its connection state, readable at a glance.
            connection = ["provider_display"] + (["cloud_site", "consent_ends"] if obj.is_cloud else [])
            fieldsets.insert(0, ("Connection", {"fields": connection + [
                "status_display", "connected_as", "token_state", "token_scope", "connected_at", "last_refreshed_at",
                "refresh_count", "last_error", "grant_health"]}))
            fieldsets.append(("Audit trail", {"fields": ["audit_trail"], "classes": ["collapse"]
                                              if not obj.events.exists() else []}))
        return fieldsets

    @method_decorator(sensitive_post_parameters("client_secret", "service_client_secret"))
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # Django's error reports (DEBUG page, error e-mails) then mask the typed Client Secret.
        return super().changeform_view(request, object_id, form_url, extra_context)

    def get_form(self, request, obj=None, change=False, **kwargs):
        base = super().get_form(request, obj, change=change, **kwargs)

        class FormWithRequest(base):
            def __init__(self, *args, **kw):
                super().__init__(*args, request=request, **kw)

        return FormWithRequest

    def changelist_view(self, request, extra_context=None):
        # The status at a glance above the list (alm_accounts.status): a few aggregate queries, whatever the size.
        extra_context = {**(extra_context or {}), "grant_status": admin_summary(request, self.admin_site)}
        return super().changelist_view(request, extra_context)

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        match = request.resolver_match
        if match and match.url_name and match.url_name.endswith("changelist"):
            # The list never shows secrets: don't load (or decrypt) them.
            queryset = queryset.defer("client_secret", "service_client_secret", "access_token", "refresh_token",
                                      "last_error")
        return queryset

    # --- read-only displays ---

    @admin.display(description="Provider", ordering="authentication")
    def provider_display(self, obj):
        site = f" ({obj.cloud_site_name})" if obj.cloud_site_name else ""
        return f"{provider_for(obj).label}{site}"

    @admin.display(description="Jira Cloud site")
    def cloud_site(self, obj):
        """The site the consent reached (matched to the site URL) and its cloud id, where REST calls go."""
        if not obj.cloud_id:
            return "Not known yet: found when consent is given (Get Auth Token)."
        return format_html("{} — cloud id <code>{}</code>", obj.cloud_site_name or obj.base_url, obj.cloud_id)

    @admin.display(description="Consent ends")
    def consent_ends(self, obj):
        """Jira Cloud ends every grant a year after its consent: when, so that nobody is surprised."""
        lifetime = provider_for(obj).consent_lifetime
        if lifetime is None or obj.connected_at is None or obj.refresh_token is None:
            return "—"
        ends = obj.connected_at + lifetime
        return f"{when(ends)} (Atlassian ends every grant 365 days after its consent: click Get Auth Token before)"

    @admin.display(description="Status", ordering="status")
    def status_display(self, obj):
        return status_badge(obj)

    @admin.display(description="Connected as")
    def connected_as(self, obj):
        return obj.connected_as or "—"

    @admin.display(description="Client Secret")
    def client_secret_state(self, obj):
        return "Stored (encrypted)" if obj.client_secret is not None else "Not set"

    @admin.display(description="Service account Client Secret")
    def service_client_secret_state(self, obj):
        return "Stored (encrypted)" if obj.service_client_secret is not None else "Not set"

    @admin.display(description="Auth token")
    def token_state(self, obj):
        unreadable = obj.unreadable_secrets
        if unreadable:
            return format_html(
                '<strong class="errornote">Stored {} cannot be decrypted with the configured '
                "FIELD_ENCRYPTION_KEY.</strong>",
                ", ".join(unreadable),
            )
        if obj.refresh_token is None and obj.access_token is None:
            return services.no_token_yet(obj)
        if obj.token_expires_at is None:
            return "Present (expiry unknown)"
        left = obj.token_expires_at - timezone.now()
        at = when(obj.token_expires_at)
        if left <= timedelta(0):
            return f"Present; the access token expired at {at} (it is refreshed when next used)."
        return f"Present; the access token expires at {at} (in {int(left.total_seconds() // 60)} min)."

    @admin.display(description="Health")
    def grant_health(self, obj):
        """Last used, next refresh and why, the refresh token's life, scopes, and the refreshes of the last weeks."""
        return health_of(obj).render()

    @admin.display(description="Recent activity")
    def audit_trail(self, obj):
        events = list(obj.events.all()[:AUDIT_TRAIL_ROWS])
        if not events:
            # Routine refreshes are not audited: an account refreshed for months may have no event at all.
            return ("Nothing recorded yet. Routine token refreshes are not listed here: see Last refresh and "
                    "Refreshes since connected.")
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (when(e.created_at), e.get_kind_display(),
                 e.grant_owner or "The account", e.get_outcome_display(), e.actor, e.message)
                for e in events
            ),
        )
        more = reverse("admin:alm_accounts_authevent_changelist") + f"?account__id__exact={obj.pk}"
        return format_html(
            '<table class="alm-audit-trail"><thead><tr><th>When</th><th>What</th><th>Whose grant</th>'
            "<th>Outcome</th><th>Who</th><th>Message</th></tr></thead><tbody>{}</tbody></table>"
            '<p><a href="{}">All activity of this account</a></p>',
            rows,
            more,
        )

    @admin.display(description="Connected people")
    def user_credentials(self, obj):
        return self._user_credentials(obj, can_revoke=True)

    @admin.display(description="Connected people")
    def user_credentials_view(self, obj):
        return self._user_credentials(obj, can_revoke=False)

    def _user_credentials(self, obj, *, can_revoke: bool):
        """Who connected, as which Jira user, in what state; never a token. One query whatever their number."""
        credentials = (
            obj.credentials.select_related("user").defer(*TOKEN_COLUMNS)
            .annotate(holds_tokens=ExpressionWrapper(Q(refresh_token__isnull=False) | Q(access_token__isnull=False),
                                                     output_field=BooleanField()))
            .order_by("user__username", "pk")
        )
        shown = list(credentials[:USER_CREDENTIAL_ROWS + 1])
        if not shown:
            return "Nobody has connected their own Jira account to this ALM account yet."
        more = len(shown) > USER_CREDENTIAL_ROWS
        shown = shown[:USER_CREDENTIAL_ROWS]
        health = healths(shown)  # one query for every person's days of refreshes

        def health_of_person(credential):
            own = health[(credential.grant_kind, credential.pk)]
            return format_html('<details class="alm-person-health"><summary>{}</summary>{}</details>',
                               f"Next refresh: {own.next_refresh}", own.render())

        def revoke(credential):
            if not (can_revoke and credential.holds_tokens):
                return ""
            url = reverse("admin:alm_accounts_almaccount_revoke_credential", args=[obj.pk, credential.pk])
            # The button belongs to the revoke form outside the account's form (forms cannot nest).
            return format_html('<button type="submit" form="alm-revoke-credential" formaction="{}" '
                               'name="revoke_credential" value="{}" aria-label="Revoke the Jira credential of {}">'
                               "Revoke</button>", url, credential.pk, credential.user.get_username())

        rows = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", (
                (c.user.get_username(), c.connected_as or "—", status_badge(c), when(c.token_expires_at),
                 when(c.last_refreshed_at), health_of_person(c), revoke(c))
                for c in shown
            ))
        listing = reverse("admin:alm_accounts_almcredential_changelist") + f"?account__id__exact={obj.pk}"
        return format_html(
            '<table class="alm-user-credentials"><thead><tr><th>Person</th><th>Jira user</th><th>Status</th>'
            "<th>Token expires</th><th>Last refresh</th><th>Health</th><th></th></tr></thead><tbody>{}</tbody></table>"
            '<p>{}<a href="{}">All user credentials of this account</a></p>',
            rows,
            f"Showing the first {USER_CREDENTIAL_ROWS}. " if more else "",
            listing,
        )

    # --- saving, and "Get Auth Token" (which saves first) ---

    def save_model(self, request, obj, form, change):
        # The service writes only what the form edits (a refresh may have rotated the tokens meanwhile) and
        # ends the connection when the Jira base URL or the Client ID changed.
        ended = services.save_account(account=obj, form_fields=list(form._meta.fields),
                                      new_client_secret=form.client_secret_entered, actor=self._actor(request),
                                      report=self._reporter(request),
                                      new_service_secret=getattr(form, "service_secret_entered", False),
                                      service_check=getattr(form, "service_check", None))
        if ended:
            self.message_user(request, ended, messages.WARNING)
        if getattr(form, "service_check", None) is not None:
            self.message_user(request, services.service_connected(form.service_check.display), messages.SUCCESS)
        for note in getattr(form, "notes", []):
            self.message_user(request, note, messages.INFO)
        if not change:
            form.forget_pending_callback_id()

    def delete_model(self, request, obj):
        services.delete_account(account=obj, actor=self._actor(request), report=self._reporter(request))

    def delete_queryset(self, request, queryset):
        # One time budget for every revocation of a bulk delete: the request must end.
        deadline = Deadline(app_settings.JIRA_REFRESH_DEADLINE)
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
        # A service account's own connection needs no consent: no Get Auth Token (provider_fields.js hides it
        # while the form's Authentication is one).
        context["service_account"] = obj is not None and services.by_client_credentials(obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    # --- connection buttons (POST only, change permission) ---

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        own = [
            path("<int:pk>/test-connection/", self.admin_site.admin_view(require_POST(self._test_connection)),
                 name="{}_{}_test_connection".format(*info)),
            path("<int:pk>/refresh-token/", self.admin_site.admin_view(require_POST(self._refresh_token)),
                 name="{}_{}_refresh_token".format(*info)),
            path("<int:pk>/send-test-alert/", self.admin_site.admin_view(require_POST(self._send_test_alert)),
                 name="{}_{}_send_test_alert".format(*info)),
            path("<int:pk>/disconnect/", self.admin_site.admin_view(require_POST(self._disconnect)),
                 name="{}_{}_disconnect".format(*info)),
            path("<int:pk>/credentials/<int:credential_pk>/revoke/",
                 self.admin_site.admin_view(require_POST(self._revoke_credential)),
                 name="{}_{}_revoke_credential".format(*info)),
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

    def _send_test_alert(self, request, pk):
        account = self._account_for_change(request, pk)
        levels = {"sent": messages.SUCCESS, "not configured": messages.WARNING, "failed": messages.ERROR}
        for report in services.send_test_alert(account=account, actor=self._actor(request)):
            self.message_user(request, f"Test alert, {report.channel}: {report.outcome} ({report.detail}).",
                              levels[report.outcome])
        return self._back(account)

    def _refresh_token(self, request, pk):
        account = self._account_for_change(request, pk)
        # An admin's refresh is an admin action: kept in the audit trail (a routine one is only counted).
        result = services.refresh_account(account_id=account.pk, actor=self._actor(request), admin_action=True)
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

    def _revoke_credential(self, request, pk, credential_pk):
        """An admin ends one person's credential: deleted here, revoked at Jira, audited (as their Disconnect)."""
        account = self._account_for_change(request, pk)
        credential = (ALMCredential.objects.select_related("account", "user")
                      .filter(pk=credential_pk, account_id=account.pk).first())
        if credential is None:
            self.message_user(request, "This Jira credential no longer exists: nothing was revoked.", messages.WARNING)
            return self._back(account)
        try:
            outcome = services.disconnect_grant(grant=credential, actor=self._actor(request))
        except services.ServiceError as exc:
            self.message_user(request, f"Revoke failed: {exc}", messages.ERROR)
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
                f"{app_settings.JIRA_REFRESH_DEADLINE:g} s for Jira). Refresh them on the server instead: "
                f"manage.py refresh_tokens --force {accounts}"
            ), messages.ERROR)
            return
        for account_id, _name in selected:
            self._report_refresh(request, services.refresh_account(account_id=account_id,
                                                                   actor=self._actor(request), admin_action=True))


@admin.register(AuthEvent)
class AuthEventAdmin(RecordAdmin):
    """The full audit trail, read-only."""

    list_display = ["created_at", "account_display", "grant_owner_display", "kind", "outcome", "actor", "message"]
    # Not "account": that filter lists every account in the sidebar (thousands). The account page links here
    # with ?account__id__exact=<id>, allowed below.
    list_filter = ["kind", "outcome"]
    # account_name: the name the account had at the event, and the only one left once the account is deleted.
    search_fields = ["account_name", "account__name", "grant_owner", "actor", "message"]
    date_hierarchy = "created_at"

    def lookup_allowed(self, lookup, value, request=None):
        return lookup == "account__id__exact" or super().lookup_allowed(lookup, value, request)


@admin.register(ALMCredential)
class ALMCredentialAdmin(admin.ModelAdmin):
    """People's own Jira credentials, read-only: no tokens, no add, no edit; ended only by Revoke."""

    change_form_template = "admin/alm_accounts/almcredential/change_form.html"
    list_display = ["account", "user", "connected_as", "status_display", "token_expires_at", "last_refreshed_at"]
    # Not "account": that filter lists every account in the sidebar. An account's page links here with
    # ?account__id__exact=<id>, allowed below.
    list_filter = ["status", GrantHealthFilter]
    list_select_related = ["account", "user"]
    search_fields = ["user__username", "account__name", "connected_as_name", "connected_as_display_name"]
    list_per_page = 100
    fields = ["account", "user", "connected_as", "status_display", "token_scope", "token_expires_at", "connected_at",
              "last_refreshed_at", "refresh_count", "last_error", "grant_health"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).defer(*TOKEN_COLUMNS)

    @admin.display(description="Connected as")
    def connected_as(self, obj):
        return obj.connected_as or "—"

    @admin.display(description="Status", ordering="status")
    def status_display(self, obj):
        return status_badge(obj)

    @admin.display(description="Health")
    def grant_health(self, obj):
        return health_of(obj).render()

    def lookup_allowed(self, lookup, value, request=None):
        return lookup == "account__id__exact" or super().lookup_allowed(lookup, value, request)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        # Revoking is ending a grant on the account: it needs change permission on the ALM account.
        account_admin = self.admin_site._registry.get(ALMAccount)
        context["can_revoke"] = obj is not None and account_admin is not None and \
            account_admin.has_change_permission(request, obj.account)
        context["show_delete"] = False
        return super().render_change_form(request, context, add, change, form_url, obj)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # Asked by Django when a person or an ALM account is deleted: their credentials go with them, ended
        # (revoked, audited) by signals.person_deleted and services.delete_account, under the permission to
        # delete the person or the account. A credential alone is never deleted here (see delete_view).
        return True

    def delete_view(self, request, object_id, extra_context=None):
        # Deleting the row would leave the grant alive at Jira: only Revoke ends a credential.
        raise PermissionDenied

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


# Registered on import: the read-only Alerts list, and the Users screens that say what My ALM Credentials needs.
from . import admin_alerts, admin_users  # noqa: E402,F401
