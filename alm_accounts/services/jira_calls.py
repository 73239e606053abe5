"""Calling Jira's REST API as a person (user-based sync), or as the ALM account's own connection.

`jira_request` decides who Jira sees acting, then makes the call with the
guarantees every caller needs:

- **Who acts.** `user` given: their own credential (ALMCredential) when they
  have connected it. A person who has not connected acts per the account's
  policy (`unconnected_users`): as the account's own connection ("account",
  the default) or not at all ("refuse": "Connect your Jira account under My
  ALM Credentials (<account>)"). `user=None`: the account's own connection.
  Refused whatever the policy, and nothing is sent:
    * an inactive (or deleted) person: their credential is never used, and
      they do not act as the account's connection either;
    * a person whose own credential is the Jira user the account's own
      connection acts as (stored before connecting as it was refused, or the
      account connected later as that person's Jira user): through it they
      would act as the account's administrator;
    * a person whose own credential needs re-authorization. Jira stopped
      accepting their grant (most often: their Jira user was deactivated, or
      the grant was revoked in Jira). Acting for them as the account's
      connection would let someone Jira shut out keep changing Jira under the
      admin's name, and would silently change who Jira records as the author.
      They reconnect under My ALM Credentials (one click) and act as
      themselves again.
- **A usable token.** A Bearer token valid for at least a minute
  (grants.valid_access_token); on a 401, one refresh of *that* grant under its
  row lock (a person's refresh token, never the account's) and one retry. The
  same for another answer the provider reads as a refused token
  (Provider.token_refused: Atlassian's gateway answers 403/404 too).
- **A path that cannot leave the Jira host**, checked before any token is
  read (JiraClient.rest_url).
- **Bounded retries.** At most MAX_ATTEMPTS attempts, all within one time
  budget (REQUEST_BUDGET_SECONDS, connecting, reading and pauses together):
    * 429: Jira refused before doing anything, so any method is retried after
      Jira's Retry-After (seconds or a date; else X-RateLimit-Reset; else the
      backoff); a wait longer than MAX_RETRY_AFTER_SECONDS is not waited for:
      the error says how long Jira asked for, and which limit (Atlassian's
      RateLimit-Reason). An answer near the limit paces the next calls to that
      host and app (services.rate_limits); both are counted for /metrics.
    * 502/503/504, a read timeout, a connection broken mid-answer: retried with
      JIRA_RETRY_BACKOFF only for GET, HEAD and OPTIONS. POST, PUT
      and DELETE are not retried once they may have reached Jira: Jira's PUT
      /issue accepts "update" operations such as adding a comment, which a
      second attempt would do twice, and a DELETE that was carried out answers
      a retry with 404, an error about something that succeeded. A caller
      that knows its POST is a read (POST /rest/api/2/search) says
      `idempotent=True`.
    * A connection that was never made (refused, DNS, connect timeout, the
      egress proxy): nothing reached Jira, so any method is retried.
- **One kind of error.** Every failure is a JiraRequestError (a ServiceError)
  whose message names the call and the identity: "as Jira user Alice Jones
  (alice's own connection)" or "as the account's connection (Jira Admin)".
  It carries Jira's status and messages. No message ever holds a secret.

`iter_jira_pages` walks Jira's paged lists; `jira_identity` says who would act; `grant_request` makes the
same call with one given grant (a screen about that grant itself: Test).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .. import messages
from ..conf import app_settings
from ..jira import (
    Deadline,
    DeadlineExceeded,
    InvalidPath,
    JiraClient,
    JiraError,
    JiraRESTError,
    JiraUnauthorized,
    JiraUnavailable,
    Secret,
)
from ..kinds import NOT_THEIR_OWN_JIRA_USER, holds_accounts_identity, jira_name, kind_of
from ..models import ALMAccount, ALMCredential, Grant
from ..providers import provider_for
from . import rate_limits
from .common import ServiceError, Status, client_for
from .grants import (
    GrantRef,
    accounts_identity_refusal,
    refresh_grant,
    token_after,
    valid_access_token,
)

# Methods that change nothing in Jira: a second attempt after a failure Jira may have seen is harmless.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
METHODS = SAFE_METHODS | {"POST", "PUT", "DELETE", "PATCH"}
# Attempts per call for 429, 5xx and connection failures (the retry after a 401 and a refresh is extra).
MAX_ATTEMPTS = 3
# The longest Retry-After we wait for; Jira asking for longer is reported instead of waited out.
MAX_RETRY_AFTER_SECONDS = 30.0
# Everything one call may take: attempts, reads and pauses (not a token refresh, which has its own deadline).
REQUEST_BUDGET_SECONDS = 120.0
# Pages iter_jira_pages reads at most, unless told otherwise: a Jira that always says "more" must not loop forever.
MAX_PAGES = 1000
MAX_PAGE_SIZE = 1000

sleep = time.sleep  # a module attribute, so tests can record the waits
now = timezone.now  # our clock for "is this token expired?", a module attribute so tests can move it


class JiraRequestError(ServiceError):
    """A call to Jira that did not succeed, in words to show as they are (never a secret).

    `status` is Jira's HTTP status (None when Jira gave none), `messages` Jira's own error messages,
    `identity` who the call was made as, `sent` whether anything may have reached Jira, `jira_error` the
    client's own error when there was one (its message holds no secret either).
    """

    def __init__(self, message: str, *, identity: str = "", status: int | None = None,
                 messages: tuple[str, ...] = (), retry_after: float | None = None, sent: bool = True,
                 attempts: int = 0, jira_error: JiraError | None = None):
        super().__init__(message)
        self.jira_error = jira_error
        self.identity = identity
        self.status = status
        self.messages = messages
        self.retry_after = retry_after
        self.sent = sent
        self.attempts = attempts


class NoJiraIdentity(JiraRequestError):
    """Nobody may act in Jira for this person (inactive, policy "refuse", a grant Jira stopped accepting)."""


class InvalidJiraPath(JiraRequestError, InvalidPath):
    """A path that could leave the Jira host, or no path at all: nothing was read or sent."""


@dataclass(frozen=True)
class JiraIdentity:
    """Who Jira sees acting: a person's own credential, or the account's connection."""

    grant: Grant
    description: str  # "as Jira user Alice Jones (alice's own connection)", "as the account's connection (...)"

    @property
    def is_own_credential(self) -> bool:
        return kind_of(self.grant).is_persons_own


def jira_identity(*, account: ALMAccount, user=None) -> JiraIdentity:
    """Who would act in Jira for `user` on `account` (see the module docstring); NoJiraIdentity when nobody may."""
    if user is None:
        return JiraIdentity(account, describe_grant(account))
    credential = (ALMCredential.objects.select_related("account", "user")
                  .filter(account_id=account.pk, user_id=user.pk).first())
    username = user.get_username()
    active = credential.user.is_active if credential is not None else (
        get_user_model()._default_manager.filter(pk=user.pk).values_list("is_active", flat=True).first())
    if not active:
        state = "no longer exists" if active is None else "is inactive"
        raise NoJiraIdentity(
            f"{username} {state}: nothing is done in Jira on their behalf on {account.name} (their own connection is "
            "never used, and they do not act as the account's connection either).", identity=username, sent=False)
    if credential is not None and holds_accounts_identity(credential):
        raise _accounts_identity_refused(credential, username)
    if credential is not None and credential.status == Status.NEEDS_REAUTHORIZATION:
        if credential.last_error.startswith(NOT_THEIR_OWN_JIRA_USER):
            raise NoJiraIdentity(
                f"{username}'s own Jira connection on {account.name} is not used: {credential.last_error} Nothing "
                "was sent; the account's connection is not used instead.", identity=username, sent=False)
        raise NoJiraIdentity(
            f"{username}'s own Jira connection on {account.name} (Jira user {jira_name(credential)}) needs "
            f"re-authorization: Jira no longer accepts it. Reconnect under My ALM Credentials ({account.name}). "
            "Nothing was sent; the account's connection is not used instead, so nothing is done in Jira under "
            "another name for someone Jira has stopped accepting.", identity=username, sent=False)
    if credential is not None and (credential.refresh_token is not None or credential.access_token is not None) \
            and credential.status != Status.NOT_CONNECTED:
        return JiraIdentity(credential, describe_grant(credential))
    if account.unconnected_users == ALMAccount.UnconnectedUsers.REFUSE:
        raise NoJiraIdentity(
            f"{username} has not connected their own Jira account, and {account.name} does not act for people "
            f"without one. Connect your Jira account under My ALM Credentials ({account.name}).",
            identity=username, sent=False)
    return JiraIdentity(account, f"as the account's connection ({jira_name(account)}; {username} has not connected "
                                 "their own Jira account)")


def _accounts_identity_refused(credential: ALMCredential, username: str) -> NoJiraIdentity:
    return NoJiraIdentity(accounts_identity_refusal(credential, username), identity=username, sent=False)


@sensitive_variables()
def jira_request(*, account: ALMAccount, method: str, path: str, user=None, json=None, params=None,
                 actor: str = "system", idempotent: bool | None = None, deadline: Deadline | None = None):
    """Jira's parsed answer to `method path` (None when it has no body), acting as `user` or the account.

    See the module docstring for who acts, the retries and the errors (always a JiraRequestError).
    `idempotent` overrides the method's own rule for retries after a failure Jira may have seen;
    `deadline` replaces the budget of REQUEST_BUDGET_SECONDS. Call it outside a transaction: a refresh
    commits Jira's rotated tokens at once (NestedTransactionError otherwise).
    """
    call = _Call.prepare(account, method, path)  # the path is checked before any token is read
    return call.send(jira_identity(account=account, user=user), json=json, params=params, actor=actor,
                     idempotent=idempotent, deadline=deadline)


@sensitive_variables()
def grant_request(*, grant: Grant, method: str, path: str, json=None, params=None, actor: str = "system",
                  idempotent: bool | None = None, deadline: Deadline | None = None):
    """As jira_request, with this one grant whatever the account's policy: for a screen or command about that
    grant itself (Test on a person's own connection, Test connection on the account). An inactive person's
    credential is refused all the same."""
    call = _Call.prepare(grant.grant_account, method, path)
    kind = kind_of(grant)
    if kind.is_inactive(grant):
        raise NoJiraIdentity(f"{grant.grant_owner} is inactive: their own Jira connection is never used.",
                             identity=grant.grant_owner, sent=False)
    if kind.holds_accounts_identity(grant):
        raise _accounts_identity_refused(grant, grant.grant_owner)
    return call.send(JiraIdentity(grant, describe_grant(grant)), json=json, params=params, actor=actor,
                     idempotent=idempotent, deadline=deadline)


def describe_grant(grant: Grant) -> str:
    """Who Jira sees acting with this grant, in the words every error uses."""
    return kind_of(grant).acting(grant)


@dataclass(frozen=True)
class _Call:
    """One call to Jira, checked (method, the account's client, the path) before anyone's token is read."""

    account: ALMAccount
    client: JiraClient
    verb: str
    path: str
    what: str  # "GET /rest/api/2/myself on Jira - Core Banking": how messages name the call

    @classmethod
    def prepare(cls, account: ALMAccount, method: str, path: str) -> _Call:
        verb = str(method).upper()
        what = f"{verb} {str(path).split('?', 1)[0][:200]} on {account.name}"
        if verb not in METHODS:
            raise JiraRequestError(f"{what}: {str(method)[:20]!r} is not an HTTP method Jira's REST API takes "
                                   f"({', '.join(sorted(METHODS))}); nothing was sent.", sent=False)
        try:
            client = client_for(account)
        except ServiceError as exc:
            raise JiraRequestError(f"{what} failed: {exc} Nothing was sent.", sent=False) from None
        try:
            client.rest_url(path)  # a path that could leave Jira never gets a token
        except InvalidPath as exc:
            raise InvalidJiraPath(f"{what} refused: {exc}", sent=False) from None
        except JiraError as exc:  # e.g. a Jira Cloud account whose site is not known yet
            raise JiraRequestError(f"{what} failed: {exc}. Nothing was sent.", sent=False) from None
        return cls(account, client, verb, path, what)

    def failure(self, identity: JiraIdentity, reason: str, *, error: JiraError | None = None, sent: bool = True,
                attempts: int = 0, status: int | None = None) -> JiraRequestError:
        which_limit = messages.rate_limited(identity.grant, getattr(error, "limits", None)) \
            if getattr(error, "rate_limited", False) else ""
        if which_limit:
            reason += f" [{which_limit}]"
        return JiraRequestError(
            f"{self.what}, {identity.description}, failed: {reason}", identity=identity.description,
            status=status or getattr(error, "status", None), messages=getattr(error, "messages", ()), sent=sent,
            attempts=attempts, retry_after=getattr(error, "retry_after", None), jira_error=error)

    @sensitive_variables()
    def send(self, identity: JiraIdentity, *, json, params, actor: str, idempotent: bool | None,
             deadline: Deadline | None):
        grant = identity.grant
        try:
            token = valid_access_token(account=grant, actor=actor)
        except ServiceError as exc:
            raise self.failure(identity, f"no usable access token: {_grant_problem(grant, exc)} Nothing was sent.",
                               sent=False) from None

        budget = deadline or Deadline(REQUEST_BUDGET_SECONDS)
        may_repeat = self.verb in SAFE_METHODS if idempotent is None else idempotent
        refreshed = False
        attempt = 1
        observe = rate_limits.observer(grant, self.client)
        while True:
            pace = rate_limits.pacing_pause(self.client, budget)
            if pace:
                sleep(pace)  # the host (and app) said it is near its limit: calls are spaced, within the budget
            try:
                return self.client.request(self.verb, self.path, access_token=Secret(token), json=json, params=params,
                                           deadline=budget, on_limits=observe)
            except JiraUnauthorized as exc:
                if refreshed:
                    raise self.failure(identity, "Jira refused the access token (HTTP 401) again, right after it "
                                       f"was refreshed; {messages.reconnect_hint(grant)}.", error=exc, attempts=attempt,
                                       status=401) from None
                refreshed = True
                token = self._token_after_401(identity, token, actor=actor)
            except JiraUnavailable as exc:
                if not refreshed and self._token_refused(grant, exc):
                    refreshed = True  # as a 401: one refresh, one retry; a second such answer is Jira's answer
                    token = self._token_after_401(identity, token, actor=actor, status=exc.status)
                    continue
                pause, why_not = _retry_pause(exc, may_repeat=may_repeat, attempt=attempt, budget=budget,
                                              verb=self.verb)
                if pause is None:
                    raise self.failure(identity, _reason(exc) + (f" ({why_not})" if why_not else ""), error=exc,
                                       sent=exc.reached_jira, attempts=attempt) from None
                sleep(pause)
                attempt += 1

    @staticmethod
    def _token_refused(grant: Grant, exc: JiraUnavailable) -> bool:
        """An answer other than 401 that the provider reads as "this access token is expired or invalid"."""
        if not isinstance(exc, JiraRESTError):
            return False
        expired = grant.token_expires_at is not None and grant.token_expires_at <= now()
        return provider_for(grant.grant_account).token_refused(exc.status, exc.messages, expired=expired)

    @sensitive_variables()
    def _token_after_401(self, identity: JiraIdentity, token: str, *, actor: str, status: int = 401) -> str:
        """Jira refused `token` (revoked, or rotated away by a refresh elsewhere): refresh this grant once.

        Unless another caller has replaced the token meanwhile (then theirs is used, and Jira is not asked
        twice).
        """
        grant = identity.grant
        result = refresh_grant(grant=GrantRef.of(grant), actor=actor, unless_access_token_changed_from=token)
        grant.refresh_from_db()
        try:
            return token_after(grant, result)
        except ServiceError as exc:
            raise self.failure(identity, f"Jira refused the access token (HTTP {status}) and it could not be "
                               f"refreshed: {_grant_problem(grant, exc)}", status=status) from None


def _grant_problem(grant: Grant, exc: ServiceError) -> str:
    """Why a grant gave no token, with what its owner does about it: a person reconnects their own connection
    (the refresh's own words name the admin's Get Auth Token, which is not theirs to click)."""
    return messages.grant_problem(grant, str(exc))


def _retry_pause(exc: JiraUnavailable, *, may_repeat: bool, attempt: int, budget: Deadline,
                 verb: str) -> tuple[float | None, str]:
    """How long to wait before the next attempt, or (None, why not retried; "" when retrying makes no sense)."""
    if isinstance(exc, DeadlineExceeded):
        return None, ""
    backoff = list(app_settings.JIRA_RETRY_BACKOFF)
    rate_limited = isinstance(exc, JiraRESTError) and exc.status == 429
    if rate_limited:
        pass  # refused before Jira did anything: any method
    elif not exc.reached_jira:
        if not exc.retryable:
            return None, ""  # e.g. a TLS certificate Jira will not change between attempts
    elif isinstance(exc, JiraRESTError) and not exc.retryable:
        return None, ""  # Jira's own answer (400, 403, 404, 500...): the same request gets the same answer
    elif not may_repeat:
        return None, f"not retried: a {verb} that reached Jira may have been carried out"
    if attempt >= MAX_ATTEMPTS:
        return None, f"gave up after {attempt} attempts"
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        if retry_after > MAX_RETRY_AFTER_SECONDS:
            return None, (f"Jira asks to wait {retry_after:g} s before trying again, longer than the "
                          f"{MAX_RETRY_AFTER_SECONDS:g} s this call waits; try again later")
        pause = retry_after
    elif attempt - 1 < len(backoff):
        pause = backoff[attempt - 1]
    else:
        return None, f"gave up after {attempt} attempts"
    if not budget.allows_pause(pause):
        return None, f"gave up after {attempt} attempts: the call's {budget.seconds:g} s budget is spent"
    return pause, ""


def _reason(exc: JiraUnavailable) -> str:
    if isinstance(exc, JiraRESTError):
        return f"Jira answered HTTP {exc.status}" + (f" ({'; '.join(exc.messages)[:300]})" if exc.messages else "")
    return str(exc)


def iter_jira_pages(*, account: ALMAccount, path: str, user=None, params: dict | None = None,
                    items_key: str = "values", page_size: int = 50, actor: str = "system",
                    max_pages: int = MAX_PAGES) -> Iterator:
    """The items of one of Jira's paged lists, page after page (GET `path`, each page a jira_request).

    Pages are asked for with `startAt` / `maxResults`; Jira may send fewer than asked (it caps
    maxResults), so the next page starts after the items actually received. The list ends when Jira
    says `isLast` (agile and newer endpoints), when `total` items have been read (search: items_key
    "issues"), or at an empty page. Reading more than `max_pages` pages raises a JiraRequestError
    (after yielding them): a Jira that always says "more" must not keep us reading forever.
    """
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
    query = dict(params or {})
    start = int(query.pop("startAt", 0))
    query.pop("maxResults", None)
    for _ in range(max_pages):
        page = jira_request(account=account, method="GET", path=path, user=user, actor=actor,
                            params={**query, "startAt": start, "maxResults": page_size})
        items = page.get(items_key) if isinstance(page, dict) else None
        if not isinstance(items, list):
            keys = ", ".join(sorted(str(k) for k in page)[:10]) if isinstance(page, dict) else type(page).__name__
            raise JiraRequestError(f"GET {path.split('?', 1)[0]} on {account.name}: Jira's answer has no list "
                                   f"{items_key!r} to page through (it has: {keys or 'nothing'}).")
        yield from items
        if not items or page.get("isLast") is True:
            return
        start += len(items)
        total = page.get("total")
        if isinstance(total, int) and not isinstance(total, bool) and start >= total:
            return
    raise JiraRequestError(
        f"GET {path.split('?', 1)[0]} on {account.name}: stopped after {max_pages} pages ({start} items), Jira still "
        "says there are more. Narrow the query, or pass a larger max_pages if the list really is that long.")
