"""Get Auth Token: start and complete the authorization-code flow with PKCE and state."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .. import explain
from ..fields import UnreadableSecret
from ..jira import PKCE, JiraError, Secret, TokenSet, new_state
from ..models import ALMAccount, PendingAuthorization
from ..validators import is_well_formed_callback_id
from .common import Kind, ServiceError, Status, actor_of, client_for, digest, log, mark, own_transaction, record_event
from .grants import WriteLost, put_tokens, record_outside, refresh_deadline, write_again

SESSION_BINDING_KEY = "alm_accounts.oauth_binding"


class CallbackRejected(ServiceError):
    """Jira's redirect (or something posing as it) cannot be accepted. Nothing was changed."""

    def __init__(self, message: str, account: ALMAccount | None = None):
        super().__init__(message)
        self.account = account


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
    PendingAuthorization.objects.filter(created_at__lt=now - state_ttl()).delete()
    PendingAuthorization.objects.create(
        state_digest=digest(state),
        account=account,
        user=user,
        session_binding_digest=digest(binding),
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
    """Jira's parameters; an empty one counts as absent (an empty `error=` must not hide a valid code)."""
    params = {}
    for name, limit in CALLBACK_LIMITS.items():
        values = query.getlist(name)
        if len(values) > 1:
            raise ServiceError(f"Jira's answer carries the parameter '{name}' more than once.")
        if values and values[0].strip():
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
    otherwise: Jira's error, a failed code exchange, or a connection. A failed
    re-authorization of a working connection leaves that connection as it was.
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
        said = f" (Jira said: {explain.plain_text(params['error'], 100)})" if "error" in params else ""
        raise CallbackRejected(
            f"Jira's answer cannot be matched to an authorization you started: it has no state{said}. "
            "Click Get Auth Token to start again.",
            account,
        )
    pending = _claim_pending(params["state"], account=account, user=user, session=session)
    actor = actor_of(user)

    if "error" in params:
        message = _kept(account, explain.oauth_error("authorize", params["error"], params.get("error_description", "")))
        record_event(account, actor=actor, kind=Kind.AUTHORIZATION_FAILED, ok=False, message=message)
        return CallbackOutcome(account, False, message)
    if "code" not in params:
        message = _kept(account, "Jira's answer has neither an authorization code nor an error. Click Get Auth Token "
                                 "again.")
        record_event(account, actor=actor, kind=Kind.AUTHORIZATION_FAILED, ok=False, message=message)
        return CallbackOutcome(account, False, message)
    return _exchange_and_store(account, code=Secret(params["code"]), verifier=Secret(pending.code_verifier),
                               actor=actor)


def _kept(account: ALMAccount, message: str) -> str:
    """A failed re-authorization of a working connection says that the connection still works."""
    if account.is_connected:
        return f"{message} The existing connection is kept and still works."
    return message


@sensitive_variables()
def _exchange_and_store(account: ALMAccount, *, code: Secret, verifier: Secret, actor: str) -> CallbackOutcome:
    """Exchange the code at once (Jira's codes live seconds) and store the new grant, under the row lock.

    The lock serialises the new grant with a refresh of the old one in flight; the transaction is our own.
    """
    issued: TokenSet | None = None
    outcome_failed = None
    try:
        with own_transaction("Completing Get Auth Token"):
            locked = ALMAccount.objects.select_for_update().get(pk=account.pk)
            try:
                tokens = client_for(locked).exchange_code(
                    code=code, redirect_uri=locked.callback_url, code_verifier=verifier, deadline=refresh_deadline()
                )
            except (JiraError, ServiceError) as exc:
                failure = _kept(locked, explain.describe("exchange", exc) if isinstance(exc, JiraError) else str(exc))
                if not locked.is_connected:
                    # A working connection stays as it is: a failed re-authorization (wrong secret, a code that
                    # expired) does not make it fail.
                    mark(locked.pk, status=Status.ERROR, last_error=failure)
                record_event(locked, actor=actor, kind=Kind.AUTHORIZATION_FAILED, ok=False, message=failure)
                outcome_failed = (locked, failure)
            else:
                issued = tokens
                store_new_grant(locked, tokens)
    except DatabaseError as exc:
        if issued is None:
            raise
        if _store_issued_grant_again(account, issued, actor=actor, error=exc) is None:
            return CallbackOutcome(account, False, _LOST)
    if outcome_failed is not None:
        locked, failure = outcome_failed
        locked.refresh_from_db()
        return CallbackOutcome(locked, False, failure)

    account.refresh_from_db()
    message = _record_jira_user(account)
    record_event(account, actor=actor, kind=Kind.CONNECTED, ok=True, message=message)
    return CallbackOutcome(account, True, message)


_LOST = ("Jira issued the tokens but the database did not accept them: nothing was stored. Click Get Auth Token "
         "again.")


@sensitive_variables()
def _store_issued_grant_again(account: ALMAccount, tokens: TokenSet, *, actor: str, error: Exception):
    def write(locked):
        if locked is not None:
            store_new_grant(locked, tokens)
        return locked

    try:
        return write_again(account.pk, write=write, what="Get Auth Token", error=error)
    except WriteLost:
        log.critical("ALM account %s: %s", account.pk, _LOST)
        record_outside(account.pk, actor=actor, message=_LOST, kind=Kind.AUTHORIZATION_FAILED)
        return None


def state_ttl() -> timedelta:
    return timedelta(seconds=settings.OAUTH_STATE_TTL_SECONDS)


def state_ttl_text() -> str:
    seconds = settings.OAUTH_STATE_TTL_SECONDS
    if seconds < 120:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    return f"{seconds // 60} minutes"


@sensitive_variables()
def _claim_pending(state: str, *, account: ALMAccount, user, session) -> PendingAuthorization:
    """Find the authorization this state belongs to and mark it used (single use)."""
    again = "Click Get Auth Token to start again."
    pending = PendingAuthorization.objects.filter(state_digest=digest(state)).first()
    if pending is None:
        raise CallbackRejected(
            "Jira's answer does not match any authorization in progress (it is unknown or older than "
            f"{state_ttl_text()}). {again}",
            account,
        )
    if pending.account_id != account.pk:
        raise CallbackRejected(f"Jira's answer belongs to an authorization of another ALM account. {again}", account)
    binding = session.get(SESSION_BINDING_KEY) or ""
    if pending.user_id != getattr(user, "pk", None) or pending.session_binding_digest != digest(binding):
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
    if pending.created_at < now - state_ttl():
        raise CallbackRejected(f"The authorization took longer than {state_ttl_text()} and expired. " + again, account)
    # Conditional update: of two concurrent requests with the same state, one wins.
    if not PendingAuthorization.objects.filter(pk=pending.pk, used_at__isnull=True).update(used_at=now):
        raise CallbackRejected("This answer from Jira was already used. " + again, account)
    if isinstance(pending.code_verifier, UnreadableSecret):
        raise CallbackRejected("The authorization could not be read back (encryption key changed). " + again, account)
    return pending


@sensitive_variables()
def store_new_grant(account: ALMAccount, tokens: TokenSet) -> None:
    """A new grant from Get Auth Token on the locked `account` (saved)."""
    now = timezone.now()
    put_tokens(account, tokens, now=now, scope_if_none=account.scope)
    account.status = Status.CONNECTED
    account.connected_at = now
    account.last_refreshed_at = None
    account.last_error = ""
    account.connected_as_name = account.connected_as_display_name = ""
    account.save()


def jira_user(me: dict) -> tuple[str, str]:
    """(user name, display name) from Jira's /myself answer."""
    name = explain.plain_text(me.get("name") or me.get("key"), 255)
    return name, explain.plain_text(me.get("displayName"), 255) or name


@sensitive_variables()
def _record_jira_user(account: ALMAccount) -> str:
    """Ask Jira who the token belongs to; the tokens are kept whatever happens."""
    try:
        me = client_for(account).myself(access_token=Secret(account.access_token))
    except (JiraError, ServiceError) as exc:
        reason = explain.describe("api", exc) if isinstance(exc, JiraError) else str(exc)
        return (
            f"Connected to Jira ({account.token_scope}), but the Jira user could not be read: "
            f"{reason} Use Test connection to check."
        )
    name, display = jira_user(me)
    ALMAccount.objects.filter(pk=account.pk).update(connected_as_name=name, connected_as_display_name=display)
    account.connected_as_name, account.connected_as_display_name = name, display
    return f"Connected to Jira as {display or 'an unnamed user'} ({account.token_scope})."
