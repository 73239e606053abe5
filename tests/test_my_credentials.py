"""My ALM Credentials (issue 11, user-based sync): every staff user connects their own Jira account.

The page lists the ALM accounts ready for it with the state of the signed-in
person's own credential only; Connect runs the authorization-code flow with
PKCE and state for that person's credential, and the callback lands back on
this page. Jira is mocked with `responses`; the flow is driven as a browser
would (start with the Connect button, come back on the callback URL).
"""

from __future__ import annotations

import html
import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from alm_accounts.jira import s256_challenge
from alm_accounts.models import ALMAccount, ALMCredential, AuthEvent, PendingAuthorization
from tests.conftest import (
    ACCESS_TOKEN,
    CLIENT_SECRET,
    JIRA,
    MYSELF_URL,
    REFRESH_TOKEN,
    REVOKE_URL,
    SERVER_INFO_URL,
    TOKEN_URL,
    form_of,
    query_of,
    staff_user,
    token_answer,
)
from tests.factories import CredentialFactory

PAGE = reverse("my_alm_credentials")
AUTHORIZE_URL = f"{JIRA}/rest/oauth2/latest/authorize"
ALICE_ME = {"name": "jalice", "key": "JIRAUSER10100", "displayName": "Alice Jones"}
SECRETS = re.compile(r"ACCESSTOKEN|REFRESHTOKEN|CLIENTSECRET|ALICE-|BOB-")
Status = ALMAccount.Status


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


def button_url(button: str, account) -> str:
    """Where a row's button posts: "connect", "test" or "disconnect"."""
    return reverse(f"my_alm_credentials_{button}", args=[account.pk])


def ready_account(name: str, **fields) -> ALMAccount:
    return ALMAccount.objects.create(name=name, base_url=JIRA, client_id=f"cid-{name}", client_secret=CLIENT_SECRET,
                                     **fields)


def page_text(client) -> str:
    response = client.get(PAGE)
    assert response.status_code == 200
    return response.content.decode()


def rows(text: str) -> dict[str, str]:
    """Each account's row on the page, as plain text, by account name."""
    found = {}
    for name, body in re.findall(r'<tr class="alm-my-credential" data-account="([^"]*)">(.*?)</tr>', text, re.S):
        found[html.unescape(name)] = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())
    return found


def buttons(text: str, account) -> list[str]:
    """The buttons of an account's row: (label) of each POST form."""
    row = re.search(rf'data-account="{re.escape(account.name)}">(.*?)</tr>', text, re.S).group(1)
    return [html.unescape(b).strip() for b in re.findall(r"<button[^>]*>(.*?)</button>", row, re.S)]


def messages_on_page(text: str) -> list[str]:
    block = re.search(r'<ul class="messagelist">(.*?)</ul>', text, re.S)
    if block is None:
        return []
    return [" ".join(html.unescape(re.sub(r"<[^>]+>", "", m)).split())
            for m in re.findall(r"<li[^>]*>(.*?)</li>", block.group(1), re.S)]


def connect(client, account) -> dict[str, str]:
    """Click Connect my Jira account; return the query of Jira's authorize URL we were sent to."""
    response = client.post(button_url("connect", account))
    assert response.status_code == 302, response.content[:2000]
    assert response["Location"].startswith(f"{account.base_url}/rest/oauth2/latest/authorize?"), response["Location"]
    return query_of(response["Location"])


def come_back(client, account, **params) -> str:
    """Jira's redirect to the callback URL; follow it and return the page we land on (its URL must be ours)."""
    response = client.get(urlsplit(account.callback_url).path, params)
    assert response.status_code == 302, response.content[:2000]
    assert response["Location"] == PAGE
    return html.unescape(client.get(PAGE).content.decode())


def jira_says_i_am(mocked_jira, me: dict, n: int = 2):
    mocked_jira.post(TOKEN_URL, json=token_answer(n, scope="WRITE"))
    mocked_jira.get(MYSELF_URL, json=me)


# --------------------------------------------------------------------------
# What the page lists
# --------------------------------------------------------------------------


def test_the_page_lists_ready_accounts_with_my_own_connection_only(alice_client, alice):
    bob = staff_user("bob")
    banking = ready_account("Jira - Core Banking")
    payments = ready_account("Jira - Payments")
    ALMAccount.objects.create(name="Jira - No secret yet", base_url=JIRA, client_id="cid")
    ALMAccount.objects.create(name="Jira - No client id yet", base_url=JIRA, client_secret=CLIENT_SECRET)
    CredentialFactory(account=banking, user=alice, jira_user="jalice", connected_as_display_name="Alice Jones",
                      tokens="ALICE-1")
    CredentialFactory(account=banking, user=bob, jira_user="jbob", connected_as_display_name="Bob Smith",
                      tokens="BOB-1")
    CredentialFactory(account=payments, user=bob, jira_user="jbob", connected_as_display_name="Bob Smith",
                      tokens="BOB-2")

    text = page_text(alice_client)
    listed = rows(text)
    assert list(listed) == ["Jira - Core Banking", "Jira - Payments"]
    assert "Connected as Alice Jones" in listed["Jira - Core Banking"]
    assert "Not connected" in listed["Jira - Payments"]
    assert "Bob Smith" not in text and "jbob" not in text  # never another person's credential
    assert not SECRETS.search(text)  # never a token, never the Client Secret
    assert buttons(text, banking) == ["Reconnect", "Test", "Disconnect"]
    assert buttons(text, payments) == ["Connect my Jira account"]
    assert "<title>My ALM Credentials |" in text
    assert re.search(r'<div class="breadcrumbs">\s*<a href="/admin/">Home</a> &rsaquo; My ALM Credentials', text)


def test_a_connection_jira_refused_says_so_in_plain_words_and_offers_reconnect(alice_client, alice):
    account = ready_account("Jira - Core Banking")
    CredentialFactory(account=account, user=alice, jira_user="jalice", connected_as_display_name="Alice Jones",
                      tokens="ALICE-1", status=Status.NEEDS_REAUTHORIZATION,
                      last_error="Jira no longer accepts the refresh token (invalid_grant): the grant was revoked.")
    text = page_text(alice_client)
    row = rows(text)[account.name]
    assert "Needs re-authorization" in row
    assert "Jira no longer accepts the refresh token (invalid_grant): the grant was revoked." in row
    assert buttons(text, account)[0] == "Reconnect"


def test_the_expiry_of_my_token_is_shown(alice_client, alice):
    account = ready_account("Jira - Core Banking")
    mine = CredentialFactory(account=account, user=alice, jira_user="jalice", connected_as_display_name="Alice Jones",
                             tokens="ALICE-1")
    expected = timezone.localtime(mine.token_expires_at).strftime("%Y-%m-%d %H:%M")
    assert expected in rows(page_text(alice_client))[account.name]


def test_each_account_says_what_happens_until_i_connect(alice_client):
    ready_account("Jira - Acts as the account")
    ready_account("Jira - Refuses", unconnected_users=ALMAccount.UnconnectedUsers.REFUSE)
    listed = rows(page_text(alice_client))
    assert "The product acts as the account's connection until you connect." in listed["Jira - Acts as the account"]
    assert "You must connect to use this account." in listed["Jira - Refuses"]


def test_many_accounts_are_shown_a_page_at_a_time(alice_client, monkeypatch):
    monkeypatch.setattr("alm_accounts.my_credentials.ACCOUNTS_PER_PAGE", 2)
    for name in ("Jira - A", "Jira - B", "Jira - C"):
        ready_account(name)
    first = page_text(alice_client)
    assert list(rows(first)) == ["Jira - A", "Jira - B"]
    assert '<a href="?page=2">Next</a>' in first and "Page 1 of 2" in first
    assert list(rows(alice_client.get(PAGE, {"page": 2}).content.decode())) == ["Jira - C"]


def test_without_ready_accounts_the_page_says_why(alice_client):
    ALMAccount.objects.create(name="Jira - No secret yet", base_url=JIRA, client_id="cid")
    text = page_text(alice_client)
    assert rows(text) == {}
    assert "No ALM account is ready for personal connections yet" in text


# --------------------------------------------------------------------------
# Who may use it
# --------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["anonymous", "not staff", "inactive staff"])
def test_only_active_staff_get_the_page_and_its_buttons(client, db, who):
    account = ready_account("Jira - Core Banking")
    if who != "anonymous":
        user = staff_user("carol")
        if who == "not staff":
            user.is_staff = False
        else:
            user.is_active = False
        user.save()
        client.force_login(user)
    response = client.get(PAGE)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    for url in (button_url("connect", account), button_url("test", account), button_url("disconnect", account)):
        response = client.post(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
    assert not PendingAuthorization.objects.exists()
    assert not AuthEvent.objects.exists()


def test_the_top_bar_and_the_admin_index_lead_to_the_page(alice_client, alice):
    CredentialFactory(account=ready_account("Jira - Core Banking"), user=alice, jira_user="jalice",
                      connected_as_display_name="Alice Jones", tokens="ALICE-1")
    index = alice_client.get(reverse("admin:index")).content.decode()
    assert not SECRETS.search(index)
    top_bar = re.search(r'<div id="user-tools">(.*?)</div>', index, re.S).group(1)
    assert f'<a href="{PAGE}" class="my-alm-credentials-link">My ALM Credentials</a>' in top_bar
    box = re.search(r'<div class="module" id="my-alm-credentials-module">(.*?)</div>', index, re.S).group(1)
    assert f'href="{PAGE}"' in box
    # And from any other admin page, e.g. the page itself.
    assert f'<a href="{PAGE}" class="my-alm-credentials-link">My ALM Credentials</a>' in page_text(alice_client)


# --------------------------------------------------------------------------
# Connect: my own credential, through the same callback
# --------------------------------------------------------------------------


def test_connect_sends_me_to_jira_for_my_own_credential_with_pkce_and_state(alice_client, alice):
    account = ready_account("Jira - Core Banking")
    q = connect(alice_client, account)
    assert q["client_id"] == account.client_id
    assert q["redirect_uri"] == account.callback_url  # the link's one Redirect URL
    assert q["response_type"] == "code"
    assert q["code_challenge_method"] == "S256"
    assert re.fullmatch(r"[A-Za-z0-9_-]{22,}", q["state"])
    pending = PendingAuthorization.objects.get()
    assert (pending.account, pending.user, pending.for_own_credential) == (account, alice, True)
    assert s256_challenge(pending.code_verifier) == q["code_challenge"]


def test_the_callback_stores_the_grant_on_my_credential_and_lands_on_my_page(alice_client, alice, mocked_jira):
    account = ready_account("Jira - Core Banking")
    q = connect(alice_client, account)
    jira_says_i_am(mocked_jira, ALICE_ME)

    landed = come_back(alice_client, account, code="code-from-jira", state=q["state"])

    assert "Connected to Jira as Alice Jones (WRITE)" in messages_on_page(landed)[0]
    assert "Connected as Alice Jones" in rows(landed)[account.name]
    mine = ALMCredential.objects.get(account=account, user=alice)
    assert mine.is_connected
    assert (mine.access_token, mine.refresh_token) == ("ACCESSTOKEN-2-e1d2c3b4", "REFRESHTOKEN-2-a9b8c7d6")
    assert (mine.connected_as_name, mine.connected_as_display_name, mine.token_scope) == (
        "jalice", "Alice Jones", "WRITE")
    # The code was exchanged with the verifier of *this* authorization, and /myself asked with the new token.
    exchange = form_of(mocked_jira.calls[0])
    assert exchange["grant_type"] == "authorization_code" and exchange["redirect_uri"] == account.callback_url
    assert s256_challenge(exchange["code_verifier"]) == q["code_challenge"]
    assert mocked_jira.calls[1].request.headers["Authorization"] == "Bearer ACCESSTOKEN-2-e1d2c3b4"
    # The account's own connection is untouched.
    account.refresh_from_db()
    assert (account.status, account.access_token, account.refresh_token) == (Status.NOT_CONNECTED, None, None)
    event = AuthEvent.objects.get(kind=AuthEvent.Kind.CONNECTED)
    assert (event.credential, event.grant_owner, event.actor) == (mine, "alice", "alice")
    assert not SECRETS.search(landed)


def test_an_admin_connecting_their_own_account_also_lands_on_my_page(admin_client, admin_user, mocked_jira):
    account = ready_account("Jira - Core Banking")
    q = connect(admin_client, account)
    jira_says_i_am(mocked_jira, {"name": "jadmin", "displayName": "Jira Admin"})
    landed = come_back(admin_client, account, code="code-from-jira", state=q["state"])
    assert "Connected to Jira as Jira Admin (WRITE)" in messages_on_page(landed)[0]
    assert ALMCredential.objects.get(account=account, user=admin_user).is_connected
    account.refresh_from_db()
    assert account.status == Status.NOT_CONNECTED


def test_staff_without_alm_permissions_connect_their_own_but_not_the_accounts_connection(alice_client, alice):
    account = ready_account("Jira - Core Banking")
    change = reverse("admin:alm_accounts_almaccount_change", args=[account.pk])
    response = alice_client.post(change, {"_get_auth_token": "Get Auth Token", "name": account.name})
    assert response.status_code == 403
    assert not PendingAuthorization.objects.exists()
    connect(alice_client, account)  # their own: allowed
    assert PendingAuthorization.objects.get().for_own_credential


def test_connect_to_an_account_that_is_not_ready_answers_as_a_missing_one(alice_client):
    # It is not on the page; posting ids one by one must not name it (security review, issue 18).
    account = ALMAccount.objects.create(name="Jira - No secret yet", base_url=JIRA, client_id="cid")
    response = alice_client.post(button_url("connect", account))
    assert response.status_code == 404
    assert "No secret yet" not in response.content.decode()
    assert messages_on_page(alice_client.get(PAGE).content.decode()) == []
    assert not PendingAuthorization.objects.exists()


def test_connect_to_an_unknown_account_is_not_found(alice_client):
    assert alice_client.post(reverse("my_alm_credentials_connect", args=[999999])).status_code == 404


def test_a_jira_identity_another_person_holds_is_refused_and_nothing_is_stored(alice_client, alice, mocked_jira):
    bob = staff_user("bob")
    account = ready_account("Jira - Core Banking")
    bobs = CredentialFactory(account=account, user=bob, jira_user="jbob", connected_as_display_name="Bob Smith",
                             tokens="BOB-1")
    q = connect(alice_client, account)
    # Alice's browser was still logged in to Jira as Bob.
    jira_says_i_am(mocked_jira, {"name": "jbob", "displayName": "Bob Smith"})
    mocked_jira.post(REVOKE_URL, status=200)

    landed = come_back(alice_client, account, code="code-from-jira", state=q["state"])

    (message,) = messages_on_page(landed)
    assert "already connected to Jira - Core Banking by bob" in message
    assert "Log out of Jira, sign in to Jira as yourself" in message and "Nothing was stored." in message
    mine = ALMCredential.objects.filter(account=account, user=alice).first()
    assert mine is None or (mine.refresh_token, mine.access_token, mine.connected_as_name) == (None, None, "")
    assert "Not connected" in rows(landed)[account.name]
    bobs.refresh_from_db()
    assert (bobs.refresh_token, bobs.connected_as_name) == ("BOB-1-refresh", "jbob")
    # The tokens Jira issued for the refused grant are revoked (best effort), not kept anywhere.
    revoked = [form_of(c)["token"] for c in mocked_jira.calls if c.request.url == REVOKE_URL]
    assert revoked == ["REFRESHTOKEN-2-a9b8c7d6", "ACCESSTOKEN-2-e1d2c3b4"]


# --------------------------------------------------------------------------
# Test and Disconnect: POST with CSRF, my own credential only
# --------------------------------------------------------------------------


def test_test_calls_jira_with_my_own_token(alice_client, alice, mocked_jira):
    account = ready_account("Jira - Core Banking", access_token=ACCESS_TOKEN, refresh_token=REFRESH_TOKEN,
                            token_expires_at=timezone.now() + timedelta(hours=1), status=Status.CONNECTED)
    CredentialFactory(account=account, user=alice, jira_user="jalice", connected_as_display_name="Alice Jones",
                      tokens="ALICE-1")
    mocked_jira.get(MYSELF_URL, json=ALICE_ME)
    mocked_jira.get(SERVER_INFO_URL, json={"version": "9.12.2", "baseUrl": JIRA})

    response = alice_client.post(button_url("test", account))

    assert response.status_code == 302 and response["Location"] == PAGE
    assert messages_on_page(alice_client.get(PAGE).content.decode()) == [
        "Jira - Core Banking: Connected to Jira 9.12.2 as Alice Jones."]
    assert {c.request.headers["Authorization"] for c in mocked_jira.calls} == {"Bearer ALICE-1-access"}
    event = AuthEvent.objects.get(kind=AuthEvent.Kind.TEST_CONNECTION)
    assert (event.grant_owner, event.actor, event.outcome) == ("alice", "alice", AuthEvent.Outcome.OK)


def test_a_failed_test_says_why(alice_client, alice, mocked_jira):
    account = ready_account("Jira - Core Banking")
    CredentialFactory(account=account, user=alice, jira_user="jalice", connected_as_display_name="Alice Jones",
                      tokens="ALICE-1")
    mocked_jira.get(MYSELF_URL, status=403, json={"errorMessages": ["You do not have permission."]})
    alice_client.post(button_url("test", account))
    (message,) = messages_on_page(alice_client.get(PAGE).content.decode())
    assert message.startswith("Jira - Core Banking: Test failed: ")
    assert not SECRETS.search(message)


def test_disconnect_deletes_and_revokes_my_tokens_only(alice_client, alice, mocked_jira):
    bob = staff_user("bob")
    account = ready_account("Jira - Core Banking")
    CredentialFactory(account=account, user=alice, jira_user="jalice", connected_as_display_name="Alice Jones",
                      tokens="ALICE-1")
    bobs = CredentialFactory(account=account, user=bob, jira_user="jbob", connected_as_display_name="Bob Smith",
                             tokens="BOB-1")
    mocked_jira.post(REVOKE_URL, status=200)

    response = alice_client.post(button_url("disconnect", account))

    assert response.status_code == 302 and response["Location"] == PAGE
    text = alice_client.get(PAGE).content.decode()
    assert messages_on_page(text) == [
        "Jira - Core Banking: Disconnected: your tokens were deleted here and revoked at Jira."]
    assert "Not connected" in rows(text)[account.name]
    mine = ALMCredential.objects.get(account=account, user=alice)
    assert (mine.status, mine.access_token, mine.refresh_token) == (Status.NOT_CONNECTED, None, None)
    assert [form_of(c)["token"] for c in mocked_jira.calls] == ["ALICE-1-refresh", "ALICE-1-access"]
    bobs.refresh_from_db()
    assert (bobs.status, bobs.refresh_token) == (Status.CONNECTED, "BOB-1-refresh")
    event = AuthEvent.objects.get(kind=AuthEvent.Kind.DISCONNECTED)
    assert (event.grant_owner, event.actor) == ("alice", "alice")


@pytest.mark.parametrize("button", ["test", "disconnect"])
def test_test_and_disconnect_without_my_own_credential_touch_nothing(alice_client, alice, mocked_jira, button):
    bob = staff_user("bob")
    account = ready_account("Jira - Core Banking")
    bobs = CredentialFactory(account=account, user=bob, jira_user="jbob", connected_as_display_name="Bob Smith",
                             tokens="BOB-1")
    url = button_url(button, account)
    response = alice_client.post(url)
    assert response.status_code == 302 and response["Location"] == PAGE
    assert messages_on_page(alice_client.get(PAGE).content.decode()) == [
        "Jira - Core Banking: your Jira account is not connected yet. Click Connect my Jira account."]
    assert not mocked_jira.calls
    bobs.refresh_from_db()
    assert bobs.refresh_token == "BOB-1-refresh"
    assert not AuthEvent.objects.exists()


@pytest.mark.parametrize("button", ["connect", "test", "disconnect"])
def test_the_buttons_are_post_only(alice_client, alice, mocked_jira, button):
    account = ready_account("Jira - Core Banking")
    CredentialFactory(account=account, user=alice, jira_user="jalice", connected_as_display_name="Alice Jones",
                      tokens="ALICE-1")
    url = button_url(button, account)
    assert alice_client.get(url).status_code == 405
    assert not mocked_jira.calls and not PendingAuthorization.objects.exists()
    assert ALMCredential.objects.get(user=alice).refresh_token == "ALICE-1-refresh"


@pytest.mark.parametrize("button", ["connect", "test", "disconnect"])
def test_the_buttons_need_the_csrf_token(alice, mocked_jira, button):
    account = ready_account("Jira - Core Banking")
    CredentialFactory(account=account, user=alice, jira_user="jalice", connected_as_display_name="Alice Jones",
                      tokens="ALICE-1")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    url = button_url(button, account)
    assert browser.post(url).status_code == 403
    assert not mocked_jira.calls and not PendingAuthorization.objects.exists()
    assert ALMCredential.objects.get(user=alice).refresh_token == "ALICE-1-refresh"
    # With the token the page's forms carry, the same button works.
    text = browser.get(PAGE).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', text).group(1)
    if button == "test":
        mocked_jira.get(MYSELF_URL, json=ALICE_ME)
        mocked_jira.get(SERVER_INFO_URL, json={"version": "9.12.2"})
    if button == "disconnect":
        mocked_jira.post(REVOKE_URL, status=200)
    assert browser.post(url, {"csrfmiddlewaretoken": token}).status_code == 302


# --------------------------------------------------------------------------
# Scale: the number of queries does not grow with accounts or credentials
# --------------------------------------------------------------------------


def _population(n: int, me, others):
    for i in range(n):
        account = ready_account(f"Jira {n}-{i:03d}")
        if i % 2 == 0:
            CredentialFactory(account=account, user=me, jira_user=f"me-{i}", connected_as_display_name=f"Me {i}",
                              tokens=f"ALICE-{i}")
        for other in others:
            CredentialFactory(account=account, user=other, jira_user=f"{other.username}-{i}",
                              connected_as_display_name="Someone Else", tokens=f"BOB-{i}")


def _queries_for_page(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(PAGE).status_code == 200
    return len(queries)


def test_the_page_needs_the_same_number_of_queries_for_2_and_40_accounts(alice, db):
    others = [staff_user(f"other{i}") for i in range(3)]
    small, large = Client(), Client()
    _population(2, alice, others)
    small.force_login(alice)
    few = _queries_for_page(small)
    ALMAccount.objects.all().delete()
    _population(40, alice, others)
    large.force_login(alice)
    many = _queries_for_page(large)
    assert many == few, (few, many)
    assert len(rows(large.get(PAGE).content.decode())) == 40
