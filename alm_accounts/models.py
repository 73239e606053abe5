"""ALM accounts (one per incoming application link in a Jira), their audit trail, and pending authorizations.

Fields, choices and small derived properties only: no HTTP and no business
flow here (that is alm_accounts.services), and no import of services or providers
(callers ask providers.provider_for(account) for what differs between providers).
"""

from __future__ import annotations

import functools
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils import timezone

from .conf import app_settings
from .fields import SecretField, UnreadableSecret
from .validators import validate_base_url, validate_ca_certificate, validate_callback_id, validate_notify


def new_callback_id() -> str:
    # 128 bits: the callback URL is public (Jira and the admin see it) but must not be guessable.
    return secrets.token_urlsafe(16)


def callback_url_for(callback_id: str) -> str:
    """The one place a callback URL is built: what the admin pastes into Jira's Redirect URL."""
    urlconf = get_urlconf() or settings.ROOT_URLCONF
    return app_settings.PUBLIC_BASE_URL + _callback_path(callback_id, get_script_prefix(), urlconf)


@functools.lru_cache(maxsize=4096)
def _callback_path(callback_id: str, script_prefix: str, urlconf) -> str:
    # Every Data Center refresh sends it (Jira wants redirect_uri): reverse() costs more CPU than the rest of
    # building the request. Keyed on what reverse() depends on, so a test's or a request's URL set-up still counts.
    return reverse("alm_accounts:oauth_callback", kwargs={"callback_id": callback_id}, urlconf=urlconf)


def cloud_callback_url() -> str:
    """The one callback URL of this deployment's Atlassian app (the state says which account and grant)."""
    return app_settings.PUBLIC_BASE_URL + reverse("alm_accounts:atlassian_callback")


def is_due(expires_at: datetime | None, *, within: timedelta, now: datetime | None = None) -> bool:
    """The one rule for "this access token should be refreshed now"."""
    if expires_at is None:
        return True
    return expires_at <= (now or timezone.now()) + within


# Atlassian's classic Jira scopes (developer console → Permissions → Jira API) and offline_access, which a refresh
# token needs. The default asks for all of them, the Cloud counterpart of the Data Center link's ADMIN.
CLOUD_SCOPES = ("read:jira-work", "write:jira-work", "read:jira-user", "manage:jira-project",
                "manage:jira-configuration", "offline_access")
CLOUD_DEFAULT_SCOPES = " ".join(CLOUD_SCOPES)


class GrantStatus(models.TextChoices):
    NOT_CONNECTED = "not_connected", "Not connected"
    CONNECTED = "connected", "Connected"
    NEEDS_REAUTHORIZATION = "needs_reauthorization", "Needs re-authorization"
    ERROR = "error", "Error"


class Grant(models.Model):
    """An OAuth 2.0 grant Jira issued through an account's incoming application link.

    Two kinds share these fields and one lifecycle (services.grants): the ALM
    account's own connection (Get Auth Token by an admin) and a person's own
    credential (user-based sync, ALMCredential).
    """

    Status = GrantStatus

    access_token = SecretField(blank=True, null=True, editable=False)
    refresh_token = SecretField(blank=True, null=True, editable=False)
    token_expires_at = models.DateTimeField("Token expires", null=True, blank=True, editable=False)
    # Cloud grants list several scopes ("read:jira-work write:jira-work ... offline_access").
    token_scope = models.CharField("Granted scope", max_length=255, blank=True, editable=False)
    connected_as_name = models.CharField("Jira user name", max_length=255, blank=True, editable=False)
    connected_as_display_name = models.CharField("Jira display name", max_length=255, blank=True, editable=False)
    connected_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_refreshed_at = models.DateTimeField("Last refresh", null=True, blank=True, editable=False)
    # Routine successful refreshes are counted here and logged, not written to the audit trail (AuthEvent keeps
    # what a person looks for: connections, failures, recoveries, disconnects). Since the grant was connected.
    refresh_count = models.PositiveIntegerField("Refreshes since connected", default=0, editable=False)
    status = models.CharField(max_length=30, choices=Status.choices, default=Status.NOT_CONNECTED, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    # Alerts (services.alerts): since when refreshes fail without a success, and whether a "broken" alert
    # was raised that no "recovered" alert has answered yet. Both change under the grant's row lock.
    failing_since = models.DateTimeField(null=True, blank=True, editable=False)
    alert_open = models.BooleanField(default=False, editable=False)
    # Jira Cloud ends every grant 365 days after its consent: when the warning before that was raised (a new
    # consent clears it).
    reconsent_warned_at = models.DateTimeField(null=True, blank=True, editable=False)
    # When the product last asked for its token (services.usage): coarse, written at most once per grant every few
    # minutes. In use within REFRESH_ACTIVE_WITHIN_HOURS: kept fresh; else only kept alive (refresh_plan).
    last_used_at = models.DateTimeField("Last used", null=True, blank=True, editable=False)

    class Meta:
        abstract = True

    # What differs between the two kinds of grant, in one place each.
    grant_kind = ""  # "account" or "user"

    @property
    def grant_account(self) -> ALMAccount:
        raise NotImplementedError

    @property
    def grant_owner(self) -> str:
        """Whose grant this is, in the audit trail's words."""
        raise NotImplementedError

    @property
    def connected_as(self) -> str:
        if self.connected_as_display_name and self.connected_as_name:
            return f"{self.connected_as_display_name} ({self.connected_as_name})"
        return self.connected_as_display_name or self.connected_as_name

    @property
    def is_connected(self) -> bool:
        return self.status == self.Status.CONNECTED and self.refresh_token is not None

    @property
    def unreadable_tokens(self) -> list[str]:
        return [label for label, value in (("access token", self.access_token), ("refresh token", self.refresh_token))
                if isinstance(value, UnreadableSecret)]


class ALMAccount(Grant):
    class ALMType(models.TextChoices):
        JIRA = "jira", "Atlassian JIRA"

    class Authentication(models.TextChoices):
        JIRA_SERVER_OAUTH2 = "jira_server_oauth2", "Jira Server / Data Center — Use OAuth 2.0"
        JIRA_CLOUD_OAUTH2 = "jira_cloud_oauth2", "Jira Cloud — Use OAuth 2.0 (3LO)"
        # The account's own connection is a service account's (OAuth 2.0 client credentials): no consent, no
        # refresh token. People's own connections still go through the link / 3LO app (client_id, client_secret).
        JIRA_SERVER_SERVICE_ACCOUNT = ("jira_server_service_account",
                                       "Jira Server / Data Center — Service account (OAuth 2.0 client credentials)")
        JIRA_CLOUD_SERVICE_ACCOUNT = ("jira_cloud_service_account",
                                      "Jira Cloud — Service account (OAuth 2.0 client credentials)")

    class Scope(models.TextChoices):
        # Jira's "Permission" on the incoming link; higher includes lower.
        READ = "READ", "Read"
        WRITE = "WRITE", "Write"
        ADMIN = "ADMIN", "Admin"
        SYSTEM_ADMIN = "SYSTEM_ADMIN", "System admin"

    class UnconnectedUsers(models.TextChoices):
        ACT_AS_ACCOUNT = "account", "Act as the account's own connection"
        REFUSE = "refuse", "Refuse: they must connect their own Jira account"

    name = models.CharField(
        "Account Name",
        max_length=200,
        unique=True,
        help_text='A descriptive name, e.g. "Jira - Core Banking".',
    )
    alm_type = models.CharField("ALM Type", max_length=20, choices=ALMType.choices, default=ALMType.JIRA)
    authentication = models.CharField(
        max_length=40, choices=Authentication.choices, default=Authentication.JIRA_SERVER_OAUTH2
    )
    base_url = models.CharField(
        "Jira base URL",
        max_length=500,
        validators=[validate_base_url],
        help_text="The address you open Jira at, with its context path, e.g. https://jira.example.com/jira. For "
        "Jira Cloud, the site URL: https://your-site.atlassian.net",
    )
    callback_id = models.CharField(
        max_length=64,
        unique=True,
        default=new_callback_id,
        editable=False,
        validators=[validate_callback_id],
        help_text="The unguessable part of the callback URL. Never changes.",
    )
    client_id = models.CharField(
        "Client ID",
        max_length=255,
        blank=True,
        help_text="Shown by Jira after you save the incoming application link.",
    )
    client_secret = SecretField("Client Secret", blank=True, null=True)
    # The Client Secret goes only to the Jira it was entered for: a changed base URL needs it pasted again
    # (services.client_for refuses otherwise), so that editing the URL cannot send it to another host.
    client_secret_base_url = models.CharField(
        max_length=500, blank=True, editable=False, help_text="The Jira base URL the Client Secret was entered for."
    )
    service_client_id = models.CharField(
        "Service account Client ID",
        max_length=255,
        blank=True,
        help_text="Service accounts only: the Client ID Jira (or Atlassian administration) showed when the service "
        "account's OAuth 2.0 credential was created.",
    )
    service_client_secret = SecretField("Service account Client Secret", blank=True, null=True)
    # As client_secret_base_url: the service account's secret goes only to the Jira it was entered for (Data
    # Center); a changed base URL or authentication needs it pasted again.
    service_client_secret_base_url = models.CharField(
        max_length=500, blank=True, editable=False,
        help_text="The Jira base URL the service account's Client Secret was entered for.")
    scope = models.CharField(
        "Permission",
        max_length=20,
        choices=Scope.choices,
        default=Scope.ADMIN,
        help_text="The same Permission you chose on Jira's incoming application link (Admin recommended).",
    )
    cloud_scopes = models.CharField(
        "Scopes",
        max_length=500,
        default=CLOUD_DEFAULT_SCOPES,
        help_text="Jira Cloud only: the scopes the product asks for, as configured on the app's Permissions page in "
        "Atlassian's developer console. offline_access is always added (without it Atlassian issues no refresh token).",
    )
    # Jira Cloud: the site the grants act on, found in the consent's accessible resources (matched to the site URL).
    cloud_id = models.CharField("Cloud ID", max_length=64, blank=True, editable=False)
    cloud_site_name = models.CharField("Site name", max_length=255, blank=True, editable=False)
    jira_ca_certificate = models.TextField(
        "Jira CA certificate (PEM)",
        blank=True,
        validators=[validate_ca_certificate],
        help_text="Only when Jira's HTTPS certificate is signed by your company's own certificate authority: paste "
        "that CA certificate (-----BEGIN CERTIFICATE-----). Used only for this account's calls to Jira, in "
        "addition to the trusted CAs; certificates are always verified.",
    )

    # Jira (or Atlassian) refuses the Client ID and Secret with which this account's grants were obtained: the
    # incoming link was deleted or its secret changed (services.client_refused). Its grants are not refreshed then,
    # except one check every CLIENT_RECHECK, until the credentials are edited or a grant works again.
    client_refused_at = models.DateTimeField("Client refused since", null=True, blank=True, editable=False)
    client_checked_at = models.DateTimeField(null=True, blank=True, editable=False)

    notify = models.TextField(
        "Notify",
        blank=True,
        validators=[validate_notify],
        help_text="E-mail addresses told when this account's connection breaks or recovers (comma or new line "
        "between them). Empty: the administrators of this deployment (ADMINS).",
    )
    unconnected_users = models.CharField(
        "People without their own connection",
        max_length=20,
        choices=UnconnectedUsers.choices,
        default=UnconnectedUsers.ACT_AS_ACCOUNT,
        help_text="What the product does for a person who has not connected their own Jira account under My ALM "
        "Credentials: act as this account's own connection, or refuse until they connect.",
    )

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "ALM Account"
        verbose_name_plural = "ALM Accounts"
        ordering = ["name"]
        indexes = [models.Index(fields=["status", "token_expires_at"], name="alm_due_for_refresh")]

    def __str__(self):
        return self.name

    @property
    def is_cloud(self) -> bool:
        return self.authentication in CLOUD_AUTHENTICATIONS

    @property
    def callback_url(self) -> str:
        """Where the provider sends the browser back after consent: the account's own (Data Center: the Redirect
        URL of its incoming link), or this deployment's one URL for Jira Cloud (the state says which account)."""
        return cloud_callback_url() if self.is_cloud else callback_url_for(self.callback_id)

    grant_kind = "account"

    @property
    def grant_account(self) -> ALMAccount:
        return self

    @property
    def grant_owner(self) -> str:
        return ""  # the account's own connection

    @property
    def unreadable_secrets(self) -> list[str]:
        """Names of stored secrets the configured keys cannot decrypt."""
        return [
            label
            for label, value in (
                ("client secret", self.client_secret),
                ("service account client secret", self.service_client_secret),
                ("access token", self.access_token),
                ("refresh token", self.refresh_token),
            )
            if isinstance(value, UnreadableSecret)
        ]

    def get_admin_url(self) -> str:
        return reverse("admin:alm_accounts_almaccount_change", args=[self.pk])


# Jira Cloud, by a person's consent (3LO) or by a service account: Atlassian's hosts, a site URL, one callback URL.
CLOUD_AUTHENTICATIONS = frozenset({ALMAccount.Authentication.JIRA_CLOUD_OAUTH2,
                                   ALMAccount.Authentication.JIRA_CLOUD_SERVICE_ACCOUNT})


class ALMCredential(Grant):
    """One person's own Jira grant on an ALM account (user-based sync): the product acts in Jira as them.

    Same incoming application link, same callback URL as the account's own
    connection; Jira limits it to that person's permissions.
    """

    account = models.ForeignKey(ALMAccount, on_delete=models.CASCADE, related_name="credentials")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="alm_credentials")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "ALM credential"
        constraints = [
            models.UniqueConstraint(fields=["account", "user"], name="alm_one_credential_per_person"),
            # One Jira identity belongs to one person on an account (the service refuses a second one first).
            models.UniqueConstraint(fields=["account", "connected_as_name"], condition=~models.Q(connected_as_name=""),
                                    name="alm_one_person_per_jira_user"),
        ]
        indexes = [models.Index(fields=["status", "token_expires_at"], name="alm_credential_due")]

    grant_kind = "user"

    def __str__(self):
        return f"{self.user} on {self.account}"

    @property
    def grant_account(self) -> ALMAccount:
        return self.account

    @property
    def grant_owner(self) -> str:
        return self.user.get_username()

    @property
    def callback_url(self) -> str:
        return self.account.callback_url

    @property
    def unreadable_secrets(self) -> list[str]:
        client = ["client secret"] if isinstance(self.account.client_secret, UnreadableSecret) else []
        return client + self.unreadable_tokens


class RefreshDay(models.Model):
    """One grant's token refreshes on one day (UTC): the health timeline (services.history).

    Routine successes are not in the audit trail; one row per grant and day, added to by an upsert (the refresher
    writes a hundred grants' in one round trip), keeps what the timeline draws. Named like a GrantRef (kind, id),
    without a foreign key: the two kinds live in two tables; rows of a deleted grant age out with the others
    (history.KEEP_DAYS).
    """

    grant_kind = models.CharField(max_length=20)
    grant_id = models.BigIntegerField()
    day = models.DateField()
    successes = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)
    # Successes right after a failure (the grant works again), and successes that only kept an idle grant alive.
    recoveries = models.PositiveIntegerField(default=0)
    keepalives = models.PositiveIntegerField(default=0)
    # Milliseconds Jira took to answer, over every timed attempt of the day: their sum (for the mean) and the
    # longest.
    latency_ms_total = models.BigIntegerField(default=0)
    latency_ms_max = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = "refresh day"
        constraints = [models.UniqueConstraint(fields=["grant_kind", "grant_id", "day"], name="alm_refresh_day_once")]
        indexes = [models.Index(fields=["day"], name="alm_refresh_day_age")]  # pruning

    def __str__(self):
        return f"{self.grant_kind} {self.grant_id} on {self.day}"

    @property
    def attempts(self) -> int:
        return self.successes + self.failures


class AuthEvent(models.Model):
    """The audit trail of one account. Messages are written for humans and never hold a secret."""

    class Kind(models.TextChoices):
        AUTHORIZATION_STARTED = "authorization_started", "Authorization started"
        CONNECTED = "connected", "Connected"
        AUTHORIZATION_FAILED = "authorization_failed", "Authorization failed"
        REFRESHED = "refreshed", "Token refreshed"
        REFRESH_FAILED = "refresh_failed", "Token refresh failed"
        TEST_CONNECTION = "test_connection", "Test connection"
        DISCONNECTED = "disconnected", "Disconnected"
        CONNECTION_ENDED = "connection_ended", "Connection ended"
        TOKENS_NOT_STORED = "tokens_not_stored", "Tokens not stored"
        ACCOUNT_DELETED = "account_deleted", "Account deleted"

    class Outcome(models.TextChoices):
        OK = "ok", "OK"
        FAILED = "failed", "Failed"

    # The trail outlives the account: deleting an account keeps its events, named by account_name.
    account = models.ForeignKey(ALMAccount, on_delete=models.SET_NULL, null=True, blank=True, related_name="events")
    account_name = models.CharField("Account", max_length=200, blank=True)
    # Whose grant the event concerns: blank for the account's own connection, else the person's user name
    # (kept when the credential or the person is gone).
    credential = models.ForeignKey("ALMCredential", on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="events")
    grant_owner = models.CharField("Whose grant", max_length=150, blank=True,
                                   help_text="Blank: the account's own connection; else the person's user name.")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.CharField(max_length=150, help_text="The admin user, or the command that acted.")
    kind = models.CharField(max_length=30, choices=Kind.choices)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    message = models.TextField(blank=True)

    class Meta:
        verbose_name = "auth event"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["account", "-created_at"], name="alm_event_account_time")]

    def __str__(self):
        return f"{self.get_kind_display()} ({self.get_outcome_display()})"


class PendingAuthorization(models.Model):
    """One "Get Auth Token" waiting for Jira's redirect: single use, short-lived.

    Bound to the account, the admin user and a random nonce kept in that
    admin's session (the session key itself changes on login, the nonce does
    not). The state is stored only as a SHA-256 digest; the PKCE verifier is
    encrypted.
    """

    state_digest = models.CharField(max_length=64, unique=True)
    account = models.ForeignKey(ALMAccount, on_delete=models.CASCADE, related_name="pending_authorizations")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    session_binding_digest = models.CharField(max_length=64)
    code_verifier = SecretField()
    # Jira's link has one Redirect URL: the same callback completes the account's connection or this
    # person's own credential, as recorded here when the authorization started.
    for_own_credential = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["created_at"], name="alm_pending_created")]

    def __str__(self):
        return f"authorization of {self.account} started {self.created_at:%Y-%m-%d %H:%M}"


class RefresherRun(models.Model):
    """The refresher's heartbeat: one row per run (a cron run, or one pass of refresh_tokens --loop)."""

    class Mode(models.TextChoices):
        ONCE = "once", "Single run"
        LOOP = "loop", "Loop pass"

    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True, db_index=True)
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.ONCE)
    tried = models.PositiveIntegerField(default=0)
    refreshed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    needs_reauthorization = models.PositiveIntegerField(default=0)
    # Grants not refreshed because Jira refuses their account's client credentials (a removed link): not failures.
    client_refused = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=20, blank=True, help_text="ok, failed, stopped or crashed.")
    message = models.TextField(blank=True)

    class Meta:
        verbose_name = "refresher run"
        ordering = ["-started_at", "-id"]

    def __str__(self):
        return f"refresher run on {self.host} (pid {self.pid}) started {self.started_at:%Y-%m-%d %H:%M:%S}"


class Alert(models.Model):
    """A connection broke or recovered: decided under the grant's row lock (an outbox row), delivered after commit.

    Never holds a token, a secret, a code or a verifier: only words for administrators and a link.
    """

    class Event(models.TextChoices):
        BROKEN = "broken", "Connection broken"
        RECOVERED = "recovered", "Connection recovered"
        CONSENT_ENDING = "consent_ending", "Consent ends soon"

    class Delivery(models.TextChoices):
        NOT_NEEDED = "not_needed", "Not configured"
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        GIVEN_UP = "given_up", "Given up"

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    event = models.CharField(max_length=20, choices=Event.choices)
    reason = models.CharField(max_length=40, blank=True,
                              help_text="needs_reauthorization, failing, expired, client_refused (the link was "
                              "removed or its secret changed) or consent_ending (Jira Cloud).")
    account = models.ForeignKey(ALMAccount, on_delete=models.SET_NULL, null=True, blank=True, related_name="alerts")
    account_name = models.CharField("Account", max_length=200)
    credential = models.ForeignKey(ALMCredential, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="alerts")
    grant_owner = models.CharField("Whose grant", max_length=150, blank=True)
    subject = models.CharField(max_length=255)
    message = models.TextField()
    link = models.CharField(max_length=500, blank=True)
    recipients = models.TextField(blank=True, help_text="The e-mail addresses, one per line.")
    email_state = models.CharField(max_length=20, choices=Delivery.choices, default=Delivery.PENDING)
    webhook_state = models.CharField(max_length=20, choices=Delivery.choices, default=Delivery.NOT_NEEDED)
    attempts = models.PositiveIntegerField(default=0)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_error = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        # One grant's alerts, in the order they were raised (services.alert_delivery delivers them so).
        indexes = [models.Index(fields=["account_name", "grant_owner", "id"], name="alm_alert_grant_order")]

    def __str__(self):
        return self.subject


class RateLimitCount(models.Model):
    """How many answers of Jira refused a call for a rate limit (HTTP 429), or said a limit is near, by provider
    (and the limit named): the counters of /metrics, added to by every process that calls Jira (web workers, the
    refresher and its worker processes), so that every process scraped shows the same numbers.

    Added to with an UPDATE of count + n (services.rate_limits.CountsWriter): several processes never lose one
    another's counts. A row per provider, signal and reason: a handful, whatever the traffic.
    """

    class Signal(models.TextChoices):
        RATE_LIMITED = "rate_limited", "Rate limited (HTTP 429)"
        NEAR_LIMIT = "near_limit", "Near the limit"

    provider = models.CharField(max_length=20, help_text="datacenter or cloud (the metrics' provider label).")
    signal = models.CharField(max_length=20, choices=Signal.choices)
    reason = models.CharField(max_length=60, blank=True,
                              help_text="The limit Jira named (RateLimit-Reason), other or unspecified; empty for "
                              "near-limit signals.")
    count = models.PositiveBigIntegerField(default=0)
    last_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["provider", "signal", "reason"],
                                               name="alm_rate_limit_count_unique")]

    def __str__(self):
        return f"{self.provider} {self.signal} {self.reason}".strip()
