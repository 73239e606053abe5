"""Issue 22: service accounts (OAuth 2.0 client credentials) on Jira Data Center and Jira Cloud.

An ALM account whose Authentication is a service account's connects without consent: Save asks for a token with
the service account's Client ID and Secret and reads /myself at once (a clear form error otherwise, nothing
stored); the token is cached encrypted until shortly before it expires, then asked for again (never a refresh
token); the refresher only verifies the connection every SERVICE_ACCOUNT_CHECK_HOURS, so that a deleted or disabled
service account raises the "broken" alert and its next success the recovery alert. Jira is mocked with `responses`
(the strict `mocked_jira`).
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from alm_accounts import services
from alm_accounts.models import Alert, ALMAccount, AuthEvent
from tests.conftest import (
    ACCESS_TOKEN,
    ACCESSIBLE_RESOURCES_URL,
    CLIENT_SECRET,
    CLOUD_ID,
    CLOUD_MYSELF_URL,
    CLOUD_SITE,
    CLOUD_TOKEN_URL,
    JIRA,
    MYSELF_URL,
    OTHER_SITE,
    OUR_SITE,
    REFRESH_TOKEN,
    REVOKE_URL,
    TOKEN_URL,
    add_form_data,
    change_form_data,
    change_url,
    form_of,
    json_of,
    page_text,
)

Auth = ALMAccount.Authentication
Status = ALMAccount.Status
SERVICE_ID = "svc-client-id-7d1e"
SERVICE_SECRET = "SERVICESECRET-canary-4b8e2f"
SERVICE_TOKEN = "SERVICETOKEN-1-c0ffee"
SERVICE_TOKEN_2 = "SERVICETOKEN-2-decaf"
DC_SERVICE_ME = {"name": "svc-kendis", "key": "JIRAUSER10900", "displayName": "Kendis Service Account"}
CLOUD_SERVICE_ME = {"accountId": "712020:svc-kendis-0001", "displayName": "Kendis Cloud Service"}


def service_token(token: str = SERVICE_TOKEN, *, expires_in: int = 3600, scope: str = "READ") -> dict:
    """A client-credentials answer: an access token and no refresh token."""
    return {"access_token": token, "token_type": "bearer", "expires_in": expires_in, "scope": scope}


def token_calls(mocked, url: str = TOKEN_URL) -> list:
    return [call for call in mocked.calls if call.request.url == url]


def dc_form(callback_id: str, **overrides) -> dict:
    return add_form_data(callback_id, **{"name": "Jira - Service", "authentication": Auth.JIRA_SERVER_SERVICE_ACCOUNT,
                                         "client_id": "", "client_secret": "", "service_client_id": SERVICE_ID,
                                         "service_client_secret": SERVICE_SECRET, "scope": "READ", **overrides})


def cloud_form(callback_id: str, **overrides) -> dict:
    return add_form_data(callback_id, **{"name": "Jira Cloud - Service", "authentication":
                                         Auth.JIRA_CLOUD_SERVICE_ACCOUNT, "base_url": CLOUD_SITE, "client_id": "",
                                         "client_secret": "", "service_client_id": SERVICE_ID,
                                         "service_client_secret": SERVICE_SECRET,
                                         "cloud_scopes": ["read:jira-work", "read:jira-user"], **overrides})


def add_account(admin_client, data_for, **overrides):
    """Open the add form (for its callback id) and post it."""
    page = admin_client.get(reverse("admin:alm_accounts_almaccount_add"))
    callback_id = page.context["adminform"].form["callback_url"].initial
    return admin_client.post(reverse("admin:alm_accounts_almaccount_add"), data_for(callback_id, **overrides))


def form_errors(response) -> dict:
    form = response.context["adminform"].form
    return {name: [str(e) for e in errors] for name, errors in form.errors.items()}


@pytest.fixture
def service_account(db):
    """A Data Center service account, connected as its service account, its token expiring in 50 minutes and
    checked an hour ago."""
    now = timezone.now()
    return ALMAccount.objects.create(
        name="Jira - Service", base_url=JIRA, authentication=Auth.JIRA_SERVER_SERVICE_ACCOUNT, scope="READ",
        service_client_id=SERVICE_ID, service_client_secret=SERVICE_SECRET, service_client_secret_base_url=JIRA,
        access_token=SERVICE_TOKEN, token_expires_at=now + timedelta(minutes=50), status=Status.CONNECTED,
        connected_at=now - timedelta(days=1), last_refreshed_at=now - timedelta(hours=1),
        connected_as_name="svc-kendis", connected_as_display_name="Kendis Service Account")


# --------------------------------------------------------------------------
# Save checks the credentials at once: Data Center
# --------------------------------------------------------------------------


def test_saving_a_data_center_service_account_gets_a_token_and_reads_myself(admin_client, mocked_jira):
    mocked_jira.post(TOKEN_URL, json=service_token())
    mocked_jira.get(MYSELF_URL, json=DC_SERVICE_ME)

    response = add_account(admin_client, dc_form)

    assert response.status_code == 302, form_errors(response)
    (token_call,) = token_calls(mocked_jira)
    assert form_of(token_call) == {"grant_type": "client_credentials", "client_id": SERVICE_ID,
                                   "client_secret": SERVICE_SECRET, "scope": "READ"}
    assert mocked_jira.calls[-1].request.headers["Authorization"] == f"Bearer {SERVICE_TOKEN}"
    account = ALMAccount.objects.get(name="Jira - Service")
    assert account.status == Status.CONNECTED and account.access_token == SERVICE_TOKEN
    assert account.refresh_token is None
    assert account.connected_as_name == "svc-kendis"
    assert account.service_client_secret_base_url == JIRA
    page = page_text(admin_client.get(change_url(account)))
    assert "Connected as Kendis Service Account (service account)." in page
    assert "Kendis Service Account (svc-kendis)" in page  # the Connection section's "Connected as"
    assert 'name="_get_auth_token"' not in page  # no consent to give
    assert SERVICE_SECRET not in page and SERVICE_TOKEN not in page
    assert AuthEvent.objects.filter(account=account, kind=AuthEvent.Kind.CONNECTED).count() == 1


@pytest.mark.parametrize("answer, field, words", [
    ({"status": 401, "json": {"error": "invalid_client", "error_description": "Bad credentials"}},
     "service_client_secret", "Jira refuses the service account's Client ID and Client Secret (invalid_client)"),
    ({"status": 400, "json": {"error": "invalid_scope", "error_description": "scope"}},
     "scope", "Jira refuses the scope asked for (READ) for this service account (invalid_scope)"),
])
def test_a_refused_data_center_service_account_is_a_form_error_and_nothing_is_stored(admin_client, mocked_jira,
                                                                                     answer, field, words):
    mocked_jira.post(TOKEN_URL, **answer)

    response = add_account(admin_client, dc_form)

    assert response.status_code == 200
    assert any(words in error for error in form_errors(response)[field])
    assert not ALMAccount.objects.exists()
    assert SERVICE_SECRET not in page_text(response)


def test_a_token_that_cannot_read_myself_is_a_form_error_and_nothing_is_stored(admin_client, mocked_jira):
    mocked_jira.post(TOKEN_URL, json=service_token())
    mocked_jira.get(MYSELF_URL, status=403, json={"errorMessages": ["forbidden"]})

    response = add_account(admin_client, dc_form)

    assert response.status_code == 200
    assert "reading /myself with it failed: nothing was stored" in " ".join(form_errors(response)["__all__"])
    assert not ALMAccount.objects.exists()


@pytest.mark.parametrize("overrides, field, words", [
    ({"scope": "ADMIN"}, "scope", "A Data Center service account can be given READ or WRITE only"),
    ({"scope": "SYSTEM_ADMIN"}, "scope", "A Data Center service account can be given READ or WRITE only"),
    ({"service_client_id": ""}, "service_client_id", "Paste the Client ID shown when the service account's"),
    ({"service_client_secret": ""}, "service_client_secret", "Paste the Client Secret shown when the service"),
    ({"service_client_secret": "two words"}, "service_client_secret", "must not contain spaces"),
])
def test_bad_input_for_a_data_center_service_account_is_refused_before_jira_is_asked(admin_client, mocked_jira,
                                                                                     overrides, field, words):
    mocked_jira.must_not_be_asked(mocked_jira.post(TOKEN_URL, json=service_token()))

    response = add_account(admin_client, dc_form, **overrides)

    assert response.status_code == 200
    assert any(words in error for error in form_errors(response)[field]), form_errors(response)
    assert token_calls(mocked_jira) == []
    assert not ALMAccount.objects.exists()


# --------------------------------------------------------------------------
# Save checks the credentials at once: Jira Cloud
# --------------------------------------------------------------------------


def test_saving_a_cloud_service_account_finds_its_site_and_reads_myself_there(admin_client, atlassian, mocked_jira):
    mocked_jira.post(CLOUD_TOKEN_URL, json=service_token(scope="read:jira-work read:jira-user"))
    mocked_jira.get(ACCESSIBLE_RESOURCES_URL, json=[OTHER_SITE, OUR_SITE])
    mocked_jira.get(CLOUD_MYSELF_URL, json=CLOUD_SERVICE_ME)

    response = add_account(admin_client, cloud_form)

    assert response.status_code == 302, form_errors(response)
    (token_call,) = token_calls(mocked_jira, CLOUD_TOKEN_URL)
    # Atlassian's documented request: the credential's Client ID and Secret, as JSON; its scopes were chosen when
    # the credential was created.
    assert json_of(token_call) == {"grant_type": "client_credentials", "client_id": SERVICE_ID,
                                   "client_secret": SERVICE_SECRET}
    account = ALMAccount.objects.get(name="Jira Cloud - Service")
    assert (account.cloud_id, account.cloud_site_name) == (CLOUD_ID, "kendis-demo")
    assert account.connected_as_name == CLOUD_SERVICE_ME["accountId"] and account.refresh_token is None
    assert "offline_access" not in account.cloud_scopes.split()  # client credentials issue no refresh token
    assert "Connected as Kendis Cloud Service (service account)." in page_text(admin_client.get(change_url(account)))


def test_a_cloud_service_account_that_does_not_reach_the_site_is_a_form_error(admin_client, atlassian, mocked_jira):
    mocked_jira.post(CLOUD_TOKEN_URL, json=service_token())
    mocked_jira.get(ACCESSIBLE_RESOURCES_URL, json=[OTHER_SITE])

    response = add_account(admin_client, cloud_form)

    assert response.status_code == 200
    (error,) = form_errors(response)["base_url"]
    assert f"The service account reaches kendis-other (https://kendis-other.atlassian.net), not {CLOUD_SITE}: " \
           "nothing was stored." in error
    assert not ALMAccount.objects.exists()


@pytest.mark.parametrize("answer", [
    {"status": 401, "json": {"error": "access_denied", "error_description": "Unauthorized"}},
    {"status": 401, "json": {"error": "invalid_client", "error_description": "Unauthorized"}},
])
def test_a_refused_cloud_service_account_is_a_form_error(admin_client, atlassian, mocked_jira, answer):
    mocked_jira.post(CLOUD_TOKEN_URL, **answer)

    response = add_account(admin_client, cloud_form)

    assert response.status_code == 200
    (error,) = form_errors(response)["service_client_secret"]
    assert error.startswith("Atlassian refuses the service account's Client ID and Client Secret")
    assert "Atlassian administration → Directory → Service accounts" in error
    assert not ALMAccount.objects.exists()


def test_a_cloud_service_account_needs_read_jira_user_to_say_who_it_is(admin_client, atlassian, mocked_jira):
    mocked_jira.must_not_be_asked(mocked_jira.post(CLOUD_TOKEN_URL, json=service_token()))

    response = add_account(admin_client, cloud_form, cloud_scopes=["read:jira-work"])

    assert "read:jira-user is needed" in " ".join(form_errors(response)["cloud_scopes"])
    assert token_calls(mocked_jira, CLOUD_TOKEN_URL) == []


# --------------------------------------------------------------------------
# The token: cached, reused, asked for again shortly before it expires; one request for concurrent callers
# --------------------------------------------------------------------------


def test_a_cached_token_is_reused_until_shortly_before_it_expires(service_account, mocked_jira):
    mocked_jira.get(f"{JIRA}/rest/api/2/issue/KEN-1", json={"key": "KEN-1"})
    mocked_jira.get(f"{JIRA}/rest/api/2/issue/KEN-1", json={"key": "KEN-1"})

    for _ in range(2):
        services.jira_request(account=service_account, method="GET", path="/rest/api/2/issue/KEN-1")

    assert token_calls(mocked_jira) == []
    assert {call.request.headers["Authorization"] for call in mocked_jira.calls} == {f"Bearer {SERVICE_TOKEN}"}


def test_an_expiring_token_is_asked_for_once_and_then_reused(service_account, mocked_jira):
    ALMAccount.objects.filter(pk=service_account.pk).update(token_expires_at=timezone.now() + timedelta(seconds=30))
    service_account.refresh_from_db()
    mocked_jira.post(TOKEN_URL, json=service_token(SERVICE_TOKEN_2))
    for _ in range(3):
        mocked_jira.get(f"{JIRA}/rest/api/2/issue/KEN-1", json={"key": "KEN-1"})

    for _ in range(3):
        services.jira_request(account=service_account, method="GET", path="/rest/api/2/issue/KEN-1")

    (token_call,) = token_calls(mocked_jira)
    assert form_of(token_call)["grant_type"] == "client_credentials"
    rest = [call for call in mocked_jira.calls if call.request.url != TOKEN_URL]
    assert {call.request.headers["Authorization"] for call in rest} == {f"Bearer {SERVICE_TOKEN_2}"}
    service_account.refresh_from_db()
    assert service_account.access_token == SERVICE_TOKEN_2 and service_account.refresh_token is None
    assert timedelta(minutes=59) < service_account.token_expires_at - timezone.now() <= timedelta(hours=1)


def test_a_token_jira_no_longer_accepts_is_replaced_once(service_account, mocked_jira):
    mocked_jira.get(f"{JIRA}/rest/api/2/issue/KEN-1", status=401)
    mocked_jira.post(TOKEN_URL, json=service_token(SERVICE_TOKEN_2))
    mocked_jira.get(f"{JIRA}/rest/api/2/issue/KEN-1", json={"key": "KEN-1"})

    assert services.jira_request(account=service_account, method="GET", path="/rest/api/2/issue/KEN-1") == \
        {"key": "KEN-1"}
    assert len(token_calls(mocked_jira)) == 1


def test_test_connection_works_through_the_service_account(admin_client, service_account, mocked_jira):
    mocked_jira.get(MYSELF_URL, json=DC_SERVICE_ME)
    mocked_jira.get(f"{JIRA}/rest/api/2/serverInfo", json={"version": "10.3.1", "baseUrl": JIRA})

    response = admin_client.post(reverse("admin:alm_accounts_almaccount_test_connection",
                                         args=[service_account.pk]), follow=True)

    assert f"Connected to Jira 10.3.1 at {JIRA} as Kendis Service Account." in page_text(response)
    assert token_calls(mocked_jira) == []


# --------------------------------------------------------------------------
# The refresher verifies it every SERVICE_ACCOUNT_CHECK_HOURS: invalid_client breaks it, the next success mends it
# --------------------------------------------------------------------------


def refused(mocked) -> None:
    mocked.post(TOKEN_URL, status=401, json={"error": "invalid_client", "error_description": "disabled"})


def test_a_recently_checked_service_account_is_left_alone_even_with_its_token_expired(service_account, mocked_jira,
                                                                                      run_command):
    ALMAccount.objects.filter(pk=service_account.pk).update(token_expires_at=timezone.now() - timedelta(minutes=5))

    assert run_command("--concurrency", "1", "-v", "0").code == 0

    assert token_calls(mocked_jira) == []


def test_a_disabled_service_account_raises_the_broken_alert_and_its_next_success_the_recovery(
        service_account, mocked_jira, run_command, settings):
    settings.SERVICE_ACCOUNT_CHECK_HOURS = 24
    ALMAccount.objects.filter(pk=service_account.pk).update(last_refreshed_at=timezone.now() - timedelta(hours=25))
    refused(mocked_jira)

    run_command("--concurrency", "1", "-v", "0")

    service_account.refresh_from_db()
    assert service_account.status == Status.ERROR
    assert service_account.last_error.startswith("Jira refuses the service account's Client ID and Client Secret")
    assert service_account.client_refused_at is None  # the link people use is not the one refused
    (broken,) = Alert.objects.all()
    assert (broken.event, broken.reason) == (Alert.Event.BROKEN, "service_account_refused")
    assert "disabled" in broken.message and SERVICE_SECRET not in broken.message

    # Re-enabled in Jira: the next check (an hour later: a failed check is tried again hourly) succeeds, and says
    # so once.
    mocked_jira.post(TOKEN_URL, json=service_token(SERVICE_TOKEN_2))
    ALMAccount.objects.filter(pk=service_account.pk).update(updated_at=timezone.now() - timedelta(minutes=61))
    run_command("--concurrency", "1", "-v", "0")

    service_account.refresh_from_db()
    assert service_account.status == Status.CONNECTED and service_account.access_token == SERVICE_TOKEN_2
    assert [a.event for a in Alert.objects.order_by("id")] == [Alert.Event.BROKEN, Alert.Event.RECOVERED]


def test_the_check_cadence_is_a_setting(service_account, mocked_jira, run_command, settings):
    settings.SERVICE_ACCOUNT_CHECK_HOURS = 1  # service_account was checked an hour ago: due now
    mocked_jira.post(TOKEN_URL, json=service_token(SERVICE_TOKEN_2))

    run_command("--concurrency", "1", "-v", "0")

    assert len(token_calls(mocked_jira)) == 1


# --------------------------------------------------------------------------
# Get Auth Token, Disconnect, and moving between a person's consent and a service account
# --------------------------------------------------------------------------


def test_a_service_account_has_no_consent_to_start(service_account, admin_user):
    with pytest.raises(services.ServiceError, match="there is no consent to give"):
        services.start_authorization(account=service_account, user=admin_user, session={})


def test_disconnect_forgets_the_token_and_the_service_secret(admin_client, service_account, mocked_jira):
    # The secret is gone: no token can be asked for.
    mocked_jira.must_not_be_asked(mocked_jira.post(TOKEN_URL, json=service_token(SERVICE_TOKEN_2)))

    response = admin_client.post(reverse("admin:alm_accounts_almaccount_disconnect", args=[service_account.pk]),
                                 follow=True)

    assert "the tokens and the service account's Client Secret were deleted here" in page_text(response)
    service_account.refresh_from_db()
    assert service_account.access_token is None and service_account.service_client_secret is None
    assert service_account.status == Status.NOT_CONNECTED
    with pytest.raises(services.ServiceError, match="paste the service account's Client ID and Client Secret"):
        services.valid_access_token(account=service_account)
    assert token_calls(mocked_jira) == []
    assert "No token yet: paste the service account's Client ID and Client Secret and save" in \
        page_text(admin_client.get(change_url(service_account)))


@pytest.mark.django_db(transaction=True)  # the revocation waits for the admin's commit
def test_moving_from_a_persons_consent_to_a_service_account_ends_the_old_grant(admin_client, connected_account,
                                                                            mocked_jira):
    mocked_jira.post(REVOKE_URL, status=200)
    mocked_jira.post(REVOKE_URL, status=200)
    mocked_jira.post(TOKEN_URL, json=service_token())
    mocked_jira.get(MYSELF_URL, json=DC_SERVICE_ME)

    response = admin_client.post(change_url(connected_account), change_form_data(
        connected_account, authentication=Auth.JIRA_SERVER_SERVICE_ACCOUNT, scope="WRITE",
        service_client_id=SERVICE_ID, service_client_secret=SERVICE_SECRET), follow=True)

    said = page_text(response)
    assert "The connection to Jira was ended because the service account's Client ID changed and the " \
           "authentication changed" in said
    assert "Connected as Kendis Service Account (service account)." in said
    revoked = [form_of(c)["token"] for c in mocked_jira.calls if c.request.url == REVOKE_URL]
    assert revoked == [REFRESH_TOKEN, ACCESS_TOKEN]  # the person's grant, at the Jira that issued it
    connected_account.refresh_from_db()
    assert connected_account.refresh_token is None and connected_account.access_token == SERVICE_TOKEN
    assert connected_account.connected_as_name == "svc-kendis"
    # The incoming link stays: people's own connections go on through it.
    assert connected_account.client_secret == CLIENT_SECRET


def test_moving_back_to_a_persons_consent_forgets_the_service_secret(admin_client, service_account, mocked_jira):
    mocked_jira.must_not_be_asked(mocked_jira.post(TOKEN_URL, json=service_token()))

    response = admin_client.post(change_url(service_account), change_form_data(
        service_account, authentication=Auth.JIRA_SERVER_OAUTH2, client_id="client-id-123",
        client_secret=CLIENT_SECRET, scope="ADMIN"), follow=True)

    assert response.status_code == 200
    service_account.refresh_from_db()
    assert service_account.service_client_secret is None and service_account.access_token is None
    assert service_account.status == Status.NOT_CONNECTED
    assert token_calls(mocked_jira) == []


def test_the_service_secret_is_never_sent_to_a_new_base_url(admin_client, service_account, mocked_jira):
    other = "https://jira.other.example.com"
    mocked_jira.must_not_be_asked(mocked_jira.post(f"{other}/rest/oauth2/latest/token", json=service_token()))

    response = admin_client.post(change_url(service_account), change_form_data(
        service_account, base_url=other, service_client_id=SERVICE_ID))

    assert "Paste the service account's Client Secret again" in " ".join(form_errors(response)[
        "service_client_secret"])
    assert all(call.request.url.startswith(JIRA) for call in mocked_jira.calls)


# --------------------------------------------------------------------------
# The secret and the tokens go only to their token endpoint and API host, and are never shown or logged
# --------------------------------------------------------------------------


def test_the_service_secret_and_tokens_go_only_where_they_belong_and_are_never_shown_or_logged(
        admin_client, mocked_jira, caplog, run_command):
    caplog.set_level(logging.DEBUG)
    mocked_jira.post(TOKEN_URL, json=service_token())
    mocked_jira.get(MYSELF_URL, json=DC_SERVICE_ME)
    saved = add_account(admin_client, dc_form)
    account = ALMAccount.objects.get()
    mocked_jira.post(TOKEN_URL, status=401, json={"error": "invalid_client", "error_description": "disabled"})
    ALMAccount.objects.filter(pk=account.pk).update(last_refreshed_at=timezone.now() - timedelta(days=2))
    run = run_command("--concurrency", "1")

    for call in mocked_jira.calls:
        sent = (call.request.body or b"")
        sent = sent.decode() if isinstance(sent, bytes) else sent
        if SERVICE_SECRET in sent:
            assert call.request.url == TOKEN_URL
        if SERVICE_TOKEN in call.request.headers.get("Authorization", ""):
            assert call.request.url.startswith(f"{JIRA}/rest/api/")
    seen = [page_text(saved), page_text(admin_client.get(change_url(account))), run.out, run.err,
            json.dumps([r.getMessage() for r in caplog.records]),
            json.dumps(list(AuthEvent.objects.values_list("message", flat=True))),
            json.dumps(list(Alert.objects.values_list("subject", "message"))), account.last_error]
    for text in seen:
        assert SERVICE_SECRET not in text and SERVICE_TOKEN not in text


# --------------------------------------------------------------------------
# People keep their own connections on a service account; Jira Cloud renews through Atlassian
# --------------------------------------------------------------------------


def test_a_persons_own_connection_on_a_service_account_refreshes_through_the_incoming_link(service_account,
                                                                                         mocked_jira):
    from tests.factories import CredentialFactory

    ALMAccount.objects.filter(pk=service_account.pk).update(client_id="client-id-123", client_secret=CLIENT_SECRET,
                                                            client_secret_base_url=JIRA)
    service_account.refresh_from_db()
    credential = CredentialFactory(account=service_account, user__username="alice", expires_in=None)
    mocked_jira.post(TOKEN_URL, json={"access_token": "ALICE-2", "refresh_token": "ALICE-R2", "token_type": "bearer",
                                      "expires_in": 3600, "scope": "READ"})

    result = services.refresh_grant(grant=services.GrantRef.of(credential), actor="test")

    assert result.outcome is services.RefreshOutcome.REFRESHED
    (call,) = token_calls(mocked_jira)
    sent = form_of(call)
    assert (sent["grant_type"], sent["client_id"], sent["client_secret"]) == ("refresh_token", "client-id-123",
                                                                              CLIENT_SECRET)
    assert SERVICE_SECRET not in str(call.request.body)


def test_a_cloud_service_account_asks_atlassian_for_its_next_token(atlassian, mocked_jira, db):
    account = ALMAccount.objects.create(
        name="Jira Cloud - Service", base_url=CLOUD_SITE, authentication=Auth.JIRA_CLOUD_SERVICE_ACCOUNT,
        cloud_scopes="read:jira-work read:jira-user", service_client_id=SERVICE_ID,
        service_client_secret=SERVICE_SECRET, cloud_id=CLOUD_ID, cloud_site_name="kendis-demo",
        status=Status.CONNECTED, connected_at=timezone.now() - timedelta(days=1),
        last_refreshed_at=timezone.now() - timedelta(hours=2), connected_as_name=CLOUD_SERVICE_ME["accountId"])
    mocked_jira.post(CLOUD_TOKEN_URL, json=service_token(SERVICE_TOKEN_2, scope="read:jira-work read:jira-user"))
    mocked_jira.get(f"{CLOUD_MYSELF_URL.rsplit('/myself', 1)[0]}/issue/KEN-1", json={"key": "KEN-1"})

    services.jira_request(account=account, method="GET", path="/rest/api/3/issue/KEN-1")

    (token_call,) = token_calls(mocked_jira, CLOUD_TOKEN_URL)
    assert json_of(token_call) == {"grant_type": "client_credentials", "client_id": SERVICE_ID,
                                   "client_secret": SERVICE_SECRET}
    rest = mocked_jira.calls[-1].request
    assert rest.url.startswith(f"https://api.example-atlassian.test/ex/jira/{CLOUD_ID}/")
    assert rest.headers["Authorization"] == f"Bearer {SERVICE_TOKEN_2}"


def test_people_can_connect_to_a_cloud_service_account_through_the_deployments_app(atlassian, alice, client):
    ALMAccount.objects.create(name="Jira Cloud - Service", base_url=CLOUD_SITE,
                              authentication=Auth.JIRA_CLOUD_SERVICE_ACCOUNT, service_client_id=SERVICE_ID,
                              service_client_secret=SERVICE_SECRET)
    client.force_login(alice)

    page = page_text(client.get(reverse("my_alm_credentials")))

    assert 'data-account="Jira Cloud - Service"' in page


def test_a_failed_check_is_tried_again_after_an_hour_not_at_every_pass(service_account, mocked_jira, run_command):
    ALMAccount.objects.filter(pk=service_account.pk).update(last_refreshed_at=timezone.now() - timedelta(hours=25))
    refused(mocked_jira)
    run_command("--concurrency", "1", "-v", "0")
    run_command("--concurrency", "1", "-v", "0")  # the next pass, minutes later: not asked again
    assert len(token_calls(mocked_jira)) == 1

    ALMAccount.objects.filter(pk=service_account.pk).update(updated_at=timezone.now() - timedelta(minutes=61))
    mocked_jira.post(TOKEN_URL, json=service_token(SERVICE_TOKEN_2))
    run_command("--concurrency", "1", "-v", "0")

    assert len(token_calls(mocked_jira)) == 2
    service_account.refresh_from_db()
    assert service_account.status == Status.CONNECTED


def test_a_link_jira_refuses_does_not_stop_the_service_accounts_check(service_account, mocked_jira, run_command):
    # People's link was removed in Jira (services.client_refused): the service account's own token is not
    # obtained through it.
    ALMAccount.objects.filter(pk=service_account.pk).update(
        client_refused_at=timezone.now() - timedelta(minutes=5), client_checked_at=timezone.now(),
        last_refreshed_at=timezone.now() - timedelta(hours=25))
    mocked_jira.post(TOKEN_URL, json=service_token(SERVICE_TOKEN_2))

    run_command("--concurrency", "1", "-v", "0")

    assert len(token_calls(mocked_jira)) == 1


def test_a_token_request_that_did_not_get_through_is_asked_again_safely(service_account, mocked_jira, settings):
    """Nothing rotates with client credentials: unlike a refresh, a lost or refused-before-processing request is
    simply sent again within the deadline."""
    settings.JIRA_RETRY_BACKOFF = (0, 0)
    ALMAccount.objects.filter(pk=service_account.pk).update(token_expires_at=None)
    service_account.refresh_from_db()
    mocked_jira.post(TOKEN_URL, status=503, body="busy")
    mocked_jira.post(TOKEN_URL, json=service_token(SERVICE_TOKEN_2))

    assert services.valid_access_token(account=service_account) == SERVICE_TOKEN_2
    assert len(token_calls(mocked_jira)) == 2


def test_saving_while_jira_cannot_be_reached_is_a_form_error_and_nothing_is_stored(admin_client, mocked_jira,
                                                                                  settings):
    settings.JIRA_RETRY_BACKOFF = ()
    mocked_jira.post(TOKEN_URL, status=502, body="bad gateway")

    response = add_account(admin_client, dc_form)

    (error,) = form_errors(response)["base_url"]
    assert error.startswith("Jira's token endpoint could not be used: Jira's token endpoint answered HTTP 502")
    assert not ALMAccount.objects.exists()


def test_a_viewer_sees_that_a_service_secret_is_stored_never_the_secret(client, service_account):
    from tests.conftest import staff_user

    client.force_login(staff_user("viewer", "view_almaccount"))

    page = page_text(client.get(change_url(service_account)))

    assert "Service account Client Secret" in page and "Stored (encrypted)" in page
    assert SERVICE_SECRET not in page and SERVICE_TOKEN not in page
