"""Keeping a grant alive: refresh under the row lock (Jira rotates both tokens), on-demand tokens, 401 → retry.

One implementation for both kinds of grant (models.Grant): an ALM account's
own connection and a person's own credential. A grant is named by a GrantRef
(kind + primary key) wherever it crosses a transaction.

Jira rotates the refresh token on every refresh, so the read of the refresh
token, the call to Jira and the write of the new pair happen in one
transaction holding the account's row lock: no two callers ever send the same
refresh token. The transaction is always our own (never a savepoint of a
caller's), the call to Jira has one deadline (JIRA_REFRESH_DEADLINE), and a
new pair whose write failed is written again on a fresh connection: once Jira
has rotated, the pair in memory is the only live copy of the grant.
"""

from __future__ import annotations

import enum
import functools
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from django.db import DatabaseError, connection
from django.db.models import QuerySet
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .. import explain, messages, selectors
from ..conf import app_settings
from ..jira import Deadline, JiraClient, JiraOAuthError, JiraUnavailable, Secret, TokenSet
from ..kinds import KINDS, ReadAlong, kind_of
from ..models import ALMAccount, ALMCredential, Grant, is_due
from ..providers import provider_for
from . import alerts, client_refused, history, rate_limits, row_statements, service_accounts, usage
from .common import Kind, ServiceError, Status, client_for, log, mark, own_transaction, record_event

# An on-demand caller gets a token that is valid for at least this long.
ACCESS_TOKEN_MIN_VALIDITY = timedelta(seconds=60)
TOKEN_SCOPE_LENGTH = ALMAccount._meta.get_field("token_scope").max_length
# Pauses before each new attempt to store a rotated pair whose first write failed (database failover, a
# killed connection): bounded, and long enough to ride out a quick failover.
STORE_RETRY_PAUSES = (0.0, 1.0, 3.0)
# What every successful refresh writes; the other fields of the outcome (scope, status, error, alert fields) only
# when they change, which a routine refresh does not: a shorter UPDATE to build and send.
TOKEN_FIELDS = ["access_token", "refresh_token", "token_expires_at", "last_refreshed_at", "refresh_count",
                "updated_at"]


@dataclass(frozen=True)
class GrantRef:
    """Which grant: the account's own connection ("account", account id) or a person's ("user", credential id)."""

    kind: str
    pk: int

    @classmethod
    def of(cls, grant: Grant) -> GrantRef:
        return cls(grant.grant_kind, grant.pk)

    @property
    def model(self) -> type[Grant]:
        return KINDS[self.kind].model

    def locked(self, *, skip_locked: bool = False, read_along: ReadAlong | None = None) -> Grant | None:
        """The grant under its row lock, in one statement: only the grant's own row is locked (OF self). A
        person's credential reads its account and person along in the same statement, without locking them;
        unless the caller hands them in (`read_along`, the refresher reads them once for a batch of due grants):
        then the statement reads the grant's own row and only the few columns of theirs that change while the
        refresher runs (GrantKind.fresh_along), not two more tables' worth of columns and objects.
        Where there are row locks, that statement is written once per process (services.row_statements)."""
        along = read_along is not None
        if row_statements.written_once(self.kind, along=along):
            grant = row_statements.lock(self.kind, self.pk, skip_locked=skip_locked, along=along)
        else:
            # By primary key: one row or none, so no ORDER BY or LIMIT to build (first() would add both).
            grant = next(iter(_locking(self.kind, skip_locked, along).filter(pk=self.pk)), None)
        if grant is not None and along:
            KINDS[self.kind].read_along_from(grant, read_along)
        return grant

    def __str__(self):
        return f"{KINDS[self.kind].label} {self.pk}"


@functools.cache
def _locking(kind_key: str, skip_locked: bool, along: bool) -> QuerySet:
    """The query that locks one grant of a kind (GrantKind.locking / locking_along), made once per process: each
    lock filters its own copy by primary key (QuerySet.filter clones it; the ORM still builds the SQL each time),
    so that the lock of each refresh does not resolve the same columns and joins again."""
    # NO KEY UPDATE: excludes every other refresh of this grant, yet not the foreign-key checks of a row
    # inserted elsewhere that references it (the audit event of a person's refresh references the
    # account), which FOR UPDATE would: the account's own refresh would be skipped as busy, or wait.
    kind = KINDS[kind_key]
    queryset = kind.model.objects.select_for_update(skip_locked=skip_locked, of=("self",), no_key=True)
    return kind.locking_along(queryset) if along else kind.locking(queryset)


def grant_name(grant: Grant) -> str:
    """How a grant is named in a command's output and in messages."""
    return kind_of(grant).name(grant)


class RefreshOutcome(enum.Enum):
    REFRESHED = "refreshed"
    NOT_DUE = "not due"
    BUSY = "skipped: another runner is refreshing it"
    NOT_CONNECTED = "not connected"
    FAILED = "failed"
    NEEDS_REAUTHORIZATION = "needs re-authorization"
    # Jira refuses the account's client (a removed link, services.client_refused): counted apart, not a failure.
    CLIENT_REFUSED = "client refused (link removed or secret changed)"
    # The token endpoint refused for a rate limit (HTTP 429): nothing was looked at, nothing rotated, nothing is
    # wrong with the grant; the next run (or call) tries again. Not a failure: no error, event or alert.
    RATE_LIMITED = "rate limited: tried again later"


@dataclass(frozen=True)
class RefreshResult:
    account_id: int  # the grant's primary key (an account's, or a credential's when kind is "user")
    account_name: str  # the grant's name (see grant_name)
    outcome: RefreshOutcome
    message: str = ""
    kind: str = "account"
    # Refreshed while idle (selectors.in_use: not used within REFRESH_ACTIVE_WITHIN_HOURS): only kept alive.
    kept_alive: bool = False
    # What the grant's health timeline counts of this refresh (None: nothing to count, e.g. not due); see
    # refresh_grant.
    timeline: history.Entry | None = None

    @property
    def failed(self) -> bool:
        return self.outcome in (RefreshOutcome.FAILED, RefreshOutcome.NEEDS_REAUTHORIZATION)


sleep = time.sleep  # the pause between token requests, a module attribute so tests can record it


def refresh_deadline() -> Deadline:
    return Deadline(app_settings.JIRA_REFRESH_DEADLINE)


def unreadable_message(account: Grant) -> str:
    return (
        f"The stored {', '.join(account.unreadable_secrets)} cannot be decrypted with the configured "
        "FIELD_ENCRYPTION_KEY; restore the key it was encrypted with, or click Get Auth Token."
    )


@sensitive_variables()
def put_tokens(account: Grant, tokens: TokenSet, *, now, scope_if_none: str) -> None:
    """Put a new pair from Jira on `account` (not saved)."""
    account.access_token = tokens.access_token.reveal()
    # None: a service account's token (client credentials), renewed by asking again.
    account.refresh_token = tokens.refresh_token.reveal() if tokens.refresh_token is not None else None
    account.token_expires_at = now + timedelta(seconds=tokens.expires_in)
    # Informational only: whatever Jira puts in `scope` must not stop a rotated pair from being stored.
    account.token_scope = explain.plain_text(tokens.scope, TOKEN_SCOPE_LENGTH) or scope_if_none


def refresh_account(*, account_id: int, actor: str, **options) -> RefreshResult:
    """Refresh an ALM account's own connection (see refresh_grant)."""
    return refresh_grant(grant=GrantRef("account", account_id), actor=actor, **options)


@sensitive_variables()
def refresh_grant(*, grant: GrantRef, actor: str, timeline_kept_by_caller: bool = False, **options) -> RefreshResult:
    """Refresh one grant's tokens under its row lock (see _refresh_grant for `options`).

    The refresh's entry of the health timeline (services.history) is written once its transaction has committed,
    unless `timeline_kept_by_caller`: then the caller writes result.timeline (the refresher: a hundred at a time).
    """
    result = _refresh_grant(grant=grant, actor=actor, **options)
    if result.timeline is not None and not timeline_kept_by_caller:
        history.write_or_log([result.timeline])
    return result


@sensitive_variables()
def _refresh_grant(
    *,
    grant: GrantRef,
    actor: str,
    due_within: timedelta | None = None,
    skip_locked: bool = False,
    unless_access_token_changed_from: str | None = None,
    admin_action: bool = False,
    read_along: ReadAlong | None = None,
) -> RefreshResult:
    """Refresh one grant's tokens under its row lock.

    `due_within=None` forces the refresh; otherwise the expiry is checked
    again after the lock is taken (another runner may just have refreshed).
    With `skip_locked`, an account locked by another runner is skipped.
    On SQLite the transaction starts with BEGIN IMMEDIATE (see settings),
    which serialises refreshes across processes instead of row locks.
    `admin_action`: an admin asked for it (Refresh token now): its success is written to the audit trail, where a
    routine success is only counted on the grant and logged (see _store_refreshed).
    `read_along`: the rows the grant's refresh reads along, already read by the caller (see GrantRef.locked).
    """
    deadline = refresh_deadline()
    rotated: tuple[TokenSet, Secret, str] | None = None  # Jira's new pair, the token it replaced, the name
    try:
        with own_transaction("A token refresh"):
            account = grant.locked(skip_locked=skip_locked, read_along=read_along)
            if account is None:
                return RefreshResult(grant.pk, f"#{grant.pk}", RefreshOutcome.BUSY if skip_locked else
                                     RefreshOutcome.NOT_CONNECTED, "no such grant" if not skip_locked else "",
                                     kind=grant.kind)
            name = grant_name(account)

            def result(outcome, message=""):
                return RefreshResult(account.pk, name, outcome, message, kind=grant.kind)

            kind = kind_of(account)
            if not kind.can_give_token(account):
                missing = "no service account credentials" if kind.by_client_credentials(account) else \
                    "no refresh token"
                return result(RefreshOutcome.NOT_CONNECTED, f"{missing}: {messages.reconnect_hint(account)}")
            if account.status == Status.NEEDS_REAUTHORIZATION:
                return result(RefreshOutcome.NOT_CONNECTED,
                              f"Jira no longer accepts its grant: {messages.reconnect_hint(account)}")
            if kind_of(account).is_inactive(account):
                return result(RefreshOutcome.NOT_CONNECTED, "the person is inactive: never refreshed or used")
            changed_from = unless_access_token_changed_from
            if changed_from is not None and account.access_token != changed_from:
                return result(RefreshOutcome.NOT_DUE, "refreshed meanwhile by another caller")
            if due_within is not None and not kind.is_due(account, within=due_within):
                return result(RefreshOutcome.NOT_DUE, expires_text(account))
            if account.unreadable_secrets:
                return _refresh_failed(account, actor, unreadable_message(account), RefreshOutcome.FAILED)
            if kind.by_client_credentials(account):
                # A service account: a new token asked for under the row lock (concurrent callers wait here and
                # find it stored); nothing rotates, so nothing needs writing again if the write fails.
                return _renew_by_client_credentials(account, actor, deadline=deadline, audited=admin_action)
            # Forced by a person (Refresh token now, --force); a 401's retry is product traffic, not forced.
            forced = due_within is None and changed_from is None
            if not client_refused.ask_jira(account, now=timezone.now(), forced=forced):
                return _client_refused(account, actor)

            sent = Secret(account.refresh_token)
            asked = time.monotonic()  # how long Jira took: the health timeline's latency (services.history)
            try:
                client = client_for(account.grant_account)
                waiting = rate_limits.token_endpoint_wait(client)
                if waiting:
                    return _rate_limited(account, None, actor=actor, waiting=waiting)
                tokens = _refresh_with_retries(client, refresh_token=sent,
                                               redirect_uri=account.callback_url, deadline=deadline,
                                               reuse_leeway=provider_for(account.grant_account).reuse_leeway)
            except ServiceError as exc:
                return _refresh_failed(account, actor, str(exc), RefreshOutcome.FAILED)
            except JiraOAuthError as exc:
                if client_refused.confirmed_by(account, exc):
                    client_refused.record(account, now=timezone.now())
                    return _client_refused(account, actor)
                took = time.monotonic() - asked
                if exc.error == "invalid_grant":
                    # Under the row lock nobody else can have used this refresh token: the grant is dead.
                    return _refresh_failed(account, actor, _refresh_advice(account, exc),
                                           RefreshOutcome.NEEDS_REAUTHORIZATION, status=Status.NEEDS_REAUTHORIZATION,
                                           latency=took)
                return _refresh_failed(account, actor, _refresh_advice(account, exc), RefreshOutcome.FAILED,
                                       status=Status.ERROR, latency=took)
            except JiraUnavailable as exc:
                if exc.rate_limited:
                    rate_limits.token_endpoint_refused(client, exc.limits)
                    return _rate_limited(account, exc, actor=actor)
                # Tokens untouched and status kept: the grant is most likely still alive.
                return _refresh_failed(account, actor, _refresh_advice(account, exc), RefreshOutcome.FAILED,
                                       latency=time.monotonic() - asked)

            rotated = (tokens, sent, name)
            # A forced refresh (Refresh token now, --force) or a 401's is asked for, not a keep-alive.
            return _store_refreshed(account, tokens, actor=actor, audited=admin_action,
                                    latency=time.monotonic() - asked, routine=due_within is not None)
    except DatabaseError as exc:
        if rotated is None:
            raise  # nothing was rotated: the grant is as it was
        tokens, sent, name = rotated
        return _store_rotated_pair_again(grant, name, tokens, sent, actor=actor, error=exc)


@sensitive_variables()
def _store_refreshed(account: Grant, tokens: TokenSet, *, actor: str, note: str = "",
                     audited: bool = False, latency: float | None = None, routine: bool = True) -> RefreshResult:
    """Store the new pair on the locked grant: one UPDATE of what changed (read under the lock, the other columns
    hold what the row holds). A routine success is counted on the grant
    (refresh_count, last_refreshed_at) and logged; the audit trail gets only what a person looks for there: a
    recovery (a success after a failure), an admin's refresh (`audited`), a write that had to be repeated (`note`).
    """
    now = timezone.now()
    recovered = account.failing_since is not None or account.status != Status.CONNECTED or bool(account.last_error)
    idle = account.last_used_at is None or account.last_used_at < now - selectors.active_within()
    kept_alive = routine and idle  # the refresher's refresh of an idle grant (selectors.due)
    outcome = {"status": Status.CONNECTED, "last_error": "", **alerts.after_success(account, now=now)}
    changed = [name for name, value in outcome.items() if getattr(account, name) != value]
    for name in changed:
        setattr(account, name, outcome[name])
    scope = account.token_scope
    put_tokens(account, tokens, now=now, scope_if_none=scope)
    if account.token_scope != scope:
        changed.append("token_scope")
    account.last_refreshed_at = now
    account.refresh_count += 1  # under the row lock: no other refresh of this grant can count meanwhile
    row_statements.store(account, TOKEN_FIELDS + changed)
    message = f"Token refreshed; {expires_text(account)}{note}."
    if recovered or audited or note:
        record_event(account, actor=actor, kind=Kind.REFRESHED, ok=True, message=message)
    _log_refresh(logging.INFO, account, RefreshOutcome.REFRESHED, message, actor=actor)
    return RefreshResult(account.pk, grant_name(account), RefreshOutcome.REFRESHED, message, kind=account.grant_kind,
                         kept_alive=kept_alive, timeline=history.entry(account, ok=True, recovered=recovered,
                                                                       kept_alive=kept_alive, latency=latency,
                                                                       now=now))


class WriteLost(Exception):
    """Tokens Jira issued could not be written to the database, even on fresh connections."""

    def __init__(self, failure: str, attempts: int):
        self.failure, self.attempts = failure, attempts
        super().__init__(f"{failure} after {attempts} attempts")


def write_again(grant: GrantRef, *, write, what: str, error: Exception, lock=None):
    """Jira issued new tokens but our write failed: the pair in memory is the grant. Write it again.

    The first transaction is gone with its connection (and its row lock), so
    each attempt runs on a fresh connection and locks the row again; `write`
    gets the locked account (None when it was deleted) and does the storing.
    `lock` replaces grant.locked when the write needs more rows locked, in the order the first attempt took
    them (a person's new grant: the account's row, then the credential's).
    Raises WriteLost when every attempt failed. Logs at CRITICAL, never a token.
    """
    failure = type(error).__name__
    log.critical("%s: Jira issued new tokens (%s) but storing them failed (%s); writing them again on "
                 "a fresh database connection.", grant, what, failure)
    for attempt, pause in enumerate(STORE_RETRY_PAUSES, start=2):
        time.sleep(pause)
        try:
            connection.close()  # the broken connection; the next query opens a fresh one
            with own_transaction(f"Storing tokens ({what})"):
                result = write((lock or grant.locked)())
            log.warning("%s: the new tokens (%s) were stored on attempt %s.", grant, what, attempt)
            return result
        except DatabaseError as exc:
            failure = type(exc).__name__
            log.critical("%s: storing the new tokens (%s) failed again (%s, attempt %s).",
                         grant, what, failure, attempt)
    raise WriteLost(failure, len(STORE_RETRY_PAUSES) + 1)


@sensitive_variables()
def _store_rotated_pair_again(grant: GrantRef, name: str, tokens: TokenSet, sent: Secret, *, actor: str,
                              error: Exception) -> RefreshResult:
    """See write_again. If the stored refresh token is still the one we sent, ours is the newest pair Jira
    issued (anyone who sent the old one meanwhile got invalid_grant and may have marked the account: ours
    wins). If it is another token, someone authorized anew meanwhile: theirs stays."""
    first_failure = type(error).__name__

    @sensitive_variables()
    def write(account: Grant | None) -> RefreshResult:
        if account is None:
            log.critical("%s was deleted before its rotated tokens could be stored.", grant)
            return RefreshResult(grant.pk, name, RefreshOutcome.FAILED, "it was deleted meanwhile", kind=grant.kind)
        if Secret(account.refresh_token or "") != sent:
            message = ("Jira rotated the tokens but they could not be stored, and the grant was authorized anew "
                       "meanwhile: the new authorization is kept.")
            record_event(account, actor=actor, kind=Kind.TOKENS_NOT_STORED, ok=False, message=message)
            return RefreshResult(account.pk, name, RefreshOutcome.FAILED, message, kind=grant.kind)
        return _store_refreshed(account, tokens, actor=actor,
                                note=f" (the first write failed with {first_failure} and was repeated)")

    try:
        return write_again(grant, write=write, what="refresh", error=error)
    except WriteLost as lost:
        message = (
            f"Jira rotated the tokens but the database did not accept them ({lost.failure}, {lost.attempts} "
            "attempts): the connection is lost. Authorize again (Get Auth Token, or Connect under My ALM "
            "Credentials)."
        )
        log.critical("%s: %s", grant, message)
        record_outside(grant, actor=actor, message=message)
        return RefreshResult(grant.pk, name, RefreshOutcome.FAILED, message, kind=grant.kind)


def record_outside(grant: GrantRef, *, actor: str, message: str, kind: str = Kind.TOKENS_NOT_STORED) -> None:
    """Best effort, on a fresh connection, outside the failed transaction: the database that refused the tokens
    may refuse this too (then the log has it).

    A lost refresh costs the grant (Jira rotated the old pair away): it needs re-authorization, and its
    "broken" alert is decided under the row lock like any other.
    """
    try:
        connection.close()
        with own_transaction("Recording lost tokens"):
            account = grant.locked()
            if account is not None:
                if kind == Kind.TOKENS_NOT_STORED:
                    status = Status.NEEDS_REAUTHORIZATION
                    mark(account, status=status, last_error=message,
                         **alerts.after_failure(account, now=timezone.now(), status=status, message=message))
                record_event(account, actor=actor, kind=kind, ok=False, message=message)
    except DatabaseError as exc:
        log.critical("%s: the failure could not be recorded either (%s).", grant, type(exc).__name__)


@sensitive_variables()
def _refresh_with_retries(client: JiraClient, *, refresh_token: Secret, redirect_uri: str,
                          deadline: Deadline, reuse_leeway: timedelta | None = None) -> TokenSet:
    """Retry only failures where Jira cannot have used the refresh token, within the deadline.

    A refresh that reached Jira but whose answer was lost (read timeout, broken
    connection, HTTP 500/504) may already have rotated the token. Jira Data
    Center then answers invalid_grant to the same token, which would cost the
    grant: not retried, the next run finds out. A provider with a reuse leeway
    (Jira Cloud: a replaced refresh token still works for a short while, but
    its reuse after that kills the whole token family) gets the same token
    once more, only while the lost attempt is well inside that leeway.
    Retried always: connections that were never made, and 429/502/503 (Jira or
    its proxy refused before processing).
    """
    pauses = list(app_settings.JIRA_RETRY_BACKOFF)
    reused = False
    while True:
        attempt_started = time.monotonic()  # the provider rotated, if at all, after this
        try:
            return client.refresh(refresh_token=refresh_token, redirect_uri=redirect_uri, deadline=deadline)
        except JiraUnavailable as exc:
            if exc.reached_jira and not exc.retryable:
                inside_leeway = (reuse_leeway is not None
                                 and time.monotonic() - attempt_started < reuse_leeway.total_seconds())
                if reused or not inside_leeway or not deadline.allows_pause(0):
                    raise
                reused = True
                log.warning("A token refresh answer was lost after it reached the token endpoint; sending the same "
                            "refresh token once more inside the provider's reuse leeway.")
                continue
            if not exc.retryable or not pauses:
                raise
            # A 429 says how long to wait (Retry-After, X-RateLimit-Reset): waited only within the deadline.
            pause = exc.retry_after if exc.rate_limited and exc.retry_after is not None else pauses[0]
            if not deadline.allows_pause(pause):
                raise
            pauses.pop(0)
            sleep(pause)


@sensitive_variables()
def _renew_by_client_credentials(account: ALMAccount, actor: str, *, deadline: Deadline,
                                 audited: bool) -> RefreshResult:
    """The locked service account's new token (services.service_accounts), stored like a refresh. A refused
    service account (deleted, disabled, secret changed) is broken at once (its alert), and keeps being checked: the
    next success is its recovery."""
    asked = time.monotonic()  # how long Jira took: the health timeline's latency (services.history)
    try:
        tokens = service_accounts.fetch_token(account, deadline=deadline)
    except service_accounts.ServiceAccountRefused as exc:
        return _refresh_failed(account, actor, str(exc), RefreshOutcome.FAILED, status=Status.ERROR,
                               reason=alerts.SERVICE_ACCOUNT_REFUSED, latency=time.monotonic() - asked)
    except ServiceError as exc:
        return _refresh_failed(account, actor, str(exc), RefreshOutcome.FAILED, latency=time.monotonic() - asked)
    return _store_refreshed(account, tokens, actor=actor, audited=audited, latency=time.monotonic() - asked)


def _refresh_failed(account, actor, message, outcome, *, status=None, reason="", latency=None) -> RefreshResult:
    """Record a failed refresh of the locked grant; raises its "broken" alert when due (services.alerts)."""
    fields = {"last_error": message}
    if status is not None:
        fields["status"] = status
    fields.update(alerts.after_failure(account, now=timezone.now(), status=status or account.status, message=message,
                                       reason=reason))
    mark(account, **fields)
    record_event(account, actor=actor, kind=Kind.REFRESH_FAILED, ok=False, message=message)
    _log_refresh(logging.ERROR if outcome == RefreshOutcome.NEEDS_REAUTHORIZATION else logging.WARNING,
                 account, outcome, message, actor=actor)
    return RefreshResult(account.pk, grant_name(account), outcome, message, kind=account.grant_kind,
                         timeline=history.entry(account, ok=False, latency=latency))


def _rate_limited(account: Grant, exc: JiraUnavailable | None, *, actor: str, waiting: float = 0.0) -> RefreshResult:
    """The token endpoint answered 429 (after the retries its deadline allowed), or did a short while ago and asked
    to be left alone meanwhile (`waiting`, nothing sent): a 429 never costs a refresh. The grant is left as it is
    (status, last error, failing clock, tokens); a 429 is counted for /metrics; logged."""
    if exc is None:
        message = (f"the token endpoint is rate limiting: it asked to be left alone {waiting:.0f} s more; nothing was "
                   "sent or changed, tried again later")
    else:
        rate_limits.count(account, exc.limits)
        which = messages.rate_limited(account, exc.limits)
        wait = exc.retry_after
        message = (f"the token endpoint is rate limiting ({which or 'HTTP 429'})"
                   + (f", asked to wait {wait:g} s" if wait is not None else "") + "; nothing was changed, tried "
                   "again later")
    _log_refresh(logging.WARNING, account, RefreshOutcome.RATE_LIMITED, message, actor=actor)
    return RefreshResult(account.pk, grant_name(account), RefreshOutcome.RATE_LIMITED, message,
                         kind=account.grant_kind)


def _client_refused(account: Grant, actor: str) -> RefreshResult:
    """The locked grant cannot be refreshed: Jira refuses its account's client (services.client_refused). Recorded
    once per grant (its last error, one event, its alert when due); later refreshes write nothing."""
    message = client_refused.words_for(account)
    result = RefreshResult(account.pk, grant_name(account), RefreshOutcome.CLIENT_REFUSED, message,
                           kind=account.grant_kind)
    if account.status == Status.ERROR and account.last_error == message:
        return result
    fields = {"last_error": message, "status": Status.ERROR}
    fields.update(alerts.after_failure(account, now=timezone.now(), status=Status.ERROR, message=message,
                                       reason=alerts.CLIENT_REFUSED))
    mark(account, **fields)
    record_event(account, actor=actor, kind=Kind.REFRESH_FAILED, ok=False, message=message)
    _log_refresh(logging.WARNING, account, RefreshOutcome.CLIENT_REFUSED, message, actor=actor)
    return result


def _log_refresh(level: int, grant: Grant, outcome: RefreshOutcome, message: str, *, actor: str) -> None:
    """One log line per refresh result: which grant, which account, the outcome (as extra fields too, for
    LOG_FORMAT=json, with who asked and the grant's count of refreshes) and the message (never a token).
    For a routine success this line is the only record besides the grant's own count."""
    account_id = grant.grant_account.pk
    log.log(level, "Token refresh of %s (%s): %s. %s", GrantRef.of(grant), grant_name(grant),
            outcome.value, message, extra={"grant_kind": grant.grant_kind, "grant_id": grant.pk,
                                           "account_id": account_id, "outcome": outcome.value,
                                           "actor": actor, "refresh_count": grant.refresh_count})


def _refresh_advice(grant: Grant, exc) -> str:
    return messages.refresh_failure(grant, exc)


def expires_text(account: Grant) -> str:
    if account.token_expires_at is None:
        return "expiry unknown"
    return f"expires {timezone.localtime(account.token_expires_at):%Y-%m-%d %H:%M:%S %Z}"


def accounts_identity_refusal(credential: ALMCredential, username: str) -> str:
    """Why such a credential gives no token, and what to do, in the words of every refusal (never a secret)."""
    account = credential.account
    who = credential.connected_as_display_name or credential.connected_as_name
    return (f"{username}'s own Jira connection on {account.name} is Jira user {who}, the one the account's own "
            "connection acts as: it is not used, so that nothing is done as the account's administrator for them. "
            "Nothing was sent; the account's connection is not used instead. Reconnect under My ALM Credentials "
            f"({account.name}) signed in to Jira as yourself (if {who} is you, an administrator must connect the "
            "account as another Jira user).")


@sensitive_variables()
def valid_access_token(*, account: Grant, actor: str = "system") -> str:
    """An access token of `account` (any grant) valid for at least a minute, refreshed under the row lock when due.

    Never the token of a person's credential that is the account's own Jira user (holds_accounts_identity): a
    ServiceError says why, before anything is refreshed or sent.
    """
    if kind_of(account).holds_accounts_identity(account):
        raise ServiceError(accounts_identity_refusal(account, account.grant_owner))
    token = account.access_token
    fresh = isinstance(token, str) and account.status == Status.CONNECTED and not is_due(
        account.token_expires_at, within=ACCESS_TOKEN_MIN_VALIDITY)
    # In use: kept fresh by the refresher. Written after the response, at most every few minutes (services.usage);
    # at once when a refresh follows anyway, so that the refresh sees the grant in use (not a keep-alive).
    usage.note_used(account, at_once=not fresh)
    if fresh:
        return token
    result = refresh_grant(grant=GrantRef.of(account), actor=actor, due_within=ACCESS_TOKEN_MIN_VALIDITY)
    account.refresh_from_db()
    return token_after(account, result)


@sensitive_variables()
def token_after(account: Grant, result: RefreshResult) -> str:
    """The access token an on-demand caller may use after `result`, or a ServiceError saying why not."""
    if account.status == Status.NEEDS_REAUTHORIZATION:
        # The dead grant's tokens are kept (nothing is deleted silently), but they must not be handed out.
        raise ServiceError(account.last_error
                           or f"Jira no longer accepts this grant: {messages.reconnect_hint(account)}.")
    if result.failed or result.outcome in (RefreshOutcome.CLIENT_REFUSED, RefreshOutcome.RATE_LIMITED):
        raise ServiceError(result.message[:1].upper() + result.message[1:] + "."
                           if result.outcome is RefreshOutcome.RATE_LIMITED else result.message)
    if account.unreadable_secrets:
        raise ServiceError(unreadable_message(account))
    if not isinstance(account.access_token, str):
        raise ServiceError(f"Not connected to Jira: {messages.reconnect_hint(account)}.")
    return account.access_token
