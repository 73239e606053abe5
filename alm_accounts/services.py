"""The use cases of an ALM account's Jira connection, one function each.

Transactions, row locks, status changes and audit events happen here and
nowhere else. Admin screens, the OAuth callback and operator commands call
these functions and turn their results into messages.

Messages returned or raised here are shown to admins and stored in the audit
trail: they never contain a token, a secret, a code or a PKCE verifier. The
functions that hold such values are marked @sensitive_variables, so Django's
error reports (DEBUG pages, error e-mails) never show their local variables.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from . import explain, jira
from .fields import UnreadableSecret
from .jira import PKCE, JiraClient, JiraError, JiraOAuthError, JiraUnauthorized, JiraUnavailable, TokenSet, new_state
from .models import ALMAccount, AuthEvent, PendingAuthorization, is_due
from .validators import is_well_formed_callback_id

log = logging.getLogger(__name__)

SESSION_BINDING_KEY = "alm_accounts.oauth_binding"
# An on-demand caller gets a token that is valid for at least this long.
ACCESS_TOKEN_MIN_VALIDITY = timedelta(seconds=60)
TOKEN_SCOPE_LENGTH = ALMAccount._meta.get_field("token_scope").max_length
Status = ALMAccount.Status
Kind = AuthEvent.Kind


class ServiceError(Exception):
    """A failure to show to the admin as it is (already in their words)."""


class CallbackRejected(ServiceError):
    """Jira's redirect (or something posing as it) cannot be accepted. Nothing was changed."""

    def __init__(self, message: str, account: ALMAccount | None = None):
        super().__init__(message)
        self.account = account


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def record_event(account: ALMAccount, *, actor: str, kind: str, ok: bool, message: str = "") -> AuthEvent:
    return AuthEvent.objects.create(
        account=account,
        actor=(actor or "system")[:150],
        kind=kind,
        outcome=AuthEvent.Outcome.OK if ok else AuthEvent.Outcome.FAILED,
        message=message,
    )


def actor_of(user) -> str:
    return user.get_username() if user is not None and user.is_authenticated else "anonymous"


def client_for(account: ALMAccount) -> JiraClient:
    """A Jira client with the account's credentials, refusing secrets that did not decrypt."""
    if isinstance(account.client_secret, UnreadableSecret):
        raise ServiceError(
            "The stored Client Secret cannot be decrypted with the configured FIELD_ENCRYPTION_KEY. Restore the "
            "key it was encrypted with, or paste the Client Secret from Jira again."
        )
    return JiraClient(
        account.base_url,
        account.client_id,
        account.client_secret or "",
        timeout=(settings.JIRA_CONNECT_TIMEOUT, settings.JIRA_READ_TIMEOUT),
    )


# --------------------------------------------------------------------------
# Get Auth Token: start and complete the authorization-code flow with PKCE
# --------------------------------------------------------------------------


@sensitive_variables()
def start_authorization(*, account: ALMAccount, user, session) -> str:
    """Remember a new state + PKCE verifier for this admin session; return Jira's authorize URL."""
    if not account.client_id or account.client_secret in (None, ""):
        raise ServiceError(
            "Paste the Client ID and Client Secret shown by Jira's incoming application link, save, then click "
            "Get Auth Token."
        )
    client = client_for(account)
    binding = session.get(SESSION_BINDING_KEY)
    if not binding:
        binding = secrets.token_urlsafe(32)
        session[SESSION_BINDING_KEY] = binding
    state, pkce = new_state(), PKCE.create()
    now = timezone.now()
    PendingAuthorization.objects.filter(created_at__lt=now - _state_ttl()).delete()
    PendingAuthorization.objects.create(
        state_digest=_digest(state),
        account=account,
        user=user,
        session_binding_digest=_digest(binding),
        code_verifier=pkce.verifier,
        created_at=now,
    )
    record_event(
        account,
        actor=actor_of(user),
        kind=Kind.AUTHORIZATION_STARTED,
        ok=True,
        message=f"Sent to Jira for consent (Permission {account.scope}).",
    )
    return client.authorization_url(
        redirect_uri=account.callback_url, scope=account.scope, state=state, code_challenge=pkce.challenge
    )


@dataclass(frozen=True)
class CallbackOutcome:
    account: ALMAccount
    ok: bool
    message: str


# Longest values we accept on the callback; Jira's are far shorter.
CALLBACK_LIMITS = {"state": 512, "code": 4096, "error": 100, "error_description": 2000}


def _callback_params(query) -> dict[str, str]:
    params = {}
    for name, limit in CALLBACK_LIMITS.items():
        values = query.getlist(name)
        if len(values) > 1:
            raise ServiceError(f"Jira's answer carries the parameter '{name}' more than once.")
        if values:
            value = values[0]
            if len(value) > limit:
                raise ServiceError(f"Jira's answer carries an oversized '{name}' parameter.")
            if not value.isascii() and name != "error_description":
                raise ServiceError(f"Jira's answer carries a '{name}' parameter that is not plain ASCII.")
            params[name] = value
    return params


@sensitive_variables()
def complete_authorization(*, callback_id: str, query, user, session) -> CallbackOutcome:
    """Handle Jira's redirect to an account's callback URL.

    Raises CallbackRejected (with the account when it can be named) when the
    answer cannot be accepted; no account is changed then. Returns the outcome
    otherwise: Jira's error, a failed code exchange, or a connection.
    """
    account = ALMAccount.objects.filter(callback_id=callback_id).first() if is_well_formed_callback_id(
        callback_id
    ) else None
    if account is None:
        raise CallbackRejected(
            "This callback URL does not belong to any ALM account. Check the Redirect URL on Jira's incoming "
            "application link against the Callback URL shown on the ALM account."
        )
    try:
        params = _callback_params(query)
    except ServiceError as exc:
        raise CallbackRejected(f"{exc} Click Get Auth Token to start again.", account) from None

    if "state" not in params:
        said = f" (Jira said: {params['error']})" if "error" in params else ""
        raise CallbackRejected(
            f"Jira's answer cannot be matched to an authorization you started: it has no state{said}. "
            "Click Get Auth Token to start again.",
            account,
        )
    pending = _claim_pending(params["state"], account=account, user=user, session=session)
    actor = actor_of(user)

    if "error" in params:
        message = explain.oauth_error("authorize", params["error"], params.get("error_description", ""))
        record_event(account, actor=actor, kind=Kind.AUTHORIZATION_FAILED, ok=False, message=message)
        return CallbackOutcome(account, False, message)
    if not params.get("code"):
        message = "Jira's answer has neither an authorization code nor an error. Click Get Auth Token again."
        record_event(account, actor=actor, kind=Kind.AUTHORIZATION_FAILED, ok=False, message=message)
        return CallbackOutcome(account, False, message)

    # Exchange at once: Jira's codes live seconds.
    try:
        tokens = client_for(account).exchange_code(
            code=params["code"], redirect_uri=account.callback_url, code_verifier=pending.code_verifier
        )
    except (JiraError, ServiceError) as exc:
        message = explain.describe("exchange", exc) if isinstance(exc, JiraError) else str(exc)
        _mark(account.pk, status=Status.ERROR, last_error=message)
        record_event(account, actor=actor, kind=Kind.AUTHORIZATION_FAILED, ok=False, message=message)
        account.refresh_from_db()
        return CallbackOutcome(account, False, message)

    account = _store_new_grant(account.pk, tokens)
    message = _record_jira_user(account)
    record_event(account, actor=actor, kind=Kind.CONNECTED, ok=True, message=message)
    return CallbackOutcome(account, True, message)


def _state_ttl() -> timedelta:
    return timedelta(seconds=settings.OAUTH_STATE_TTL_SECONDS)


@sensitive_variables()
def _claim_pending(state: str, *, account: ALMAccount, user, session) -> PendingAuthorization:
    """Find the authorization this state belongs to and mark it used (single use)."""
    again = "Click Get Auth Token to start again."
    pending = PendingAuthorization.objects.filter(state_digest=_digest(state)).first()
    if pending is None:
        raise CallbackRejected(
            "Jira's answer does not match any authorization in progress (it is unknown or older than "
            f"{settings.OAUTH_STATE_TTL_SECONDS // 60} minutes). {again}",
            account,
        )
    if pending.account_id != account.pk:
        raise CallbackRejected(f"Jira's answer belongs to an authorization of another ALM account. {again}", account)
    binding = session.get(SESSION_BINDING_KEY) or ""
    if pending.user_id != getattr(user, "pk", None) or pending.session_binding_digest != _digest(binding):
        raise CallbackRejected(
            "This authorization was started in another browser session or by another user; finish it there. "
            f"{again}",
            account,
        )
    if pending.used_at is not None:
        raise CallbackRejected(
            "This answer from Jira was already used (the page was reloaded, or Back was pressed). The account is "
            "unchanged. " + again,
            account,
        )
    now = timezone.now()
    if pending.created_at < now - _state_ttl():
        raise CallbackRejected(
            f"The authorization took longer than {settings.OAUTH_STATE_TTL_SECONDS // 60} minutes and expired. "
            + again,
            account,
        )
    # Conditional update: of two concurrent requests with the same state, one wins.
    if not PendingAuthorization.objects.filter(pk=pending.pk, used_at__isnull=True).update(used_at=now):
        raise CallbackRejected("This answer from Jira was already used. " + again, account)
    if isinstance(pending.code_verifier, UnreadableSecret):
        raise CallbackRejected("The authorization could not be read back (encryption key changed). " + again, account)
    return pending


@sensitive_variables()
def _store_new_grant(account_id: int, tokens: TokenSet) -> ALMAccount:
    now = timezone.now()
    with transaction.atomic():
        account = ALMAccount.objects.select_for_update().get(pk=account_id)
        _put_tokens(account, tokens, now=now, scope_if_none=account.scope)
        account.status = Status.CONNECTED
        account.connected_at = now
        account.last_refreshed_at = None
        account.last_error = ""
        account.connected_as_name = account.connected_as_display_name = ""
        account.save()
    return account


@sensitive_variables()
def _put_tokens(account: ALMAccount, tokens: TokenSet, *, now, scope_if_none: str) -> None:
    """Put a new pair from Jira on `account` (not saved)."""
    account.access_token = tokens.access_token
    account.refresh_token = tokens.refresh_token
    account.token_expires_at = now + timedelta(seconds=tokens.expires_in)
    # Informational only: whatever Jira puts in `scope` must not stop a rotated pair from being stored.
    account.token_scope = explain.plain_text(tokens.scope, TOKEN_SCOPE_LENGTH) or scope_if_none


def _jira_user(me: dict) -> tuple[str, str]:
    """(user name, display name) from Jira's /myself answer."""
    name = explain.plain_text(me.get("name") or me.get("key"), 255)
    return name, explain.plain_text(me.get("displayName"), 255) or name


@sensitive_variables()
def _record_jira_user(account: ALMAccount) -> str:
    """Ask Jira who the token belongs to; the tokens are kept whatever happens."""
    try:
        me = client_for(account).myself(access_token=account.access_token)
    except JiraError as exc:
        return (
            f"Connected to Jira ({account.token_scope}), but the Jira user could not be read: "
            f"{explain.describe('api', exc)} Use Test connection to check."
        )
    name, display = _jira_user(me)
    ALMAccount.objects.filter(pk=account.pk).update(connected_as_name=name, connected_as_display_name=display)
    account.connected_as_name, account.connected_as_display_name = name, display
    return f"Connected to Jira as {display or 'an unnamed user'} ({account.token_scope})."


def _mark(account_id: int, **fields) -> None:
    ALMAccount.objects.filter(pk=account_id).update(updated_at=timezone.now(), **fields)


# --------------------------------------------------------------------------
# Keeping the connection alive: refresh (rotating tokens), on-demand tokens
# --------------------------------------------------------------------------


class RefreshOutcome(enum.Enum):
    REFRESHED = "refreshed"
    NOT_DUE = "not due"
    BUSY = "skipped: another runner is refreshing it"
    NOT_CONNECTED = "not connected"
    FAILED = "failed"
    NEEDS_REAUTHORIZATION = "needs re-authorization"


@dataclass(frozen=True)
class RefreshResult:
    account_id: int
    account_name: str
    outcome: RefreshOutcome
    message: str = ""

    @property
    def failed(self) -> bool:
        return self.outcome in (RefreshOutcome.FAILED, RefreshOutcome.NEEDS_REAUTHORIZATION)


def refreshable_accounts() -> QuerySet[ALMAccount]:
    """Accounts holding a grant that is still worth keeping alive."""
    return ALMAccount.objects.filter(refresh_token__isnull=False).exclude(status=Status.NEEDS_REAUTHORIZATION)


def due_accounts(*, within: timedelta) -> QuerySet[ALMAccount]:
    deadline = timezone.now() + within
    return refreshable_accounts().filter(Q(token_expires_at__isnull=True) | Q(token_expires_at__lte=deadline))


@sensitive_variables()
def refresh_account(
    *,
    account_id: int,
    actor: str,
    due_within: timedelta | None = None,
    skip_locked: bool = False,
    unless_access_token_changed_from: str | None = None,
) -> RefreshResult:
    """Refresh one account's tokens under its row lock.

    `due_within=None` forces the refresh; otherwise the expiry is checked
    again after the lock is taken (another runner may just have refreshed).
    With `skip_locked`, an account locked by another runner is skipped.

    Jira rotates both tokens on every refresh, so the read of the refresh
    token, the call to Jira and the write of the new pair happen in one
    transaction holding the row lock: no two callers ever send the same
    refresh token. On SQLite the transaction starts with BEGIN IMMEDIATE
    (see settings), which serialises refreshes across processes instead.
    """
    with transaction.atomic():
        account = ALMAccount.objects.select_for_update(skip_locked=skip_locked).filter(pk=account_id).first()
        if account is None:
            return RefreshResult(account_id, f"#{account_id}", RefreshOutcome.BUSY if skip_locked else
                                 RefreshOutcome.NOT_CONNECTED, "no such account" if not skip_locked else "")
        name = account.name
        if account.refresh_token is None:
            return RefreshResult(account.pk, name, RefreshOutcome.NOT_CONNECTED, "no refresh token: Get Auth Token")
        if account.status == Status.NEEDS_REAUTHORIZATION:
            return RefreshResult(account.pk, name, RefreshOutcome.NOT_CONNECTED,
                                 "Jira no longer accepts its grant: click Get Auth Token")
        if unless_access_token_changed_from is not None and account.access_token != unless_access_token_changed_from:
            return RefreshResult(account.pk, name, RefreshOutcome.NOT_DUE, "refreshed meanwhile by another caller")
        if due_within is not None and not is_due(account.token_expires_at, within=due_within):
            return RefreshResult(account.pk, name, RefreshOutcome.NOT_DUE, _expires_text(account))
        if account.unreadable_secrets:
            message = (
                f"The stored {', '.join(account.unreadable_secrets)} cannot be decrypted with the configured "
                "FIELD_ENCRYPTION_KEY; restore the key it was encrypted with."
            )
            return _refresh_failed(account, actor, message, RefreshOutcome.FAILED)

        sent = account.refresh_token
        try:
            tokens = _refresh_with_retries(client_for(account), refresh_token=sent, redirect_uri=account.callback_url)
        except JiraOAuthError as exc:
            if exc.error == "invalid_grant":
                current = ALMAccount.objects.filter(pk=account.pk).values_list("refresh_token", flat=True).first()
                if current != sent:  # someone stored a newer pair meanwhile: a lost race, not a dead grant
                    return RefreshResult(account.pk, name, RefreshOutcome.NOT_DUE, "refreshed meanwhile elsewhere")
                return _refresh_failed(
                    account, actor, explain.describe("refresh", exc), RefreshOutcome.NEEDS_REAUTHORIZATION,
                    status=Status.NEEDS_REAUTHORIZATION,
                )
            return _refresh_failed(account, actor, explain.describe("refresh", exc), RefreshOutcome.FAILED,
                                   status=Status.ERROR)
        except JiraUnavailable as exc:
            # Tokens untouched and status kept: the grant is most likely still alive.
            return _refresh_failed(account, actor, explain.describe("refresh", exc), RefreshOutcome.FAILED)

        now = timezone.now()
        _put_tokens(account, tokens, now=now, scope_if_none=account.token_scope)
        account.last_refreshed_at = now
        account.status = Status.CONNECTED
        account.last_error = ""
        account.save(
            update_fields=[
                "access_token", "refresh_token", "token_expires_at", "token_scope",
                "last_refreshed_at", "status", "last_error", "updated_at",
            ]
        )
        message = f"Token refreshed; {_expires_text(account)}."
        record_event(account, actor=actor, kind=Kind.REFRESHED, ok=True, message=message)
        return RefreshResult(account.pk, name, RefreshOutcome.REFRESHED, message)


@sensitive_variables()
def _refresh_with_retries(client: JiraClient, *, refresh_token: str, redirect_uri: str) -> TokenSet:
    """Retry only failures where Jira cannot have used the refresh token.

    A refresh that reached Jira but whose answer was lost (read timeout, broken
    connection, HTTP 500/504) may already have rotated the token: sending it
    again would get invalid_grant and cost the grant. Those are reported and
    not retried; the next run finds out. Retried: connections that were never
    made, and 429/502/503 (Jira or its proxy refused before processing).
    """
    delays = list(settings.JIRA_RETRY_BACKOFF)
    while True:
        try:
            return client.refresh(refresh_token=refresh_token, redirect_uri=redirect_uri)
        except JiraUnavailable as exc:
            if not exc.retryable or not delays:
                raise
            time.sleep(delays.pop(0))


def _refresh_failed(account, actor, message, outcome, *, status=None) -> RefreshResult:
    fields = {"last_error": message}
    if status is not None:
        fields["status"] = status
    _mark(account.pk, **fields)
    record_event(account, actor=actor, kind=Kind.REFRESH_FAILED, ok=False, message=message)
    return RefreshResult(account.pk, account.name, outcome, message)


def _expires_text(account: ALMAccount) -> str:
    if account.token_expires_at is None:
        return "expiry unknown"
    return f"expires {timezone.localtime(account.token_expires_at):%Y-%m-%d %H:%M:%S %Z}"


@sensitive_variables()
def valid_access_token(*, account: ALMAccount, actor: str = "system") -> str:
    """An access token valid for at least a minute, refreshed under the row lock when due."""
    token = account.access_token
    if isinstance(token, str) and account.status == Status.CONNECTED and not is_due(
        account.token_expires_at, within=ACCESS_TOKEN_MIN_VALIDITY
    ):
        return token
    result = refresh_account(account_id=account.pk, actor=actor, due_within=ACCESS_TOKEN_MIN_VALIDITY)
    account.refresh_from_db()
    if result.outcome is RefreshOutcome.NOT_CONNECTED and account.status == Status.NEEDS_REAUTHORIZATION:
        # The dead grant's tokens are kept (nothing is deleted silently), but they must not be handed out.
        raise ServiceError(account.last_error or "Jira no longer accepts this account's grant: click Get Auth Token.")
    if result.failed or not isinstance(account.access_token, str):
        if not result.failed and account.unreadable_secrets:  # not due, so refresh said only "expires ..."
            raise ServiceError(
                f"The stored {', '.join(account.unreadable_secrets)} cannot be decrypted with the configured "
                "FIELD_ENCRYPTION_KEY; restore the key it was encrypted with, or click Get Auth Token."
            )
        raise ServiceError(result.message or "This account is not connected to Jira: click Get Auth Token.")
    return account.access_token


@sensitive_variables()
def jira_get(*, account: ALMAccount, path: str, actor: str = "system") -> dict:
    """GET a Jira REST resource as the account; on a 401, refresh once and retry once."""
    client = client_for(account)
    token = valid_access_token(account=account, actor=actor)
    try:
        return client.get(path, access_token=token)
    except JiraUnauthorized:
        result = refresh_account(account_id=account.pk, actor=actor, unless_access_token_changed_from=token)
        account.refresh_from_db()
        if result.failed or not isinstance(account.access_token, str):
            raise ServiceError(result.message) from None
        return client.get(path, access_token=account.access_token)


# --------------------------------------------------------------------------
# Admin buttons: Test connection, Disconnect
# --------------------------------------------------------------------------


def test_connection(*, account: ALMAccount, actor: str) -> str:
    """Call /myself and /serverInfo; return what an admin wants to read, or raise ServiceError."""
    try:
        if account.refresh_token is None:
            raise ServiceError("This account is not connected to Jira yet: click Get Auth Token.")
        me = jira_get(account=account, path=jira.MYSELF_PATH, actor=actor)
        info = jira_get(account=account, path=jira.SERVER_INFO_PATH, actor=actor)
    except (ServiceError, JiraError) as exc:
        message = str(exc) if isinstance(exc, ServiceError) else explain.describe("api", exc)
        record_event(account, actor=actor, kind=Kind.TEST_CONNECTION, ok=False, message=message)
        raise ServiceError(message) from None
    name, display = _jira_user(me)
    _mark(account.pk, connected_as_name=name, connected_as_display_name=display)
    version = explain.plain_text(info.get("version"), 40) or "?"
    url = explain.plain_text(info.get("baseUrl"), 500) or account.base_url
    message = f"Connected to Jira {version} at {url} as {display or 'an unnamed user'}."
    record_event(account, actor=actor, kind=Kind.TEST_CONNECTION, ok=True, message=message)
    return message


@sensitive_variables()
def disconnect(*, account: ALMAccount, actor: str) -> str:
    """Best-effort revocation at Jira, then wipe the tokens locally whatever Jira said."""
    with transaction.atomic():
        account = ALMAccount.objects.select_for_update().get(pk=account.pk)
        revoked = _revoke_best_effort(account)
        account.access_token = account.refresh_token = None
        account.token_expires_at = None
        account.token_scope = ""
        account.connected_as_name = account.connected_as_display_name = ""
        account.connected_at = account.last_refreshed_at = None
        account.status = Status.NOT_CONNECTED
        account.last_error = ""
        account.save()
        message = "Disconnected: the tokens were deleted here" + (
            " and revoked at Jira." if revoked else
            "; Jira did not confirm the revocation (remove the grant in Jira if needed)."
        )
        record_event(account, actor=actor, kind=Kind.DISCONNECTED, ok=True, message=message)
    return message


@sensitive_variables()
def _revoke_best_effort(account: ALMAccount) -> bool:
    """True only when Jira confirmed the revocation of every token we held."""
    try:
        client = client_for(account)
    except ServiceError:
        return False
    confirmed = []
    for hint, token in (("refresh_token", account.refresh_token), ("access_token", account.access_token)):
        if not isinstance(token, str):
            continue
        try:
            client.revoke(token=token, token_type_hint=hint)
            confirmed.append(True)
        except JiraError as exc:
            confirmed.append(False)
            log.info("Revocation at Jira failed for ALM account %s: %s", account.pk, type(exc).__name__)
    return bool(confirmed) and all(confirmed)
