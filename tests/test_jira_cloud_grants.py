"""Issue 14 - Jira Cloud grants in the one lifecycle: refresh, the reuse leeway, the yearly consent, Test
connection, jira_request, Disconnect, the settings, and secrets.

Atlassian's authorization server and API gateway are two stand-in hosts (conftest); `responses` records every
request. Refreshes run the real service (services.refresh_grant) as the refresher and the buttons do.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import requests
from django.urls import reverse
from django.utils import timezone

from alm_accounts import services
from alm_accounts.atlassian import CONNECTED_APPS_URL
from alm_accounts.models import Alert, ALMAccount, AuthEvent
from alm_accounts.services import GrantRef, RefreshOutcome
from tests.conftest import (
    ACCESS_TOKEN,
    ACCESSIBLE_RESOURCES_URL,
    ATLASSIAN_API,
    ATLASSIAN_AUTH,
    ATLASSIAN_CLIENT_ID,
    ATLASSIAN_ME,
    ATLASSIAN_SECRET,
    CLIENT_SECRET,
    CLOUD_BASE,
    CLOUD_CALLBACK_PATH,
    CLOUD_MYSELF_URL,
    CLOUD_SERVER_INFO_URL,
    CLOUD_SITE,
    CLOUD_TOKEN_URL,
    OUR_SITE,
    REFRESH_TOKEN,
    broken_connection,
    button_url,
    json_of,
    page_text,
    production_settings,
    run,
    start_cloud_consent,
    token_answer,
)

Status = ALMAccount.Status
ISSUE_URL = f"{CLOUD_BASE}/rest/api/3/issue/DEMO-1"
SECRETS = (ACCESS_TOKEN, REFRESH_TOKEN, "ACCESSTOKEN-2", "REFRESHTOKEN-2", "ACCESSTOKEN-3", "REFRESHTOKEN-3",
           ATLASSIAN_SECRET, CLIENT_SECRET)


def refresh(grant) -> services.RefreshResult:
    return services.refresh_grant(grant=GrantRef.of(grant), actor="test")


def token_posts(mocked) -> list[dict]:
    return [json_of(c) for c in mocked.calls if c.request.url == CLOUD_TOKEN_URL]


def atlassian_refreshes(mocked, n: int = 2):
    return mocked.post(CLOUD_TOKEN_URL, json=token_answer(n, expires_in=3600, scope="read:jira-work offline_access"))


def dead_refresh_token(mocked):
    mocked.post(CLOUD_TOKEN_URL, status=403,
                json={"error": "invalid_grant", "error_description": "Unknown or invalid refresh token."})


def stored(grant) -> tuple:
    grant.refresh_from_db()
    return grant.access_token, grant.refresh_token, grant.status


# --------------------------------------------------------------------------
# 4. Refresh: JSON at the auth host, 403 invalid_grant, rotation
# --------------------------------------------------------------------------


def test_a_refresh_is_a_json_post_to_the_auth_host_without_redirect_uri_and_stores_the_rotated_pair(
        connected_cloud_account, mocked_jira):
    atlassian_refreshes(mocked_jira)

    assert refresh(connected_cloud_account).outcome is RefreshOutcome.REFRESHED

    (call,) = mocked_jira.calls
    assert call.request.url == CLOUD_TOKEN_URL
    assert call.request.headers["Content-Type"] == "application/json"
    assert json_of(call) == {"grant_type": "refresh_token", "refresh_token": REFRESH_TOKEN,
                             "client_id": ATLASSIAN_CLIENT_ID, "client_secret": ATLASSIAN_SECRET}
    assert stored(connected_cloud_account) == ("ACCESSTOKEN-2-e1d2c3b4", "REFRESHTOKEN-2-a9b8c7d6", Status.CONNECTED)
    # The next refresh sends the rotated token.
    mocked_jira.replace("POST", CLOUD_TOKEN_URL, json=token_answer(3, expires_in=3600))
    refresh(connected_cloud_account)
    assert [body["refresh_token"] for body in token_posts(mocked_jira)] == [REFRESH_TOKEN, "REFRESHTOKEN-2-a9b8c7d6"]


def test_an_account_with_its_own_app_refreshes_with_its_own_credentials(connected_cloud_account, mocked_jira):
    ALMAccount.objects.filter(pk=connected_cloud_account.pk).update(client_id="own-app-client-id")
    connected_cloud_account.refresh_from_db()
    connected_cloud_account.client_secret = "OWNSECRET-9a8b"
    connected_cloud_account.save()
    atlassian_refreshes(mocked_jira)

    refresh(connected_cloud_account)

    body = token_posts(mocked_jira)[0]
    assert (body["client_id"], body["client_secret"]) == ("own-app-client-id", "OWNSECRET-9a8b")


def test_403_invalid_grant_needs_reauthorization_and_raises_the_alert(connected_cloud_account, mocked_jira):
    dead_refresh_token(mocked_jira)

    result = refresh(connected_cloud_account)

    assert result.outcome is RefreshOutcome.NEEDS_REAUTHORIZATION
    assert "Unknown or invalid refresh token." in result.message
    assert result.message.startswith("Atlassian no longer accepts the refresh token")  # Atlassian's causes, not DC's
    assert stored(connected_cloud_account) == (ACCESS_TOKEN, REFRESH_TOKEN, Status.NEEDS_REAUTHORIZATION)
    (alert,) = Alert.objects.all()
    assert (alert.event, alert.reason, alert.account) == (Alert.Event.BROKEN, "needs_reauthorization",
                                                          connected_cloud_account)
    assert "365 days after its consent" in alert.message and "Data Center" not in alert.message
    assert len(token_posts(mocked_jira)) == 1  # a dead grant is not asked twice


# --------------------------------------------------------------------------
# 4. The reuse leeway: a lost answer is retried once with the same token on Cloud only, inside the leeway
# --------------------------------------------------------------------------

LOST_ANSWERS = {
    "connection dropped after sending": lambda: {"body": broken_connection()},
    "HTTP 500": lambda: {"body": "<html>Internal Server Error</html>", "status": 500},
}


@pytest.mark.parametrize("lost", list(LOST_ANSWERS))
def test_cloud_retries_a_lost_refresh_answer_once_with_the_same_refresh_token(connected_cloud_account, mocked_jira,
                                                                              lost):
    mocked_jira.post(CLOUD_TOKEN_URL, **LOST_ANSWERS[lost]())
    atlassian_refreshes(mocked_jira)

    assert refresh(connected_cloud_account).outcome is RefreshOutcome.REFRESHED

    assert [body["refresh_token"] for body in token_posts(mocked_jira)] == [REFRESH_TOKEN, REFRESH_TOKEN]
    assert stored(connected_cloud_account) == ("ACCESSTOKEN-2-e1d2c3b4", "REFRESHTOKEN-2-a9b8c7d6", Status.CONNECTED)


@pytest.mark.parametrize("lost", list(LOST_ANSWERS))
def test_a_lost_refresh_answer_is_asked_again_only_as_often_as_the_provider_allows(provider, provider_account,
                                                                                    mocked_jira, lost):
    """Cloud: once more with the same refresh token (its reuse leeway); Data Center: never (Jira may have rotated
    the grant already). Then the refresh fails and the tokens are kept, though one more attempt would get them."""
    for _ in range(provider.lost_answer_retries + 1):
        mocked_jira.post(provider.token_url, **LOST_ANSWERS[lost]())
    mocked_jira.must_not_be_asked(provider.refreshes(mocked_jira))  # a further (wrong) attempt would get it

    assert refresh(provider_account).outcome is RefreshOutcome.FAILED

    sent = [body["refresh_token"] for body in provider.token_requests(mocked_jira)]
    assert sent == [REFRESH_TOKEN] * (provider.lost_answer_retries + 1)
    assert stored(provider_account) == (ACCESS_TOKEN, REFRESH_TOKEN, Status.CONNECTED)


@pytest.fixture
def slow_lost_answer(monkeypatch, settings, mocked_jira):
    """The first refresh answer is lost after the attempt took `seconds` (a clock moved on by the answer);
    a second attempt would succeed. The refresh deadline is long enough for either."""
    settings.JIRA_REFRESH_DEADLINE = 3600
    moved = [0.0]
    real = time.monotonic
    monkeypatch.setattr(time, "monotonic", lambda: real() + moved[0])

    def lose_after(seconds: float):
        def answer(request):
            moved[0] += seconds
            return 500, {}, "<html>Internal Server Error</html>"

        mocked_jira.add_callback("POST", CLOUD_TOKEN_URL, callback=answer)
        return atlassian_refreshes(mocked_jira)  # what a second attempt would get

    return lose_after


def test_a_lost_attempt_that_took_longer_than_the_leeway_is_not_retried(connected_cloud_account, mocked_jira,
                                                                        slow_lost_answer):
    second_attempt = slow_lost_answer(6 * 60)  # Atlassian may already treat the replaced token as reused
    mocked_jira.must_not_be_asked(second_attempt)  # never send it again

    assert refresh(connected_cloud_account).outcome is RefreshOutcome.FAILED

    assert len(token_posts(mocked_jira)) == 1
    assert stored(connected_cloud_account) == (ACCESS_TOKEN, REFRESH_TOKEN, Status.CONNECTED)


def test_a_slow_lost_attempt_still_inside_the_leeway_is_retried(connected_cloud_account, mocked_jira,
                                                               slow_lost_answer):
    slow_lost_answer(4 * 60)

    assert refresh(connected_cloud_account).outcome is RefreshOutcome.REFRESHED
    assert len(token_posts(mocked_jira)) == 2


# --------------------------------------------------------------------------
# 5. The yearly consent: one "Consent ends soon" alert, 14 days before the 365 days end
# --------------------------------------------------------------------------


def connected_days_ago(grant, days: int):
    type(grant).objects.filter(pk=grant.pk).update(connected_at=timezone.now() - timedelta(days=days))
    grant.refresh_from_db()
    return grant


def consent_alerts() -> list[Alert]:
    return list(Alert.objects.filter(event=Alert.Event.CONSENT_ENDING))


def test_a_cloud_grant_near_its_365_days_is_warned_once_on_its_next_refresh(connected_cloud_account, mocked_jira):
    account = connected_days_ago(connected_cloud_account, 352)
    account.notify = "ops@bank.example, jira-team@bank.example"
    account.save()
    ends = timezone.localtime(account.connected_at + timedelta(days=365))
    atlassian_refreshes(mocked_jira)

    assert refresh(account).outcome is RefreshOutcome.REFRESHED

    (alert,) = consent_alerts()
    assert (alert.event, alert.reason, alert.account) == ("consent_ending", "consent_ending", account)
    assert alert.get_event_display() == "Consent ends soon"
    assert alert.recipients.splitlines() == ["ops@bank.example", "jira-team@bank.example"]
    assert alert.subject == "Jira Cloud consent ends soon: Jira Cloud - Demo"
    assert f"The consent of Jira Cloud - Demo ends on {ends:%Y-%m-%d %H:%M}" in alert.message
    assert "What to do: before then," in alert.message and "click Get Auth Token" in alert.message
    account.refresh_from_db()
    assert account.reconsent_warned_at is not None

    mocked_jira.replace("POST", CLOUD_TOKEN_URL, json=token_answer(3, expires_in=3600))
    assert refresh(account).outcome is RefreshOutcome.REFRESHED
    assert len(consent_alerts()) == 1  # not a second time


def test_a_grant_not_near_the_end_of_its_consent_is_not_warned(provider, provider_account, mocked_jira):
    """Cloud 300 days after its consent (the warning comes 14 days before 365); Data Center 400 days after (its
    grants have no yearly consent)."""
    provider.refreshes(mocked_jira)
    grant = connected_days_ago(provider_account, provider.unwarned_age_days)
    assert refresh(grant).outcome is RefreshOutcome.REFRESHED
    assert consent_alerts() == []


def test_a_new_consent_starts_a_new_year(admin_client, connected_cloud_account, mocked_jira):
    account = connected_days_ago(connected_cloud_account, 352)
    atlassian_refreshes(mocked_jira)
    refresh(account)
    assert len(consent_alerts()) == 1

    # Get Auth Token again: a new consent.
    q = start_cloud_consent(admin_client, account)
    mocked_jira.replace("POST", CLOUD_TOKEN_URL, json=token_answer(3, expires_in=3600))
    mocked_jira.get(ACCESSIBLE_RESOURCES_URL, json=[OUR_SITE])
    mocked_jira.get(CLOUD_MYSELF_URL, json=ATLASSIAN_ME)
    assert admin_client.get(CLOUD_CALLBACK_PATH, {"code": "AUTHCODE-again", "state": q["state"]}).status_code == 302

    account.refresh_from_db()
    assert account.reconsent_warned_at is None
    assert account.connected_at > timezone.now() - timedelta(minutes=1)
    assert refresh(account).outcome is RefreshOutcome.REFRESHED
    assert len(consent_alerts()) == 1


# --------------------------------------------------------------------------
# 6. Test connection and jira_request through the ex/jira/{cloud id} base
# --------------------------------------------------------------------------


def test_test_connection_calls_myself_and_server_info_on_the_sites_base(admin_client, connected_cloud_account,
                                                                        mocked_jira):
    mocked_jira.get(CLOUD_MYSELF_URL, json={"accountId": ATLASSIAN_ME["accountId"], "displayName": "Jane Smith"})
    mocked_jira.get(CLOUD_SERVER_INFO_URL, json={"baseUrl": CLOUD_SITE, "version": "1001.0.0-SNAPSHOT",
                                                 "deploymentType": "Cloud"})

    response = admin_client.post(button_url("test_connection", connected_cloud_account), follow=True)

    assert ("Connected to Jira Cloud site kendis-demo (https://kendis-demo.atlassian.net) as Jane Smith."
            in page_text(response))
    assert [c.request.url for c in mocked_jira.calls] == [CLOUD_MYSELF_URL, CLOUD_SERVER_INFO_URL]
    assert all(c.request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}" for c in mocked_jira.calls)
    connected_cloud_account.refresh_from_db()
    assert connected_cloud_account.connected_as_name == ATLASSIAN_ME["accountId"]
    assert connected_cloud_account.connected_as_display_name == "Jane Smith"


def test_jira_request_goes_to_the_sites_base_on_the_api_host(connected_cloud_account, mocked_jira):
    mocked_jira.get(ISSUE_URL, json={"key": "DEMO-1"})

    answer = services.jira_request(account=connected_cloud_account, method="GET", path="/rest/api/3/issue/DEMO-1")

    assert answer == {"key": "DEMO-1"}
    (call,) = mocked_jira.calls
    assert call.request.url == ISSUE_URL
    assert call.request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"


@pytest.mark.parametrize("path", [
    "/../a7e4b2c9-6d1f-4a3e-8b5c-9d0e1f2a3b62/rest/api/3/myself",  # another site the same grant reaches
    "/rest/api/3/../../../../oauth/token/accessible-resources",
    "/./../x",
    "/%2e%2e/a7e4b2c9-6d1f-4a3e-8b5c-9d0e1f2a3b62/rest/api/3/myself",
    "@evil.example/rest/api/3/myself",
    "//evil.example/x",
    "https://evil.example/x",
])
def test_a_path_that_would_leave_the_sites_base_is_refused_before_anything_is_sent(connected_cloud_account,
                                                                                  mocked_jira, path):
    with pytest.raises(services.InvalidJiraPath) as refused:
        services.jira_request(account=connected_cloud_account, method="GET", path=path)

    assert "nothing was sent" in str(refused.value)
    assert len(mocked_jira.calls) == 0


def test_a_401_refreshes_at_the_auth_host_and_retries_once(connected_cloud_account, mocked_jira):
    mocked_jira.get(ISSUE_URL, status=401, json={"code": 401, "message": "Unauthorized"})
    mocked_jira.get(ISSUE_URL, json={"key": "DEMO-1"})
    atlassian_refreshes(mocked_jira)

    answer = services.jira_request(account=connected_cloud_account, method="GET", path="/rest/api/3/issue/DEMO-1")

    assert answer == {"key": "DEMO-1"}
    assert [(c.request.method, c.request.url) for c in mocked_jira.calls] == [
        ("GET", ISSUE_URL), ("POST", CLOUD_TOKEN_URL), ("GET", ISSUE_URL)]
    assert mocked_jira.calls[2].request.headers["Authorization"] == "Bearer ACCESSTOKEN-2-e1d2c3b4"
    assert stored(connected_cloud_account)[1] == "REFRESHTOKEN-2-a9b8c7d6"


def test_a_cloud_account_whose_site_is_not_known_says_so_and_sends_nothing(connected_cloud_account, mocked_jira):
    ALMAccount.objects.filter(pk=connected_cloud_account.pk).update(cloud_id="", cloud_site_name="")
    connected_cloud_account.refresh_from_db()

    with pytest.raises(services.JiraRequestError) as failed:
        services.jira_request(account=connected_cloud_account, method="GET", path="/rest/api/3/myself")

    assert "the Jira Cloud site of this account is not known yet" in str(failed.value)
    assert "click Get Auth Token" in str(failed.value) and len(mocked_jira.calls) == 0


def test_a_missing_scope_is_reported_not_refreshed(connected_cloud_account, mocked_jira):
    """Atlassian answers a token without the scope a resource needs with 401 "scope does not match": a refresh
    cannot add a scope (the grant has its consent's), so no refresh token is spent and the error says why."""
    mocked_jira.post(ISSUE_URL.rsplit("/", 1)[0], status=401,
                     json={"code": 401, "message": "Unauthorized; scope does not match"})

    with pytest.raises(services.JiraRequestError) as failed:
        services.jira_request(account=connected_cloud_account, method="POST", path="/rest/api/3/issue",
                              json={"fields": {"summary": "x"}})

    assert "scope does not match" in str(failed.value) and failed.value.status == 401
    assert [c.request.method for c in mocked_jira.calls] == ["POST"]  # no token request
    assert stored(connected_cloud_account)[1] == REFRESH_TOKEN


# --------------------------------------------------------------------------
# 7. Disconnect: deleted here, nothing sent, where the person removes the app
# --------------------------------------------------------------------------


def test_disconnect_wipes_the_tokens_sends_nothing_and_names_connected_apps(admin_client, connected_cloud_account,
                                                                            mocked_jira):
    response = admin_client.post(button_url("disconnect", connected_cloud_account), follow=True)

    text = page_text(response)
    assert ("Disconnected: the tokens were deleted here; Jira did not confirm the revocation (Jira Cloud has no "
            "revocation endpoint).") in text
    assert (f"the Atlassian user Jira Admin ({ATLASSIAN_ME['accountId']}) can remove the app from their Atlassian "
            f"account under Connected apps ({CONNECTED_APPS_URL}).") in text
    assert len(mocked_jira.calls) == 0
    assert stored(connected_cloud_account) == (None, None, Status.NOT_CONNECTED)
    event = AuthEvent.objects.get(kind=AuthEvent.Kind.DISCONNECTED)
    assert "Jira Cloud has no revocation endpoint" in event.message and "Connected apps" in event.message


# --------------------------------------------------------------------------
# 9. Settings: the deployment's app and Atlassian's hosts
# --------------------------------------------------------------------------


@pytest.mark.parametrize("only", ["ATLASSIAN_CLIENT_ID", "ATLASSIAN_CLIENT_SECRET"])
def test_half_of_the_deployments_atlassian_app_stops_the_start(production_env, only):
    result = run({**production_env, only: "set-alone-123"}, "manage.py", "check")
    assert result.returncode != 0
    assert "Set both ATLASSIAN_CLIENT_ID and ATLASSIAN_CLIENT_SECRET" in result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("name", ["ATLASSIAN_AUTH_URL", "ATLASSIAN_API_URL"])
def test_an_http_atlassian_host_is_refused_when_debug_is_off(production_env, name):
    result = run({**production_env, name: "http://atlassian.internal.example"}, "manage.py", "check")
    assert result.returncode != 0
    assert f"{name} must use https:// when DEBUG is off" in result.stderr.strip().splitlines()[-1]


def test_the_atlassian_settings_in_production_and_in_development(production_env):
    assert production_settings({**production_env, "ATLASSIAN_CLIENT_ID": "cid", "ATLASSIAN_CLIENT_SECRET": "sec"}, (
        "[settings.ATLASSIAN_AUTH_URL, settings.ATLASSIAN_API_URL, settings.ATLASSIAN_CLIENT_ID]"
    )) == ["https://auth.atlassian.com", "https://api.atlassian.com", "cid"]
    development = {**production_env, "DEBUG": "true", "ATLASSIAN_AUTH_URL": "http://127.0.0.1:8090/cloud-auth/",
                   "ATLASSIAN_API_URL": "http://localhost:8090/cloud-api"}
    assert production_settings(development, "[settings.ATLASSIAN_AUTH_URL, settings.ATLASSIAN_API_URL]") == [
        "http://127.0.0.1:8090/cloud-auth", "http://localhost:8090/cloud-api"]


# --------------------------------------------------------------------------
# 10. No secret in messages, events, alerts or logs; the deployment's secret only to the auth host
# --------------------------------------------------------------------------


def test_the_lifecycle_leaves_no_secret_behind_and_the_secret_goes_only_to_the_auth_host(
        admin_client, connected_cloud_account, mocked_jira, caplog):
    caplog.set_level(logging.DEBUG)
    account = connected_days_ago(connected_cloud_account, 360)  # the consent warning too
    said = []
    mocked_jira.post(CLOUD_TOKEN_URL, body=broken_connection())  # a lost answer, retried (warning logged)
    atlassian_refreshes(mocked_jira)
    said.append(refresh(account).message)
    mocked_jira.get(ISSUE_URL, status=401, json={})
    mocked_jira.get(ISSUE_URL, json={"key": "DEMO-1"})
    mocked_jira.upsert("POST", CLOUD_TOKEN_URL, json=token_answer(3, expires_in=3600))
    services.jira_request(account=account, method="GET", path="/rest/api/3/issue/DEMO-1")
    mocked_jira.get(CLOUD_MYSELF_URL, json=ATLASSIAN_ME)
    mocked_jira.get(CLOUD_SERVER_INFO_URL, json={"baseUrl": CLOUD_SITE})
    said.append(page_text(admin_client.post(button_url("test_connection", account), follow=True)))
    mocked_jira.upsert("POST", CLOUD_TOKEN_URL, status=403, json={"error": "invalid_grant",
                                                                  "error_description": "Unknown refresh token"})
    said.append(refresh(account).message)
    said.append(page_text(admin_client.post(button_url("disconnect", account), follow=True)))
    said.append(page_text(admin_client.get(reverse("admin:alm_accounts_almaccount_change", args=[account.pk]))))

    said += [caplog.text, *AuthEvent.objects.values_list("message", flat=True)]
    said += [f"{a.subject} {a.message} {a.link}" for a in Alert.objects.all()]
    assert {a.event for a in Alert.objects.all()} == {"consent_ending", "broken"}
    for text in said:
        for secret in SECRETS:
            assert secret not in text, secret
    hosts = {urlsplit(c.request.url).netloc for c in mocked_jira.calls}
    assert hosts == {urlsplit(ATLASSIAN_AUTH).netloc, urlsplit(ATLASSIAN_API).netloc}  # never the site itself
    for call in mocked_jira.calls:
        sent = f"{call.request.url} {call.request.headers} {call.request.body or ''}"
        assert (ATLASSIAN_SECRET in sent) is (call.request.url == CLOUD_TOKEN_URL)


def test_a_connection_errors_own_text_is_not_echoed_into_messages_or_logs(connected_cloud_account, mocked_jira,
                                                                         caplog):
    """The library's exception text is never shown verbatim: it can carry whatever was in the request."""
    caplog.set_level(logging.DEBUG)
    mocked_jira.post(CLOUD_TOKEN_URL, body=requests.ConnectionError(f"boom {ATLASSIAN_SECRET}"))
    result = refresh(connected_cloud_account)
    assert result.outcome is RefreshOutcome.FAILED
    assert ATLASSIAN_SECRET not in result.message and ATLASSIAN_SECRET not in caplog.text
    assert ATLASSIAN_SECRET not in connected_cloud_account.__class__.objects.get(
        pk=connected_cloud_account.pk).last_error
