"""Issue 3 - Get Auth Token: the authorization-code flow with PKCE against Jira Data Center.

Every request our server sends to Jira is recorded by `responses` and checked
field by field; every outcome is checked on the account and on the page the
admin ends on.
"""

from __future__ import annotations

import json
import logging
import re
import socket
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import requests
import responses
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from alm_accounts.jira import s256_challenge
from alm_accounts.models import ALMAccount, AuthEvent, PendingAuthorization
from tests.conftest import (
    ACCESS_TOKEN,
    CLIENT_SECRET,
    JIRA,
    MYSELF_URL,
    REFRESH_TOKEN,
    TOKEN_URL,
    add_form_data,
    change_form_data,
    change_url,
    form_of,
    land,
    message_texts,
    query_of,
    staff_user,
    token_answer,
)

AUTHORIZE_URL = f"{JIRA}/rest/oauth2/latest/authorize"
ADD_URL = reverse("admin:alm_accounts_almaccount_add")
ME = {"name": "jadmin", "key": "JIRAUSER10000", "displayName": "Jira Admin", "emailAddress": "a@example.com"}
Status = ALMAccount.Status


def form_data(account, **overrides) -> dict:
    return change_form_data(account, _get_auth_token="Get Auth Token", **overrides)


def start(client, account, **overrides) -> dict[str, str]:
    """Click Get Auth Token on the account page; return the query of the authorize URL we were sent to."""
    response = client.post(change_url(account), form_data(account, **overrides))
    assert response.status_code == 302, response.content[:3000]
    location = response["Location"]
    assert location.startswith(f"{account.base_url}/rest/oauth2/latest/authorize?"), location
    return query_of(location)


def callback(client, account, **params):
    return client.get(urlsplit(account.callback_url).path, params)


def snapshot(account) -> dict:
    account.refresh_from_db()
    return {
        "access_token": account.access_token,
        "refresh_token": account.refresh_token,
        "token_expires_at": account.token_expires_at,
        "token_scope": account.token_scope,
        "status": account.status,
        "connected_as": account.connected_as,
        "connected_at": account.connected_at,
        "last_error": account.last_error,
    }


def jira_connects(mocked_jira, n: int = 2, **answer):
    return mocked_jira.post(TOKEN_URL, json=token_answer(n, **answer)), mocked_jira.get(MYSELF_URL, json=ME)


def token_calls(mocked_jira):
    return [c for c in mocked_jira.calls if c.request.url == TOKEN_URL]


# --------------------------------------------------------------------------
# Start
# --------------------------------------------------------------------------


def test_start_redirects_to_jira_authorize_with_exactly_the_parameters_jira_needs(admin_client, account):
    q = start(admin_client, account)
    assert set(q) == {"client_id", "redirect_uri", "response_type", "state", "scope", "code_challenge",
                      "code_challenge_method"}
    assert q["client_id"] == "client-id-123"
    assert q["redirect_uri"] == account.callback_url
    assert q["response_type"] == "code"
    assert q["scope"] == "ADMIN"
    assert q["code_challenge_method"] == "S256"
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", q["code_challenge"])  # base64url SHA-256, no padding
    assert CLIENT_SECRET not in json.dumps(q)


def test_scope_is_the_accounts_single_permission_name(admin_client, account):
    q = start(admin_client, account, scope="WRITE")
    assert q["scope"] == "WRITE"
    account.refresh_from_db()
    assert account.scope == "WRITE"  # the form was saved first


def test_state_has_at_least_128_random_bits_and_is_new_each_time(admin_client, account):
    states = {start(admin_client, account)["state"] for _ in range(5)}
    assert len(states) == 5
    for state in states:
        # URL-safe characters carry 6 bits each: 22 of them are 132 bits.
        assert re.fullmatch(r"[A-Za-z0-9_-]{22,}", state), state


def test_verifier_is_kept_server_side_and_matches_the_challenge(admin_client, admin_user, account):
    q = start(admin_client, account)
    pending = PendingAuthorization.objects.get()
    assert (pending.account, pending.user, pending.used_at) == (account, admin_user, None)
    verifier = pending.code_verifier
    assert re.fullmatch(r"[0-9a-zA-Z~\-._]{43,128}", verifier)
    assert s256_challenge(verifier) == q["code_challenge"]
    assert q["state"] not in pending.state_digest  # only a digest of the state is stored
    assert AuthEvent.objects.get().kind == AuthEvent.Kind.AUTHORIZATION_STARTED


def test_start_saves_what_was_typed_first(admin_client, account, mocked_jira):
    start(admin_client, account, name="Jira - Core Banking (prod)", client_id="pasted-id", client_secret="pasted-2")
    account.refresh_from_db()
    assert (account.name, account.client_id, account.client_secret) == (
        "Jira - Core Banking (prod)", "pasted-id", "pasted-2")


@pytest.mark.parametrize(
    ("client_id", "client_secret"), [("", CLIENT_SECRET), ("client-id-123", None), ("", None)]
)
def test_start_is_refused_without_client_id_or_secret(admin_client, db, client_id, client_secret):
    account = ALMAccount.objects.create(name="Jira - New", base_url=JIRA, client_id=client_id,
                                        client_secret=client_secret)
    response = admin_client.post(change_url(account), form_data(account, name="Jira - New (edited)"))
    assert response.status_code == 302
    assert response["Location"] == change_url(account)
    assert message_texts(response) == [
        "Paste the Client ID and Client Secret shown by Jira's incoming application link, save, then click Get "
        "Auth Token."
    ]
    assert not PendingAuthorization.objects.exists()
    account.refresh_from_db()
    assert account.name == "Jira - New (edited)"  # what was typed is saved anyway
    assert account.status == Status.NOT_CONNECTED


def test_add_form_save_and_get_auth_token_saves_then_goes_to_jira(admin_client, db):
    text = admin_client.get(ADD_URL).content.decode()
    assert 'value="Save and get auth token"' in text
    callback_id = re.search(r'name="callback_url" value="([^"]+)"', text).group(1)
    shown = re.search(r'id="callback-url" value="([^"]+)"', text).group(1)
    response = admin_client.post(ADD_URL, add_form_data(
        callback_id, base_url="https://jira.example.com/jira/", client_id="cid-9", client_secret="secret-9",
        _get_auth_token="Save and get auth token"))
    assert response.status_code == 302
    account = ALMAccount.objects.get()
    assert (account.name, account.client_id, account.client_secret) == ("Jira - Payments", "cid-9", "secret-9")
    assert response["Location"].startswith(AUTHORIZE_URL + "?")
    q = query_of(response["Location"])
    assert q["redirect_uri"] == account.callback_url == shown
    assert q["client_id"] == "cid-9"


def test_invalid_add_form_shows_errors_and_does_not_leave(admin_client, db):
    text = admin_client.get(ADD_URL).content.decode()
    callback_id = re.search(r'name="callback_url" value="([^"]+)"', text).group(1)
    response = admin_client.post(ADD_URL, add_form_data(
        callback_id, name="", base_url="https://jira.example.com/jira?x=1", client_id="cid-9",
        client_secret="secret-9", _get_auth_token="Save and get auth token"))
    assert response.status_code == 200
    text = response.content.decode()
    assert "Please correct the errors below." in text
    assert "This field is required." in text
    assert "must not contain a query" in text
    assert not ALMAccount.objects.exists()
    assert not PendingAuthorization.objects.exists()


def test_invalid_change_form_shows_errors_and_does_not_leave(admin_client, account):
    response = admin_client.post(change_url(account), form_data(account, base_url="ftp://jira.example.com"))
    assert response.status_code == 200
    assert "Enter the Jira base URL starting with https://" in response.content.decode()
    account.refresh_from_db()
    assert account.base_url == JIRA
    assert not PendingAuthorization.objects.exists()


def test_start_is_a_post(admin_client, account):
    response = admin_client.get(change_url(account), {"_get_auth_token": "1"})
    assert response.status_code == 200  # just the page
    assert not PendingAuthorization.objects.exists()


def test_staff_with_change_permission_can_start(client, account):
    client.force_login(staff_user("editor", "view_almaccount", "change_almaccount"))
    q = start(client, account)
    assert q["redirect_uri"] == account.callback_url


def test_view_only_staff_cannot_start(client, account):
    client.force_login(staff_user("viewer", "view_almaccount"))
    page = client.get(change_url(account)).content.decode()
    assert 'name="_get_auth_token"' not in page
    response = client.post(change_url(account), form_data(account))
    assert response.status_code == 403
    assert not PendingAuthorization.objects.exists()
    assert not AuthEvent.objects.exists()


def test_add_only_staff_is_not_offered_save_and_get_auth_token(client, db):
    client.force_login(staff_user("adder", "add_almaccount", "view_almaccount"))
    page = client.get(ADD_URL).content.decode()
    assert "Save and get auth token" not in page
    assert 'name="_save"' in page


def test_inactive_or_non_staff_users_cannot_start(client, account):
    user = staff_user("former", "view_almaccount", "change_almaccount")
    user.is_active = False
    user.save()
    client.force_login(user)
    response = client.post(change_url(account), form_data(account))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert not PendingAuthorization.objects.exists()


# --------------------------------------------------------------------------
# Callback: success, and the exact requests sent to Jira
# --------------------------------------------------------------------------


def test_callback_exchanges_the_code_with_exactly_the_form_jira_expects(admin_client, account, mocked_jira, settings):
    q = start(admin_client, account)
    jira_connects(mocked_jira)
    response = callback(admin_client, account, code="CODE-abc", state=q["state"])
    assert response.status_code == 302

    (call,) = token_calls(mocked_jira)
    request = call.request
    assert request.method == "POST"
    assert request.url == TOKEN_URL  # context path kept
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert "Authorization" not in request.headers  # no HTTP Basic: Jira takes the credentials in the form
    body = request.body.decode() if isinstance(request.body, bytes) else request.body
    with pytest.raises(ValueError):
        json.loads(body)
    sent = form_of(call)
    assert sent == {
        "grant_type": "authorization_code",
        "code": "CODE-abc",
        "redirect_uri": account.callback_url,
        "client_id": "client-id-123",
        "client_secret": CLIENT_SECRET,
        "code_verifier": sent["code_verifier"],
    }
    assert sent["redirect_uri"] == q["redirect_uri"]
    assert re.fullmatch(r"[0-9a-zA-Z~\-._]{43,128}", sent["code_verifier"])
    assert s256_challenge(sent["code_verifier"]) == q["code_challenge"]
    # Connect and read timeouts as configured, cut to the one deadline of the exchange.
    connect, read = request.req_kwargs["timeout"]
    assert connect == settings.JIRA_CONNECT_TIMEOUT
    assert settings.JIRA_REFRESH_DEADLINE - 5 < read <= min(settings.JIRA_READ_TIMEOUT, settings.JIRA_REFRESH_DEADLINE)

    (me,) = [c for c in mocked_jira.calls if c.request.url == MYSELF_URL]
    assert me.request.method == "GET"
    assert me.request.headers["Authorization"] == "Bearer ACCESSTOKEN-2-e1d2c3b4"


def test_callback_success_stores_tokens_and_says_connected_as(admin_client, account, mocked_jira):
    q = start(admin_client, account)
    jira_connects(mocked_jira, expires_in=3600, scope="ADMIN")
    before = timezone.now()
    response = callback(admin_client, account, code="CODE-abc", state=q["state"])
    assert response["Location"] == change_url(account)
    assert message_texts(response) == ["Connected to Jira as Jira Admin (ADMIN)."]

    account.refresh_from_db()
    assert account.access_token == "ACCESSTOKEN-2-e1d2c3b4"
    assert account.refresh_token == "REFRESHTOKEN-2-a9b8c7d6"
    assert before + timedelta(seconds=3600) <= account.token_expires_at <= timezone.now() + timedelta(seconds=3600)
    assert account.token_scope == "ADMIN"
    assert account.status == Status.CONNECTED
    assert account.connected_as == "Jira Admin (jadmin)"
    assert before <= account.connected_at <= timezone.now()
    assert account.last_error == ""
    event = account.events.first()
    assert (event.kind, event.outcome, event.actor) == ("connected", "ok", "jira-admin-user")
    assert event.message == "Connected to Jira as Jira Admin (ADMIN)."

    page = land(admin_client, response)
    assert "Connected to Jira as Jira Admin (ADMIN)." in page
    assert "Jira Admin (jadmin)" in page


def test_granted_scope_is_what_jira_says(admin_client, account, mocked_jira):
    q = start(admin_client, account)
    jira_connects(mocked_jira, scope="WRITE")
    response = callback(admin_client, account, code="CODE-abc", state=q["state"])
    assert message_texts(response) == ["Connected to Jira as Jira Admin (WRITE)."]
    account.refresh_from_db()
    assert account.token_scope == "WRITE"


def test_reconnecting_replaces_the_earlier_tokens(admin_client, connected_account, mocked_jira):
    q = start(admin_client, connected_account)
    jira_connects(mocked_jira, n=3)
    callback(admin_client, connected_account, code="CODE-abc", state=q["state"])
    connected_account.refresh_from_db()
    assert connected_account.access_token == "ACCESSTOKEN-3-e1d2c3b4"
    assert connected_account.refresh_token == "REFRESHTOKEN-3-a9b8c7d6"


def test_myself_failing_keeps_the_tokens_and_says_so(admin_client, account, mocked_jira):
    q = start(admin_client, account)
    mocked_jira.post(TOKEN_URL, json=token_answer())
    mocked_jira.get(MYSELF_URL, status=503, body="<html>Service Unavailable</html>")
    response = callback(admin_client, account, code="CODE-abc", state=q["state"])
    (message,) = message_texts(response)
    assert message.startswith("Connected to Jira (ADMIN), but the Jira user could not be read:")
    assert "HTTP 503" in message
    assert "Use Test connection to check." in message
    account.refresh_from_db()
    assert account.status == Status.CONNECTED
    assert account.access_token == "ACCESSTOKEN-2-e1d2c3b4"
    assert account.refresh_token == "REFRESHTOKEN-2-a9b8c7d6"
    assert account.connected_as == ""
    assert "could not be read" in land(admin_client, response)


# --------------------------------------------------------------------------
# Two flows at once
# --------------------------------------------------------------------------


def test_two_accounts_at_once_do_not_disturb_each_other(admin_client, account, mocked_jira):
    other = ALMAccount.objects.create(name="Jira - Payments", base_url=JIRA, client_id="client-id-777",
                                      client_secret="OTHER-SECRET-1", scope="WRITE")
    qa = start(admin_client, account)
    qb = start(admin_client, other)
    assert qa["state"] != qb["state"] and qa["code_challenge"] != qb["code_challenge"]
    assert qb["redirect_uri"] == other.callback_url != account.callback_url

    mocked_jira.post(TOKEN_URL, json=token_answer(5, scope="WRITE"))
    mocked_jira.get(MYSELF_URL, json=ME)
    callback(admin_client, other, code="CODE-B", state=qb["state"])  # the second tab finishes first
    mocked_jira.replace(responses.POST, TOKEN_URL, json=token_answer(4))
    callback(admin_client, account, code="CODE-A", state=qa["state"])

    first, second = token_calls(mocked_jira)
    sent_b, sent_a = form_of(first), form_of(second)
    assert (sent_b["code"], sent_b["client_id"], sent_b["client_secret"], sent_b["redirect_uri"]) == (
        "CODE-B", "client-id-777", "OTHER-SECRET-1", other.callback_url)
    assert s256_challenge(sent_b["code_verifier"]) == qb["code_challenge"]
    assert (sent_a["code"], sent_a["client_id"], sent_a["client_secret"], sent_a["redirect_uri"]) == (
        "CODE-A", "client-id-123", CLIENT_SECRET, account.callback_url)
    assert s256_challenge(sent_a["code_verifier"]) == qa["code_challenge"]

    account.refresh_from_db()
    other.refresh_from_db()
    assert (account.status, account.access_token, account.token_scope) == (
        Status.CONNECTED, "ACCESSTOKEN-4-e1d2c3b4", "ADMIN")
    assert (other.status, other.access_token, other.token_scope) == (
        Status.CONNECTED, "ACCESSTOKEN-5-e1d2c3b4", "WRITE")


def test_two_tabs_on_one_account_each_keep_their_own_verifier(admin_client, account, mocked_jira):
    older = start(admin_client, account)
    newer = start(admin_client, account)
    jira_connects(mocked_jira)
    response = callback(admin_client, account, code="CODE-old", state=older["state"])
    assert message_texts(response) == ["Connected to Jira as Jira Admin (ADMIN)."]
    assert s256_challenge(form_of(token_calls(mocked_jira)[0])["code_verifier"]) == older["code_challenge"]
    response = callback(admin_client, account, code="CODE-new", state=newer["state"])
    assert message_texts(response) == ["Connected to Jira as Jira Admin (ADMIN)."]
    assert s256_challenge(form_of(token_calls(mocked_jira)[1])["code_verifier"]) == newer["code_challenge"]


# --------------------------------------------------------------------------
# Callback: answers that cannot be accepted (nothing changes, Jira not called)
# --------------------------------------------------------------------------


def assert_rejected(client, response, account, before, mocked_jira, says):
    assert response.status_code == 302
    assert response["Location"] == change_url(account)
    (message,) = message_texts(response)
    assert says in message, message
    assert "Click Get Auth Token to start again." in message
    assert snapshot(account) == before
    assert token_calls(mocked_jira) == []
    assert says in land(client, response)


def test_unknown_state_is_rejected(admin_client, connected_account, mocked_jira):
    start(admin_client, connected_account)
    before = snapshot(connected_account)
    response = callback(admin_client, connected_account, code="CODE-1", state="made-up-state-0123456789abcdef")
    assert_rejected(admin_client, response, connected_account, before, mocked_jira,
                    "Jira's answer does not match any authorization in progress")


def test_expired_state_is_rejected(admin_client, connected_account, mocked_jira):
    q = start(admin_client, connected_account)
    PendingAuthorization.objects.update(created_at=timezone.now() - timedelta(minutes=10, seconds=5))
    before = snapshot(connected_account)
    for answer in jira_connects(mocked_jira):  # Jira would exchange the code: it must not be asked to
        mocked_jira.must_not_be_asked(answer)
    response = callback(admin_client, connected_account, code="CODE-1", state=q["state"])
    assert_rejected(admin_client, response, connected_account, before, mocked_jira,
                    "The authorization took longer than 10 minutes and expired.")


def test_state_lifetime_follows_the_setting(admin_client, account, mocked_jira, settings):
    settings.OAUTH_STATE_TTL_SECONDS = 300
    q_ok, q_late = start(admin_client, account), start(admin_client, account)
    now = timezone.now()
    PendingAuthorization.objects.filter(pk=PendingAuthorization.objects.order_by("pk").first().pk).update(
        created_at=now - timedelta(seconds=290))
    PendingAuthorization.objects.filter(pk=PendingAuthorization.objects.order_by("pk").last().pk).update(
        created_at=now - timedelta(seconds=310))
    jira_connects(mocked_jira)
    late = callback(admin_client, account, code="CODE-1", state=q_late["state"])
    assert "longer than 5 minutes and expired" in message_texts(late)[0]
    ok = callback(admin_client, account, code="CODE-2", state=q_ok["state"])
    assert message_texts(ok) == ["Connected to Jira as Jira Admin (ADMIN)."]


def test_replayed_callback_is_rejected_and_the_code_is_not_redeemed_twice(admin_client, account, mocked_jira):
    q = start(admin_client, account)
    jira_connects(mocked_jira)
    first = callback(admin_client, account, code="CODE-1", state=q["state"])
    assert message_texts(first) == ["Connected to Jira as Jira Admin (ADMIN)."]
    before = snapshot(account)
    calls_before = len(mocked_jira.calls)

    again = callback(admin_client, account, code="CODE-1", state=q["state"])  # reload / Back
    assert again["Location"] == change_url(account)
    (message,) = message_texts(again)
    assert "This answer from Jira was already used" in message
    assert "The account is unchanged." in message
    assert len(mocked_jira.calls) == calls_before  # redeeming a code twice would revoke its tokens
    assert snapshot(account) == before


def test_state_of_another_account_is_rejected_on_both(admin_client, account, mocked_jira):
    other = ALMAccount.objects.create(name="Jira - Payments", base_url=JIRA, client_id="c2", client_secret="s2")
    q = start(admin_client, account)
    before_other = snapshot(other)
    response = callback(admin_client, other, code="CODE-1", state=q["state"])
    assert_rejected(admin_client, response, other, before_other, mocked_jira,
                    "Jira's answer belongs to an authorization of another ALM account.")
    account.refresh_from_db()
    assert account.status == Status.NOT_CONNECTED
    # the rightful flow is still usable
    jira_connects(mocked_jira)
    ok = callback(admin_client, account, code="CODE-1", state=q["state"])
    assert message_texts(ok) == ["Connected to Jira as Jira Admin (ADMIN)."]


def test_state_from_another_user_is_rejected(admin_client, connected_account, mocked_jira):
    q = start(admin_client, connected_account)
    before = snapshot(connected_account)
    intruder = Client()
    intruder.force_login(staff_user("colleague", "view_almaccount", "change_almaccount"))
    response = callback(intruder, connected_account, code="CODE-1", state=q["state"])
    assert_rejected(intruder, response, connected_account, before, mocked_jira,
                    "This authorization was started in another browser session or by another user")


def test_state_from_another_session_of_the_same_user_is_rejected(admin_client, admin_user, account, mocked_jira):
    q = start(admin_client, account)
    before = snapshot(account)
    other_browser = Client()
    other_browser.force_login(admin_user)
    response = callback(other_browser, account, code="CODE-1", state=q["state"])
    assert_rejected(other_browser, response, account, before, mocked_jira,
                    "This authorization was started in another browser session or by another user")
    # the browser that started it can still finish
    jira_connects(mocked_jira)
    assert message_texts(callback(admin_client, account, code="CODE-1", state=q["state"])) == [
        "Connected to Jira as Jira Admin (ADMIN)."]


def test_missing_state_is_rejected(admin_client, connected_account, mocked_jira):
    start(admin_client, connected_account)
    before = snapshot(connected_account)
    response = callback(admin_client, connected_account, code="CODE-1")
    assert_rejected(admin_client, response, connected_account, before, mocked_jira, "it has no state")


def test_missing_code_changes_nothing(admin_client, connected_account, mocked_jira):
    q = start(admin_client, connected_account)
    before = snapshot(connected_account)
    response = callback(admin_client, connected_account, state=q["state"])
    assert response["Location"] == change_url(connected_account)
    assert message_texts(response) == [
        "Jira's answer has neither an authorization code nor an error. Click Get Auth Token again. The existing "
        "connection is kept and still works."]
    assert snapshot(connected_account) == before
    assert token_calls(mocked_jira) == []


def test_unknown_callback_url_shows_a_plain_error_page(admin_client, account, mocked_jira):
    q = start(admin_client, account)
    response = admin_client.get("/oauth/jira/callback/AAAAAAAAAAAAAAAAAAAAAA/", {"code": "C", "state": q["state"]})
    assert response.status_code == 400
    text = response.content.decode()
    assert "Jira authorization could not be completed" in text
    assert "does not belong to any ALM account" in text
    assert token_calls(mocked_jira) == []


def test_duplicated_parameters_are_rejected(admin_client, account, mocked_jira):
    q = start(admin_client, account)
    before = snapshot(account)
    response = admin_client.get(urlsplit(account.callback_url).path,
                                {"code": ["C1", "C2"], "state": q["state"]})
    assert_rejected(admin_client, response, account, before, mocked_jira, "more than once")


def test_callback_needs_a_staff_login(client, account, mocked_jira):
    response = callback(client, account, code="CODE-1", state="x" * 43)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert "CODE-1" not in response["Location"]  # the code is not carried on to the login page
    assert token_calls(mocked_jira) == []


def test_callback_by_view_only_staff_is_forbidden(admin_client, account, mocked_jira):
    q = start(admin_client, account)
    viewer = Client()
    viewer.force_login(staff_user("viewer", "view_almaccount"))
    response = callback(viewer, account, code="CODE-1", state=q["state"])
    assert response.status_code == 403
    assert "You are not allowed to connect ALM accounts." in response.content.decode()
    assert token_calls(mocked_jira) == []
    assert PendingAuthorization.objects.get().used_at is None


# --------------------------------------------------------------------------
# Callback: Jira says no (?error=...)
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "description", "advice"),
    [
        ("access_denied", "The user denied access", "Access was denied on Jira's consent screen. Click Get Auth "
         "Token again and choose Allow."),
        ("invalid_scope", "Scope ADMIN exceeds the permission of the application link",
         "Jira refused the Permission requested. Choose a Permission on this account that is not higher than the "
         "one set on Jira's incoming application link"),
        ("unsupported_response_type", "Response type not supported", "Jira refused the request type."),
        ("something_new", "Something Jira invented", "Jira refused the authorization. Check the account's settings "
         "and click Get Auth Token again."),
    ],
)
def test_jira_error_is_explained_and_the_account_keeps_its_tokens(
    admin_client, connected_account, mocked_jira, error, description, advice
):
    q = start(admin_client, connected_account)
    before = snapshot(connected_account)
    response = callback(admin_client, connected_account, error=error, error_description=description,
                        state=q["state"])
    assert response["Location"] == change_url(connected_account)
    (message,) = message_texts(response)
    assert message.startswith(advice)
    assert f"Jira said: {error} — {description}." in message
    assert snapshot(connected_account) == before
    assert before["status"] == Status.CONNECTED and before["access_token"] == ACCESS_TOKEN
    assert token_calls(mocked_jira) == []
    event = connected_account.events.first()
    assert (event.kind, event.outcome, event.message) == ("authorization_failed", "failed", message)
    page = land(admin_client, response)
    assert description in page
    # the answer is used up: reloading it does not report it as new
    again = callback(admin_client, connected_account, error=error, state=q["state"])
    assert "already used" in message_texts(again)[0]


def test_jira_error_on_a_new_account_leaves_it_not_connected(admin_client, account, mocked_jira):
    q = start(admin_client, account)
    response = callback(admin_client, account, error="access_denied", state=q["state"])
    assert message_texts(response)[0].startswith("Access was denied")
    account.refresh_from_db()
    assert account.status == Status.NOT_CONNECTED
    assert account.access_token is None and account.refresh_token is None


def test_jira_error_without_state_is_still_named(admin_client, account, mocked_jira):
    response = callback(admin_client, account, error="access_denied")
    (message,) = message_texts(response)
    assert "it has no state (Jira said: access_denied)" in message


# --------------------------------------------------------------------------
# Callback: the token endpoint fails
# --------------------------------------------------------------------------


def refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


TOKEN_FAILURES = {
    "invalid_client": (
        dict(status=401, json={"error": "invalid_client", "error_description": "Client authentication failed"}),
        "Jira did not accept the client credentials. Check the Client ID and the Client Secret copied from Jira's "
        "incoming application link",
    ),
    "invalid_grant": (
        dict(status=400, json={"error": "invalid_grant", "error_description": "Authorization code expired"}),
        "Jira refused the authorization code: it expired or was already used, or the Redirect URL on Jira's "
        "incoming application link (Administration → Applications → Application links) is not exactly the "
        "Callback URL shown here. Click Get Auth Token again.",
    ),
    "http_500_html": (
        dict(status=500, body="<html><body>Internal Server Error</body></html>", content_type="text/html"),
        "Could not complete the call to Jira: Jira's token endpoint answered HTTP 500. Check the Jira base URL and "
        "that Jira is running",
    ),
    "json_without_access_token": (
        dict(status=200, json={"token_type": "bearer", "expires_in": 7200}),
        "Could not complete the call to Jira: Jira's answer has no access token.",
    ),
    "read_timeout": (
        dict(body=requests.exceptions.ReadTimeout("Read timed out.")),
        "Could not complete the call to Jira: Jira did not answer in time.",
    ),
    "connect_timeout": (
        dict(body=requests.exceptions.ConnectTimeout("Connect timed out.")),
        "Could not complete the call to Jira: Jira did not accept the connection in time.",
    ),
    "tls_error": (
        dict(body=requests.exceptions.SSLError("certificate verify failed: self-signed certificate")),
        "Could not complete the call to Jira: the TLS handshake with Jira failed (certificate not trusted",
    ),
}


@pytest.mark.parametrize("failure", list(TOKEN_FAILURES))
def test_token_endpoint_failure_is_explained_and_earlier_tokens_are_kept(
    admin_client, connected_account, mocked_jira, failure
):
    answer, says = TOKEN_FAILURES[failure]
    q = start(admin_client, connected_account)
    before = snapshot(connected_account)
    mocked_jira.post(TOKEN_URL, **answer)
    response = callback(admin_client, connected_account, code="CODE-1", state=q["state"])
    assert response.status_code == 302  # never a 500 page
    assert response["Location"] == change_url(connected_account)
    (message,) = message_texts(response)
    assert says in message, message
    assert len(token_calls(mocked_jira)) == 1
    if failure.startswith("invalid_"):
        assert "Jira said: " in message  # with Jira's error_description

    # A failed re-authorization of a working connection keeps it working: same status, same tokens.
    assert message.endswith("The existing connection is kept and still works.")
    after = snapshot(connected_account)
    assert after["status"] == Status.CONNECTED
    assert after["last_error"] == before["last_error"]
    for kept in ("access_token", "refresh_token", "token_expires_at", "token_scope", "connected_as",
                 "connected_at"):
        assert after[kept] == before[kept], kept
    assert (after["access_token"], after["refresh_token"]) == (ACCESS_TOKEN, REFRESH_TOKEN)
    event = connected_account.events.first()
    assert (event.kind, event.outcome, event.message) == ("authorization_failed", "failed", message)
    assert says in land(admin_client, response)


def test_refused_connection_is_explained(admin_client, connected_account, mocked_jira):
    q = start(admin_client, connected_account)
    # Jira stops answering between consent and the callback (Get Auth Token checks it is reachable before).
    base = f"https://127.0.0.1:{refused_port()}/jira"
    ALMAccount.objects.filter(pk=connected_account.pk).update(base_url=base)
    connected_account.refresh_from_db()
    mocked_jira.add_passthru(base)  # a real connection attempt to a closed port
    before = snapshot(connected_account)
    response = callback(admin_client, connected_account, code="CODE-1", state=q["state"])
    assert response["Location"] == change_url(connected_account)
    (message,) = message_texts(response)
    assert message.startswith("Could not complete the call to Jira: Jira could not be reached (connection refused")
    assert "Check the Jira base URL" in message
    after = snapshot(connected_account)
    assert (after["status"], after["last_error"]) == (Status.CONNECTED, before["last_error"])
    assert (after["access_token"], after["refresh_token"]) == (before["access_token"], before["refresh_token"])


def test_token_failure_on_a_new_account_sets_error(admin_client, account, mocked_jira):
    q = start(admin_client, account)
    mocked_jira.post(TOKEN_URL, status=401, json={"error": "invalid_client"})
    callback(admin_client, account, code="CODE-1", state=q["state"])
    account.refresh_from_db()
    assert account.status == Status.ERROR
    assert account.last_error.startswith("Jira did not accept the client credentials.")
    assert account.access_token is None and account.refresh_token is None


def test_a_new_flow_after_a_failure_connects(admin_client, account, mocked_jira):
    q = start(admin_client, account)
    mocked_jira.post(TOKEN_URL, status=401, json={"error": "invalid_client"})
    callback(admin_client, account, code="CODE-1", state=q["state"])
    mocked_jira.replace(responses.POST, TOKEN_URL, json=token_answer())
    mocked_jira.get(MYSELF_URL, json=ME)
    q = start(admin_client, account, client_secret="corrected-secret")
    response = callback(admin_client, account, code="CODE-2", state=q["state"])
    assert message_texts(response) == ["Connected to Jira as Jira Admin (ADMIN)."]
    assert form_of(token_calls(mocked_jira)[-1])["client_secret"] == "corrected-secret"
    account.refresh_from_db()
    assert (account.status, account.last_error) == (Status.CONNECTED, "")


# --------------------------------------------------------------------------
# No secret anywhere the admin or a log reader can see
# --------------------------------------------------------------------------


@pytest.fixture
def all_logs_at_debug(caplog, monkeypatch):
    """Capture every log record of every logger, at DEBUG."""
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        logger = logging.getLogger(name)
        caplog.set_level(logging.DEBUG, logger=name)
        monkeypatch.setattr(logger, "propagate", True)
        monkeypatch.setattr(logger, "disabled", False)
    return caplog


def test_no_secret_leaks_into_pages_messages_or_logs_during_the_whole_flow(
    admin_client, db, mocked_jira, all_logs_at_debug
):
    from django.db import connection

    connection.force_debug_cursor = True  # SQL statements are logged too
    seen: list[str] = []

    def visit(response):
        seen.append(response.content.decode(errors="replace"))
        seen.extend(f"{k}: {v}" for k, v in response.items() if k != "Location" or "jira.example.com" not in v)
        seen.extend(str(c.value) for c in response.cookies.values())
        seen.extend(message_texts(response) if hasattr(response, "wsgi_request") else [])
        return response

    try:
        # add the account with its secret, and go to Jira
        text = visit(admin_client.get(ADD_URL)).content.decode()
        callback_id = re.search(r'name="callback_url" value="([^"]+)"', text).group(1)
        response = visit(admin_client.post(ADD_URL, add_form_data(
            callback_id, name="Jira - Leak Test", client_id="client-id-123", client_secret=CLIENT_SECRET,
            _get_auth_token="Save and get auth token")))
        account = ALMAccount.objects.get()
        states = [query_of(response["Location"])["state"]]
        verifiers = [PendingAuthorization.objects.get().code_verifier]

        # Jira says no, then a failed exchange, then a success, then a replay
        visit(callback(admin_client, account, error="access_denied", error_description="denied", state=states[0]))

        def restart():
            r = visit(admin_client.post(change_url(account), form_data(account)))
            states.append(query_of(r["Location"])["state"])
            verifiers.append(PendingAuthorization.objects.latest("pk").code_verifier)
            return states[-1]

        mocked_jira.post(TOKEN_URL, status=401, json={"error": "invalid_client", "error_description": "bad"})
        r = visit(callback(admin_client, account, code="CODE-FAILED-1111", state=restart()))
        visit(admin_client.get(r["Location"]))

        mocked_jira.replace(responses.POST, TOKEN_URL, json=token_answer(2))
        mocked_jira.get(MYSELF_URL, json=ME)
        state = restart()
        r = visit(callback(admin_client, account, code="CODE-GOOD-2222", state=state))
        visit(admin_client.get(r["Location"]))
        r = visit(callback(admin_client, account, code="CODE-GOOD-2222", state=state))
        visit(admin_client.get(r["Location"]))
        visit(callback(admin_client, account, code="CODE-FORGED-3333", state="forged-state-forged-state"))
        visit(admin_client.get(reverse("admin:alm_accounts_almaccount_changelist")))
        visit(admin_client.get(reverse("admin:alm_accounts_authevent_changelist")))
    finally:
        connection.force_debug_cursor = False

    account.refresh_from_db()
    stored = [e.message for e in AuthEvent.objects.all()] + [account.last_error]
    logs = [r.getMessage() for r in all_logs_at_debug.records] + [all_logs_at_debug.text]
    secrets = [CLIENT_SECRET, "CODE-FAILED-1111", "CODE-GOOD-2222", "CODE-FORGED-3333",
               "ACCESSTOKEN-2-e1d2c3b4", "REFRESHTOKEN-2-a9b8c7d6", *verifiers, *states]
    for secret in secrets:
        for where, texts in (("page, header, cookie or message", seen), ("audit trail", stored), ("log", logs)):
            for text in texts:
                assert secret not in text, f"{secret[:12]}... appears in a {where}"

    assert account.status == Status.CONNECTED  # the flow really ran
    assert len(token_calls(mocked_jira)) == 2
    assert any("Connected to Jira as Jira Admin (ADMIN)." in s for s in seen)
    assert any("SELECT" in r.getMessage() for r in all_logs_at_debug.records)  # the logs really were captured
