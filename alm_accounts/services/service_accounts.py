"""Service accounts: a token asked for with client credentials, the check a Save makes, and what it stores.

An account whose Authentication is a service account's (providers.service_accounts) has no consent and no refresh
token: its own connection is a token asked for with the service account's Client ID and Secret. This module is
the one place that asks for it (fetch_token, used by services.grants under the account's row lock, so that
concurrent callers share one request), that checks the credentials when an administrator saves the account
(check: a token, the Jira Cloud site, /myself; nothing is stored unless all three work) and that stores what the
check found (store_check, in the Save's transaction).

The service account's Client Secret goes only to its token endpoint: the Jira at the base URL it was entered for
(Data Center), or ATLASSIAN_AUTH_URL (Cloud). Messages never hold it, nor a token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .. import egress, explain, messages
from ..atlassian import Site
from ..conf import app_settings
from ..fields import UnreadableSecret
from ..jira import Deadline, JiraError, JiraOAuthError, JiraUnauthorized, JiraUnavailable, TokenSet
from ..kinds import SERVICE_ADMINISTRATOR, kind_of
from ..models import ALMAccount
from ..providers import SiteNotCovered, provider_for
from . import alerts
from .common import Kind, ServiceError, Status, log, record_event

# The token endpoint's answers that mean "this service account does not exist (any more), is disabled, or its
# secret is not this" (Atlassian answers an unknown client with access_denied).
REFUSED_ERRORS = frozenset({"invalid_client", "access_denied", "unauthorized_client"})
SCOPE_TEXT_LENGTH = ALMAccount._meta.get_field("token_scope").max_length


class ServiceAccountError(ServiceError):
    """A check that failed, with the form field the administrator corrects (None: the form as a whole)."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


class ServiceAccountRefused(ServiceAccountError):
    """The token endpoint refused the service account itself (invalid_client): deleted, disabled, secret changed."""


def by_client_credentials(account: ALMAccount) -> bool:
    """The account's own connection is a service account's (for the screens, which ask the services only)."""
    return kind_of(account).by_client_credentials(account)


def no_token_yet(grant) -> str:
    """The account page's words when no token is stored."""
    return messages.no_token_yet(grant)


service_connected = messages.service_connected


def platform(account: ALMAccount) -> str:
    """Who answers the token request, in the words of every message: Jira or Atlassian."""
    return "Atlassian" if account.is_cloud else "Jira"


def where(account: ALMAccount) -> str:
    """Where the service account is managed."""
    return messages.SERVICE_ACCOUNT_WHERE[platform(account)]


def refused_words(account: ALMAccount) -> str:
    return messages.service_account_refused(platform(account), where(account))


@sensitive_variables()
def service_client(account: ALMAccount):
    """The protocol client with the service account's Client ID and Secret, which go only where they were entered
    for (a Data Center secret: the base URL it was typed with)."""
    provider = provider_for(account)
    client_id, secret = provider.service_credentials(account)
    if isinstance(secret, UnreadableSecret):
        raise ServiceAccountError("The stored service account Client Secret cannot be decrypted with the configured "
                                  "FIELD_ENCRYPTION_KEY: restore the key, or paste the Client Secret again and save.",
                                  field="service_client_secret")
    if not client_id or not secret:
        raise ServiceAccountError(f"Not connected to Jira: {messages.RECONNECT[SERVICE_ADMINISTRATOR]}.",
                                  field="service_client_secret")
    bound_to = account.service_client_secret_base_url
    if bound_to and bound_to != account.base_url and provider.secret_goes_to_base_url(account):
        raise ServiceAccountError(messages.SERVICE_SECRET_FOR_ANOTHER, field="service_client_secret")
    try:
        return provider.service_client(account, client_id=client_id, secret=secret,
                                       timeout=(app_settings.JIRA_CONNECT_TIMEOUT, app_settings.JIRA_READ_TIMEOUT))
    except egress.EgressError as exc:
        raise ServiceAccountError(str(exc), field="base_url") from None


@sensitive_variables()
def fetch_token(account: ALMAccount, *, deadline: Deadline, client=None) -> TokenSet:
    """A new token for the service account. Unlike a refresh, asking again cannot cost anything (no rotation):
    every failure that may be passing (unreachable, 429/5xx, a lost answer) is tried again within the deadline.
    Raises ServiceAccountError (refused, bad scope, not reachable) in an administrator's words."""
    client = client or service_client(account)
    scope = provider_for(account).service_scope(account)
    pauses = list(app_settings.JIRA_RETRY_BACKOFF)
    while True:
        try:
            return client.client_credentials(scope=scope, deadline=deadline)
        except JiraOAuthError as exc:
            if exc.error in REFUSED_ERRORS:
                raise ServiceAccountRefused(refused_words(account), field="service_client_secret") from None
            if exc.error == "invalid_scope":
                field = "cloud_scopes" if account.is_cloud else "scope"
                raise ServiceAccountError(messages.service_scope_refused(platform(account), scope),
                                          field=field) from None
            raise ServiceAccountError(explain.describe("refresh", exc, advice=provider_for(account).advice,
                                                       mends=messages.MENDS[SERVICE_ADMINISTRATOR])
                                      ) from None
        except JiraUnavailable as exc:
            if not pauses or not deadline.allows_pause(pauses[0]) or (exc.status is not None and exc.status < 500
                                                                      and exc.status != 429):
                raise ServiceAccountError(
                    f"{platform(account)}'s token endpoint could not be used: {explain.plain_text(exc, 300)}. "
                    + explain.UNAVAILABLE_ADVICE, field="base_url") from None
            time.sleep(pauses.pop(0))


@dataclass(frozen=True, repr=False)
class ServiceAccountCheck:
    """What a Save found with the service account's credentials: its first token, its site, who it is."""

    tokens: TokenSet
    site: Site | None
    name: str
    display: str

    def __repr__(self):  # never a token
        return f"ServiceAccountCheck({self.display!r})"


@sensitive_variables()
def check(account: ALMAccount) -> ServiceAccountCheck:
    """Ask for a token with `account`'s service-account credentials (an unsaved copy of the form's values), find
    its Jira Cloud site, read /myself. Nothing is stored here; ServiceAccountError names the field to correct."""
    deadline = Deadline(app_settings.JIRA_REFRESH_DEADLINE)
    provider = provider_for(account)
    client = service_client(account)
    tokens = fetch_token(account, deadline=deadline, client=client)
    try:
        site = provider.service_site(client, access_token=tokens.access_token, account=account, deadline=deadline)
        if site is not None:
            account.cloud_id, account.cloud_site_name = site.cloud_id, site.name
            client = service_client(account)  # REST goes to the site's cloud id
        me = client.myself(access_token=tokens.access_token, deadline=deadline)
    except SiteNotCovered as exc:
        raise ServiceAccountError(str(exc), field="base_url") from None
    except JiraUnauthorized:
        raise ServiceAccountError(messages.service_myself_failed("HTTP 401")) from None
    except JiraError as exc:
        raise ServiceAccountError(messages.service_myself_failed(explain.plain_text(exc, 300))) from None
    name, display = provider.identity(me)
    if not name:
        raise ServiceAccountError(messages.service_myself_failed("no user in its answer"))
    return ServiceAccountCheck(tokens=tokens, site=site, name=name, display=display or name)


@sensitive_variables()
def put_token(account: ALMAccount, tokens: TokenSet, *, now) -> None:
    """A service account's new token on `account` (not saved): the access token and its expiry; no refresh token."""
    account.access_token = tokens.access_token.reveal()
    account.refresh_token = None
    account.token_expires_at = now + timedelta(seconds=tokens.expires_in)
    account.token_scope = explain.plain_text(tokens.scope, SCOPE_TEXT_LENGTH) or \
        provider_for(account).service_scope(account)


@sensitive_variables()
def store_check(account: ALMAccount, found: ServiceAccountCheck, *, actor: str) -> str:
    """Store what a Save's check found on the saved account, inside the Save's transaction (the account's row is
    locked by it): connected as the service account, with its first token cached. Returns the page's words."""
    now = timezone.now()
    was = (account.connected_as_name, account.status)
    put_token(account, found.tokens, now=now)
    if found.site is not None:
        account.cloud_id, account.cloud_site_name = found.site.cloud_id, found.site.name
    account.connected_as_name, account.connected_as_display_name = found.name, found.display
    account.status, account.last_error = Status.CONNECTED, ""
    account.last_refreshed_at = now  # the check is a verification: the refresher's next one is a cadence later
    if was != (found.name, Status.CONNECTED):
        account.connected_at, account.refresh_count = now, 0
    for field, value in alerts.after_success(account, now=now).items():
        setattr(account, field, value)
    account.save(update_fields=["access_token", "refresh_token", "token_expires_at", "token_scope", "cloud_id",
                                "cloud_site_name", "connected_as_name", "connected_as_display_name", "status",
                                "last_error", "last_refreshed_at", "connected_at", "refresh_count", "failing_since",
                                "alert_open", "reconsent_warned_at", "updated_at"])
    words = messages.service_connected(found.display)
    record_event(account, actor=actor, kind=Kind.CONNECTED, ok=True,
                 message=f"{words} A token was issued by the service account's credentials and /myself read.")
    log.info("ALM account %s: connected as its service account.", account.pk)
    return words
