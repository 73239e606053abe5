"""Issue 10 hardening: what our own side must never do, whatever the caller, the database or Jira does.

Each test here fails on the code before the hardening (alm_accounts/jira.py and the services module, then one
file, of the commit "Models for hardening"); where that is not obvious from the assertions, a comment says how.

- REST paths that could leave the Jira host are refused before anything is sent.
- Frames of alm_accounts/jira.py never show a secret to an error reporter (Sentry's frame capture, Django's
  error pages and mails), even when Jira fails while the secrets are in play.
- Refresh, code exchange and disconnect refuse to run as a savepoint of a caller's transaction.
- One deadline bounds a refresh: a slow Jira, retries of an unreachable one, a Jira dripping its answer.
- A failed re-authorization of a working connection keeps it.
- Callback and key messages say what happened, in an administrator's words.
- Tokens Jira rotated are written again when the first database write fails.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
from cryptography.fernet import Fernet
from django.db import DEFAULT_DB_ALIAS, OperationalError, connection, connections, transaction
from django.http import QueryDict
from django.utils import timezone
from django.views.debug import ExceptionReporter

from alm_accounts import jira, services
from alm_accounts.jira import JiraClient, Secret
from alm_accounts.models import ALMAccount, AuthEvent, PendingAuthorization
from tests.conftest import (
    ACCESS_TOKEN,
    CLIENT_SECRET,
    JIRA,
    MYSELF_URL,
    REFRESH_TOKEN,
    REVOKE_URL,
    TOKEN_URL,
    query_of,
    token_answer,
)
from tests.doubles.servers import free_port

Status = ALMAccount.Status
Outcome = services.RefreshOutcome

# Distinctive secrets of the code exchange, so that a leak can be searched for (see the frame tests).
AUTH_CODE = "AUTHCODE-5c1d9e0f7a"
PKCE_VERIFIER = "PKCEVERIFIER-0b7e6d5c4a3f"
NEW_ACCESS_TOKEN = token_answer(2)["access_token"]
NEW_REFRESH_TOKEN = token_answer(2)["refresh_token"]
EVERY_SECRET = [CLIENT_SECRET, ACCESS_TOKEN, REFRESH_TOKEN, NEW_ACCESS_TOKEN, NEW_REFRESH_TOKEN, AUTH_CODE,
                PKCE_VERIFIER]
REDIRECT_URI = "http://testserver/alm/oauth/callback/cb"
JIRA_PY = Path(jira.__file__).resolve()


def stored(account: ALMAccount) -> ALMAccount:
    return ALMAccount.objects.get(pk=account.pk)


def connect_to(account: ALMAccount, base_url: str, access: str, refresh: str) -> ALMAccount:
    """Make `account` a working connection to the Jira at `base_url` with this pair."""
    now = timezone.now()
    account.base_url = base_url
    account.access_token, account.refresh_token = access, refresh
    account.token_expires_at = now + timedelta(minutes=5)
    account.status = Status.CONNECTED
    account.connected_at = now
    account.save()
    return account


# --------------------------------------------------------------------------
# 1. REST paths: only a path on the account's own Jira
# --------------------------------------------------------------------------

# Each would change the scheme, host or port, or is no path at all. The old code built base_url + path and
# sent the Bearer token there: "@evil.example/x" after a host without a context path is a user name, the host
# is evil.example.
REFUSED_PATHS = [
    "@evil.example/x",
    "//evil.example/x",
    "http://evil.example/x",
    "/x\\@evil",  # WHATWG parsers (browsers, some proxies) read "\" as "/"
    " /x",
    "/x#y",
    "",
    "/x\r\nHost: evil",  # header injection
    "/x\t",
    None,
    b"/rest/api/2/myself",
    42,
]


@pytest.mark.parametrize("path", REFUSED_PATHS, ids=repr)
def test_jira_request_refuses_a_path_that_could_leave_jira_before_anything_is_sent(connected_account, mocked_jira,
                                                                                   path):
    # Due for a refresh: the old code refreshed (a call to Jira, a rotated token) before it even looked at the path.
    ALMAccount.objects.filter(pk=connected_account.pk).update(token_expires_at=timezone.now() - timedelta(minutes=1))
    mocked_jira.must_not_be_asked(mocked_jira.post(TOKEN_URL, json=token_answer()))

    with pytest.raises(jira.InvalidPath, match="nothing was sent"):
        services.jira_request(account=stored(connected_account), method="GET", path=path)

    assert len(mocked_jira.calls) == 0
    after = stored(connected_account)
    assert (after.access_token, after.refresh_token) == (ACCESS_TOKEN, REFRESH_TOKEN)  # not refreshed either


# (base URL, path): a Jira without a context path is where most of these would have left the host.
@pytest.mark.parametrize("base_url, path", [
    ("https://jira.example.com", "@evil.example/x"),
    ("https://jira.example.com", ".evil.example/x"),  # https://jira.example.com.evil.example/x
    ("https://jira.example.com", ":8443/x"),
    ("https://jira.example.com", "//evil.example/x"),
    ("https://jira.example.com:8443/jira", "@evil.example:8443/x"),
    (JIRA, "/x\\@evil"),
    (JIRA, "/x\nHost: evil"),
    # requests resolves dot segments: these would leave Jira's context path (/jira) for another app on the host.
    (JIRA, "/../admin/x"),
    (JIRA, "/rest/api/2/%2e%2e/%2E%2E/../x"),
    (JIRA, "/rest/./api/2/myself"),
], ids=repr)
def test_jira_client_refuses_off_host_paths_and_sends_nothing(mocked_jira, base_url, path):
    client = JiraClient(base_url, "client-id", CLIENT_SECRET)
    with pytest.raises(jira.InvalidPath):
        client.get(path, access_token=Secret(ACCESS_TOKEN))
    assert len(mocked_jira.calls) == 0  # the old code sent the Bearer token (to evil.example for the first two)
    with pytest.raises(jira.InvalidPath):
        client.rest_url(path)


@pytest.mark.parametrize("path", ["/rest/api/2/myself?expand=groups", "/rest/api/2/issue/ABC-1"])
def test_normal_paths_go_to_the_jira_host_with_its_context_path(connected_account, mocked_jira, path):
    # Positive control for the refusals above (they must not refuse everything). On the old code it fails
    # only because JiraClient.rest_url did not exist; the GET itself worked there too.
    url = JIRA + path
    assert JiraClient(JIRA, "client-id", CLIENT_SECRET).rest_url(path) == url
    mocked_jira.get(url.split("?")[0], json={"ok": path})

    assert services.jira_request(account=stored(connected_account), method="GET", path=path) == {"ok": path}

    [call] = mocked_jira.calls
    assert call.request.url == url
    assert call.request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"


# --------------------------------------------------------------------------
# 2. Frames of jira.py hide their secrets from error reporters
# --------------------------------------------------------------------------


def sentry_strings(value, depth: int = 0):
    """Every string Sentry's frame capture would record for a local variable.

    Like sentry_sdk's serializer: a mapping gives its keys and values, a list/tuple/set its items, a string
    itself, anything else its repr() (Sentry does not descend into an object's __dict__).
    """
    if depth > 20:
        yield repr(value)
    elif isinstance(value, str):
        yield value
    elif isinstance(value, (bytes, bytearray)):
        yield value.decode("utf-8", errors="replace")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from sentry_strings(key, depth + 1)
            yield from sentry_strings(item, depth + 1)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from sentry_strings(item, depth + 1)
    else:
        yield repr(value)


def reported_frames(exc: BaseException):
    """The frames an error reporter walks: the traceback, then the cause (or the unsuppressed context)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        tb = exc.__traceback__
        while tb is not None:
            yield tb.tb_frame
            tb = tb.tb_next
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)


def sentry_capture(exc: BaseException, *, only_file: Path | None) -> tuple[str, set[str]]:
    """What Sentry would record of the locals of the reported frames (of `only_file`), and their functions."""
    texts, functions = [], set()
    for frame in reported_frames(exc):
        if only_file is not None and Path(frame.f_code.co_filename).resolve() != only_file:
            continue
        functions.add(frame.f_code.co_name)
        for name, value in frame.f_locals.items():
            texts.append(name)
            texts.extend(sentry_strings(value))
    return "\n".join(texts), functions


def django_reports(exc: BaseException) -> tuple[str, str]:
    """Django's error report (DEBUG page, error mail) as text and as HTML; only the HTML has the locals."""
    reporter = ExceptionReporter(None, type(exc), exc, exc.__traceback__)
    return reporter.get_traceback_text(), reporter.get_traceback_html()


def failure_of(call) -> BaseException:
    # The traceback starts here: this frame's locals are `call` and the exception, never a secret.
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - any failure is what the test inspects
        return exc
    raise AssertionError("the call did not fail")


def jira_client() -> JiraClient:
    return JiraClient(JIRA, "client-id-123", CLIENT_SECRET)


# Each scenario: (set up Jira's answer, the call that fails, the jira.py functions it fails through). Secrets
# are passed as module constants, so no frame of this file holds one in a local variable.
def broken_token_answer(rsps):
    # A valid-looking answer with both new tokens, refused for its expires_in: the old _token_set held the
    # parsed body (a dict) and the tokens as plain strings in its frame.
    rsps.post(TOKEN_URL, json={**token_answer(2), "expires_in": "never"})
    return (lambda: jira_client().refresh(refresh_token=Secret(REFRESH_TOKEN), redirect_uri=REDIRECT_URI),
            {"refresh", "_token_request", "_token_set"})


def exchange_connection_broken(rsps):
    # The old _post and _token_request held the form (code, verifier, client secret) as a plain dict.
    rsps.post(TOKEN_URL, body=requests.ConnectionError("connection reset by peer"))
    return (lambda: jira_client().exchange_code(code=Secret(AUTH_CODE), redirect_uri=REDIRECT_URI,
                                                code_verifier=Secret(PKCE_VERIFIER)),
            {"exchange_code", "_token_request", "_post"})


def oversized_token_answer(rsps):
    # The tokens come first, so they would be within any reporter's length limit; the old _read_json held
    # the whole raw body in a local.
    body = json.dumps(token_answer(2))[:-1] + ', "padding": "' + "x" * (jira.MAX_BODY_BYTES + 10) + '"}'
    rsps.post(TOKEN_URL, body=body, content_type="application/json")
    return (lambda: jira_client().refresh(refresh_token=Secret(REFRESH_TOKEN), redirect_uri=REDIRECT_URI),
            {"refresh", "_token_request", "_read_json"})


def rest_get_timed_out(rsps):
    # The old get() held the access token as a plain str argument.
    rsps.get(MYSELF_URL, body=requests.ReadTimeout("read timed out"))
    return (lambda: jira_client().get(jira.MYSELF_PATH, access_token=Secret(ACCESS_TOKEN)), {"get"})


def revoke_connection_broken(rsps):
    # The old revoke() held the token and the client secret in its form dict.
    rsps.post(REVOKE_URL, body=requests.ConnectionError("connection reset by peer"))
    return (lambda: jira_client().revoke(token=Secret(REFRESH_TOKEN), token_type_hint="refresh_token"),
            {"revoke", "_post"})


@pytest.mark.parametrize("scenario", [broken_token_answer, exchange_connection_broken, oversized_token_answer,
                                      rest_get_timed_out, revoke_connection_broken], ids=lambda f: f.__name__)
def test_frames_of_jira_py_never_show_a_secret_to_error_reporters(db, mocked_jira, scenario):
    call, expected_functions = scenario(mocked_jira)
    exc = failure_of(call)
    assert isinstance(exc, jira.JiraError), exc  # Jira's failure, not a bug of the test

    captured, functions = sentry_capture(exc, only_file=JIRA_PY)
    assert expected_functions <= functions  # the frames that held the secrets were really inspected
    text, html = django_reports(exc)
    assert "Local vars" in html
    leaks = {where: [secret for secret in EVERY_SECRET if secret in shown]
             for where, shown in (("Sentry", captured), ("Django text", text), ("Django HTML", html))}
    assert leaks == {"Sentry": [], "Django text": [], "Django HTML": []}


def leaky(value):
    # A plain local holding a secret, as the old jira.py had them.
    raise RuntimeError("failed while holding a secret")


def test_the_frame_inspection_finds_a_secret_held_in_a_plain_local(db):
    """Positive control: the serializer and Django's reports above would show a leaked secret."""
    exc = failure_of(lambda: leaky(REFRESH_TOKEN))
    captured, functions = sentry_capture(exc, only_file=Path(__file__).resolve())
    assert "leaky" in functions
    assert REFRESH_TOKEN in captured
    assert REFRESH_TOKEN in sentry_capture(
        failure_of(lambda: leaky({"form": [("refresh_token", REFRESH_TOKEN)]})), only_file=None)[0]
    text, html = django_reports(exc)
    assert REFRESH_TOKEN in html  # Django's HTML report (DEBUG page, error mail) lists every frame's locals
    assert "leaky" in text  # the text report has the frames but no locals: there, only messages could leak


# --------------------------------------------------------------------------
# 3. Never a savepoint of a caller's transaction
# --------------------------------------------------------------------------

NESTED = "must not run inside a database transaction"


def test_refresh_inside_a_callers_transaction_is_refused_and_sends_nothing(connected_account, mocked_jira):
    mocked_jira.post(TOKEN_URL, json=token_answer())

    with pytest.raises(services.NestedTransactionError, match=NESTED), transaction.atomic():
        services.refresh_account(account_id=connected_account.pk, actor="test")
    assert len(mocked_jira.calls) == 0
    assert stored(connected_account).refresh_token == REFRESH_TOKEN

    # Positive control: outside a transaction (pytest-django's own test transaction is allowed) it refreshes.
    result = services.refresh_account(account_id=connected_account.pk, actor="test")
    assert result.outcome is Outcome.REFRESHED
    assert stored(connected_account).refresh_token == NEW_REFRESH_TOKEN


def start(account: ALMAccount, user) -> tuple[dict, str]:
    """Get Auth Token: the admin's session and the state Jira will send back."""
    session = {}
    url = services.start_authorization(account=account, user=user, session=session)
    return session, query_of(url)["state"]


def callback(account: ALMAccount, user, session: dict, **params) -> services.CallbackOutcome:
    """Jira's redirect to the account's callback URL with these query parameters."""
    return services.complete_authorization(callback_id=account.callback_id, query=QueryDict(urlencode(params)),
                                           user=user, session=session)


def test_code_exchange_inside_a_callers_transaction_is_refused_and_sends_nothing(account, admin_user, mocked_jira):
    mocked_jira.post(TOKEN_URL, json=token_answer())
    mocked_jira.get(MYSELF_URL, json={"name": "jadmin", "displayName": "Jira Admin"})
    session, state = start(account, admin_user)

    with pytest.raises(services.NestedTransactionError, match=NESTED), transaction.atomic():
        callback(account, admin_user, session, state=state, code=AUTH_CODE)
    assert len(mocked_jira.calls) == 0
    assert stored(account).refresh_token is None

    # Positive control: the same callback outside a transaction connects.
    session, state = start(account, admin_user)
    assert callback(account, admin_user, session, state=state, code=AUTH_CODE).ok
    assert stored(account).status == Status.CONNECTED


def test_disconnect_inside_a_callers_transaction_is_refused_and_sends_nothing(connected_account, mocked_jira):
    mocked_jira.post(REVOKE_URL, status=200)

    with pytest.raises(services.NestedTransactionError, match=NESTED), transaction.atomic():
        services.disconnect(account=stored(connected_account), actor="test")
    assert len(mocked_jira.calls) == 0
    assert stored(connected_account).refresh_token == REFRESH_TOKEN

    # Positive control: outside a transaction it disconnects.
    services.disconnect(account=stored(connected_account), actor="test")
    assert stored(connected_account).refresh_token is None


# --------------------------------------------------------------------------
# 4. One deadline per refresh
# --------------------------------------------------------------------------


def test_a_slow_jira_cannot_hold_a_refresh_past_its_deadline(settings, account, fake_jira):
    settings.JIRA_REFRESH_DEADLINE = 1
    access, refresh = fake_jira.add_grant("slow", redirect_uri=account.callback_url, client_id=account.client_id,
                                          client_secret=CLIENT_SECRET)
    connect_to(account, fake_jira.base_url, access, refresh)
    fake_jira.latency = 3  # Jira answers the token request after 3 s

    started = time.monotonic()
    result = services.refresh_account(account_id=account.pk, actor="test")
    elapsed = time.monotonic() - started

    # The old code waited for Jira (read timeout 30 s) and stored the pair: REFRESHED after 3 s.
    assert result.outcome is Outcome.FAILED
    assert "1 s deadline" in result.message
    assert elapsed < 3  # it gave up before Jira's answer came
    after = stored(account)
    assert (after.access_token, after.refresh_token, after.status) == (access, refresh, Status.CONNECTED)


def test_retries_of_an_unreachable_jira_stay_within_the_deadline(settings, account, monkeypatch):
    port = free_port()  # nothing listens there: connection refused, the one failure that is retried
    connect_to(account, f"http://127.0.0.1:{port}/jira", ACCESS_TOKEN, REFRESH_TOKEN)
    attempts = []
    real_refresh = JiraClient.refresh

    def counted_refresh(self, **kwargs):
        attempts.append(time.monotonic())
        return real_refresh(self, **kwargs)

    monkeypatch.setattr(JiraClient, "refresh", counted_refresh)

    # Control: with short pauses and time to spare, an unreachable Jira is still tried again.
    settings.JIRA_RETRY_BACKOFF = [0.1, 0.1]
    settings.JIRA_REFRESH_DEADLINE = 10
    assert services.refresh_account(account_id=account.pk, actor="test").outcome is Outcome.FAILED
    assert len(attempts) == 3

    # Pauses of 5 s do not fit in a 2 s deadline: one attempt, no sleeping. The old code made three attempts
    # and slept 10 s while holding the row lock.
    attempts.clear()
    settings.JIRA_RETRY_BACKOFF = [5, 5]
    settings.JIRA_REFRESH_DEADLINE = 2
    started = time.monotonic()
    result = services.refresh_account(account_id=account.pk, actor="test")
    elapsed = time.monotonic() - started

    assert result.outcome is Outcome.FAILED
    assert "could not be reached" in result.message
    assert len(attempts) == 1
    assert elapsed < 4  # well under one 5 s pause
    assert stored(account).refresh_token == REFRESH_TOKEN


class DrippingJira:
    """A Jira that answers a token request with a valid token answer, one byte every `interval` seconds.

    Every byte arrives well within any read timeout, so only a deadline over the whole answer stops it.
    """

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.stopped = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.base_url = f"http://127.0.0.1:{self.server.getsockname()[1]}/jira"
        self.body = json.dumps(token_answer(2)).encode()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def seconds(self) -> float:
        return len(self.body) * self.interval

    def _serve(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket):
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(65536)
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(self.body)
            try:
                conn.sendall(head)
                for byte in self.body:
                    if self.stopped.is_set():
                        return
                    conn.sendall(bytes([byte]))
                    time.sleep(self.interval)
            except OSError:
                return  # the client gave up

    def close(self):
        self.stopped.set()
        self.thread.join()
        self.server.close()


@pytest.fixture
def dripping_jira():
    jira_ = DrippingJira()
    yield jira_
    jira_.close()


def test_a_jira_dripping_its_answer_cannot_hold_a_refresh_past_its_deadline(settings, connected_account,
                                                                           dripping_jira):
    settings.JIRA_REFRESH_DEADLINE = 1
    connect_to(connected_account, dripping_jira.base_url, ACCESS_TOKEN, REFRESH_TOKEN)
    assert dripping_jira.seconds > 10

    started = time.monotonic()
    result = services.refresh_account(account_id=connected_account.pk, actor="test")
    elapsed = time.monotonic() - started

    # The old code read the answer to its end (each byte within the 30 s read timeout) and stored the pair.
    assert result.outcome is Outcome.FAILED
    assert "1 s deadline" in result.message
    assert elapsed < 4  # the answer takes over 10 s
    after = stored(connected_account)
    assert (after.access_token, after.refresh_token, after.status) == (ACCESS_TOKEN, REFRESH_TOKEN, Status.CONNECTED)


def test_an_answer_complete_when_the_deadline_ends_is_still_used(fake_jira):
    # Jira has rotated and its whole answer is here: throwing it away because the deadline ended while it was
    # being read would cost the grant (the refresh token sent is dead at Jira now).
    _, refresh = fake_jira.add_grant("edge", redirect_uri=REDIRECT_URI, client_id="client-id-123",
                                     client_secret=CLIENT_SECRET)
    client = JiraClient(fake_jira.base_url, "client-id-123", CLIENT_SECRET)

    class EndsOnceSent(jira.Deadline):
        """Runs out the moment the request has got its timeouts: Jira's whole answer is read after it."""

        sent = False

        def timeout(self, timeout):
            timeouts = super().timeout(timeout)
            self.sent = True
            return timeouts

        def remaining(self) -> float:
            return 0.0 if self.sent else super().remaining()

    tokens = client.refresh(refresh_token=Secret(refresh), redirect_uri=REDIRECT_URI, deadline=EndsOnceSent(5))

    assert fake_jira.refreshes["edge"] == 1
    assert tokens.refresh_token == Secret(fake_jira.current_tokens("edge")[1])


# --------------------------------------------------------------------------
# 5. A failed re-authorization keeps a working connection
# --------------------------------------------------------------------------

KEPT = "The existing connection is kept"


def assert_connection_kept(account: ALMAccount, outcome) -> None:
    after = stored(account)
    assert after.status == Status.CONNECTED
    assert (after.access_token, after.refresh_token) == (ACCESS_TOKEN, REFRESH_TOKEN)
    assert not outcome.ok
    assert KEPT in outcome.message
    assert AuthEvent.objects.filter(account=account, kind=AuthEvent.Kind.AUTHORIZATION_FAILED,
                                    outcome=AuthEvent.Outcome.FAILED).exists()


def test_deny_on_reauthorization_keeps_the_working_connection(connected_account, admin_user, mocked_jira):
    session, state = start(connected_account, admin_user)

    outcome = callback(connected_account, admin_user, session, state=state, error="access_denied")

    # The old code kept the status here too, but told the admin only that Jira refused.
    assert_connection_kept(connected_account, outcome)
    assert len(mocked_jira.calls) == 0


def test_failed_code_exchange_on_reauthorization_keeps_the_working_connection(connected_account, admin_user,
                                                                               mocked_jira):
    mocked_jira.post(TOKEN_URL, status=401, json={"error": "invalid_client"})
    session, state = start(connected_account, admin_user)

    outcome = callback(connected_account, admin_user, session, state=state, code=AUTH_CODE)

    # The old code set the status to Error: the working connection looked broken.
    assert_connection_kept(connected_account, outcome)
    assert "invalid_client" in outcome.message

    # Positive control: an account that is not connected yet does go to Error.
    new = ALMAccount.objects.create(name="Jira - New", base_url=JIRA, client_id="client-id-9",
                                    client_secret=CLIENT_SECRET)
    session, state = start(new, admin_user)
    outcome = callback(new, admin_user, session, state=state, code=AUTH_CODE)
    assert not outcome.ok
    assert KEPT not in outcome.message
    assert stored(new).status == Status.ERROR


# --------------------------------------------------------------------------
# 6. Messages
# --------------------------------------------------------------------------


def test_an_empty_error_does_not_override_a_valid_code(account, admin_user, mocked_jira):
    mocked_jira.post(TOKEN_URL, json=token_answer())
    mocked_jira.get(MYSELF_URL, json={"name": "jadmin", "displayName": "Jira Admin"})
    session, state = start(account, admin_user)

    outcome = callback(account, admin_user, session, state=state, code=AUTH_CODE, error="")

    assert outcome.ok, outcome.message
    assert stored(account).status == Status.CONNECTED


@pytest.mark.parametrize("error", ["", "  "])
def test_an_empty_error_without_a_code_says_neither_came(account, admin_user, mocked_jira, error):
    session, state = start(account, admin_user)

    outcome = callback(account, admin_user, session, state=state, error=error)

    assert not outcome.ok
    assert "neither an authorization code nor an error" in outcome.message
    assert "Jira said" not in outcome.message
    assert len(mocked_jira.calls) == 0


@pytest.mark.parametrize("error", ["", "  "])
def test_a_missing_state_with_an_empty_error_never_reads_jira_said_nothing(account, admin_user, error):
    with pytest.raises(services.CallbackRejected) as rejected:
        callback(account, admin_user, {}, error=error)
    assert "it has no state" in str(rejected.value)
    assert "Jira said" not in str(rejected.value)

    # Control: Jira's error is quoted when there is one.
    with pytest.raises(services.CallbackRejected, match=r"\(Jira said: access_denied\)"):
        callback(account, admin_user, {}, error="access_denied")


def test_a_state_ttl_under_a_minute_is_said_in_seconds(settings, account, admin_user):
    settings.OAUTH_STATE_TTL_SECONDS = 30

    with pytest.raises(services.CallbackRejected) as unknown:
        callback(account, admin_user, {}, state="no-such-state", code=AUTH_CODE)
    assert "older than 30 seconds" in str(unknown.value)

    session, state = start(account, admin_user)
    PendingAuthorization.objects.update(created_at=timezone.now() - timedelta(seconds=31))
    with pytest.raises(services.CallbackRejected) as expired:
        callback(account, admin_user, session, state=state, code=AUTH_CODE)
    assert "took longer than 30 seconds" in str(expired.value)

    assert "0 minutes" not in str(unknown.value) + str(expired.value)


def test_an_access_token_that_cannot_be_decrypted_is_reported_as_a_key_problem(settings, connected_account,
                                                                               mocked_jira):
    # A caller loaded the account while its access token was readable; then another process, configured with
    # a key this one lacks (a key rotation rolled out to the refresher first), refreshed it: Jira now refuses
    # the caller's token (401) and the stored one cannot be decrypted here.
    loaded_earlier = stored(connected_account)
    own_keys = settings.FIELD_ENCRYPTION_KEY
    settings.FIELD_ENCRYPTION_KEY = [Fernet.generate_key().decode()]
    ALMAccount.objects.filter(pk=connected_account.pk).update(access_token=NEW_ACCESS_TOKEN)
    settings.FIELD_ENCRYPTION_KEY = own_keys
    mocked_jira.get(MYSELF_URL, status=401, json={"errorMessages": ["You are not authenticated."]})
    mocked_jira.must_not_be_asked(mocked_jira.post(TOKEN_URL, json=token_answer(3)))  # no refresh: unreadable pair

    # The old code said "refreshed meanwhile by another caller": nothing an admin could act on.
    with pytest.raises(services.ServiceError, match="FIELD_ENCRYPTION_KEY") as after_401:
        services.jira_request(account=loaded_earlier, method="GET", path=jira.MYSELF_PATH)
    assert "refreshed meanwhile" not in str(after_401.value)
    assert [call.request.method for call in mocked_jira.calls] == ["GET"]  # no refresh with an unreadable pair

    # Loaded now, the unreadable token is never sent at all.
    with pytest.raises(services.ServiceError, match="FIELD_ENCRYPTION_KEY") as loaded_now:
        services.jira_request(account=stored(connected_account), method="GET", path=jira.MYSELF_PATH)
    assert "refreshed meanwhile" not in str(loaded_now.value)
    assert len(mocked_jira.calls) == 1


# --------------------------------------------------------------------------
# 7. Jira rotated, our database write failed: the pair is written again
# --------------------------------------------------------------------------


def fail_token_writes(monkeypatch, *, times: int) -> list[int]:
    """Make the database fail with OperationalError (a killed connection) the UPDATE that stores an account's token
    pair, on this connection and the fresh ones that replace it (the wrapper stays with the thread's connection)."""
    failures = []
    table = connection.ops.quote_name(ALMAccount._meta.db_table)

    def killed(execute, sql, params, many, context):
        if sql.startswith(f"UPDATE {table} SET") and '"access_token"' in sql and len(failures) < times:
            failures.append(1)
            raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    wrapped = connections[DEFAULT_DB_ALIAS]  # the thread's connection itself: the proxy has no attributes to restore
    monkeypatch.setattr(wrapped, "execute_wrappers", [*wrapped.execute_wrappers, killed])
    return failures


def assert_no_secret_logged(caplog) -> None:
    logged = caplog.text + "\n".join(f"{record.getMessage()} {record.args!r}" for record in caplog.records)
    for secret in EVERY_SECRET:
        assert secret not in logged


def critical_records(caplog, account: ALMAccount) -> list[logging.LogRecord]:
    return [record for record in caplog.records
            if record.levelno == logging.CRITICAL and f"ALM account {account.pk}" in record.getMessage()]


# write_again closes the database connection: outside pytest-django's test transaction only.
@pytest.mark.django_db(transaction=True)
def test_rotated_pair_is_written_again_when_the_first_write_fails(connected_account, mocked_jira, monkeypatch,
                                                                  caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django")
    mocked_jira.post(TOKEN_URL, json=token_answer(2))
    failures = fail_token_writes(monkeypatch, times=1)

    result = services.refresh_account(account_id=connected_account.pk, actor="test")

    # The old code let the OperationalError escape: Jira's new pair was gone, the old one dead at Jira.
    assert failures == [1]
    assert result.outcome is Outcome.REFRESHED, result.message
    after = stored(connected_account)
    assert (after.access_token, after.refresh_token, after.status) == (NEW_ACCESS_TOKEN, NEW_REFRESH_TOKEN,
                                                                       Status.CONNECTED)
    assert len(mocked_jira.calls) == 1  # the pair in memory was stored; Jira was not asked again
    assert critical_records(caplog, connected_account)
    assert_no_secret_logged(caplog)
    for secret in EVERY_SECRET:
        assert secret not in result.message


@pytest.mark.django_db(transaction=True)
def test_rotated_pair_that_cannot_be_written_at_all_marks_the_account_and_says_so(connected_account, mocked_jira,
                                                                                  monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django")
    # (On the old code there was nothing to retry: the OperationalError escaped, as in the test above.)
    monkeypatch.setattr("alm_accounts.services.grants.STORE_RETRY_PAUSES", (0.0, 0.0, 0.0))
    mocked_jira.post(TOKEN_URL, json=token_answer(2))
    failures = fail_token_writes(monkeypatch, times=100)

    result = services.refresh_account(account_id=connected_account.pk, actor="test")

    assert len(failures) == 4  # the first write and three more, each on a fresh connection
    assert result.outcome is Outcome.FAILED
    assert "Get Auth Token" in result.message
    after = stored(connected_account)
    # Jira rotated the stored pair away: the account says so instead of blaming Jira on the next run.
    assert after.status == Status.NEEDS_REAUTHORIZATION
    assert after.last_error == result.message
    event = AuthEvent.objects.get(account=connected_account, kind=AuthEvent.Kind.TOKENS_NOT_STORED)
    assert event.outcome == AuthEvent.Outcome.FAILED
    assert critical_records(caplog, connected_account)
    assert_no_secret_logged(caplog)
    for secret in EVERY_SECRET:
        assert secret not in result.message
        assert secret not in event.message
