"""What ends a connection, and the admin screens for it (issue 10).

- A new Jira base URL or Client ID ends the connection: the tokens are wiped in
  the same transaction, revoked after the commit at the *old* Jira only, and no
  token or secret ever goes to the new host; a new base URL needs the Client
  Secret pasted again. The form says so before saving.
- Disconnect wipes and commits first, then revokes outside any transaction,
  under a deadline; unless Jira answered 200 for every token it says where in
  Jira the grant can be removed.
- Deleting an account revokes after the commit and keeps the audit trail.
- The bulk refresh action refuses more than a few accounts.

Admin flows that revoke after the commit run with real commits
(`django_db(transaction=True)`): the admin's save and delete are atomic, and
the revocation waits for that commit (on_commit).
"""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import parse_qs

import pytest
import responses
import trustme
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from alm_accounts import services
from alm_accounts.admin import MAX_ACCOUNTS_PER_REFRESH_ACTION
from alm_accounts.models import ALMAccount, AuthEvent, PendingAuthorization
from tests.conftest import (
    ACCESS_TOKEN,
    CLIENT_SECRET,
    JIRA,
    REFRESH_TOKEN,
    REVOKE_URL,
    TOKEN_URL,
    add_form_data,
    button_url,
    change_form_data,
    change_url,
    form_of,
    messages_of,
    page_text,
    query_of,
    texts,
)

Status = ALMAccount.Status
Kind = AuthEvent.Kind
ADMIN_ACTOR = "jira-admin-user"  # the conftest admin_user
SECRET_PATTERN = re.compile(r"ACCESSTOKEN|REFRESHTOKEN|CLIENTSECRET|NEW-LINK-SECRET")
# The host an admin (or an attacker with change permission) points a connected account at.
NEW = "https://jira-new.example.net/jira"
NEW_SECRET = "NEW-LINK-SECRET-5d2e"
NEW_ENDPOINTS = {
    (responses.POST, f"{NEW}/rest/oauth2/latest/token"): {"json": {
        "access_token": "NEWHOST-ACCESS", "refresh_token": "NEWHOST-REFRESH", "token_type": "bearer",
        "expires_in": 7200, "scope": "ADMIN"}},
    (responses.POST, f"{NEW}/rest/oauth2/latest/revoke"): {"status": 200},
    (responses.GET, f"{NEW}/rest/api/2/myself"): {"json": {"name": "mallory", "displayName": "Mallory"}},
    (responses.GET, f"{NEW}/rest/api/2/serverInfo"): {"json": {"version": "9.12.2", "baseUrl": NEW}},
}


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def revocations(mocked_jira, url: str = REVOKE_URL) -> list[dict[str, str]]:
    return [form_of(c) for c in mocked_jira.calls if c.request.url == url]


def calls_to_new_host(mocked_jira) -> list[str]:
    return [f"{c.request.method} {c.request.url}" for c in mocked_jira.calls if c.request.url.startswith(NEW)]


def sent_anywhere(mocked_jira) -> str:
    """Everything our requests carried (URLs, headers, bodies), to search for secrets."""
    parts = []
    for call in mocked_jira.calls:
        body = call.request.body or ""
        parts += [call.request.url, str(dict(call.request.headers)),
                  body.decode(errors="replace") if isinstance(body, bytes) else body]
    return "\n".join(parts)


def connect(account: ALMAccount, *, slug: str = "") -> ALMAccount:
    now = timezone.now()
    account.access_token = f"ACCESSTOKEN-{slug}" if slug else ACCESS_TOKEN
    account.refresh_token = f"REFRESHTOKEN-{slug}" if slug else REFRESH_TOKEN
    account.token_expires_at = now + timedelta(minutes=5)
    account.token_scope = "ADMIN"
    account.status = Status.CONNECTED
    account.connected_at = now - timedelta(days=1)
    account.connected_as_name, account.connected_as_display_name = "jadmin", "Jira Admin"
    account.save()
    return account


def assert_not_connected(account: ALMAccount):
    account.refresh_from_db()
    assert account.access_token is None and account.refresh_token is None
    assert account.token_expires_at is None and account.connected_as == ""
    assert account.status == Status.NOT_CONNECTED


@pytest.fixture
def new_host(mocked_jira):
    """The new host answers like a Jira would, so that anything sent there would "work" (and be recorded); nothing
    may ever be asked of it."""
    for (method, url), answer in NEW_ENDPOINTS.items():
        mocked_jira.must_not_be_asked(mocked_jira.add(method, url, **answer))
    return mocked_jira


# --------------------------------------------------------------------------
# A new Jira base URL or Client ID ends the connection
# --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_new_base_url_ends_the_connection_and_nothing_is_ever_sent_to_the_new_host(
        admin_client, connected_account, new_host, run_command):
    new_host.post(REVOKE_URL, status=200)  # the old Jira confirms both revocations
    observed = []

    response = admin_client.post(change_url(connected_account), change_form_data(
        connected_account, base_url=NEW + "/", client_secret=NEW_SECRET))

    assert response.status_code == 302
    said = texts(response)
    assert f"The connection to Jira was ended because the Jira base URL changed from {JIRA} to {NEW}" in said
    assert "Click Get Auth Token" in said
    assert f"The Jira at {JIRA} confirmed the revocation of the tokens." in said
    account = ALMAccount.objects.get(pk=connected_account.pk)
    assert_not_connected(account)
    assert (account.base_url, account.client_secret, account.client_secret_base_url) == (NEW, NEW_SECRET, NEW)
    # Revoked at the old Jira only, with the tokens and credentials they were issued for.
    assert revocations(new_host) == [
        {"token": REFRESH_TOKEN, "token_type_hint": "refresh_token", "client_id": "client-id-123",
         "client_secret": CLIENT_SECRET},
        {"token": ACCESS_TOKEN, "token_type_hint": "access_token", "client_id": "client-id-123",
         "client_secret": CLIENT_SECRET},
    ]
    (event,) = AuthEvent.objects.filter(account=account, kind=Kind.CONNECTION_ENDED)
    assert (event.actor, event.outcome) == (ADMIN_ACTOR, AuthEvent.Outcome.OK)
    assert f"from {JIRA} to {NEW}" in event.message and "confirmed the revocation" in event.message
    assert not SECRET_PATTERN.search(event.message) and not SECRET_PATTERN.search(said)

    # Whatever the admin (or the cron job) does next, nothing is sent to the new host: there is no grant.
    observed.append(texts(admin_client.post(button_url("refresh_token", account))))
    observed.append(texts(admin_client.post(button_url("test_connection", account))))
    assert run_command("--force", "--concurrency", "1").code == 0
    observed.append(texts(admin_client.post(button_url("disconnect", account))))
    assert calls_to_new_host(new_host) == []
    assert "not connected" in observed[0] and "not connected to Jira yet" in observed[1]
    assert "no tokens were stored" in observed[2]
    # The old Jira got its own tokens back for revocation, and never the new link's secret.
    assert NEW_SECRET not in sent_anywhere(new_host)


@pytest.mark.django_db(transaction=True)
def test_a_new_base_url_needs_the_client_secret_pasted_again(admin_client, connected_account, new_host):
    response = admin_client.post(change_url(connected_account), change_form_data(connected_account, base_url=NEW))

    assert response.status_code == 200
    page = page_text(response)
    errors = re.search(r'class="errorlist[^"]*"[^>]*id="id_client_secret_error"|'
                       r'<div class="form-row[^"]*errors[^"]*field-client_secret', page)
    assert errors, "the error belongs to the Client Secret field"
    assert "The Jira base URL changed: paste the Client Secret" in page
    account = ALMAccount.objects.get(pk=connected_account.pk)
    assert (account.base_url, account.client_secret, account.refresh_token) == (JIRA, CLIENT_SECRET, REFRESH_TOKEN)
    assert account.status == Status.CONNECTED

    # The grant stays with the Jira it belongs to: a refresh goes to the old host, never to the new one.
    new_host.post(TOKEN_URL, status=500)
    admin_client.post(button_url("refresh_token", account))
    assert calls_to_new_host(new_host) == []
    assert [c.request.url for c in new_host.calls] == [TOKEN_URL]


@pytest.mark.django_db(transaction=True)
def test_a_new_client_id_ends_the_connection_and_revokes_with_the_old_credentials(
        admin_client, connected_account, mocked_jira):
    mocked_jira.post(REVOKE_URL, status=404)  # no such endpoint: not a confirmation

    response = admin_client.post(change_url(connected_account), change_form_data(
        connected_account, client_id="client-id-of-another-link"))

    assert response.status_code == 302
    levels = dict((text[:40], level) for level, text in messages_of(response))
    said = texts(response)
    assert "The connection to Jira was ended because the Client ID changed" in said
    assert f"The Jira at {JIRA} did not confirm the revocation of the tokens" in said
    assert "Authorized applications" in said and "Application links" in said
    assert "warning" in levels.values()
    account = ALMAccount.objects.get(pk=connected_account.pk)
    assert_not_connected(account)
    # Same host, same stored secret (a new Client ID alone needs no new secret), but the old Client ID.
    assert account.client_secret == CLIENT_SECRET and account.client_id == "client-id-of-another-link"
    assert [(r["token"], r["client_id"], r["client_secret"]) for r in revocations(mocked_jira)] == [
        (REFRESH_TOKEN, "client-id-123", CLIENT_SECRET), (ACCESS_TOKEN, "client-id-123", CLIENT_SECRET)]
    (event,) = AuthEvent.objects.filter(account=account, kind=Kind.CONNECTION_ENDED)
    assert "the Client ID changed" in event.message and "did not confirm" in event.message
    assert "client-id-of-another-link" not in event.message


@pytest.mark.django_db(transaction=True)
def test_an_authorization_started_for_the_old_jira_cannot_complete_against_the_new_one(
        admin_client, account, new_host):
    start = admin_client.post(change_url(account), change_form_data(account, _get_auth_token="Get Auth Token"))
    state = query_of(start["Location"])["state"]
    assert PendingAuthorization.objects.filter(account=account).exists()

    admin_client.post(change_url(account), change_form_data(account, base_url=NEW, client_secret=NEW_SECRET))
    callback = admin_client.get(f"/oauth/jira/callback/{account.callback_id}/",
                                {"code": "CODE-FROM-THE-OLD-JIRA", "state": state})

    assert calls_to_new_host(new_host) == []  # the old Jira's code never reaches the new host
    assert callback.status_code in (302, 400)
    assert not PendingAuthorization.objects.filter(account=account).exists()
    assert ALMAccount.objects.get(pk=account.pk).refresh_token is None


def test_name_permission_and_ca_certificate_edits_keep_the_connection(admin_client, connected_account,
                                                                       mocked_jira):
    pem = trustme.CA().cert_pem.bytes().decode()

    response = admin_client.post(change_url(connected_account), change_form_data(
        connected_account, name="Jira - Core Banking (prod)", scope="WRITE", jira_ca_certificate=pem))

    assert response.status_code == 302, page_text(response)[:3000]
    assert "ended" not in texts(response)
    account = ALMAccount.objects.get(pk=connected_account.pk)
    assert account.jira_ca_certificate.strip() == pem.strip()
    assert (account.name, account.scope) == ("Jira - Core Banking (prod)", "WRITE")
    assert (account.access_token, account.refresh_token, account.status) == (ACCESS_TOKEN, REFRESH_TOKEN,
                                                                              Status.CONNECTED)
    assert len(mocked_jira.calls) == 0
    assert not AuthEvent.objects.filter(kind=Kind.CONNECTION_ENDED).exists()


def test_a_trailing_slash_is_not_another_jira(admin_client, connected_account, mocked_jira):
    """A row written by a script may keep the slash the form strips: saving it unchanged keeps everything."""
    ALMAccount.objects.filter(pk=connected_account.pk).update(base_url=JIRA + "/", client_secret_base_url=JIRA + "/")
    account = ALMAccount.objects.get(pk=connected_account.pk)

    response = admin_client.post(change_url(account), change_form_data(account))

    assert response.status_code == 302, page_text(response)[:3000]
    account.refresh_from_db()
    assert (account.base_url, account.client_secret_base_url, account.refresh_token) == (JIRA, JIRA, REFRESH_TOKEN)
    assert services.client_for(account).base_url == JIRA  # the secret still goes to its Jira
    assert len(mocked_jira.calls) == 0


def test_the_form_warns_before_saving_that_a_new_base_url_or_client_id_ends_the_connection(
        admin_client, connected_account, db):
    page = page_text(admin_client.get(change_url(connected_account)))

    assert page.count("Changing it ends the connection") == 2
    for name in ("base_url", "client_id"):
        tag = re.search(rf'<input[^>]*name="{name}"[^>]*>', page).group(0)
        assert "data-ends-connection=" in tag and "saving ends the connection" in tag
    assert "alm_accounts/connection_notice.js" in page

    not_connected = ALMAccount.objects.create(name="Jira - New", base_url=JIRA, client_id="c", client_secret="s")
    quiet = page_text(admin_client.get(change_url(not_connected)))
    assert "Changing it ends the connection" not in quiet and "data-ends-connection" not in quiet


def test_the_ca_certificate_field_follows_the_base_url(admin_client, db):
    page = page_text(admin_client.get(reverse("admin:alm_accounts_almaccount_add")))

    textarea = re.search(r'<textarea[^>]*name="jira_ca_certificate"[^>]*>', page).group(0)
    assert 'rows="6"' in textarea and 'cols="64"' in textarea
    assert 'placeholder="-----BEGIN CERTIFICATE-----"' in textarea
    assert "Jira CA certificate (PEM)" in page
    positions = [page.index(f'name="{name}"') for name in ("base_url", "jira_ca_certificate", "callback_url")]
    assert positions == sorted(positions)


def test_a_client_secret_is_bound_to_the_base_url_it_was_entered_with(admin_client, db):
    add_page = admin_client.get(reverse("admin:alm_accounts_almaccount_add")).content.decode()
    callback_id = re.search(r'name="callback_url" value="([^"]+)"', add_page).group(1)
    admin_client.post(reverse("admin:alm_accounts_almaccount_add"), add_form_data(callback_id))
    account = ALMAccount.objects.get()
    assert account.client_secret_base_url == JIRA

    admin_client.post(change_url(account), change_form_data(account, base_url=NEW, client_secret=NEW_SECRET))
    account.refresh_from_db()
    assert (account.base_url, account.client_secret, account.client_secret_base_url) == (NEW, NEW_SECRET, NEW)


def test_a_secret_stored_without_its_base_url_stays_with_its_jira_when_the_url_changes(account, new_host):
    """A row made by a script has no client_secret_base_url; a service-level edit must not unbind it."""
    assert account.client_secret_base_url == ""
    account.base_url = NEW

    services.save_account(account=account, form_fields=["base_url", "client_secret"], new_client_secret=False,
                          actor="script")

    account.refresh_from_db()
    assert account.client_secret_base_url == JIRA
    with pytest.raises(services.ServiceError, match="paste the Client Secret"):
        services.client_for(account)
    assert calls_to_new_host(new_host) == []


# --------------------------------------------------------------------------
# Disconnect
# --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_disconnect_commits_the_wipe_before_revoking_outside_any_transaction(admin_client, connected_account,
                                                                              mocked_jira):
    seen_by_jira = []

    def revoke(request):
        row = ALMAccount.objects.get(pk=connected_account.pk)
        seen_by_jira.append({"in a transaction": connection.in_atomic_block,
                             "tokens stored": (row.access_token, row.refresh_token) != (None, None),
                             "status": row.status})
        return 200, {}, ""

    mocked_jira.add_callback(responses.POST, REVOKE_URL, callback=revoke)

    response = admin_client.post(button_url("disconnect", connected_account))

    assert seen_by_jira == [{"in a transaction": False, "tokens stored": False, "status": Status.NOT_CONNECTED}] * 2
    assert messages_of(response) == [("success", "Disconnected: the tokens were deleted here and revoked at Jira.")]
    assert [parse_qs(c.request.body)["token"] for c in mocked_jira.calls] == [[REFRESH_TOKEN], [ACCESS_TOKEN]]
    assert_not_connected(connected_account)
    (event,) = AuthEvent.objects.filter(account=connected_account, kind=Kind.DISCONNECTED)
    assert event.message == "Disconnected: the tokens were deleted here and revoked at Jira."


@pytest.mark.parametrize("answer", [
    {"status": 302, "headers": {"Location": "https://sso.example.com/login?next=/jira"}},
    {"status": 200},  # for the refresh token only; the access token's revocation gets a redirect
])
def test_disconnect_without_jiras_confirmation_says_where_to_remove_the_grant(admin_client, connected_account,
                                                                             mocked_jira, answer):
    mocked_jira.post(REVOKE_URL, **answer)
    mocked_jira.post(REVOKE_URL, status=302, headers={"Location": "https://sso.example.com/login"})

    response = admin_client.post(button_url("disconnect", connected_account))

    ((level, message),) = messages_of(response)
    assert level == "warning"
    assert message.startswith("Disconnected: the tokens were deleted here; Jira did not confirm the revocation")
    assert "the Jira user Jira Admin (jadmin) can remove it in their Jira profile under Authorized applications" \
        in message
    assert f"delete the incoming application link at {JIRA} (Administration → Applications → Application links)" \
        in message
    assert len(revocations(mocked_jira)) == 2
    assert not any(c.request.url.startswith("https://sso.example.com") for c in mocked_jira.calls)
    assert_not_connected(connected_account)
    (event,) = AuthEvent.objects.filter(account=connected_account, kind=Kind.DISCONNECTED)
    assert event.message == message and not SECRET_PATTERN.search(message)


def test_disconnect_revocation_runs_under_the_refresh_deadline(fake_jira, settings, db):
    settings.JIRA_REFRESH_DEADLINE = 1
    settings.JIRA_READ_TIMEOUT = 10
    account = connect(ALMAccount.objects.create(name="Jira - Slow", base_url=fake_jira.base_url,
                                                client_id="cid", client_secret=CLIENT_SECRET))
    fake_jira.slow("/jira/rest/oauth2/latest/revoke", 3)
    fake_jira.slow("/jira/rest/oauth2/latest/revoke", 3)

    message = services.disconnect(account=account, actor="test")

    assert "did not answer within the 1 s deadline" in message
    assert not message.confirmed
    # One budget for both tokens: once it is spent, the access token's revocation is not even sent.
    assert len(fake_jira.calls_to("/jira/rest/oauth2/latest/revoke")) == 1
    assert_not_connected(account)


def test_disconnect_of_an_account_without_tokens_asks_jira_nothing(admin_client, account, mocked_jira):
    response = admin_client.post(button_url("disconnect", account))

    assert messages_of(response) == [("success", "Disconnected: no tokens were stored.")]
    assert len(mocked_jira.calls) == 0


# --------------------------------------------------------------------------
# Deleting an account
# --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_deleting_an_account_revokes_after_the_commit_and_keeps_its_audit_trail(admin_client, connected_account,
                                                                               mocked_jira):
    services.record_event(connected_account, actor="someone", kind=Kind.REFRESHED, ok=True,
                          message="Token refreshed; earlier.")
    seen_by_jira = []

    def revoke(request):
        seen_by_jira.append((connection.in_atomic_block, ALMAccount.objects.filter(pk=connected_account.pk).exists()))
        return 200, {}, ""

    mocked_jira.add_callback(responses.POST, REVOKE_URL, callback=revoke)

    response = admin_client.post(reverse("admin:alm_accounts_almaccount_delete", args=[connected_account.pk]),
                                 {"post": "yes"})

    assert response.status_code == 302
    assert seen_by_jira == [(False, False)] * 2  # after the delete committed, outside any transaction
    assert f"Jira - Core Banking: The Jira at {JIRA} confirmed the revocation of the tokens." in texts(response)
    assert not ALMAccount.objects.exists()
    assert sorted(f["token"] for f in revocations(mocked_jira)) == sorted([ACCESS_TOKEN, REFRESH_TOKEN])

    refreshed, deleted = (AuthEvent.objects.get(kind=Kind.REFRESHED),
                          AuthEvent.objects.get(kind=Kind.ACCOUNT_DELETED))
    assert (refreshed.account, refreshed.account_name) == (None, "Jira - Core Banking")
    assert (deleted.account, deleted.account_name, deleted.actor) == (None, "Jira - Core Banking", ADMIN_ACTOR)
    assert f"was deleted by {ADMIN_ACTOR}" in deleted.message and "confirmed the revocation" in deleted.message

    events_page = reverse("admin:alm_accounts_authevent_changelist")
    listed = page_text(admin_client.get(events_page, {"q": "Core Banking"}))
    assert listed.count("Jira - Core Banking (deleted)") == 2
    assert "Account deleted" in listed and "Token refreshed" in listed


@pytest.mark.django_db(transaction=True)
def test_deleting_selected_accounts_revokes_each_grant_and_records_who_did_it(admin_client, mocked_jira):
    a = connect(ALMAccount.objects.create(name="Jira A", base_url=JIRA, client_id="cid-a", client_secret="SECRET-A"),
                slug="A")
    b = connect(ALMAccount.objects.create(name="Jira B", base_url=JIRA, client_id="cid-b", client_secret="SECRET-B"),
                slug="B")
    idle = ALMAccount.objects.create(name="Jira idle", base_url=JIRA, client_id="cid-c", client_secret="SECRET-C")
    mocked_jira.post(REVOKE_URL, status=200)

    response = admin_client.post(reverse("admin:alm_accounts_almaccount_changelist"), {
        "action": "delete_selected", "_selected_action": [a.pk, b.pk, idle.pk], "post": "yes"})

    assert response.status_code == 302
    assert not ALMAccount.objects.exists()
    assert sorted((f["client_id"], f["token"]) for f in revocations(mocked_jira)) == [
        ("cid-a", "ACCESSTOKEN-A"), ("cid-a", "REFRESHTOKEN-A"),
        ("cid-b", "ACCESSTOKEN-B"), ("cid-b", "REFRESHTOKEN-B")]
    deleted = AuthEvent.objects.filter(kind=Kind.ACCOUNT_DELETED)
    assert sorted((e.account_name, e.actor) for e in deleted) == [
        ("Jira A", ADMIN_ACTOR), ("Jira B", ADMIN_ACTOR), ("Jira idle", ADMIN_ACTOR)]
    said = texts(response)
    assert "Jira A: The Jira at" in said and "Jira B: The Jira at" in said and "Jira idle:" not in said


# --------------------------------------------------------------------------
# The bulk refresh action stays within a web request
# --------------------------------------------------------------------------


def test_the_refresh_action_refuses_more_than_a_few_accounts_and_names_the_command(admin_client, mocked_jira, db):
    accounts = [connect(ALMAccount.objects.create(name=f"Jira {n}", base_url=JIRA, client_id=f"cid-{n}",
                                                  client_secret=CLIENT_SECRET), slug=str(n))
                for n in range(MAX_ACCOUNTS_PER_REFRESH_ACTION + 1)]

    response = admin_client.post(reverse("admin:alm_accounts_almaccount_changelist"), {
        "action": "refresh_selected", "_selected_action": [a.pk for a in accounts]})

    ((level, message),) = messages_of(response)
    assert level == "error"
    assert f"refreshes at most {MAX_ACCOUNTS_PER_REFRESH_ACTION} at once" in message
    assert "manage.py refresh_tokens --force --account 'Jira 0' --account 'Jira 1'" in message
    assert len(mocked_jira.calls) == 0
    assert not AuthEvent.objects.exists()


def test_the_refresh_action_still_refreshes_a_few_accounts(admin_client, mocked_jira, db):
    accounts = [connect(ALMAccount.objects.create(name=f"Jira {n}", base_url=JIRA, client_id=f"cid-{n}",
                                                  client_secret=CLIENT_SECRET), slug=str(n))
                for n in range(MAX_ACCOUNTS_PER_REFRESH_ACTION)]
    mocked_jira.post(TOKEN_URL, status=500)  # each refresh is tried once (and fails)

    admin_client.post(reverse("admin:alm_accounts_almaccount_changelist"), {
        "action": "refresh_selected", "_selected_action": [a.pk for a in accounts]})

    assert {parse_qs(c.request.body)["refresh_token"][0] for c in mocked_jira.calls} == {
        a.refresh_token for a in accounts}


def test_the_delete_pages_say_the_connection_ends_and_the_trail_is_kept(admin_client, connected_account):
    single = page_text(admin_client.get(reverse("admin:alm_accounts_almaccount_delete",
                                                args=[connected_account.pk])))
    bulk = page_text(admin_client.post(reverse("admin:alm_accounts_almaccount_changelist"), {
        "action": "delete_selected", "_selected_action": [connected_account.pk]}))

    assert "ends its connection to Jira" in single and "Its audit trail is kept" in single
    assert "ends their connections to Jira" in bulk and "Their audit trails are kept" in bulk
    assert ALMAccount.objects.filter(pk=connected_account.pk).exists()
