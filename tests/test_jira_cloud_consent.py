"""Issue 14 - Jira Cloud: Get Auth Token, Atlassian's callback, the site check, people's own connections, the form.

Atlassian's authorization server and API gateway are two stand-in hosts (conftest: ATLASSIAN_AUTH and
ATLASSIAN_API); every request our server sends is recorded by `responses` and checked: where it went, how its
body was encoded, what it carried. The admin and the callback are driven as a browser would.
"""

from __future__ import annotations

import html
import logging
import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.db import OperationalError
from django.urls import reverse
from django.utils import timezone

from alm_accounts.jira import s256_challenge
from alm_accounts.models import ALMAccount, ALMCredential, AuthEvent, PendingAuthorization
from tests.conftest import (
    ACCESS_TOKEN,
    ACCESSIBLE_RESOURCES_URL,
    ATLASSIAN_API,
    ATLASSIAN_AUTH,
    ATLASSIAN_CLIENT_ID,
    ATLASSIAN_ME,
    ATLASSIAN_SECRET,
    CLIENT_SECRET,
    CLOUD_CALLBACK_PATH,
    CLOUD_ID,
    CLOUD_MYSELF_URL,
    CLOUD_SITE,
    CLOUD_TOKEN_URL,
    JIRA,
    OTHER_SITE,
    OUR_SITE,
    REFRESH_TOKEN,
    add_form_data,
    change_form_data,
    change_url,
    cloud_form_data,
    json_of,
    land,
    message_texts,
    query_of,
    staff_user,
    start_cloud_consent,
    token_answer,
)

Status = ALMAccount.Status
CLOUD = ALMAccount.Authentication.JIRA_CLOUD_OAUTH2
FIXED_CALLBACK = f"http://testserver{CLOUD_CALLBACK_PATH}"  # the test settings' PUBLIC_BASE_URL + the Cloud path
ADD_URL = reverse("admin:alm_accounts_almaccount_add")
MY_PAGE = reverse("my_alm_credentials")
SCOPES = "read:jira-work write:jira-work read:jira-user offline_access"
CODE = "AUTHCODE-cloud-7d1e"
ALICE_ME = {"accountId": "5b10ac8d82e05b22cc7d4ef5", "displayName": "Alice Jones"}


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def atlassian_consents(mocked, sites, *, me=ATLASSIAN_ME, n: int = 2):
    """Atlassian's answers to a consent: the token exchange, the sites the grant reaches, who it is (returned)."""
    return (mocked.post(CLOUD_TOKEN_URL, json=token_answer(n, expires_in=3600, scope=SCOPES)),
            mocked.get(ACCESSIBLE_RESOURCES_URL, json=sites),
            mocked.get(CLOUD_MYSELF_URL, json=me))


def come_back(client, **params):
    return client.get(CLOUD_CALLBACK_PATH, params)


def hosts_called(mocked) -> list[str]:
    return [f"{urlsplit(c.request.url).scheme}://{urlsplit(c.request.url).netloc}" for c in mocked.calls]


def tokens_of(grant) -> tuple:
    grant.refresh_from_db()
    return grant.access_token, grant.refresh_token, grant.status


# --------------------------------------------------------------------------
# 1. Get Auth Token sends the admin to Atlassian's authorize page
# --------------------------------------------------------------------------


def test_get_auth_token_sends_the_admin_to_atlassian_with_the_3lo_parameters(admin_client, admin_user, cloud_account):
    q = start_cloud_consent(admin_client, cloud_account,
                            cloud_scopes=["read:jira-work", "write:jira-work", "read:jira-user"])

    assert set(q) == {"audience", "client_id", "scope", "redirect_uri", "state", "response_type", "prompt",
                      "code_challenge", "code_challenge_method"}
    assert q["audience"] == "api.atlassian.com"
    assert q["client_id"] == ATLASSIAN_CLIENT_ID  # the account has none: the deployment's app
    assert q["scope"] == SCOPES  # space-separated, offline_access always asked for
    assert q["redirect_uri"] == FIXED_CALLBACK == cloud_account.callback_url
    assert (q["response_type"], q["prompt"], q["code_challenge_method"]) == ("code", "consent", "S256")
    pending = PendingAuthorization.objects.get()
    assert (pending.account, pending.user) == (cloud_account, admin_user)
    assert s256_challenge(pending.code_verifier) == q["code_challenge"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22,}", q["state"])
    started = AuthEvent.objects.get(kind=AuthEvent.Kind.AUTHORIZATION_STARTED)
    assert started.message == f"Sent to Jira for consent (scopes {SCOPES})."


def test_an_account_with_its_own_atlassian_app_is_sent_with_its_own_client_id(admin_client, cloud_account):
    q = start_cloud_consent(admin_client, cloud_account, client_id="own-app-client-id", client_secret="OWNSECRET-9a8b")
    assert q["client_id"] == "own-app-client-id"
    assert q["redirect_uri"] == FIXED_CALLBACK


def test_without_the_deployments_app_nor_an_own_one_get_auth_token_says_what_to_do(admin_client, cloud_account,
                                                                                      settings):
    settings.ATLASSIAN_CLIENT_ID = settings.ATLASSIAN_CLIENT_SECRET = ""

    response = admin_client.post(change_url(cloud_account), cloud_form_data(cloud_account, _get_auth_token="Get"))

    assert response.status_code == 302 and response["Location"] == change_url(cloud_account)
    assert message_texts(response) == [
        "This deployment's Atlassian app is not configured (ATLASSIAN_CLIENT_ID and ATLASSIAN_CLIENT_SECRET): register "
        "it in Atlassian's developer console with the Callback URL shown here, or paste the Client ID and Secret of "
        "your own app, save, then click Get Auth Token."]
    assert not PendingAuthorization.objects.exists()


# --------------------------------------------------------------------------
# 2. Atlassian's callback: exchange at the auth host, the site check, who it is
# --------------------------------------------------------------------------


def test_the_callback_exchanges_at_the_auth_host_picks_the_accounts_site_and_stores_who_it_is(
        admin_client, cloud_account, mocked_jira):
    q = start_cloud_consent(admin_client, cloud_account)
    # The account's site is the second one, spelt with other case and a trailing slash.
    ours = {**OUR_SITE, "url": "https://Kendis-Demo.atlassian.net/"}
    atlassian_consents(mocked_jira, [OTHER_SITE, ours])

    page = land(admin_client, come_back(admin_client, code=CODE, state=q["state"]))

    exchange, resources, myself = mocked_jira.calls
    assert (exchange.request.method, exchange.request.url) == ("POST", CLOUD_TOKEN_URL)
    assert exchange.request.headers["Content-Type"] == "application/json"
    body = json_of(exchange)
    assert body == {"grant_type": "authorization_code", "code": CODE, "redirect_uri": FIXED_CALLBACK,
                    "code_verifier": body["code_verifier"], "client_id": ATLASSIAN_CLIENT_ID,
                    "client_secret": ATLASSIAN_SECRET}
    assert s256_challenge(body["code_verifier"]) == q["code_challenge"]
    assert resources.request.url == ACCESSIBLE_RESOURCES_URL
    assert myself.request.url == CLOUD_MYSELF_URL  # through the ex/jira/{cloud id} base of the site picked
    assert {c.request.headers["Authorization"] for c in (resources, myself)} == {"Bearer ACCESSTOKEN-2-e1d2c3b4"}
    cloud_account.refresh_from_db()
    assert (cloud_account.cloud_id, cloud_account.cloud_site_name) == (CLOUD_ID, "kendis-demo")
    assert (cloud_account.access_token, cloud_account.refresh_token) == ("ACCESSTOKEN-2-e1d2c3b4",
                                                                         "REFRESHTOKEN-2-a9b8c7d6")
    assert cloud_account.status == Status.CONNECTED
    assert (cloud_account.connected_as_name, cloud_account.connected_as_display_name) == (
        ATLASSIAN_ME["accountId"], "Jira Admin")
    assert f"Connected to Jira as Jira Admin ({SCOPES})." in page
    assert "kendis-demo — cloud id " + CLOUD_ID in re.sub(r"</?code>", "", page)


# write_again closes the database connection: outside pytest-django's test transaction only.
@pytest.mark.django_db(transaction=True)
def test_a_consent_whose_first_write_fails_is_stored_again_with_its_site(admin_client, cloud_account, mocked_jira,
                                                                         monkeypatch):
    """The database loses the connection as the new grant is stored (the tokens Atlassian just issued are the
    grant): it is written again on a fresh connection, and the site the consent reached with it, without which no
    call could reach Jira."""
    q = start_cloud_consent(admin_client, cloud_account)
    atlassian_consents(mocked_jira, [OTHER_SITE, OUR_SITE])
    real_save, failures = ALMAccount.save, []

    def save(self, *args, **kwargs):
        if self.access_token and not kwargs.get("update_fields") and not failures:
            failures.append(1)
            raise OperationalError("server closed the connection unexpectedly")
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(ALMAccount, "save", save)

    land(admin_client, come_back(admin_client, code=CODE, state=q["state"]))

    assert failures == [1]
    cloud_account.refresh_from_db()
    assert (cloud_account.access_token, cloud_account.status) == ("ACCESSTOKEN-2-e1d2c3b4", Status.CONNECTED)
    assert (cloud_account.cloud_id, cloud_account.cloud_site_name) == (CLOUD_ID, "kendis-demo")


@pytest.mark.parametrize("connected", [False, True], ids=["new account", "working connection"])
def test_a_consent_that_misses_the_accounts_site_stores_nothing_and_names_the_sites_it_covered(
        admin_client, cloud_account, connected_cloud_account, mocked_jira, connected):
    account = connected_cloud_account
    if not connected:
        ALMAccount.objects.filter(pk=account.pk).update(access_token=None, refresh_token=None, cloud_id="",
                                                        cloud_site_name="", status=Status.NOT_CONNECTED)
        account.refresh_from_db()
    before = (account.access_token, account.refresh_token, account.cloud_id, account.connected_as_name)
    q = start_cloud_consent(admin_client, account)
    third = {"id": "c0ffee00-0000-4000-8000-000000000003", "url": "https://kendis-third.atlassian.net",
             "name": "kendis-third"}
    *_, who_it_is = atlassian_consents(mocked_jira, [OTHER_SITE, third])
    mocked_jira.must_not_be_asked(who_it_is)  # a grant that misses the site is never used

    page = land(admin_client, come_back(admin_client, code=CODE, state=q["state"]))

    expected = ("The consent on Atlassian's page covered kendis-other (https://kendis-other.atlassian.net), "
                "kendis-third (https://kendis-third.atlassian.net), not https://kendis-demo.atlassian.net: nothing "
                "was stored.")
    assert expected in page
    assert ("The existing connection is kept and still works." in page) is connected
    account.refresh_from_db()
    assert (account.access_token, account.refresh_token, account.cloud_id, account.connected_as_name) == before
    # A working connection stays Connected; an account that had none shows why Get Auth Token failed.
    assert account.status == (Status.CONNECTED if connected else Status.ERROR)
    assert (account.last_error == "") is connected
    assert CLOUD_MYSELF_URL not in [c.request.url for c in mocked_jira.calls]
    failed = AuthEvent.objects.get(kind=AuthEvent.Kind.AUTHORIZATION_FAILED)
    assert expected in failed.message


def test_a_state_started_for_a_data_center_account_is_refused_at_the_cloud_callback(
        admin_client, account, cloud_account, mocked_jira):
    response = admin_client.post(change_url(account), change_form_data(account, _get_auth_token="Get Auth Token"))
    dc_state = query_of(response["Location"])["state"]

    refused = come_back(admin_client, code=CODE, state=dc_state)

    assert refused.status_code == 400
    assert "does not match any Jira Cloud authorization in progress" in html.unescape(refused.content.decode())
    assert len(mocked_jira.calls) == 0
    assert PendingAuthorization.objects.get().used_at is None  # still usable at its own callback URL


def test_an_unknown_state_is_refused_with_a_page(admin_client, cloud_account, mocked_jira):
    refused = come_back(admin_client, code=CODE, state="never-issued-state-value-123456")
    assert refused.status_code == 400
    text = html.unescape(refused.content.decode())
    assert "does not match any Jira Cloud authorization in progress" in text and CODE not in text
    assert len(mocked_jira.calls) == 0


def test_the_data_center_callback_url_of_a_cloud_account_is_refused(admin_client, cloud_account, mocked_jira):
    q = start_cloud_consent(admin_client, cloud_account)
    dc_callback = f"/oauth/jira/callback/{cloud_account.callback_id}/"
    refused = admin_client.get(dc_callback, {"code": CODE, "state": q["state"]})
    assert refused.status_code == 400
    assert len(mocked_jira.calls) == 0
    assert tokens_of(cloud_account) == (None, None, Status.NOT_CONNECTED)


# --------------------------------------------------------------------------
# 3. A person's own connection (My ALM Credentials) on a Cloud account
# --------------------------------------------------------------------------


@pytest.fixture
def alice_client(client, db):
    client.force_login(staff_user("alice"))
    return client


def connect_myself(client, account) -> dict[str, str]:
    response = client.post(reverse("my_alm_credentials_connect", args=[account.pk]))
    assert response.status_code == 302 and response["Location"].startswith(f"{ATLASSIAN_AUTH}/authorize?")
    return query_of(response["Location"])


def test_a_person_connects_their_own_atlassian_account_to_the_accounts_site(alice_client, cloud_account, mocked_jira):
    q = connect_myself(alice_client, cloud_account)
    assert (q["client_id"], q["redirect_uri"], q["audience"]) == (ATLASSIAN_CLIENT_ID, FIXED_CALLBACK,
                                                                   "api.atlassian.com")
    atlassian_consents(mocked_jira, [OTHER_SITE, OUR_SITE], me=ALICE_ME)

    response = come_back(alice_client, code=CODE, state=q["state"])

    assert response["Location"] == MY_PAGE
    assert message_texts(response) == [f"Connected to Jira as Alice Jones ({SCOPES})."]
    mine = ALMCredential.objects.get(account=cloud_account)
    assert mine.user.username == "alice" and mine.is_connected
    assert (mine.connected_as_name, mine.refresh_token) == (ALICE_ME["accountId"], "REFRESHTOKEN-2-a9b8c7d6")
    assert [c.request.url for c in mocked_jira.calls] == [CLOUD_TOKEN_URL, ACCESSIBLE_RESOURCES_URL, CLOUD_MYSELF_URL]
    assert json_of(mocked_jira.calls[0])["redirect_uri"] == FIXED_CALLBACK
    assert tokens_of(cloud_account) == (None, None, Status.NOT_CONNECTED)  # the account's own: untouched


def test_a_persons_consent_that_misses_the_site_stores_nothing(alice_client, cloud_account, mocked_jira):
    q = connect_myself(alice_client, cloud_account)
    *_, who_it_is = atlassian_consents(mocked_jira, [OTHER_SITE], me=ALICE_ME)
    mocked_jira.must_not_be_asked(who_it_is)  # a grant that misses the site is never used

    response = come_back(alice_client, code=CODE, state=q["state"])

    (message,) = message_texts(response)
    assert message.startswith("The consent on Atlassian's page covered kendis-other (https://kendis-other.atlassian"
                              ".net), not https://kendis-demo.atlassian.net: nothing was stored.")
    assert not ALMCredential.objects.filter(refresh_token__isnull=False).exists()
    assert [c.request.url for c in mocked_jira.calls] == [CLOUD_TOKEN_URL, ACCESSIBLE_RESOURCES_URL]


def test_an_atlassian_account_another_person_holds_is_refused_by_its_account_id(alice_client, cloud_account,
                                                                                  mocked_jira):
    bob = staff_user("bob")
    # Same display name as Alice: only the account ID tells them apart, and it is Bob's.
    bobs = ALMCredential.objects.create(
        account=cloud_account, user=bob, access_token="BOB-access-1", refresh_token="BOB-refresh-1",
        token_expires_at=timezone.now() + timedelta(hours=1), status=Status.CONNECTED, connected_at=timezone.now(),
        connected_as_name=ALICE_ME["accountId"], connected_as_display_name="Bob Smith")
    q = connect_myself(alice_client, cloud_account)
    atlassian_consents(mocked_jira, [OUR_SITE], me=ALICE_ME)

    (message,) = message_texts(come_back(alice_client, code=CODE, state=q["state"]))

    assert "The Jira user Alice Jones is already connected to Jira Cloud - Demo by bob." in message
    assert "Nothing was stored." in message
    mine = ALMCredential.objects.filter(account=cloud_account, user__username="alice").first()
    assert mine is None or (mine.refresh_token, mine.connected_as_name) == (None, "")
    bobs.refresh_from_db()
    assert bobs.refresh_token == "BOB-refresh-1"
    # Atlassian has no revocation endpoint: nothing else was sent.
    assert [c.request.url for c in mocked_jira.calls] == [CLOUD_TOKEN_URL, ACCESSIBLE_RESOURCES_URL, CLOUD_MYSELF_URL]


def test_a_different_account_id_with_the_same_display_name_is_not_refused(alice_client, cloud_account, mocked_jira):
    ALMCredential.objects.create(
        account=cloud_account, user=staff_user("bob"), access_token="BOB-access-1", refresh_token="BOB-refresh-1",
        status=Status.CONNECTED, connected_as_name="5b10-bobs-own-account-id", connected_as_display_name="Alice Jones")
    q = connect_myself(alice_client, cloud_account)
    atlassian_consents(mocked_jira, [OUR_SITE], me=ALICE_ME)

    assert message_texts(come_back(alice_client, code=CODE, state=q["state"])) == [
        f"Connected to Jira as Alice Jones ({SCOPES})."]


# --------------------------------------------------------------------------
# 8. The form and the admin
# --------------------------------------------------------------------------


def add_cloud(client, **overrides):
    text = client.get(ADD_URL).content.decode()
    callback_id = re.search(r'name="callback_url" value="([^"]+)"', text).group(1)
    data = add_form_data(callback_id, name="Jira Cloud - New", authentication=CLOUD, base_url=CLOUD_SITE,
                         client_id="", client_secret="", cloud_scopes=["read:jira-work", "read:jira-user"])
    return client.post(ADD_URL, {**data, **overrides})


def form_errors(response) -> str:
    assert response.status_code == 200, "the form was accepted"
    return html.unescape(response.content.decode())


@pytest.mark.parametrize("site_url", ["http://kendis-demo.atlassian.net", "https://kendis-demo.atlassian.net/jira"])
def test_a_cloud_site_url_must_be_https_without_a_path(admin_client, atlassian, site_url):
    errors = form_errors(add_cloud(admin_client, base_url=site_url))
    assert "A Jira Cloud site URL is https://&lt;your-site&gt;.atlassian.net, without a path" in \
        errors.replace("<your-site>", "&lt;your-site&gt;")
    assert not ALMAccount.objects.exists()


def test_a_cloud_account_is_saved_with_its_scopes_and_offline_access(admin_client, atlassian):
    response = add_cloud(admin_client, cloud_scopes=["write:jira-work", "read:jira-user", "read:jira-work"])
    assert response.status_code == 302, response.content[:3000]
    account = ALMAccount.objects.get()
    assert (account.authentication, account.base_url) == (CLOUD, CLOUD_SITE)
    assert account.cloud_scopes == "read:jira-work write:jira-work read:jira-user offline_access"
    assert (account.client_id, account.client_secret) == ("", None)  # the deployment's app


@pytest.mark.parametrize("scopes", [[], ["read:jira-work", "write:jira-work"]])
def test_scopes_without_read_jira_user_are_refused(admin_client, atlassian, scopes):
    """/myself needs read:jira-user: without it no connection could say which Atlassian user it acts as."""
    errors = form_errors(add_cloud(admin_client, cloud_scopes=scopes))
    assert "read:jira-user is needed: it tells which Atlassian user each connection acts as." in errors
    assert not ALMAccount.objects.exists()


def test_an_own_client_id_without_its_secret_is_refused(admin_client, atlassian):
    errors = form_errors(add_cloud(admin_client, client_id="own-app-client-id", client_secret=""))
    assert "Your own Atlassian app needs its Secret too" in errors
    assert not ALMAccount.objects.exists()


def test_changing_data_center_to_cloud_ends_the_connection(admin_client, connected_account, mocked_jira):
    response = admin_client.post(change_url(connected_account), change_form_data(
        connected_account, authentication=CLOUD, base_url=CLOUD_SITE, cloud_scopes=["read:jira-work", "read:jira-user"],
        client_id="", _continue="Save"))

    assert response.status_code == 302, response.content[:3000]
    (message,) = [m for m in message_texts(response) if "connection to Jira was ended" in m]
    assert "the authentication changed from Jira Server / Data Center — Use OAuth 2.0 to Jira Cloud — Use OAuth " \
           "2.0 (3LO)" in message
    connected_account.refresh_from_db()
    assert (connected_account.access_token, connected_account.refresh_token) == (None, None)
    assert connected_account.status == Status.NOT_CONNECTED
    assert connected_account.authentication == CLOUD


def test_the_data_center_secret_never_serves_as_a_cloud_apps_secret(admin_client, connected_account, mocked_jira):
    """Switching to Jira Cloud with the link's Client ID kept would send the link's secret to Atlassian: refused;
    with the Client ID cleared (the deployment's app) the stored secret is forgotten, so no later Client ID can
    pick it up."""
    keep_id = admin_client.post(change_url(connected_account), change_form_data(
        connected_account, authentication=CLOUD, base_url=CLOUD_SITE, cloud_scopes=["read:jira-work", "read:jira-user"],
        _continue="Save"))
    assert keep_id.status_code == 200
    assert "The authentication changed: paste the Client Secret that goes with this Client ID" in form_errors(keep_id)
    connected_account.refresh_from_db()
    assert connected_account.authentication != CLOUD and connected_account.client_secret == CLIENT_SECRET

    cleared = admin_client.post(change_url(connected_account), change_form_data(
        connected_account, authentication=CLOUD, base_url=CLOUD_SITE, cloud_scopes=["read:jira-work", "read:jira-user"],
        client_id="", _continue="Save"))
    assert cleared.status_code == 302, cleared.content[:3000]
    connected_account.refresh_from_db()
    assert (connected_account.client_secret, connected_account.client_secret_base_url) == (None, "")
    assert len(mocked_jira.calls) == 0 or all("atlassian" not in c.request.url for c in mocked_jira.calls)


def test_a_malformed_site_url_in_atlassians_answer_matches_no_site(admin_client, cloud_account, mocked_jira):
    q = start_cloud_consent(admin_client, cloud_account)
    *_, who_it_is = atlassian_consents(mocked_jira, [{**OUR_SITE, "url": "https://kendis-demo.atlassian.net:notaport"}])
    mocked_jira.must_not_be_asked(who_it_is)  # a grant that misses the site is never used

    page = land(admin_client, come_back(admin_client, code=CODE, state=q["state"]))

    assert "nothing was stored" in page
    cloud_account.refresh_from_db()
    assert (cloud_account.access_token, cloud_account.cloud_id) == (None, "")


def test_changing_cloud_to_data_center_ends_the_connection_and_forgets_the_site(admin_client,
                                                                               connected_cloud_account):
    account = connected_cloud_account
    response = admin_client.post(change_url(account), change_form_data(
        account, authentication="jira_server_oauth2", base_url=JIRA, client_id="dc-client", client_secret="dc-sec",
        _continue="Save"))

    assert response.status_code == 302, response.content[:3000]
    assert any("the authentication changed" in m for m in message_texts(response))
    account.refresh_from_db()
    assert (account.access_token, account.refresh_token, account.status) == (None, None, Status.NOT_CONNECTED)
    assert (account.cloud_id, account.cloud_site_name) == ("", "")


def test_a_new_site_url_ends_the_connection_and_wipes_the_cloud_id(admin_client, connected_cloud_account):
    account = connected_cloud_account
    response = admin_client.post(change_url(account), cloud_form_data(
        account, base_url="https://kendis-other.atlassian.net", _continue="Save"))

    assert response.status_code == 302, response.content[:3000]
    assert any("the Jira base URL changed from https://kendis-demo.atlassian.net to "
               "https://kendis-other.atlassian.net" in m for m in message_texts(response))
    account.refresh_from_db()
    assert (account.cloud_id, account.cloud_site_name) == ("", "")
    assert (account.access_token, account.refresh_token, account.status) == (None, None, Status.NOT_CONNECTED)


def test_an_edit_that_keeps_site_and_authentication_keeps_the_connection(admin_client, connected_cloud_account):
    account = connected_cloud_account
    response = admin_client.post(change_url(account), cloud_form_data(account, name="Jira Cloud - Demo (prod)",
                                                                 _continue="Save"))
    assert response.status_code == 302, response.content[:3000]
    account.refresh_from_db()
    assert (account.refresh_token, account.cloud_id, account.status) == (REFRESH_TOKEN, CLOUD_ID, Status.CONNECTED)


@pytest.mark.parametrize("configured", [False, True])
def test_the_add_form_shows_the_fixed_cloud_callback_url_with_copy_url(admin_client, atlassian, configured):
    if not configured:
        atlassian.ATLASSIAN_CLIENT_ID = atlassian.ATLASSIAN_CLIENT_SECRET = ""
    text = html.unescape(admin_client.get(ADD_URL).content.decode())
    assert f'id="cloud-callback-url" value="{FIXED_CALLBACK}"' in text
    assert 'data-copy-target="cloud-callback-url">Copy URL</button>' in text
    assert ("Register it as the Callback URL of the Atlassian app in the developer console" in text) is not configured
    assert ("This deployment's Atlassian app is configured: nothing to register." in text) is configured
    assert 'value="jira_cloud_oauth2"' in text and "Jira Cloud — Use OAuth 2.0 (3LO)" in text


def test_the_list_shows_each_accounts_provider(admin_client, account, cloud_account):
    text = admin_client.get(reverse("admin:alm_accounts_almaccount_changelist")).content.decode()
    assert "Provider" in text
    providers = dict(re.findall(r'<a href="[^"]+/(\d+)/change/[^"]*">[^<]+</a>.*?<td class="field-provider_display">'
                                r"([^<]+)</td>", text, re.S))
    assert providers == {str(account.pk): "Jira Data Center", str(cloud_account.pk): "Jira Cloud"}


def test_the_account_page_shows_the_provider_the_site_name_and_the_cloud_id(admin_client, connected_cloud_account):
    text = html.unescape(admin_client.get(change_url(connected_cloud_account)).content.decode())
    assert "Jira Cloud site" in text
    assert f"kendis-demo — cloud id <code>{CLOUD_ID}</code>" in text
    # The consent's end (365 days after it was given: a day ago here), so that the yearly re-consent is no surprise.
    ends = timezone.localtime(connected_cloud_account.connected_at + timedelta(days=365))
    assert f"{ends:%Y-%m-%d %H:%M:%S %Z} (Atlassian ends every grant 365 days after its consent" in text
    fresh = ALMAccount.objects.create(name="Jira Cloud - Fresh", base_url="https://fresh.atlassian.net",
                                      authentication=CLOUD)
    assert "Not known yet: found when consent is given (Get Auth Token)." in html.unescape(
        admin_client.get(change_url(fresh)).content.decode())


# --------------------------------------------------------------------------
# 10. No secret in what the consent leaves behind; the deployment's secret only goes to the auth host
# --------------------------------------------------------------------------


def test_the_consent_leaves_no_secret_in_pages_messages_events_or_logs(admin_client, cloud_account, mocked_jira,
                                                                      caplog):
    caplog.set_level(logging.DEBUG)
    q = start_cloud_consent(admin_client, cloud_account)
    verifier = PendingAuthorization.objects.get().code_verifier
    atlassian_consents(mocked_jira, [OTHER_SITE, OUR_SITE])
    response = come_back(admin_client, code=CODE, state=q["state"])
    page = land(admin_client, response)
    # A failed re-authorization too (the site missed): its message and event.
    q2 = start_cloud_consent(admin_client, cloud_account)
    mocked_jira.replace("GET", ACCESSIBLE_RESOURCES_URL, json=[OTHER_SITE])
    page2 = land(admin_client, come_back(admin_client, code=CODE + "-2", state=q2["state"]))

    secrets = [ATLASSIAN_SECRET, CODE, verifier, "ACCESSTOKEN-2", "REFRESHTOKEN-2", ACCESS_TOKEN, CLIENT_SECRET]
    said = [page, page2, response["Location"], caplog.text, *message_texts(response),
            *AuthEvent.objects.values_list("message", flat=True)]
    for text in said:
        for secret in secrets:
            assert secret not in text
    # Where the requests went: the secret only to the auth host; nothing to the site itself.
    assert set(hosts_called(mocked_jira)) == {ATLASSIAN_AUTH, ATLASSIAN_API}
    for call in mocked_jira.calls:
        sent = f"{call.request.url} {call.request.headers} {call.request.body or ''}"
        assert (ATLASSIAN_SECRET in sent) is (call.request.url == CLOUD_TOKEN_URL)
        assert "atlassian.net" not in call.request.url
