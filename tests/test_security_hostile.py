"""Hostile and broken input: malformed callbacks, random query strings, bad base URLs, broken Jira answers.

Each time: no 500, a clear message, and no account changed (or, for Jira's
answers, no token half-stored).
"""

from __future__ import annotations

import html
import json
import string
from datetime import timedelta
from urllib.parse import urlencode, urlsplit

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from alm_accounts.models import ALMAccount, PendingAuthorization
from tests.conftest import (
    ACCESS_TOKEN,
    MYSELF_URL,
    REFRESH_TOKEN,
    TOKEN_URL,
    change_url,
    query_of,
    token_answer,
)


def callback_path(account) -> str:
    return urlsplit(account.callback_url).path


def snapshot() -> list[dict]:
    """Every account row with its secrets decrypted."""
    return [
        {**row, "secrets": (a.client_secret, a.access_token, a.refresh_token)}
        for row, a in zip(ALMAccount.objects.order_by("pk").values(), ALMAccount.objects.order_by("pk"), strict=True)
    ]


def start(client, account) -> str:
    response = client.post(change_url(account), {
        "alm_type": "jira", "name": account.name, "authentication": "jira_server_oauth2",
        "base_url": account.base_url, "client_id": account.client_id, "client_secret": "", "scope": account.scope,
        "_get_auth_token": "Get Auth Token"})
    assert response.status_code == 302, response.content.decode()[:2000]
    return query_of(response["Location"])["state"]


def shown(client, response) -> str:
    """The text the admin reads after `response`: the error page, or the page the redirect leads to."""
    if response.status_code == 302:
        assert response["Location"].startswith("/admin/"), response["Location"]
        response = client.get(response["Location"])
    return html.unescape(response.content.decode())


# --------------------------------------------------------------------------
# The callback: a table of malformed requests
# --------------------------------------------------------------------------


class Ctx:
    def __init__(self, client, account, other_account, admin_user):
        self.client, self.account, self.other_account, self.admin_user = client, account, other_account, admin_user
        self.state = start(client, account)

    @property
    def path(self) -> str:
        return callback_path(self.account)


@pytest.fixture
def ctx(admin_client, account, admin_user, db):
    other = ALMAccount.objects.create(name="Jira - Payments", base_url="https://jira2.example.com",
                                      client_id="cid-2", client_secret="OTHER-SECRET-1")
    return Ctx(admin_client, account, other, admin_user)


def other_accounts_state(c: Ctx) -> dict:
    return {"code": "CODE-1", "state": start(c.client, c.other_account)}


def other_sessions_state(c: Ctx) -> dict:
    other = Client()
    other.force_login(c.admin_user)
    return {"code": "CODE-1", "state": start(other, c.account)}


def replayed_state(c: Ctx) -> dict:
    first = c.client.get(c.path, {"error": "access_denied", "state": c.state})
    assert first.status_code == 302
    c.client.get(first["Location"])  # read the first message
    return {"code": "CODE-1", "state": c.state}


def expired_state(c: Ctx) -> dict:
    PendingAuthorization.objects.update(created_at=timezone.now() - timedelta(hours=1))
    return {"code": "CODE-1", "state": c.state}


UNKNOWN_ACCOUNT = "This callback URL does not belong to any ALM account."
NO_STATE = "Jira's answer cannot be matched to an authorization you started: it has no state"
# (id, request: (method, path or None for the account's, query) built from the ctx, status, message)
CALLBACK_CASES = [
    ("no parameters", lambda c: {}, 302, NO_STATE),
    ("code without state", lambda c: {"code": "CODE-1"}, 302, NO_STATE),
    ("error without state", lambda c: {"error": "access_denied"}, 302, NO_STATE + " (Jira said: access_denied)"),
    ("state without code or error", lambda c: {"state": c.state}, 302,
     "Jira's answer has neither an authorization code nor an error."),
    ("empty code", lambda c: {"state": c.state, "code": ""}, 302,
     "Jira's answer has neither an authorization code nor an error."),
    ("repeated state", lambda c: {"code": "CODE-1", "state": [c.state, c.state]}, 302,
     "Jira's answer carries the parameter 'state' more than once."),
    ("repeated code", lambda c: {"code": ["CODE-1", "CODE-2"], "state": c.state}, 302,
     "Jira's answer carries the parameter 'code' more than once."),
    ("repeated error", lambda c: {"error": ["access_denied", "x"], "state": c.state}, 302,
     "Jira's answer carries the parameter 'error' more than once."),
    ("oversized state", lambda c: {"code": "CODE-1", "state": "s" * 5000}, 302,
     "Jira's answer carries an oversized 'state' parameter."),
    ("oversized code", lambda c: {"code": "c" * 100_000, "state": c.state}, 302,
     "Jira's answer carries an oversized 'code' parameter."),
    ("oversized error", lambda c: {"error": "e" * 1000, "state": c.state}, 302,
     "Jira's answer carries an oversized 'error' parameter."),
    ("oversized error_description", lambda c: {"error": "access_denied", "error_description": "d" * 50_000,
                                               "state": c.state}, 302,
     "Jira's answer carries an oversized 'error_description' parameter."),
    ("non-ASCII state", lambda c: {"code": "CODE-1", "state": "zustand-äöü-状态"}, 302,
     "Jira's answer carries a 'state' parameter that is not plain ASCII."),
    ("non-ASCII code", lambda c: {"code": "cödé-ü", "state": c.state}, 302,
     "Jira's answer carries a 'code' parameter that is not plain ASCII."),
    ("control characters in state", lambda c: {"code": "CODE-1", "state": "\x00\r\n\t"}, 302,
     "Jira's answer does not match any authorization in progress"),
    ("unknown state", lambda c: {"code": "CODE-1", "state": "S" * 43}, 302,
     "Jira's answer does not match any authorization in progress"),
    ("state of another account", other_accounts_state, 302,
     "Jira's answer belongs to an authorization of another ALM account."),
    ("state of another session", other_sessions_state, 302,
     "This authorization was started in another browser session or by another user; finish it there."),
    ("replay", replayed_state, 302, "This answer from Jira was already used"),
    ("expired", expired_state, 302, "The authorization took longer than 10 minutes and expired."),
    ("unknown callback id", lambda c: ("get", "/oauth/jira/callback/AAAAAAAAAAAAAAAAAAAAAA/",
                                       {"code": "CODE-1", "state": c.state}), 400, UNKNOWN_ACCOUNT),
    ("malformed callback id", lambda c: ("get", "/oauth/jira/callback/%3Cscript%3Ealert(1)%3C%3E'%22;--/",
                                         {"code": "CODE-1", "state": c.state}), 400, UNKNOWN_ACCOUNT),
    ("path traversal in callback id", lambda c: ("get", "/oauth/jira/callback/..%2F..%2Fadmin/",
                                                 {"code": "CODE-1", "state": c.state}), 404, "Not Found"),
    ("non-ASCII callback id", lambda c: ("get", "/oauth/jira/callback/%C3%A4%C3%B6%C3%BC-%E7%8A%B6%E6%80%81/",
                                         {"code": "CODE-1", "state": c.state}), 400, UNKNOWN_ACCOUNT),
    ("oversized callback id", lambda c: ("get", f"/oauth/jira/callback/{'A' * 5000}/",
                                         {"code": "CODE-1", "state": c.state}), 400, UNKNOWN_ACCOUNT),
    ("POST instead of GET", lambda c: ("post", None, {"code": "CODE-1", "state": c.state}), 405,
     "This address only receives Jira's redirect"),
    ("PUT instead of GET", lambda c: ("put", None, {"code": "CODE-1", "state": c.state}), 405,
     "This address only receives Jira's redirect"),
    ("HEAD instead of GET", lambda c: ("head", None, {"code": "CODE-1", "state": c.state}), 405, ""),
]


@pytest.mark.parametrize("build, status, message", [case[1:] for case in CALLBACK_CASES],
                         ids=[case[0] for case in CALLBACK_CASES])
def test_malformed_callback_requests(ctx, mocked_jira, build, status, message):
    mocked_jira.must_not_be_asked(mocked_jira.post(TOKEN_URL, json=token_answer()))  # no code is ever exchanged
    spec = build(ctx)
    method, path, query = spec if isinstance(spec, tuple) else ("get", None, spec)
    path = path or ctx.path
    before = snapshot()

    if method == "get":
        response = ctx.client.get(path, query)
    else:  # the parameters both in the URL and in the body
        response = getattr(ctx.client, method)(f"{path}?{urlencode(query, doseq=True)}", query)

    assert response.status_code == status
    if method == "head":
        assert response["Allow"] == "GET"
    else:
        text = shown(ctx.client, response)
        assert message in text
        assert "CODE-1" not in text
    assert snapshot() == before
    assert ALMAccount.objects.get(pk=ctx.account.pk).refresh_token is None
    assert len(mocked_jira.calls) == 0  # no code was ever exchanged


def test_head_or_post_do_not_use_up_the_authorization(ctx, mocked_jira):
    """A link previewer's HEAD (or a stray POST) must not spend the one-time state."""
    for method in ("head", "post"):
        assert getattr(ctx.client, method)(f"{ctx.path}?code=CODE-1&state={ctx.state}").status_code == 405
    mocked_jira.post(TOKEN_URL, json=token_answer())
    mocked_jira.get(MYSELF_URL, json={"name": "jadmin", "displayName": "Jira Admin"})
    response = ctx.client.get(ctx.path, {"code": "CODE-1", "state": ctx.state})
    assert "Connected to Jira as Jira Admin" in shown(ctx.client, response)


def test_jira_error_parameters_are_shown_escaped(ctx, mocked_jira):
    response = ctx.client.get(ctx.path, {"error": "<script>alert(1)</script>",
                                         "error_description": "<img src=x onerror=alert(2)> – Zugriff verweigert",
                                         "state": ctx.state})
    assert response.status_code == 302
    raw = ctx.client.get(response["Location"]).content.decode()
    assert "<script>alert(1)</script>" not in raw and "<img src=x" not in raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in raw
    assert "Zugriff verweigert" in raw
    assert len(mocked_jira.calls) == 0


# --------------------------------------------------------------------------
# The callback: random query strings (hypothesis)
# --------------------------------------------------------------------------


@pytest.fixture
def hostile_states(ctx):
    """States that exist but must be refused: used, another account's, expired; and the snapshot to keep."""
    used = start(ctx.client, ctx.account)
    ctx.client.get(ctx.path, {"error": "access_denied", "state": used})
    other = start(ctx.client, ctx.other_account)
    expired = start(ctx.client, ctx.account)
    PendingAuthorization.objects.filter(used_at__isnull=True).exclude(account=ctx.other_account).update(
        created_at=timezone.now() - timedelta(hours=1))
    return [used, other, expired]


PARAM_NAMES = st.sampled_from(["code", "state", "error", "error_description", "Code", "state[]", "", "code "])
VALUES = st.one_of(st.text(max_size=60), st.text(alphabet=string.printable, min_size=400, max_size=6000),
                   st.sampled_from(["access_denied", "invalid_scope", "%00", "%ZZ", "&&==", "ä", "\ud7ff"]))


@hypothesis_settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=150, deadline=None,
                     database=None)
@given(data=st.data())
def test_random_query_strings_never_fail_and_change_nothing(ctx, hostile_states, mocked_jira, data):
    if not hasattr(ctx, "before"):
        ctx.before = snapshot()
        ctx.pending = list(PendingAuthorization.objects.order_by("pk").values())
    kind = data.draw(st.sampled_from(["pairs", "raw"]))
    if kind == "pairs":
        names = data.draw(st.lists(st.one_of(PARAM_NAMES, st.text(max_size=10)), max_size=6))
        pairs = [(name, data.draw(st.one_of(VALUES, st.sampled_from(hostile_states)))) for name in names]
        response = ctx.client.get(f"{ctx.path}?{urlencode(pairs)}")
    else:
        raw = data.draw(st.text(max_size=300))
        response = ctx.client.get(f"{ctx.path}?{raw}")

    assert response.status_code == 302, response.status_code
    assert response["Location"] == change_url(ctx.account)
    page = ctx.client.get(response["Location"]).content.decode()
    assert '<li class="error">' in page  # a message, shown as an error
    assert snapshot() == ctx.before
    assert list(PendingAuthorization.objects.order_by("pk").values()) == ctx.pending  # nothing used up
    assert len(mocked_jira.calls) == 0


# --------------------------------------------------------------------------
# The form: base URLs
# --------------------------------------------------------------------------


BAD_BASE_URLS = [
    ("javascript:alert(1)", "Enter the Jira base URL starting with https://"),
    ("JavaScript:alert(document.cookie)//https://jira.example.com", "Enter the Jira base URL starting with https://"),
    ("data:text/html,<script>alert(1)</script>", "Enter the Jira base URL starting with https://"),
    ("jira.example.com/jira", "Enter the Jira base URL starting with https://"),
    ("//jira.example.com/jira", "Enter the Jira base URL starting with https://"),
    ("ftp://jira.example.com", "Enter the Jira base URL starting with https://"),
    ("https://", "Enter the Jira base URL starting with https://"),
    ("https://user:pass@jira.example.com/jira", "Do not put a user name or password in the Jira base URL."),
    ("https://user@jira.example.com", "Do not put a user name or password in the Jira base URL."),
    ("https://jira.example.com/jira?os_authType=basic", "must not contain a query"),
    ("https://jira.example.com/jira#/projects", "must not contain a query (?…) or a fragment (#…)"),
    ("https://jira.example.com/ji ra", "must not contain spaces or control characters"),
    ("https://jira.exa\tmple.com", "must not contain spaces or control characters"),
    ("https://jira.example.com/ji\u00a0ra", "must not contain spaces or control characters"),
    ("https://jira.example.com/ji\u2028ra", "must not contain spaces or control characters"),
    ("https://jira.example.com/" + "a" * 600, "at most 500 characters"),
    ("https://jira_example!.com", "The host name in the Jira base URL is not valid."),
    ("https://jïra.example.com", "The host name in the Jira base URL is not valid."),
    ("https://jira.example.com:99999", "Enter the Jira base URL as https://host[:port][/context-path]."),
    ("https://jira.example.com:0", "The port in the Jira base URL is not valid."),
    ("http://jira.example.com/jira", "Jira requires https:// for OAuth 2.0"),
]


@pytest.mark.parametrize("base_url, message", BAD_BASE_URLS, ids=[u[:40] for u, _ in BAD_BASE_URLS])
def test_bad_base_urls_are_refused_with_a_field_error(admin_client, base_url, message):
    add_url = reverse("admin:alm_accounts_almaccount_add")
    page = admin_client.get(add_url)
    form = page.context["adminform"].form
    response = admin_client.post(add_url, {
        "alm_type": "jira", "name": "Jira - Hostile", "authentication": "jira_server_oauth2", "base_url": base_url,
        "client_id": "cid", "client_secret": "TYPED-SECRET-123", "scope": "ADMIN",
        "callback_url": form["callback_url"].value(), "_save": "Save"})

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["base_url"], errors
    assert any(message in error for error in errors["base_url"]), errors["base_url"]
    assert html.escape(message, quote=True) in response.content.decode() or message in html.unescape(
        response.content.decode())
    assert "TYPED-SECRET-123" not in response.content.decode()
    assert not ALMAccount.objects.exists()


@pytest.mark.parametrize("field, value, message", [
    ("name", "N" * 201, "at most 200 characters"),
    ("name", "   ", "This field is required."),
    ("client_id", "c" * 256, "at most 255 characters"),
    ("client_secret", "s" * 1001, "at most 1000 characters"),
    ("client_secret", "SECRET WITH SPACES", "The Client Secret must not contain spaces"),
    ("client_secret", "SECRET\tTAB", "The Client Secret must not contain spaces"),
    ("scope", "READ WRITE", "Select a valid choice."),
    ("scope", "read:jira-work", "Select a valid choice."),
], ids=["long name", "blank name", "long client id", "long secret", "secret with spaces", "secret with tab",
        "two scopes", "cloud scope"])
def test_other_bad_values_get_a_field_error(admin_client, field, value, message):
    add_url = reverse("admin:alm_accounts_almaccount_add")
    form = admin_client.get(add_url).context["adminform"].form
    data = {"alm_type": "jira", "name": "Jira - Hostile", "authentication": "jira_server_oauth2",
            "base_url": "https://jira.example.com/jira", "client_id": "cid", "client_secret": "S-1",
            "scope": "ADMIN", "callback_url": form["callback_url"].value(), "_save": "Save"}
    response = admin_client.post(add_url, {**data, field: value})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == [field], errors
    assert any(message in error for error in errors[field]), errors[field]
    if field == "client_secret":
        assert value not in response.content.decode()  # never echoed back
    assert not ALMAccount.objects.exists()


def test_a_good_base_url_is_accepted_and_normalised(admin_client):
    add_url = reverse("admin:alm_accounts_almaccount_add")
    form = admin_client.get(add_url).context["adminform"].form
    response = admin_client.post(add_url, {
        "alm_type": "jira", "name": "Jira - Fine", "authentication": "jira_server_oauth2",
        "base_url": "  https://jira.example.com:8443/jira/  ", "client_id": "cid", "client_secret": "S-1",
        "scope": "ADMIN", "callback_url": form["callback_url"].value(), "_save": "Save"})
    assert response.status_code == 302
    assert ALMAccount.objects.get().base_url == "https://jira.example.com:8443/jira"


# --------------------------------------------------------------------------
# Jira's answers at the token endpoint
# --------------------------------------------------------------------------


def tokens(**changes) -> dict:
    answer = {**token_answer(), **changes}
    return {k: v for k, v in answer.items() if v is not ...}


# (id, responses.add keyword arguments, what the admin reads)
BAD_TOKEN_ANSWERS = [
    ("not JSON", {"body": "access_token=abc&expires_in=3600", "content_type": "text/plain"},
     "Jira's token endpoint did not answer with JSON"),
    ("HTML error page", {"status": 500, "body": "<html><body><h1>HTTP Status 500 – Internal Server Error</h1>"
                         "</body></html>", "content_type": "text/html"}, "Jira's token endpoint answered HTTP 500"),
    ("HTML login page with 200", {"body": "<!DOCTYPE html><html><title>Log in</title></html>",
                                  "content_type": "text/html"}, "Jira's token endpoint did not answer with JSON"),
    ("empty body", {"body": ""}, "Jira's token endpoint did not answer with JSON"),
    ("JSON list", {"json": [token_answer()]}, "Jira's token endpoint did not answer with JSON"),
    ("missing access_token", {"json": tokens(access_token=...)}, "Jira's answer has no access token"),
    ("empty access_token", {"json": tokens(access_token="")}, "Jira's answer has no access token"),
    ("numeric access_token", {"json": tokens(access_token=12345)}, "Jira's answer has no access token"),
    ("missing refresh_token", {"json": tokens(refresh_token=...)}, "Jira's answer has no refresh token"),
    ("missing expires_in", {"json": tokens(expires_in=...)}, "Jira's answer has an invalid expires_in"),
    ("null expires_in", {"json": tokens(expires_in=None)}, "Jira's answer has an invalid expires_in"),
    ("zero expires_in", {"json": tokens(expires_in=0)}, "Jira's answer has an invalid expires_in (0)"),
    ("negative expires_in", {"json": tokens(expires_in=-3600)}, "Jira's answer has an invalid expires_in (-3600)"),
    ("absurd expires_in", {"json": tokens(expires_in=10**12)}, "Jira's answer has an invalid expires_in"),
    ("string expires_in", {"json": tokens(expires_in="soon")}, "Jira's answer has an invalid expires_in (soon)"),
    ("float expires_in", {"json": tokens(expires_in=7200.5)}, "Jira's answer has an invalid expires_in"),
    ("boolean expires_in", {"json": tokens(expires_in=True)}, "Jira's answer has an invalid expires_in"),
    ("token_type mac", {"json": tokens(token_type="mac")}, "Jira issued a token of type 'mac', not bearer"),
    ("3 MB body", {"body": json.dumps({**token_answer(), "padding": "x" * 3_000_000}),
                   "content_type": "application/json"}, "Jira's answer is larger than 1000 kB"),
    ("302 redirect", {"status": 302, "headers": {"Location": "https://sso.example.com/login"}, "body": ""},
     "Jira's token endpoint answered HTTP 302 (a redirect: check the Jira base URL)"),
    ("502 from a proxy", {"status": 502, "body": "<html>Bad gateway</html>", "content_type": "text/html"},
     "Jira's token endpoint answered HTTP 502"),
]


@pytest.mark.parametrize("answer, message", [a[1:] for a in BAD_TOKEN_ANSWERS], ids=[a[0] for a in BAD_TOKEN_ANSWERS])
def test_broken_token_answer_when_connecting_stores_nothing(admin_client, account, mocked_jira, answer, message):
    state = start(admin_client, account)
    mocked_jira.add("POST", TOKEN_URL, **answer)

    response = admin_client.get(callback_path(account), {"code": "CODE-1", "state": state})

    text = shown(admin_client, response)
    assert message in text
    assert "Could not complete the call to Jira" in text
    for jira_body in ("HTTP Status 500", "Bad gateway", "Log in", "padding", "x" * 100):
        assert jira_body not in text  # Jira's body is not pasted into the page
    account = ALMAccount.objects.get(pk=account.pk)
    assert (account.access_token, account.refresh_token, account.token_expires_at, account.connected_at) == (
        None, None, None, None)
    assert account.status == ALMAccount.Status.ERROR
    assert message in account.last_error
    assert len(mocked_jira.calls) == 1  # no /myself with a half-read token


@pytest.mark.parametrize("answer, message", [a[1:] for a in BAD_TOKEN_ANSWERS], ids=[a[0] for a in BAD_TOKEN_ANSWERS])
def test_broken_token_answer_when_refreshing_keeps_the_old_tokens(admin_client, connected_account, mocked_jira,
                                                                  answer, message):
    before = ALMAccount.objects.get(pk=connected_account.pk)
    mocked_jira.add("POST", TOKEN_URL, **answer)  # every attempt gets it (502 is retried)

    response = admin_client.post(reverse("admin:alm_accounts_almaccount_refresh_token", args=[connected_account.pk]))

    assert message in shown(admin_client, response)
    account = ALMAccount.objects.get(pk=connected_account.pk)
    assert (account.access_token, account.refresh_token) == (ACCESS_TOKEN, REFRESH_TOKEN)
    assert account.token_expires_at == before.token_expires_at
    assert account.last_refreshed_at == before.last_refreshed_at
    assert account.status == ALMAccount.Status.CONNECTED  # the grant is most likely still alive
    assert message in account.last_error

