"""Get Auth Token: start and complete the authorization-code flow with PKCE and state."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .. import explain, messages
from ..conf import app_settings
from ..fields import UnreadableSecret
from ..jira import PKCE, JiraError, Secret, TokenSet, new_state
from ..kinds import kind_of
from ..models import ALMAccount, ALMCredential, Grant, PendingAuthorization
from ..providers import SiteNotCovered, provider_for
from ..validators import is_well_formed_callback_id
from . import alerts
from .common import Kind, ServiceError, Status, actor_of, client_for, digest, log, mark, own_transaction, record_event
from .grants import GrantRef, WriteLost, put_tokens, record_outside, refresh_deadline, write_again

SESSION_BINDING_KEY = "alm_accounts.oauth_binding"


class CallbackRejected(ServiceError):
    """Jira's redirect (or something posing as it) cannot be accepted. Nothing was changed."""

    def __init__(self, message: str, account: ALMAccount | None = None):
        super().__init__(message)
        self.account = account


@sensitive_variables()
def start_authorization(*, account: ALMAccount, user, session, for_own_credential: bool = False) -> str:
    """Remember a new state + PKCE verifier for this browser session; return Jira's authorize URL.

    `for_own_credential`: the person connects their own Jira identity (user-based sync) instead of the
    account's connection. Same link, same callback URL: the pending authorization says which grant it is for.
    """
    provider = provider_for(account)
    if not for_own_credential and kind_of(account).by_client_credentials(account):
        raise ServiceError(messages.SERVICE_ACCOUNT_NO_CONSENT)
    if not provider.is_ready(account):
        raise ServiceError(provider.not_ready(account, for_own_credential=for_own_credential))
    if for_own_credential and not (user.is_active and user.is_staff):
        raise ServiceError("Only active staff users can connect their own Jira account.")
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
        for_own_credential=for_own_credential,
    )
    record_event(
        account,
        actor=actor_of(user),
        kind=Kind.AUTHORIZATION_STARTED,
        ok=True,
        message=f"Sent to Jira for consent ({provider.asked_for(account)}).",
        grant_owner=user.get_username() if for_own_credential else "",
    )
    return client.authorization_url(
        redirect_uri=account.callback_url, scope=provider.requested_scope(account), state=state,
        code_challenge=pkce.challenge,
    )


@dataclass(frozen=True)
class CallbackOutcome:
    account: ALMAccount
    ok: bool
    message: str
    for_own_credential: bool = False  # the person's own connection: back to My ALM Credentials
    warning: bool = False  # succeeded, with something the admin must act on (shown as a warning)


class CallbackForbidden(CallbackRejected):
    """The user may not complete this kind of authorization (an account's connection needs change permission)."""


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
def complete_authorization(*, callback_id: str, query, user, session,
                           may_connect_account: bool = True) -> CallbackOutcome:
    """Handle Jira's redirect to an account's callback URL.

    Raises CallbackRejected (with the account when it can be named) when the
    answer cannot be accepted; no account is changed then. Returns the outcome
    otherwise: Jira's error, a failed code exchange, or a connection. A failed
    re-authorization of a working connection leaves that connection as it was.
    """
    account = ALMAccount.objects.filter(callback_id=callback_id).first() if is_well_formed_callback_id(
        callback_id
    ) else None
    if account is None or account.is_cloud:
        raise CallbackRejected(
            "This callback URL does not belong to any ALM account. Check the Redirect URL on Jira's incoming "
            "application link against the Callback URL shown on the ALM account."
        )
    return _complete(account, query=query, user=user, session=session, may_connect_account=may_connect_account)


@sensitive_variables()
def complete_cloud_authorization(*, query, user, session, may_connect_account: bool = True) -> CallbackOutcome:
    """Handle Atlassian's redirect to this deployment's one Jira Cloud callback URL: the state names the account."""
    states = query.getlist("state")
    pending = None
    if len(states) == 1 and 0 < len(states[0]) <= CALLBACK_LIMITS["state"]:
        pending = PendingAuthorization.objects.filter(state_digest=digest(states[0])).select_related("account").first()
    if pending is None or not pending.account.is_cloud:
        said = ""
        errors = query.getlist("error")
        if errors and errors[0].strip():
            said = f" (Atlassian said: {explain.plain_text(errors[0], 100)})"
        raise CallbackRejected(
            f"Atlassian's answer does not match any Jira Cloud authorization in progress{said}: it is unknown or "
            f"older than {state_ttl_text()}. Open the ALM account and click Get Auth Token (or Connect my Jira "
            "account) again."
        )
    return _complete(pending.account, query=query, user=user, session=session, may_connect_account=may_connect_account)


@sensitive_variables()
def _complete(account: ALMAccount, *, query, user, session, may_connect_account: bool) -> CallbackOutcome:
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
    if not pending.for_own_credential and not may_connect_account:
        raise CallbackForbidden("You are not allowed to connect ALM accounts.", account)
    actor = actor_of(user)
    own = pending.for_own_credential
    existing = ALMCredential.objects.filter(account=account, user=user).first() if own else account
    owner = user.get_username() if own else ""

    if "error" in params:
        said = explain.oauth_error("authorize", params["error"], params.get("error_description", ""),
                                   advice=provider_for(account).advice)
        message = _kept(existing, said)
        _replace_last_error(existing, message)
        record_event(account, actor=actor, kind=Kind.AUTHORIZATION_FAILED, ok=False, message=message,
                     grant_owner=owner)
        return CallbackOutcome(account, False, message, own)
    if "code" not in params:
        message = _kept(existing, "Jira's answer has neither an authorization code nor an error. Click Get Auth "
                                  "Token again.")
        record_event(account, actor=actor, kind=Kind.AUTHORIZATION_FAILED, ok=False, message=message,
                     grant_owner=owner)
        return CallbackOutcome(account, False, message, own)
    code, verifier = Secret(params["code"]), Secret(pending.code_verifier)
    if own:
        return _connect_person(account, user, code=code, verifier=verifier, actor=actor)
    return _exchange_and_store(account, code=code, verifier=verifier, actor=actor)


def started_for_own_credential(*, query, user) -> bool:
    """Whether this callback answers an authorization `user` started for their own credential (nothing is used up).

    Lets the callback refuse at once, without touching the authorization, a user who may not connect accounts.
    """
    states = query.getlist("state")
    if len(states) != 1 or len(states[0]) > CALLBACK_LIMITS["state"]:
        return False
    return PendingAuthorization.objects.filter(state_digest=digest(states[0]), user_id=getattr(user, "pk", None),
                                               for_own_credential=True).exists()


def _replace_last_error(grant: Grant | None, message: str) -> None:
    """A grant that is not connected shows this answer as its Last error, not an older failure (say the
    invalid_client of an earlier try after a Deny). A connected grant keeps its state: its connection still works.
    The status is checked in the UPDATE itself: a refresh that connects it meanwhile wins."""
    if grant is None or grant.pk is None:
        return
    type(grant).objects.filter(pk=grant.pk).exclude(status=Status.CONNECTED).update(
        last_error=explain.plain_text(message, 2000))


def _kept(grant: Grant | None, message: str) -> str:
    """A failed re-authorization of a working connection says that the connection still works."""
    if grant is not None and grant.is_connected:
        return f"{message} The existing connection is kept and still works."
    return message


class _Refused(Exception):
    """A person's new grant is refused after the exchange; nothing is stored (the transaction rolls back).

    `recorded`: the audit event was already written (on a fresh connection, after the database failed).
    """

    def __init__(self, message: str, *, recorded: bool = False):
        super().__init__(message)
        self.message = message
        self.recorded = recorded


_LOST_PERSON = ("Jira issued the tokens but the database did not accept them: nothing was stored, and the new tokens "
                "were discarded (revoked at Jira where Jira allows it). Click Connect my Jira account again.")


@sensitive_variables()
def _connect_person(account: ALMAccount, user, *, code: Secret, verifier: Secret, actor: str) -> CallbackOutcome:
    """A person's own Jira grant: exchange the code, ask Jira who it is, then decide and store under the locks.

    Jira is asked first, with no row lock held: its codes live seconds, and waiting for a lock (an account
    refresh in flight) before the exchange could outlive the code. The decision (is this Jira identity free:
    neither another person's on the account nor the one the account's own connection acts as) and the store are
    one transaction holding the account's row lock, then the credential's (the order in which an admin's edit or
    deletion of the account takes them): two consents on one account are decided one after the other, and the
    unique constraint on (account, Jira user) has the last word all the same. The credential's row exists
    (committed) before the exchange, so a write that must be repeated always finds it, and repeats it with the
    identity. A new grant stored nowhere (refused, or the database did not take it) is revoked at Jira, best
    effort, with no lock held.
    """
    owner = user.get_username()
    ref = GrantRef("user", _credential_row(account, user))
    before = ALMCredential.objects.select_related("account").get(pk=ref.pk)  # for the words of a failure only
    client = client_for(account)
    issued: TokenSet | None = None
    try:
        deadline = refresh_deadline()
        try:
            issued = client.exchange_code(code=code, redirect_uri=account.callback_url, code_verifier=verifier,
                                          deadline=deadline)
            client = _on_consented_site(account, client, issued, deadline=deadline, record=False)
            me = client.myself(access_token=issued.access_token, deadline=deadline)
        except SiteNotCovered as exc:
            raise _Refused(_kept(before, str(exc))) from None
        except JiraError as exc:
            stage = "exchange" if issued is None else "api"
            raise _Refused(_kept(before, explain.describe(stage, exc, advice=provider_for(account).advice) + (
                " Jira issued tokens but could not say which Jira user they belong to, so nothing was stored."
                if issued is not None else ""))) from None
        name, display = jira_user(me, account)
        if not name:
            raise _Refused(_kept(before, "Jira issued tokens but did not say which Jira user they belong to, so "
                                         "nothing was stored. Click Connect my Jira account again."))
        message = _store_person_grant(ref, account=account, tokens=issued, name=name, display=display, actor=actor)
    except _Refused as refused:
        if issued is not None:
            _revoke_quietly(client, issued)
        if not refused.recorded:
            record_event(account, actor=actor, kind=Kind.AUTHORIZATION_FAILED, ok=False, message=refused.message,
                         grant_owner=owner)
        return CallbackOutcome(account, False, refused.message, True)
    return CallbackOutcome(account, True, message, True)


def _credential_row(account: ALMAccount, user) -> int:
    """The person's credential on the account, created and committed before Jira issues anything (a blank row is
    "not connected"): the store, and a store written again after a database failure, always find it."""
    return ALMCredential.objects.get_or_create(account=account, user=user)[0].pk


@sensitive_variables()
def _store_person_grant(ref: GrantRef, *, account: ALMAccount, tokens: TokenSet, name: str, display: str,
                        actor: str) -> str:
    """Decide and store a person's new grant (see _connect_person); a first write that failed is written again on
    a fresh connection, under the same locks and with the same identity. Returns what to tell the person; raises
    _Refused (nothing stored)."""
    def lock() -> ALMCredential | None:
        # The account's row first, then the credential's: the order of save_account and delete_account.
        return ref.locked() if GrantRef("account", account.pk).locked() is not None else None

    def write(credential: ALMCredential | None) -> str:
        if credential is None:
            raise _Refused("The ALM account or your user was deleted meanwhile: nothing was stored.")
        return _decide_and_store(credential, tokens=tokens, name=name, display=display, site_of=account, actor=actor)

    try:
        with own_transaction("Connecting a Jira account"):
            return write(lock())
    except DatabaseError as exc:
        try:
            return write_again(ref, write=write, lock=lock, what="Connect my Jira account", error=exc)
        except WriteLost:
            log.critical("%s: %s", ref, _LOST_PERSON)
            record_outside(ref, actor=actor, message=_LOST_PERSON, kind=Kind.AUTHORIZATION_FAILED)
            raise _Refused(_LOST_PERSON, recorded=True) from None


@sensitive_variables()
def _decide_and_store(credential: ALMCredential, *, tokens: TokenSet, name: str, display: str, site_of: ALMAccount,
                      actor: str) -> str:
    """Under the locks of the account and the credential: refuse an identity that is taken, else store the grant
    with its identity and the audit event, in one transaction."""
    account = credential.account  # read after the account's row lock was taken: its identity is current
    was_connected = credential.is_connected

    def refused(reason: str) -> _Refused:
        return _Refused(f"{reason} The existing connection is kept and still works." if was_connected else reason)

    taken = _identity_taken(account, credential, name=name, display=display)
    if taken:
        raise refused(taken)
    if site_of.cloud_id and (account.cloud_id, account.cloud_site_name) != (site_of.cloud_id,
                                                                             site_of.cloud_site_name):
        ALMAccount.objects.filter(pk=account.pk).update(cloud_id=site_of.cloud_id,
                                                        cloud_site_name=site_of.cloud_site_name)
        account.cloud_id, account.cloud_site_name = site_of.cloud_id, site_of.cloud_site_name
    try:
        with transaction.atomic():  # a savepoint: the unique constraint's answer is a refusal, not a lost write
            store_new_grant(credential, tokens, name=name, display=display)
    except IntegrityError:
        # Another person's credential took this Jira user without the account's lock (a Test that recorded a
        # renamed Jira user): the constraint kept the rule.
        raise refused(_identity_taken(account, credential, name=name, display=display) or (
            f"The Jira user {display or name} is already connected to {account.name} by another person. "
            f"{_SIGN_IN_AS_YOURSELF}")) from None
    message = f"Connected to Jira as {display or 'an unnamed user'} ({credential.token_scope})."
    record_event(credential, actor=actor, kind=Kind.CONNECTED, ok=True, message=message)
    return message


_SIGN_IN_AS_YOURSELF = ("Log out of Jira, sign in to Jira as yourself, then click Connect my Jira account again. "
                        "Nothing was stored.")


def _identity_taken(account: ALMAccount, credential: ALMCredential | None, *, name: str, display: str) -> str:
    """Why a person may not bind this Jira identity on `account` ("" when they may): see identity_holder."""
    who = display or name
    holder = identity_holder(account, credential, name=name)
    if holder == ACCOUNTS_OWN:
        return (f"The Jira user {who} is the one {account.name}'s own connection acts as (connected by an "
                "administrator with Get Auth Token): it cannot also be your own connection. Your browser is "
                f"probably still signed in to Jira as that user. {_SIGN_IN_AS_YOURSELF}")
    if holder:
        return f"The Jira user {who} is already connected to {account.name} by {holder}. {_SIGN_IN_AS_YOURSELF}"
    return ""


ACCOUNTS_OWN = "the account's own connection"


def identity_holder(account: ALMAccount, credential: ALMCredential | None, *, name: str) -> str:
    """Who on `account` already holds the Jira identity `name`, which `credential` may therefore not: ACCOUNTS_OWN
    (the person would act as the account's administrator, whatever the policy for people without a connection),
    another person's user name, or "" (nobody). `account` read under its row lock, so that the answer holds until
    the caller's transaction ends (the connect's store, Test's record of a renamed Jira user)."""
    if account.connected_as_name and name == account.connected_as_name:
        return ACCOUNTS_OWN
    others = ALMCredential.objects.filter(account_id=account.pk, connected_as_name=name).select_related("user")
    if credential is not None:
        others = others.exclude(pk=credential.pk)
    holder = others.first()
    return holder.user.get_username() if holder is not None else ""


@sensitive_variables()
def _revoke_quietly(client, tokens: TokenSet) -> None:
    for hint, token in (("refresh_token", tokens.refresh_token), ("access_token", tokens.access_token)):
        try:
            client.revoke(token=token, token_type_hint=hint, deadline=refresh_deadline())
        except JiraError:
            log.info("Revoking a refused grant at Jira failed (%s).", hint)


@sensitive_variables()
def _exchange_and_store(account: ALMAccount, *, code: Secret, verifier: Secret, actor: str) -> CallbackOutcome:
    """Exchange the code at once (Jira's codes live seconds) and store the new grant, under the row lock.

    The lock serialises the new grant with a refresh of the old one in flight; the transaction is our own.
    """
    issued: TokenSet | None = None
    outcome_failed = None
    locked = account
    try:
        with own_transaction("Completing Get Auth Token"):
            locked = GrantRef("account", account.pk).locked()
            tokens = None
            try:
                client, deadline = client_for(locked), refresh_deadline()
                tokens = client.exchange_code(
                    code=code, redirect_uri=locked.callback_url, code_verifier=verifier, deadline=deadline
                )
                _on_consented_site(locked, client, tokens, deadline=deadline)
            except (JiraError, ServiceError, SiteNotCovered) as exc:
                if isinstance(exc, JiraError):
                    said = explain.describe("exchange" if tokens is None else "api", exc,
                                             advice=provider_for(locked).advice) + (
                        " Atlassian issued tokens but could not say which sites they reach, so nothing was stored."
                        if tokens is not None else "")
                else:
                    said = str(exc)
                failure = _kept(locked, said)
                if not locked.is_connected:
                    # A working connection stays as it is: a failed re-authorization (wrong secret, a code that
                    # expired) does not make it fail.
                    mark(locked, status=Status.ERROR, last_error=failure)
                record_event(locked, actor=actor, kind=Kind.AUTHORIZATION_FAILED, ok=False, message=failure)
                outcome_failed = (locked, failure)
            else:
                issued = tokens
                store_new_grant(locked, tokens)
    except DatabaseError as exc:
        if issued is None:
            raise
        if _store_issued_grant_again(GrantRef("account", account.pk), issued, actor=actor, error=exc,
                                     site_of=locked) is None:
            return CallbackOutcome(account, False, _LOST)
    if outcome_failed is not None:
        locked, failure = outcome_failed
        locked.refresh_from_db()
        return CallbackOutcome(locked, False, failure)

    account.refresh_from_db()
    message = _record_jira_user(account)
    record_event(account, actor=actor, kind=Kind.CONNECTED, ok=True, message=message)
    return CallbackOutcome(account, True, message, warning=" Warning: " in message)


_LOST = ("Jira issued the tokens but the database did not accept them: nothing was stored. Click Get Auth Token "
         "again.")


@sensitive_variables()
def _store_issued_grant_again(grant: GrantRef, tokens: TokenSet, *, actor: str, error: Exception,
                              site_of: ALMAccount):
    """`site_of`: the account as the consent left it in memory (Jira Cloud: the site it found, lost with the failed
    transaction and written again with the tokens: without it no call could reach the site)."""
    def write(locked):
        if locked is not None:
            if site_of.cloud_id:
                ALMAccount.objects.filter(pk=site_of.pk).update(cloud_id=site_of.cloud_id,
                                                                cloud_site_name=site_of.cloud_site_name)
                if locked.grant_account is locked:  # the account's own connection: its row is the account
                    locked.cloud_id, locked.cloud_site_name = site_of.cloud_id, site_of.cloud_site_name
            store_new_grant(locked, tokens)
        return locked

    try:
        return write_again(grant, write=write, what="Get Auth Token", error=error)
    except WriteLost:
        log.critical("%s: %s", grant, _LOST)
        record_outside(grant, actor=actor, message=_LOST, kind=Kind.AUTHORIZATION_FAILED)
        return None


def state_ttl() -> timedelta:
    return timedelta(seconds=app_settings.OAUTH_STATE_TTL_SECONDS)


def state_ttl_text() -> str:
    seconds = app_settings.OAUTH_STATE_TTL_SECONDS
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
def store_new_grant(grant: Grant, tokens: TokenSet, *, name: str = "", display: str = "") -> None:
    """A new grant from Jira's consent on the locked `grant` (saved); who it is, when already known."""
    now = timezone.now()
    put_tokens(grant, tokens, now=now, scope_if_none=grant.grant_account.scope)
    grant.status = Status.CONNECTED
    grant.connected_at = now
    grant.last_refreshed_at = None
    grant.refresh_count = 0  # counted per grant: a new consent is a new grant
    grant.last_error = ""
    grant.connected_as_name, grant.connected_as_display_name = name, display
    grant.reconsent_warned_at = None  # a new consent: a new year (Jira Cloud)
    for field, value in alerts.after_success(grant, now=now).items():  # a broken grant authorized again: recovered
        setattr(grant, field, value)
    grant.save()


def jira_user(me: dict, account: ALMAccount) -> tuple[str, str]:
    """(unique name, display name) from Jira's /myself answer (Cloud: the Atlassian account ID, no user name)."""
    return provider_for(account).identity(me)


@sensitive_variables()
def _on_consented_site(account: ALMAccount, client, tokens: TokenSet, *, deadline, record: bool = True) -> object:
    """The site the consent must reach (Jira Cloud): put it on `account` (and, `record`, on its row); the client that
    calls it.

    Raises SiteNotCovered when the consent does not reach the account's site (nothing is stored then: the caller's
    transaction rolls back or stores nothing). Data Center: the client as it is. Without `record` the caller writes
    the site with the grant (a person's consent, decided under the account's lock).
    """
    site = provider_for(account).confirm_site(client, access_token=tokens.access_token, account=account,
                                              deadline=deadline)
    if site is None:
        return client
    if (account.cloud_id, account.cloud_site_name) != (site.cloud_id, site.name):
        account.cloud_id, account.cloud_site_name = site.cloud_id, site.name
        if record:
            ALMAccount.objects.filter(pk=account.pk).update(cloud_id=site.cloud_id, cloud_site_name=site.name)
    return client_for(account)


@sensitive_variables()
def _record_jira_user(account: ALMAccount) -> str:
    """Ask Jira who the token belongs to; the tokens are kept whatever happens."""
    try:
        me = client_for(account).myself(access_token=Secret(account.access_token))
    except (JiraError, ServiceError) as exc:
        reason = explain.describe("api", exc, advice=provider_for(account).advice) if isinstance(exc, JiraError) \
            else str(exc)
        return (
            f"Connected to Jira ({account.token_scope}), but the Jira user could not be read: "
            f"{reason} Use Test connection to check."
        )
    name, display = jira_user(me, account)
    # Written before the people's credentials are read: a person's consent decided after this sees the identity
    # (and refuses it), one decided before is found below (the update waits for its account lock).
    ALMAccount.objects.filter(pk=account.pk).update(connected_as_name=name, connected_as_display_name=display)
    account.connected_as_name, account.connected_as_display_name = name, display
    message = f"Connected to Jira as {display or 'an unnamed user'} ({account.token_scope})."
    return message + (person_with_the_accounts_identity(account) if name else "")


def person_with_the_accounts_identity(account: ALMAccount) -> str:
    """A warning when a person's own credential is the Jira user the account's connection acts as ("" if none)."""
    holder = (ALMCredential.objects.filter(account_id=account.pk, connected_as_name=account.connected_as_name)
              .exclude(connected_as_name="").select_related("user").first())
    if holder is None:
        return ""
    person = holder.user.get_username()
    who = account.connected_as_display_name or account.connected_as_name
    # services.jira_calls refuses that credential meanwhile: through it the person would act as the account.
    return (f" Warning: {who} is also the Jira user of {person}'s own connection (My ALM Credentials), so nothing is "
            f"done in Jira for {person} through it while the account's own connection is that Jira user. Revoke "
            f"{person}'s credential below and ask {person} to connect again as themselves, or connect the account "
            "with a Jira user no person uses.")
